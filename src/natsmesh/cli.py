"""The `natsmesh` command: parse, call the library, format. Every command is also a Python API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from natsmesh.errors import NatsmeshError

SPEC_HELP = "Mesh spec file. Default: ./mesh.yaml if present, else the embedded seed topology."
PALETTE = [
    "cyan",
    "green",
    "yellow",
    "magenta",
    "blue",
    "bright_red",
    "bright_cyan",
    "bright_green",
    "bright_yellow",
    "bright_magenta",
    "bright_blue",
    "red",
]


class NatsmeshGroup(click.Group):
    """Turns user-caused errors into one clear message and a non-zero exit, without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NatsmeshError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:
            if not type(exc).__module__.startswith("nats."):
                raise
            # What the broker answered (or did not) in a case natsmesh has no clearer message for.
            click.secho(f"error: {type(exc).__name__}: {exc}", fg="red", err=True)
            ctx.exit(1)


def spec_option(f: Any) -> Any:
    return click.option("-f", "--file", "spec_path", type=click.Path(dir_okay=False), default=None, help=SPEC_HELP)(f)


def json_option(f: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of tables.")(f)


def _load(spec_path: str | None) -> Any:
    from natsmesh.spec import load_spec

    mesh = load_spec(spec_path)
    for w in mesh.warnings:
        click.secho(f"warning: {w}", fg="yellow", err=True)
    return mesh


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        console.width = 200  # pipes and files get whole tables, not 80 squeezed columns
    return console


def _print_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, default=str))


@click.group(cls=NatsmeshGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="natsmesh")
def cli() -> None:
    """natsmesh: a NATS/JetStream hub & spoke leafnode mesh from one spec file.

    A hub cluster, one leaf cluster (its own JetStream domain) per team: `natsmesh up` runs it on this
    machine, `natsmesh render` writes the configs that run it anywhere, `natsmesh report` shows it.
    """


# ---------------------------------------------------------------------------------------------------------------
# spec


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False), default="mesh.yaml")
@click.option("--domains", type=click.IntRange(0, 2000), default=5, show_default=True, help="Number of domains.")
@click.option("--nodes", type=click.IntRange(1, 15), default=3, show_default=True, help="Nodes per domain.")
@click.option("--hub-nodes", type=click.IntRange(1, 15), default=3, show_default=True, help="Nodes in the hub.")
@click.option("--name", default=None, help="Mesh name (default: the folder's name).")
@click.option(
    "--base-port",
    type=click.IntRange(1024, 32767),
    default=None,
    help="First port of the plan (default: 20000, lower for very large meshes).",
)
@click.option("--tls", is_flag=True, help="Require TLS on every link; generate the mesh's CA and certificates.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(
    path: str,
    domains: int,
    nodes: int,
    hub_nodes: int,
    name: str | None,
    base_port: int | None,
    tls: bool,
    force: bool,
) -> None:
    """Write a commented mesh spec to PATH (default ./mesh.yaml)."""
    import re

    from natsmesh.spec import init_spec_text, parse_spec

    target = Path(path)
    if target.exists() and not force:
        raise click.ClickException(f"{target} already exists; use --force to overwrite it")
    mesh_name = name or re.sub(r"[^A-Za-z0-9_-]", "-", target.resolve().parent.name).strip("-_") or "natsmesh"
    try:
        text = init_spec_text(
            name=mesh_name, domains=domains, nodes=nodes, hub_nodes=hub_nodes, base=base_port, tls=tls
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    mesh = parse_spec(text, source=str(target), base_dir=target.resolve().parent)  # the template always validates
    target.write_text(text)
    if tls:
        from natsmesh.certs import ensure_certs

        certs = ensure_certs(mesh)
        click.echo(f"generated a CA and server certificate in {certs.ca.parent} (keys mode 0600)")
    click.echo(
        f"wrote {target}: hub of {hub_nodes} + {domains} domains of {nodes} nodes "
        f"({len(mesh.nodes())} servers); start it with `natsmesh up -f {target}`"
    )


@cli.command()
@spec_option
@json_option
def validate(spec_path: str | None, as_json: bool) -> None:
    """Check a spec and print the topology it resolves to."""
    mesh = _load(spec_path)
    doc = {
        "mesh": mesh.name,
        "source": mesh.source,
        "data_dir": str(mesh.data_dir),
        "warnings": list(mesh.warnings),
        "clusters": [
            {
                "name": c.name,
                "domain": c.domain,
                "hub": c.is_hub,
                "folder": c.folder,
                "nodes": [{"name": n.name, **n.ports()} for n in c.nodes],
            }
            for c in mesh.clusters
        ],
    }
    if as_json:
        _print_json(doc)
        return
    from rich import box
    from rich.table import Table

    t = Table(box=box.SIMPLE_HEAD, title=f"mesh {mesh.name} ({mesh.source})")
    for col in ("Cluster / domain", "Folder", "Server", "Client", "Route", "HTTP", "Leafnode"):
        t.add_column(col)
    for c in mesh.clusters:
        for n in c.nodes:
            p = n.ports()
            t.add_row(
                c.name,
                c.folder,
                n.name,
                str(p["client"]),
                str(p.get("cluster", "-")),
                str(p["http"]),
                str(p.get("leafnode", "-")),
            )
    _console().print(t)
    click.echo(f"valid: {len(mesh.clusters)} clusters, {len(mesh.nodes())} servers")


@cli.command()
@spec_option
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    required=True,
    help="Directory to write one folder per cluster into.",
)
@click.option("--server-command", default="nats-server", show_default=True, help="Command the Procfiles run.")
@json_option
def render(spec_path: str | None, out_dir: str, server_command: str, as_json: bool) -> None:
    """Write every node's nats-server config and a Procfile per cluster folder."""
    from natsmesh.certs import cert_texts
    from natsmesh.credentials import load_credentials
    from natsmesh.render import render_mesh, write_files

    mesh = _load(spec_path)
    files = render_mesh(mesh, load_credentials(mesh), server_command, certs=cert_texts(mesh))
    written = write_files(files, Path(out_dir))
    if as_json:
        _print_json({"out": str(out_dir), "files": [str(p) for p in written]})
        return
    folders = sorted({p.parent.name for p in written})
    click.echo(f"wrote {len(written)} files to {out_dir}: {', '.join(folders)}")
    click.echo(f"run one cluster with: cd {Path(out_dir) / folders[0]} && honcho start   (or goreman start)")


# ---------------------------------------------------------------------------------------------------------------
# run


def _progress_printer(total: int) -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("[bold]waiting for the mesh"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} nodes ready"),
        TimeElapsedColumn(),
        console=_console(stderr=True),
        transient=True,
    )
    task = progress.add_task("ready", total=total)

    def update(done: int, _total: int, _pending: Any) -> None:
        progress.update(task, completed=done)

    return progress, update


@cli.command()
@spec_option
@click.option("-d", "--detach", is_flag=True, help="Return once ready and leave a supervisor running.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for readiness.")
@click.option("--chaos", "chaos_", is_flag=True, help="Put a fault proxy on every leaf link (`chaos partition`).")
@json_option
def up(spec_path: str | None, detach: bool, timeout: float, chaos_: bool, as_json: bool) -> None:
    """Start the mesh and wait until it is ready.

    Ready: every node answers its health check, every cluster has a JetStream meta leader, and every leaf
    node's links to the hub are connected in both accounts. In the foreground each log line is prefixed by
    its node; Ctrl-C stops everything. With --detach a supervisor keeps running (see `status`, `down`).
    A mesh with stores and shared products starts in order (hub, owning domains, the rest); the supervisor
    nudges stalled mirrors and sources back (see `natsmesh heal`).
    """
    from natsmesh import lifecycle

    mesh = _load(spec_path)
    if detach:
        if sys.stderr.isatty():
            progress, update = _progress_printer(len(mesh.nodes()))
            with progress:
                res = lifecycle.up_detached(mesh, timeout=timeout, on_progress=update, chaos=chaos_)
        else:  # no bar in logs and pipes
            res = lifecycle.up_detached(mesh, timeout=timeout, chaos=chaos_)
        if as_json:
            _print_json(
                {
                    "mesh": mesh.name,
                    "ready": True,
                    "seconds": round(res.seconds, 3),
                    "nodes": res.nodes,
                    "supervisor_pid": res.supervisor_pid,
                    "data_dir": str(mesh.data_dir),
                }
            )
        else:
            click.echo(
                f"mesh {mesh.name!r} ready: {res.nodes} nodes in {len(mesh.clusters)} clusters after "
                f"{res.seconds:.2f} s (supervisor pid {res.supervisor_pid}, data in {mesh.data_dir})"
            )
            click.echo("next: `natsmesh report jetstream`, `natsmesh status`, `natsmesh down`")
        return

    from rich.text import Text

    console = _console()
    width = max(len(n.name) for n in mesh.nodes())
    colours = {n.name: PALETTE[i % len(PALETTE)] for i, n in enumerate(mesh.nodes())}

    def echo(name: str, line: str) -> None:
        prefix = Text(f"{name:<{width}} | ", style=colours.get(name, "bold white"))
        console.print(prefix + Text(line), soft_wrap=True)

    def on_ready(secs: float) -> None:
        echo("natsmesh", f"mesh {mesh.name!r} ready: {len(mesh.nodes())} nodes after {secs:.2f} s; Ctrl-C stops it")

    last = [-1]

    def report_progress(done: int, total: int, _pending: Any) -> None:
        if done != last[0]:
            last[0] = done
            echo("natsmesh", f"{done}/{total} nodes ready")

    lifecycle.up_foreground(
        mesh, echo=echo, on_ready=on_ready, on_progress=report_progress, timeout=timeout, chaos=chaos_
    )


@cli.command()
@spec_option
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for the stop.")
@json_option
def down(spec_path: str | None, timeout: float, as_json: bool) -> None:
    """Stop every node of a running mesh. Data stays for the next `up`."""
    from natsmesh import lifecycle

    mesh = _load(spec_path)
    state = lifecycle.down(mesh, timeout=timeout)
    nodes = state.get("nodes") or {}
    if as_json:
        _print_json({"mesh": mesh.name, "stopped": len(nodes), "data_dir": str(mesh.data_dir)})
    else:
        click.echo(f"mesh {mesh.name!r} stopped ({len(nodes)} nodes); data kept in {mesh.data_dir}")


@cli.command()
@spec_option
@json_option
def status(spec_path: str | None, as_json: bool) -> None:
    """The supervisor's view of every node, and whether each is ready. Exits 1 if not all are."""
    from natsmesh import lifecycle

    mesh = _load(spec_path)
    st = lifecycle.status(mesh)
    if as_json:
        _print_json(st.to_json())
    else:
        from rich import box
        from rich.table import Table

        t = Table(box=box.SIMPLE_HEAD, title=f"mesh {mesh.name}: supervisor pid {st.supervisor_pid}")
        for col in ("Node", "Cluster", "PID", "State", "Restarts", "Ready", "Problems"):
            t.add_column(col)
        for n in st.nodes:
            t.add_row(
                n.name,
                n.cluster,
                str(n.pid or "-"),
                n.state,
                str(n.restarts),
                "yes" if n.ready else "[red]no[/red]",
                "; ".join(n.problems),
            )
        _console().print(t)
        for e in st.events[-5:]:
            click.echo(f"  {e}")
    if not st.ready:
        sys.exit(1)


# ---------------------------------------------------------------------------------------------------------------
# observe


@cli.group()
def report() -> None:
    """Reports through the system account: one request at the hub, one reply per server."""


def _report(name: str, spec_path: str | None, as_json: bool, timeout: float) -> None:
    from natsmesh.credentials import load_credentials
    from natsmesh.observe import collect_sync
    from natsmesh.reports import REPORTS

    mesh = _load(spec_path)
    kind, build, tables = REPORTS[name]
    replies = collect_sync(mesh, load_credentials(mesh, create=False), [kind], timeout=timeout)[kind]
    doc = build(mesh, replies)
    if as_json:
        _print_json(doc)
    else:
        console = _console()
        for t in tables(doc):
            console.print(t)
    if doc["missing"]:
        click.secho(
            f"no reply after {timeout:g} s from {len(doc['missing'])} server(s): {', '.join(doc['missing'])}",
            fg="yellow",
            err=True,
        )
        sys.exit(2)


def _report_command(name: str, doc: str) -> None:
    @report.command(name=name, help=doc)
    @spec_option
    @json_option
    @click.option(
        "--timeout",
        type=float,
        default=3.0,
        show_default=True,
        help="Seconds to wait for servers that have not answered.",
    )
    def _cmd(spec_path: str | None, as_json: bool, timeout: float) -> None:
        _report(name, spec_path, as_json, timeout)


_report_command("jetstream", "JetStream Summary per server with totals, and the RAFT meta group of every domain.")
_report_command("servers", "Server Overview (one row per server) and Cluster Overview.")
_report_command("leafnodes", "Every leaf link: domain, account, hub server, RTT, messages and bytes in/out.")


@report.command(name="lag")
@spec_option
@json_option
@click.option("--max-lag", type=click.IntRange(0), default=None, help="Exit 1 if any lag exceeds N messages.")
@click.option("--max-inactive", type=float, default=None, help="Exit 1 if any link was idle longer (seconds).")
def report_lag(spec_path: str | None, as_json: bool, max_lag: int | None, max_inactive: float | None) -> None:
    """Every mirror and source: upstream and local last sequence, lag, last active, error."""
    from natsmesh.client import MeshClient, run
    from natsmesh.lag import measure, violations
    from natsmesh.reports import tables_lag

    mesh = _load(spec_path)

    async def go() -> list[Any]:
        async with MeshClient(mesh, name="natsmesh-lag") as mc:
            return await measure(mesh, mc)

    rows = run(go())
    bad = violations(rows, max_lag, max_inactive)
    if as_json:
        _print_json({"report": "lag", "rows": [r.to_json() for r in rows], "violations": bad, "ok": not bad})
    else:
        for t in tables_lag(rows):
            _console().print(t)
        for line in bad:
            click.secho(f"  {line}", fg="red", err=True)
    if bad and (max_lag is not None or max_inactive is not None):
        sys.exit(1)


# ---------------------------------------------------------------------------------------------------------------
# data products


@cli.command()
@spec_option
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option("--prune", is_flag=True, help="Delete natsmesh streams (and their data) the spec no longer names.")
@json_option
def apply(spec_path: str | None, dry_run: bool, prune: bool, as_json: bool) -> None:
    """Make the running mesh's products, mirrors, sources and catalog match the spec.

    Prints the plan (create / update / unchanged / would delete) and applies it. A second apply reports no
    changes. Streams no longer in the spec are kept unless --prune; changes JetStream cannot make in place are
    refused, and then nothing is applied.
    """
    from natsmesh.client import run
    from natsmesh.reconcile import PlanRefusedError, reconcile
    from natsmesh.reports import tables_plan

    mesh = _load(spec_path)
    try:
        result = run(reconcile(mesh, dry_run=dry_run, prune=prune))
    except PlanRefusedError:
        result = run(reconcile(mesh, dry_run=True, prune=prune))
        _show_plan(result, as_json, tables_plan)
        raise
    _show_plan(result, as_json, tables_plan)


def _show_plan(result: Any, as_json: bool, tables_plan: Any) -> None:
    if as_json:
        _print_json(result.to_json())
        return
    _console().print(tables_plan(result))
    summary = ", ".join(f"{n} {a}" for a, n in result.summary().items() if n)
    verb = "applied" if result.applied else "planned (nothing changed)"
    click.echo(f"{verb}: {summary or 'nothing to do'}")


@cli.group(name="policy")
def policy_group() -> None:
    """Who may do what, derived from the spec (ownership and declared consumption)."""


@policy_group.command(name="show")
@click.argument("domain", required=False)
@spec_option
@json_option
def policy_show(domain: str | None, spec_path: str | None, as_json: bool) -> None:
    """The rules for DOMAIN (default: every domain): what it may manage, publish and read, and what not."""
    from natsmesh.errors import NatsmeshError
    from natsmesh.policy import policy, policy_for

    mesh = _load(spec_path)
    try:
        rules = {domain: policy_for(mesh, domain)} if domain else policy(mesh)
    except KeyError:
        raise NatsmeshError(
            f"mesh {mesh.name!r} has no domain {domain!r} (domains: {', '.join(c.name for c in mesh.clusters)})"
        ) from None
    if as_json:
        _print_json({d: [r.to_json() for r in rs] for d, rs in rules.items()})
        return
    from rich import box
    from rich.table import Table

    for d, rs in rules.items():
        t = Table(box=box.SIMPLE_HEAD, title=f"policy of {d}")
        for col in ("Effect", "Action", "Target", "Why"):
            t.add_column(col)
        for r in rs:
            t.add_row(
                f"[green]{r.effect}[/]" if r.effect == "allow" else f"[red]{r.effect}[/]", r.action, r.target, r.why
            )
        _console().print(t)


@cli.group()
def chaos() -> None:
    """Fault injection on a running mesh (kill, pause, restart, partition) and the loss checker."""


@chaos.command(name="kill")
@click.argument("node")
@spec_option
def chaos_kill(node: str, spec_path: str | None) -> None:
    """SIGKILL NODE; the supervisor brings it back."""
    from natsmesh import chaos as faults

    pid = faults.kill(_load(spec_path), node)
    click.echo(f"killed {node} (pid {pid}); the supervisor restarts it")


@chaos.command(name="pause")
@click.argument("node")
@spec_option
@click.option("--for", "seconds", type=click.FloatRange(0, 3600), required=True, help="Seconds to keep it stopped.")
def chaos_pause(node: str, spec_path: str | None, seconds: float) -> None:
    """SIGSTOP NODE for a while, then SIGCONT (also on Ctrl-C)."""
    from natsmesh import chaos as faults

    faults.pause(_load(spec_path), node, seconds)
    click.echo(f"paused {node} for {seconds:g} s; continued")


@chaos.command(name="restart")
@click.argument("cluster")
@spec_option
def chaos_restart(cluster: str, spec_path: str | None) -> None:
    """Stop every node of CLUSTER at once; the supervisor starts them again."""
    from natsmesh import chaos as faults

    pids = faults.restart(_load(spec_path), cluster)
    click.echo(f"stopped {len(pids)} nodes of {cluster}; the supervisor restarts them")


@chaos.command(name="partition")
@click.argument("domain")
@spec_option
@click.option("--for", "seconds", type=click.FloatRange(0, 86400), required=True, help="Seconds to cut it off.")
@click.option(
    "--mode",
    type=click.Choice(["reset", "drop"]),
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
    import time

    from natsmesh import chaos as faults
    from natsmesh.readiness import targets, wait_ready

    mesh = _load(spec_path)
    res = faults.partition(mesh, domain, seconds, mode)
    if not as_json:
        click.echo(f"partitioned {domain} ({mode}): {res.get('connections_cut', 0)} connections cut for {seconds:g} s")
    doc: dict[str, Any] = {"domain": domain, "mode": mode, "seconds": seconds, **res}
    if not no_wait:
        end = time.monotonic() + seconds
        with _console(stderr=True).status(f"{domain} cut off") as st:
            while (left := end - time.monotonic()) > 0:
                st.update(f"{domain} cut off: {left:.0f} s left")
                time.sleep(min(0.5, left))
        nodes = [t for t in targets(mesh) if t.cluster == domain]
        doc["relinked_seconds"] = round(wait_ready(nodes, timeout=60, name=domain), 3)
        if not as_json:
            click.echo(f"restored: {domain}'s links back {doc['relinked_seconds']:.2f} s after the partition ended")
    if as_json:
        _print_json(doc)


@chaos.command(name="restore")
@click.argument("domain")
@spec_option
def chaos_restore(domain: str, spec_path: str | None) -> None:
    """End DOMAIN's partition now."""
    from natsmesh import chaos as faults

    res = faults.restore(_load(spec_path), domain)
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
    from natsmesh.client import MeshClient, run
    from natsmesh.losscheck import publish_steady, verify

    mesh = _load(spec_path)

    async def go() -> tuple[Any, Any]:
        async with MeshClient(mesh, name="natsmesh-verify") as mc:
            pub_run = await publish_steady(mc, ref, count=count, rate=rate, subject=subject)
            return pub_run, await verify(mesh, mc, pub_run, settle=settle)

    pub_run, checks = run(go())
    ok = all(c.ok for c in checks)
    if as_json:
        _print_json(
            {
                "run": pub_run.run,
                "product": ref,
                "acked": len(pub_run.acked),
                "failed": len(pub_run.failed),
                "retries": pub_run.retries,
                "seconds": round(pub_run.seconds, 3),
                "ok": ok,
                "streams": [c.to_json() for c in checks],
            }
        )
    else:
        click.echo(
            f"run {pub_run.run}: {len(pub_run.acked)} acknowledged, {len(pub_run.failed)} failed, "
            f"{pub_run.retries} retries in {pub_run.seconds:.1f} s"
        )
        for c in checks:
            click.echo(
                f"  {c.stream:<32} {c.role:<7} stored {c.stored:>7}  lost {len(c.lost):>5}  "
                f"duplicated {c.duplicated:>5}  out of order {c.out_of_order:>5}"
            )
    if not ok:
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
    from natsmesh.heal import heal as heal_copies

    mesh = _load(spec_path)
    err = _console(stderr=True)
    report_ = run(heal_copies(mesh, timeout=timeout, watch=watch, on_event=None if as_json else lambda t: err.print(t)))
    if as_json:
        _print_json(report_.to_json())
    else:
        click.echo(
            f"{len(report_.stalled)} copies stalled, {len(report_.nudges)} nudges, "
            f"{'all flowing' if report_.healed else f'{len(report_.waiting)} still waiting'} "
            f"after {report_.seconds:.1f} s"
        )
        for w in report_.waiting:
            click.echo(f"  waiting: {w}")
        if report_.missing:
            click.echo(f"  {len(report_.missing)} declared copies or products do not exist yet: run `natsmesh apply`")
    if not report_.healed:
        sys.exit(1)


@cli.group()
def catalog() -> None:
    """The data product catalog (a KV bucket in the hub, written by `apply`)."""


def _read_catalog(mesh: Any) -> dict[str, Any]:
    from natsmesh.catalog import read_catalog
    from natsmesh.client import MeshClient, run

    async def go() -> dict[str, Any]:
        async with MeshClient(mesh, name="natsmesh-catalog") as mc:
            return await read_catalog(await mc.jetstream(mesh.hub.name))

    result: dict[str, Any] = run(go())
    return result


@catalog.command(name="list")
@spec_option
@json_option
def catalog_list(spec_path: str | None, as_json: bool) -> None:
    """Every product in the catalog: owner, subjects, where it is consumed."""
    mesh = _load(spec_path)
    entries = _read_catalog(mesh)
    if as_json:
        _print_json({"products": list(entries.values())})
        return
    from natsmesh.reports import tables_catalog

    _console().print(tables_catalog(list(entries.values())))


@catalog.command(name="show")
@click.argument("ref")
@spec_option
@json_option
def catalog_show(ref: str, spec_path: str | None, as_json: bool) -> None:
    """One product's descriptor, REF being DOMAIN/PRODUCT."""
    from natsmesh.catalog import catalog_key
    from natsmesh.client import UnknownProductError

    mesh = _load(spec_path)
    entry = _read_catalog(mesh).get(catalog_key(ref))
    if entry is None:
        raise UnknownProductError(f"{ref!r} is not in the catalog of mesh {mesh.name!r} (run `natsmesh apply`?)")
    if as_json:
        _print_json(entry)
        return
    for key, value in entry.items():
        click.echo(f"{key:>14}: {json.dumps(value) if isinstance(value, (list, dict)) else value}")


@cli.command()
@spec_option
@click.option("--format", "fmt", type=click.Choice(["text", "mermaid", "dot"]), default="text", show_default=True)
def lineage(spec_path: str | None, fmt: str) -> None:
    """The graph of products and who consumes them, as text, Mermaid or Graphviz DOT."""
    from natsmesh.catalog import lineage as render_lineage

    click.echo(render_lineage(_load(spec_path), fmt), nl=False)


@cli.command()
@click.argument("ref")
@click.argument("payload", required=False)
@spec_option
@click.option("--subject", default=None, help="Subject to publish on (default: the product's first literal one).")
@click.option("--max-inflight", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--as", "identity", default=None, metavar="DOMAIN", help="Act as this domain's client identity.")
@json_option
def pub(
    ref: str,
    payload: str | None,
    spec_path: str | None,
    subject: str | None,
    max_inflight: int,
    identity: str | None,
    as_json: bool,
) -> None:
    """Publish PAYLOAD (or each line of stdin) into product REF (DOMAIN/PRODUCT), waiting for every ack."""
    from natsmesh.client import MeshClient, run

    mesh = _load(spec_path)
    lines = [payload] if payload is not None else [ln.rstrip("\n") for ln in sys.stdin]

    async def go() -> tuple[int, int]:
        async with MeshClient(mesh, name="natsmesh-pub", identity=identity) as mc:
            if len(lines) == 1:
                ack = await mc.publish(ref, lines[0].encode(), subject=subject)
                return 1, ack.seq
            async with mc.publisher(ref, subject=subject, max_inflight=max_inflight) as p:
                for line in lines:
                    await p.publish(line.encode())
            js = await mc.jetstream(mesh.product(ref).domain)
            return p.acked, (await js.stream_info(mesh.product(ref).name)).state.last_seq

    count, last = run(go())
    if as_json:
        _print_json({"product": ref, "published": count, "last_seq": last})
    else:
        click.echo(f"published {count} message(s) to {ref}; stream last sequence {last}")


@cli.command()
@click.argument("ref")
@spec_option
@click.option(
    "-n",
    "--last",
    "last",
    type=click.IntRange(0),
    default=10,
    show_default=True,
    help="Start this many messages before the end.",
)
@click.option("-F", "--follow", is_flag=True, help="Keep printing new messages until Ctrl-C.")
@click.option("--as", "identity", default=None, metavar="DOMAIN", help="Act as this domain's client identity.")
@json_option
def tail(ref: str, spec_path: str | None, last: int, follow: bool, identity: str | None, as_json: bool) -> None:
    """Print the last messages of stream REF (DOMAIN/STREAM: a product, mirror or source)."""
    from natsmesh.client import MeshClient, run, split_ref

    mesh = _load(spec_path)
    domain, stream = split_ref(ref)

    async def go() -> None:
        async with MeshClient(mesh, name="natsmesh-tail", identity=identity) as mc:
            mc.check("read", domain, ref)
            js = await mc.jetstream(domain)
            state = (await js.stream_info(stream)).state
            if state.messages == 0 and not follow:
                return
            start = max(state.first_seq, state.last_seq - last + 1) if last else state.last_seq + 1
            async for msg in mc.consume(ref, start_seq=start, idle_timeout=None if follow else 1.0):
                meta = msg.metadata
                seq = meta.sequence.stream if meta else 0
                if as_json:
                    click.echo(
                        json.dumps({"seq": seq, "subject": msg.subject, "data": msg.data.decode(errors="replace")})
                    )
                else:
                    click.echo(f"{seq:>8} {msg.subject} {msg.data.decode(errors='replace')}")
                if not follow and seq >= state.last_seq:
                    return

    run(go())


@cli.command()
@spec_option
@json_option
@click.option(
    "--nats-contexts",
    "contexts_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Also write natscli context files into this directory (e.g. ~/.config/nats/context).",
)
def info(spec_path: str | None, as_json: bool, contexts_dir: str | None) -> None:
    """Client URLs: the system account at the hub, and a data-account URL per domain."""
    from natsmesh.credentials import load_credentials
    from natsmesh.info import mesh_info, write_nats_contexts

    mesh = _load(spec_path)
    creds = load_credentials(mesh)
    doc = mesh_info(mesh, creds)
    if contexts_dir:
        for p in write_nats_contexts(mesh, creds, Path(contexts_dir).expanduser()):
            click.echo(f"wrote {p}", err=True)
    if as_json:
        _print_json(doc)
        return
    click.echo(f"mesh {doc['mesh']} (data in {doc['data_dir']})")
    click.echo(f"  system  {doc['system']['url']}")
    for name, d in doc["domains"].items():
        click.echo(f"  {name:<16} {d['url']}   JetStream API {d['jetstream_api']}")


def main() -> None:
    cli(prog_name="natsmesh")


if __name__ == "__main__":
    main()
