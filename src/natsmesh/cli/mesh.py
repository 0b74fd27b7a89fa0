"""Commands for the mesh itself: init, validate, render, up, down, status, info, link."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from natsmesh.cli.app import cli
from natsmesh.cli.output import F, console, json_option, load, node_lines, print_json, say, show, spec_option


def _folder_option(flag: str, dest: str, text: str) -> Callable[[F], F]:
    """FLAG naming a folder (not a file), its value passed as DEST; None when not given."""
    return click.option(flag, dest, type=click.Path(file_okay=False), default=None, help=text)


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False), default="mesh.yaml")
@click.option("--domains", type=click.IntRange(0, 2000), default=5, show_default=True, help="Number of domains.")
@click.option("--nodes", type=click.IntRange(1, 15), default=3, show_default=True, help="Nodes per domain.")
@click.option("--hub-nodes", type=click.IntRange(1, 15), default=3, show_default=True, help="Nodes in the hub.")
@click.option(
    "--name", default=None, help="Mesh name (default: the folder's name, and the file's unless it is mesh.yaml)."
)
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
    from natsmesh.local.specfile import init_spec

    try:
        res = init_spec(
            Path(path),
            domains=domains,
            nodes=nodes,
            hub_nodes=hub_nodes,
            name=name,
            base=base_port,
            tls=tls,
            force=force,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if res.certs is not None:
        click.echo(f"generated a CA and a certificate per node and leaf link in {res.certs} (keys mode 0600)")
    click.echo(
        f"wrote {res.path}: a hub of {_count(hub_nodes, 'node')} and {_count(domains, 'domain')} of "
        f"{_count(nodes, 'node')} each ({_count(len(res.mesh.nodes()), 'server')}); start it with `natsmesh up -f "
        f"{res.path}`"
    )


_LOGGED_AT = re.compile(r"\] (\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d+) \[")


def _before(line: str, ready_at: list[float]) -> bool:
    """Whether nats-server logged LINE before the mesh became ready (READY_AT: empty while it is not): its own
    timestamp decides, since its lines reach us through a pipe, after the moment they were written."""
    if not ready_at:
        return True
    m = _LOGGED_AT.search(line)
    if m is None:
        return False
    try:
        logged = datetime.strptime(m.group(1), "%Y/%m/%d %H:%M:%S.%f").timestamp()
    except ValueError:
        return False
    return logged < ready_at[0]


def _here(path: Path) -> str:
    """PATH as the user would type it from here: relative below the working directory, else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@cli.command()
@spec_option
@json_option
def validate(spec_path: str | None, as_json: bool) -> None:
    """Check a spec and print the topology it resolves to."""
    from natsmesh.cli.tables import tables_topology

    mesh = load(spec_path)
    if as_json:
        print_json(mesh.describe())
        return
    console().print(*tables_topology(mesh))
    click.echo(f"valid: {len(mesh.clusters)} clusters, {len(mesh.nodes())} servers")


@cli.command()
@spec_option
@_folder_option("--out", "out_dir", "Where the folders go.")
@_folder_option(
    "--prometheus",
    "prometheus_dir",
    "Also (or only) write a Prometheus scrape config, alert rules and a Grafana dashboard here.",
)
@click.option("--target", default="127.0.0.1:9470", show_default=True, help="Where Prometheus finds `natsmesh serve`.")
@click.option("--scrape-interval", default="15s", show_default=True, help="Prometheus scrape and rule interval.")
@click.option("--alert-for", default="1m", show_default=True, help="How long a condition holds before it alerts.")
@click.option("--server-command", default="nats-server", show_default=True, help="Command the Procfiles and units run.")
@click.option("--for", "party", default=None, metavar="PARTY", help="Only this party's folder: hub, or a domain.")
@click.option(
    "--install-dir",
    default=None,
    metavar="DIR",
    help="Where the folders go on their hosts, for the systemd units.  [default: /srv/natsmesh/MESH]",
)
@json_option
def render(
    spec_path: str | None,
    out_dir: str | None,
    prometheus_dir: str | None,
    target: str,
    scrape_interval: str,
    alert_for: str,
    server_command: str,
    party: str | None,
    install_dir: str | None,
    as_json: bool,
) -> None:
    """Write each party's folder: its nodes' nats-server configs, a Procfile, a systemd unit per node, a README
    saying which host runs which node, and its own secrets.

    The platform (hub) and every domain get a folder of their own holding nothing of another party's secrets;
    with --for only that party's folder is written. With --prometheus, a scrape config and alert rules for
    `natsmesh serve` (at --target) too, or instead when --out is not given."""
    from natsmesh.local.bundle import render_bundle

    if out_dir is None and prometheus_dir is None:
        raise click.UsageError("give --out DIR (the folders), --prometheus DIR (monitoring), or both")
    mesh = load(spec_path)
    if prometheus_dir is not None:
        from natsmesh.local.files import write_files
        from natsmesh.render.monitoring import monitoring_files

        for value, what in ((scrape_interval, "--scrape-interval"), (alert_for, "--alert-for")):
            if not re.fullmatch(r"\d+(ms|s|m|h)", value):
                raise click.BadParameter(f"{value!r} is not a Prometheus duration like 15s or 1m", param_hint=what)
        written = write_files(monitoring_files(mesh, target, scrape_interval, alert_for), Path(prometheus_dir))
        if out_dir is None:
            if as_json:
                print_json({"prometheus": [str(p) for p in written]})
            else:
                click.echo(f"wrote {', '.join(p.name for p in written)} to {prometheus_dir}")
            return
    assert out_dir is not None
    res = render_bundle(mesh, Path(out_dir), server_command, party, install_dir)
    if as_json:
        print_json(res.to_json())
        return
    click.echo(f"wrote {len(res.files)} files to {out_dir}: {', '.join(res.folders)}")
    first = Path(out_dir) / res.folders[0]
    click.echo(f"each folder's README.md says which host runs which node; on one machine: cd {first} && honcho start")


def _progress_printer(total: int) -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("[bold]waiting for the mesh"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} nodes ready"),
        TimeElapsedColumn(),
        console=console(stderr=True),
        transient=True,
    )
    task = progress.add_task("ready", total=total)

    def update(done: int, _total: int, _pending: Any) -> None:
        progress.update(task, completed=done)

    return progress, update


def _up_foreground(spec_path: str | None, timeout: float, chaos: bool, verbose: bool) -> None:
    from natsmesh.local.layout import MeshDirs
    from natsmesh.run import lifecycle

    mesh = load(spec_path)
    printed = node_lines(mesh)
    nodes = {n.name for n in mesh.nodes()}
    ready_at: list[float] = []  # when the mesh became ready (wall clock): the servers' lines before it are hidden

    def echo(name: str, line: str) -> None:
        if not verbose and name in nodes and _before(line, ready_at):
            return  # start-up chatter (peers dialling each other before they listen): kept in the logs
        printed(name, line)

    def on_ready(secs: float) -> None:
        ready_at.append(time.time())
        echo("natsmesh", f"mesh {mesh.name!r} ready: {len(mesh.nodes())} nodes after {secs:.2f} s; Ctrl-C stops it")
        if not verbose:
            echo(
                "natsmesh",
                f"the servers' start-up lines are not shown (peers connect while others start); every line is in "
                f"{MeshDirs.of(mesh).logs}/, and `up --verbose` shows them",
            )

    last = [-1]

    def report_progress(done: int, total: int, _pending: Any) -> None:
        if done != last[0]:
            last[0] = done
            echo("natsmesh", f"{done}/{total} nodes ready")

    lifecycle.up_foreground(
        mesh, echo=echo, on_ready=on_ready, on_progress=report_progress, timeout=timeout, chaos=chaos
    )


@cli.command()
@spec_option
@click.option("-d", "--detach", is_flag=True, help="Return once ready and leave a supervisor running.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for readiness.")
@click.option("--chaos", "chaos_", is_flag=True, help="Put a fault proxy on every leaf link (`chaos partition`).")
@click.option(
    "-v", "--verbose", is_flag=True, help="In the foreground, show the servers' start-up lines too (logged anyway)."
)
@json_option
def up(spec_path: str | None, detach: bool, timeout: float, chaos_: bool, verbose: bool, as_json: bool) -> None:
    """Start the mesh and wait until it is ready.

    Ready: every node answers its health check, every cluster has a JetStream meta leader, and every leaf
    node's links to the hub are connected (its data account; with the seed's bridge, its system account too).
    In the foreground each log line is prefixed by
    its node; Ctrl-C stops everything. With --detach a supervisor keeps running (see `status`, `down`).
    A mesh with stores and shared products starts in order (hub, owning domains, the rest); the supervisor
    nudges stalled mirrors and sources back (see `natsmesh heal`).
    """
    if not detach:
        _up_foreground(spec_path, timeout, chaos_, verbose)
        return
    from natsmesh.run import lifecycle

    mesh = load(spec_path)
    if sys.stderr.isatty():
        progress, update = _progress_printer(len(mesh.nodes()))
        with progress:
            res = lifecycle.up_detached(mesh, timeout=timeout, on_progress=update, chaos=chaos_)
    else:  # no bar in logs and pipes
        res = lifecycle.up_detached(mesh, timeout=timeout, chaos=chaos_)
    if as_json:
        print_json(res.to_json())
        return
    click.echo(
        f"mesh {mesh.name!r} ready: {res.nodes} nodes in {len(mesh.clusters)} clusters after "
        f"{res.seconds:.2f} s (supervisor pid {res.supervisor_pid}, data in {_here(mesh.data_dir)})"
    )
    click.echo("next: `natsmesh report jetstream`, `natsmesh status`, `natsmesh down`")


@cli.command()
@spec_option
@click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for the stop.")
@json_option
def down(spec_path: str | None, timeout: float, as_json: bool) -> None:
    """Stop every node of a running mesh. Data stays for the next `up`."""
    from natsmesh.run import lifecycle

    res = lifecycle.down(load(spec_path), timeout=timeout)
    if as_json:
        print_json(res.to_json())
    else:
        click.echo(f"mesh {res.mesh!r} stopped ({res.stopped} nodes); data kept in {res.data_dir}")


@cli.command()
@spec_option
@json_option
def status(spec_path: str | None, as_json: bool) -> None:
    """The supervisor's view of every node, and whether each is ready. Exits 1 if not all are.

    For a mesh on hosts of its own (`hosts:` in the spec) each node is asked over the network."""
    from natsmesh.cli.tables import tables_status
    from natsmesh.run import lifecycle

    mesh = load(spec_path)
    st = lifecycle.status(mesh)
    show(st, as_json, lambda s: tables_status(mesh.name, s))
    if not as_json:
        for e in st.events[-5:]:
            say(f"  {e}")
    if not st.ready:
        sys.exit(1)


@cli.command()
@spec_option
@json_option
@_folder_option(
    "--nats-contexts",
    "contexts_dir",
    "Also write natscli context files into this directory (e.g. ~/.config/nats/context).",
)
@click.option("--show-secrets", is_flag=True, help="Print the passwords in the URLs (masked as … by default).")
def info(spec_path: str | None, as_json: bool, contexts_dir: str | None, show_secrets: bool) -> None:
    """Client URLs: the system account at the hub, and a data-account URL per domain (passwords masked unless
    --show-secrets; --nats-contexts writes them into the context files, mode 0600)."""
    from natsmesh.observe.info import masked, mesh_info, write_nats_contexts

    mesh = load(spec_path)
    doc = mesh_info(mesh)
    if not show_secrets:
        doc = masked(doc)
    if contexts_dir:
        for p in write_nats_contexts(mesh, Path(contexts_dir).expanduser()):
            click.echo(f"wrote {p}", err=True)
    if as_json:
        print_json(doc)
        return
    click.echo(f"mesh {doc['mesh']} (data in {doc['data_dir']})")
    click.echo(f"  system  {doc['system']['url']}")
    for name, d in doc["domains"].items():
        click.echo(f"  {name:<16} {d['url']}   JetStream API {d['jetstream_api']}")


@cli.group(name="link")
def link_group() -> None:
    """A domain's leaf link at the hub (operator mode): revoke its user, issue a new one."""


def _link_result(result: Any, as_json: bool) -> None:
    if as_json:
        print_json(result.to_json())
    else:
        say(result.describe())


@link_group.command(name="revoke")
@click.argument("domain")
@click.option("--issue", is_flag=True, help="Issue a new link user at once (the link comes back with it).")
@spec_option
@json_option
def link_revoke(domain: str, issue: bool, spec_path: str | None, as_json: bool) -> None:
    """Revoke DOMAIN's leaf-link user: the hub closes the link at once and refuses it until a new one is issued.

    Its account's claims are pushed with the user's key revoked; no server config changes and no other link
    is touched. Without --issue the domain stays cut off until `natsmesh link issue DOMAIN`.
    """
    from natsmesh.client import run
    from natsmesh.reconcile.revocation import revoke_link

    _link_result(run(revoke_link(load(spec_path), domain, issue=issue)), as_json)


@link_group.command(name="issue")
@click.argument("domain")
@spec_option
@json_option
def link_issue(domain: str, spec_path: str | None, as_json: bool) -> None:
    """Issue DOMAIN's leaf link a new user, signed by the domain's account key, into its folder (`link.creds`).

    Its leaf nodes read the file on their next attempt and link again, without a restart. On hosts, copy the
    domain's folder (`natsmesh render`) to its hosts.
    """
    from natsmesh.client import run
    from natsmesh.reconcile.revocation import issue_link

    _link_result(run(issue_link(load(spec_path), domain)), as_json)


@cli.group(name="keys")
def keys_group() -> None:
    """A domain's own account keys (operator mode): make them, sign the domain's leaf link with them."""


@keys_group.command(name="init")
@click.argument("domain")
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False),
    required=True,
    help="Where to write the keys (seeds: owner-readable only; never replaced).",
)
@json_option
def keys_init(domain: str, out: str, as_json: bool) -> None:
    """Make DOMAIN's own account key and signing key, written to --out; print what the platform's spec says.

    The platform gets the public keys only (`account_key:` under the domain in its spec), so it never holds
    the account's seeds: it can sign in as none of the domain's users and sign no grant of its products.
    """
    import yaml

    from natsmesh.local.ownkeys import make_keys

    keys = make_keys(domain, Path(out).expanduser())
    if as_json:
        print_json({"domain": domain, "file": out, **keys.spec()})
        return
    say(f"wrote {out} (keep it: its seeds sign {domain}'s leaf link and its grants)")
    click.echo(f"# under domain {domain} in the platform's spec (trust: operator):")
    click.echo(yaml.safe_dump(keys.spec(), sort_keys=False).rstrip())


@keys_group.command(name="link")
@click.argument("domain")
@click.option("--keys", "keys_path", type=click.Path(dir_okay=False), required=True, help="The domain's keys file.")
@click.option(
    "--folder",
    type=click.Path(file_okay=False),
    default=None,
    help="The domain's folder (where its leaf nodes run); default: its folder in the spec's data dir.",
)
@spec_option
@json_option
def keys_link(domain: str, keys_path: str, folder: str | None, spec_path: str | None, as_json: bool) -> None:
    """Sign a new leaf-link user for DOMAIN with its own keys, into its folder's `link.creds`.

    Its leaf nodes read the file on their next attempt and link with it. With the spec (-f), the keys are
    checked against the spec's `account_key` first.
    """
    from natsmesh.errors import PreflightError
    from natsmesh.local.layout import MeshDirs
    from natsmesh.local.ownkeys import read_keys, write_link

    keys = read_keys(Path(keys_path).expanduser())
    if keys.domain != domain:
        raise PreflightError(f"{keys_path} holds the keys of {keys.domain}, not of {domain}")
    expected = None
    if folder is None:
        mesh = load(spec_path)
        cluster = next((c for c in mesh.domains if c.name == domain), None)
        if cluster is None:
            raise PreflightError(f"{domain!r} is not a leaf domain of mesh {mesh.name!r}")
        if not (expected := mesh.own_keys_of(domain)):
            raise PreflightError(
                f"the spec names no account_key for {domain}: natsmesh makes its keys and signs its link "
                f"(`natsmesh keys init` prints what to add)"
            )
        target = MeshDirs.of(mesh).cluster(cluster)
    else:
        target = Path(folder).expanduser()
    public = write_link(keys, target, expected)
    if as_json:
        print_json({"domain": domain, "link_user": public, "file": str(target / "link.creds")})
    else:
        say(f"{domain}: link user {public} signed into {target / 'link.creds'}")


SINCE_LINES = 1_000_000  # lines per node `logs --since` reads back at most


@cli.command()
@click.argument("which", required=False, metavar="[NODE|CLUSTER]")
@spec_option
@click.option("-F", "--follow", is_flag=True, help="Keep printing new lines until Ctrl-C (-f names the spec).")
@click.option(
    "-n",
    "--lines",
    "count",
    type=click.IntRange(0),
    default=None,
    help="Last lines per node (default: 10, or with --since every line since then).",
)
@click.option("--since", default=None, help="Only lines since a duration ago (10m, 2h) or a time (2026-12-08 02:08).")
def logs(which: str | None, spec_path: str | None, follow: bool, count: int | None, since: str | None) -> None:
    """The nodes' logs (every node's, or one node's or cluster's), each line prefixed with its node in the node's
    own colour, as the foreground `up` shows them: the last lines of each, then with -F every new one. From a
    party's folder (`--bundle`), its own nodes' files in its `logs/`."""
    from natsmesh.local.logs import Follower, log_files, recent, since_time

    mesh = load(spec_path)
    try:
        after = since_time(since) if since is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    files = log_files(mesh, which)
    follower = Follower(files) if follow else None  # from where each file ends now: no line twice, none lost
    echo = node_lines(mesh)
    last = count if count is not None else 10 if after is None else SINCE_LINES
    for name, path in files.items():
        for line in recent(path, last, after):
            echo(name, line)
    if follower is not None:
        follower.run(echo)  # until Ctrl-C
