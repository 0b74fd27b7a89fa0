"""`natsmesh chaos ...` (faults on a running mesh, and the loss checker) and `natsmesh heal`."""

from __future__ import annotations

import sys

import click

from natsmesh.cli.app import cli
from natsmesh.cli.output import console, json_option, load, print_json, spec_option
from natsmesh.local.records import CUT_MODES


@cli.group()
def chaos() -> None:
    """Fault injection on a running mesh (kill, pause, restart, partition) and the loss checker."""


@chaos.command(name="kill")
@click.argument("node")
@spec_option
def chaos_kill(node: str, spec_path: str | None) -> None:
    """SIGKILL NODE; the supervisor brings it back."""
    from natsmesh.faults import chaos as faults

    pid = faults.kill(load(spec_path), node)
    click.echo(f"killed {node} (pid {pid}); the supervisor restarts it")


@chaos.command(name="pause")
@click.argument("node")
@spec_option
@click.option("--for", "seconds", type=click.FloatRange(0, 3600), required=True, help="Seconds to keep it stopped.")
def chaos_pause(node: str, spec_path: str | None, seconds: float) -> None:
    """SIGSTOP NODE for a while, then SIGCONT (also on Ctrl-C)."""
    from natsmesh.faults import chaos as faults

    faults.pause(load(spec_path), node, seconds)
    click.echo(f"paused {node} for {seconds:g} s; continued")


@chaos.command(name="restart")
@click.argument("cluster")
@spec_option
def chaos_restart(cluster: str, spec_path: str | None) -> None:
    """Stop every node of CLUSTER at once; the supervisor starts them again."""
    from natsmesh.faults import chaos as faults

    pids = faults.restart(load(spec_path), cluster)
    click.echo(f"stopped {len(pids)} nodes of {cluster}; the supervisor restarts them")


@chaos.command(name="partition")
@click.argument("domain")
@spec_option
@click.option("--for", "seconds", type=click.FloatRange(0, 86400), required=True, help="Seconds to cut it off.")
@click.option(
    "--mode",
    type=click.Choice(CUT_MODES),
    default="reset",
    show_default=True,
    help="reset: connections closed and refused; drop: traffic silently stops (noticed by pings).",
)
@click.option("--no-wait", is_flag=True, help="Return at once; the supervisor restores the links on time.")
@json_option
def chaos_partition(
    domain: str, spec_path: str | None, seconds: float, mode: str, no_wait: bool, as_json: bool
) -> None:
    """Cut every leaf link of DOMAIN (both accounts) for a while, then restore them.

    Needs a mesh started with `natsmesh up --chaos`. The supervisor lifts the partition when the time is up,
    even if this command is interrupted; without --no-wait this waits for that and for the domain's links to
    come back, and says how long they took."""
    from natsmesh.faults.chaos import PartitionResult, partition_for

    mesh = load(spec_path)
    waiting = console(stderr=True).status(f"{domain} cut off")

    def on_cut(res: PartitionResult) -> None:
        cut = res.cut.get("connections_cut", 0)
        if not as_json:
            click.echo(f"partitioned {domain} ({mode}): {cut} connections cut for {seconds:g} s")
        if not no_wait:
            waiting.start()

    def on_tick(left: float) -> None:
        waiting.update(f"{domain} cut off: {left:.0f} s left")
        if left <= 0.5:
            waiting.stop()

    try:
        res = partition_for(mesh, domain, seconds, mode, wait=not no_wait, on_cut=on_cut, on_tick=on_tick)
    finally:
        waiting.stop()
    if as_json:
        print_json(res.to_json())
    elif res.relinked_seconds is not None:
        click.echo(f"restored: {domain}'s links back {res.relinked_seconds:.2f} s after the partition ended")


@chaos.command(name="restore")
@click.argument("domain")
@spec_option
def chaos_restore(domain: str, spec_path: str | None) -> None:
    """End DOMAIN's partition now."""
    from natsmesh.faults import chaos as faults

    res = faults.restore(load(spec_path), domain)
    if res.get("was_cut"):
        click.echo(f"restored {domain} after {res.get('cut_seconds', 0):.1f} s")
    else:
        click.echo(f"{domain} was not partitioned")


@chaos.command(name="verify")
@click.argument("ref")
@spec_option
@click.option("--count", type=click.IntRange(1), default=1000, show_default=True, help="Messages to publish.")
@click.option("--rate", type=float, default=500.0, show_default=True, help="Messages per second.")
@click.option("--subject", default=None, help="Subject to publish on (default: derived from the product's).")
@click.option("--settle", type=float, default=20.0, show_default=True, help="Seconds copies get to catch up.")
@json_option
def chaos_verify(
    ref: str, spec_path: str | None, count: int, rate: float, subject: str | None, settle: float, as_json: bool
) -> None:
    """Publish COUNT uniquely identified messages into product REF with acks and message ids, then read the
    product and every mirror and source of it back: acknowledged, stored, lost, duplicated, out of order.
    Exits 1 if anything acknowledged is missing or duplicated anywhere."""
    from natsmesh.client import run
    from natsmesh.faults.losscheck import check_product

    res = run(check_product(load(spec_path), ref, count=count, rate=rate, subject=subject, settle=settle))
    if as_json:
        print_json(res.to_json())
    else:
        r = res.run
        click.echo(
            f"run {r.run}: {len(r.acked)} acknowledged, {len(r.failed)} failed, {r.retries} retries in "
            f"{r.seconds:.1f} s"
        )
        for c in res.checks:
            click.echo(
                f"  {c.stream:<32} {c.role:<7} stored {c.stored:>7}  lost {len(c.lost):>5}  "
                f"duplicated {c.duplicated:>5}  out of order {c.out_of_order:>5}"
            )
    if not res.ok:
        sys.exit(1)


@cli.command()
@spec_option
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to keep trying.")
@click.option("--watch", type=float, default=0.0, show_default=True, help="Keep looking at least this long.")
@json_option
def heal(spec_path: str | None, timeout: float, watch: float, as_json: bool) -> None:
    """Nudge stalled mirrors and sources until every copy is flowing again.

    A copy silent for 3 s whose upstream answers and whose domains are linked gets a leader stepdown (more than
    one replica) or its source removed and re-added (one replica, several sources). The supervisor does this by
    itself; this command is for a mesh it does not run, or to see what is stalled. Exits 1 if copies remain
    stalled."""
    from natsmesh.client import run
    from natsmesh.reconcile.heal import heal as heal_copies

    err = console(stderr=True)
    rep = run(heal_copies(load(spec_path), timeout=timeout, watch=watch, on_event=None if as_json else err.print))
    if as_json:
        print_json(rep.to_json())
    else:
        state = "all flowing" if rep.healed else f"{len(rep.waiting)} still waiting"
        click.echo(f"{len(rep.stalled)} copies stalled, {len(rep.nudges)} nudges, {state} after {rep.seconds:.1f} s")
        for w in rep.waiting:
            click.echo(f"  waiting: {w}")
        if rep.missing:
            click.echo(f"  {len(rep.missing)} declared copies or products do not exist yet: run `natsmesh apply`")
    if not rep.healed:
        sys.exit(1)
