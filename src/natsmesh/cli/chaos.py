"""`natsmesh chaos ...` (faults on a running mesh, and the loss checker) and `natsmesh heal`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from natsmesh.cli.app import cli
from natsmesh.cli.output import F, console, json_option, load, print_json, spec_option
from natsmesh.local.records import CUT_MODES

if TYPE_CHECKING:
    from natsmesh.model.mesh import Mesh


@cli.group()
def chaos() -> None:
    """Fault injection on a running mesh (kill, pause, restart, partition) and the loss checker."""


def _fault_command(name: str, target: str, *options: Callable[[F], F]) -> Callable[[Callable[..., str]], click.Command]:
    """`natsmesh chaos NAME TARGET [-f SPEC] [OPTIONS]` from a function that is given the spec's mesh, TARGET and
    the options' values, does the fault and returns the line to print; its docstring is the command's help."""

    def make(act: Callable[..., str]) -> click.Command:
        def command(spec_path: str | None, **values: Any) -> None:
            click.echo(act(load(spec_path), **values))

        for option in reversed(options):
            command = option(command)
        return chaos.command(name=name, help=act.__doc__)(click.argument(target)(spec_option(command)))

    return make


@_fault_command("kill", "node")
def chaos_kill(mesh: Mesh, node: str) -> str:
    """SIGKILL NODE; the supervisor brings it back."""
    from natsmesh.faults import chaos as faults

    return f"killed {node} (pid {faults.kill(mesh, node)}); the supervisor restarts it"


@_fault_command(
    "pause",
    "node",
    click.option("--for", "seconds", type=click.FloatRange(0, 3600), required=True, help="Seconds to keep it stopped."),
)
def chaos_pause(mesh: Mesh, node: str, seconds: float) -> str:
    """SIGSTOP NODE for a while, then SIGCONT (also on Ctrl-C)."""
    from natsmesh.faults import chaos as faults

    faults.pause(mesh, node, seconds)
    return f"paused {node} for {seconds:g} s; continued"


@_fault_command("restart", "cluster")
def chaos_restart(mesh: Mesh, cluster: str) -> str:
    """Stop every node of CLUSTER at once; the supervisor starts them again."""
    from natsmesh.faults import chaos as faults

    return f"stopped {len(faults.restart(mesh, cluster))} nodes of {cluster}; the supervisor restarts them"


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
    """Cut every leaf link of DOMAIN (each account it links in) for a while, then restore them.

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


@_fault_command("restore", "domain")
def chaos_restore(mesh: Mesh, domain: str) -> str:
    """End DOMAIN's partition now."""
    from natsmesh.faults import chaos as faults

    res = faults.restore(mesh, domain)
    if res.get("was_cut"):
        return f"restored {domain} after {res.get('cut_seconds', 0):.1f} s"
    return f"{domain} was not partitioned"


@chaos.command(name="verify")
@click.argument("ref")
@spec_option
@click.option("--count", type=click.IntRange(1), default=1000, show_default=True, help="Messages to publish.")
@click.option("--rate", type=float, default=500.0, show_default=True, help="Messages per second.")
@click.option("--subject", default=None, help="Subject to publish on (default: derived from the product's).")
@click.option("--settle", type=float, default=20.0, show_default=True, help="Seconds copies get to catch up.")
@click.option(
    "--creds",
    "creds_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Publish as this producer of the domain's own (`natsmesh user add`); read back as the platform.",
)
@json_option
def chaos_verify(
    ref: str,
    spec_path: str | None,
    count: int,
    rate: float,
    subject: str | None,
    settle: float,
    creds_file: str | None,
    as_json: bool,
) -> None:
    """Publish COUNT uniquely identified messages into product REF with acks and message ids, then read the
    product and every mirror and source of it back: acknowledged, stored, lost, duplicated, out of order.
    Exits 1 if anything acknowledged is missing or duplicated anywhere."""
    from natsmesh.client import run
    from natsmesh.faults.losscheck import check_product
    from natsmesh.reconcile.users import service_login

    user = service_login(Path(creds_file)) if creds_file else None
    res = run(check_product(load(spec_path), ref, count=count, rate=rate, subject=subject, settle=settle, user=user))
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
