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
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(
    path: str, domains: int, nodes: int, hub_nodes: int, name: str | None, base_port: int | None, force: bool
) -> None:
    """Write a commented mesh spec to PATH (default ./mesh.yaml)."""
    import re

    from natsmesh.spec import init_spec_text, parse_spec

    target = Path(path)
    if target.exists() and not force:
        raise click.ClickException(f"{target} already exists; use --force to overwrite it")
    mesh_name = name or re.sub(r"[^A-Za-z0-9_-]", "-", target.resolve().parent.name).strip("-_") or "natsmesh"
    try:
        text = init_spec_text(name=mesh_name, domains=domains, nodes=nodes, hub_nodes=hub_nodes, base=base_port)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    mesh = parse_spec(text, source=str(target))  # the template must always validate
    target.write_text(text)
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
    from natsmesh.credentials import load_credentials
    from natsmesh.render import render_mesh, write_files

    mesh = _load(spec_path)
    files = render_mesh(mesh, load_credentials(mesh), server_command)
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
@json_option
def up(spec_path: str | None, detach: bool, timeout: float, as_json: bool) -> None:
    """Start the mesh and wait until it is ready.

    Ready: every node answers its health check, every cluster has a JetStream meta leader, and every leaf
    node's links to the hub are connected in both accounts. In the foreground each log line is prefixed by
    its node; Ctrl-C stops everything. With --detach a supervisor keeps running (see `status`, `down`).
    """
    from natsmesh import lifecycle

    mesh = _load(spec_path)
    if detach:
        if sys.stderr.isatty():
            progress, update = _progress_printer(len(mesh.nodes()))
            with progress:
                res = lifecycle.up_detached(mesh, timeout=timeout, on_progress=update)
        else:  # no bar in logs and pipes
            res = lifecycle.up_detached(mesh, timeout=timeout)
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

    lifecycle.up_foreground(mesh, echo=echo, on_ready=on_ready, on_progress=report_progress, timeout=timeout)


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
