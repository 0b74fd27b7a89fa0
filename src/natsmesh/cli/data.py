"""Commands for data products: apply, catalog, lineage, pub, tail, policy, contract."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from natsmesh.cli.app import cli
from natsmesh.cli.output import json_option, load, print_json, say, show, spec_option
from natsmesh.errors import NatsmeshError, PlanRefusedError
from natsmesh.render.lineage import FORMATS

if TYPE_CHECKING:
    from natsmesh.observe.connect import ServiceLogin


def _show_plan(result: object, as_json: bool) -> None:
    from natsmesh.cli.tables import tables_plan
    from natsmesh.reconcile.plan import Plan

    assert isinstance(result, Plan)
    show(result, as_json, tables_plan)
    if not as_json:
        summary = ", ".join(f"{n} {a}" for a, n in result.summary().items() if n)
        verb = "applied" if result.applied else "planned (nothing changed)"
        click.echo(f"{verb}: {summary or 'nothing to do'}")


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
    from natsmesh.reconcile.apply import reconcile

    try:
        result = run(reconcile(load(spec_path), dry_run=dry_run, prune=prune))
    except PlanRefusedError as exc:
        _show_plan(exc.plan, as_json)
        raise
    _show_plan(result, as_json)


@cli.command()
@click.argument("ref")
@click.option("--to", "target", required=True, help="The cluster of the product's domain to move it to.")
@spec_option
@click.option("--dry-run", is_flag=True, help="Check that the move can be made and print its steps; change nothing.")
@json_option
def move(ref: str, target: str, spec_path: str | None, dry_run: bool, as_json: bool) -> None:
    """Move product REF (DOMAIN/PRODUCT) to another cluster of its domain, live.

    The new cluster mirrors it (sequence numbers kept) and catches up; writes pause while the last messages
    arrive; the new stream takes the subjects and the catalog says where it lives (MeshClient producers find it
    there); every copy goes on from where it was; the old stream goes last. A move that cannot be done safely
    (the target lacks the replicas, has a stream of that name, ...) is refused and changes nothing; a step
    that fails before the switch is rolled back. Afterwards the spec's `cluster:` for the product names the
    new cluster, so `apply` keeps it there.
    """
    from natsmesh.client import run
    from natsmesh.local.specfile import placed_text, read_spec_text
    from natsmesh.reconcile.move import move as move_product

    mesh = load(spec_path)
    progress = None if as_json else lambda step: click.echo(f"... {step}", err=True)
    result = run(move_product(mesh, ref, target, dry_run=dry_run, progress=progress))
    spec = Path(mesh.source)
    edited = None
    if result.applied and spec.is_file():
        try:
            spec.write_text(placed_text(read_spec_text(spec), str(spec), ref, target))
            edited = str(spec)
        except NatsmeshError as exc:
            click.echo(f"warning: {exc}", err=True)
    if as_json:
        print_json(result.to_json() | {"spec_updated": edited})
        return
    if dry_run:
        click.echo(f"{ref} can move from {result.source} to {target}; the steps (nothing changed):")
        click.echo("\n".join(f"  {i}. {step}" for i, step in enumerate(result.steps, 1)))
        return
    click.echo(
        f"moved {ref} from {result.source} to {target}: {result.last_seq} messages, sequence numbers kept; writes "
        f"paused {result.pause_seconds:.2f} s; {len(result.copies)} copy(ies) re-pointed"
    )
    click.echo(
        f"{edited}: {ref} has `cluster: {target}`" if edited else f"set `cluster: {target}` for {ref} in the spec"
    )


@cli.group()
def catalog() -> None:
    """The data product catalog (a KV bucket in the hub, written by `apply`)."""


@catalog.command(name="list")
@spec_option
@json_option
def catalog_list(spec_path: str | None, as_json: bool) -> None:
    """Every product in the catalog: owner, subjects, where it is consumed."""
    from natsmesh.cli.tables import tables_catalog
    from natsmesh.client import run
    from natsmesh.reconcile.catalog import catalog_entries

    show(run(catalog_entries(load(spec_path))), as_json, tables_catalog)


@catalog.command(name="show")
@click.argument("ref")
@spec_option
@json_option
def catalog_show(ref: str, spec_path: str | None, as_json: bool) -> None:
    """One product's descriptor, REF being DOMAIN/PRODUCT."""
    from natsmesh.client import run
    from natsmesh.reconcile.catalog import catalog_entry

    entry = run(catalog_entry(load(spec_path), ref))
    if as_json:
        print_json(entry)
        return
    for key, value in entry.items():
        if key == "contract" and isinstance(value, dict):
            say(_contract_text(value))
        elif key == "contract_history" and isinstance(value, list):
            past = ", ".join(f"{c.get('version')} (from {c.get('since', '?')})" for c in value if isinstance(c, dict))
            say(f"{'history':>16}: {past}")
        else:
            say(f"{key:>16}: {json.dumps(value) if isinstance(value, list | dict) else value}")


def _contract_text(contract: dict[str, Any]) -> str:
    """A contract as `catalog show` prints it: version, mode, where enforced, since when, then the schema."""
    head = (
        f"{'contract':>16}: {contract.get('version')} ({contract.get('compatibility')}, enforced by "
        f"{contract.get('enforce')}; since {contract.get('since', '?')})"
    )
    schema = json.dumps(contract.get("schema"), indent=2, sort_keys=True)
    return head + "\n" + "\n".join(f"{'':>18}{line}" for line in schema.splitlines())


@cli.command()
@spec_option
@click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True, help="How to draw the graph."
)
def lineage(spec_path: str | None, fmt: str) -> None:
    """The graph of products and who consumes them, as text, Mermaid or Graphviz DOT (from a party's folder, what
    that party may see: its domain's products and copies, what it takes, the public products)."""
    from natsmesh.render.lineage import lineage as draw

    mesh = load(spec_path)
    if click.get_current_context().find_root().obj:
        from natsmesh.local.secrets import load_credentials
        from natsmesh.render.policy import party_view

        holder = load_credentials(mesh, create=False).holder
        mesh = party_view(mesh, holder) if holder else mesh
    say(draw(mesh, fmt), nl=False)


def creds_option(f: Any) -> Any:
    return click.option(
        "--creds",
        "creds_file",
        type=click.Path(dir_okay=False),
        default=None,
        help="Act as a user of a domain's own (`natsmesh user add`) with its creds file; the mesh from --bundle "
        "(its mesh.json is enough) or -f.",
    )(f)


def _user(creds_file: str | None) -> ServiceLogin | None:
    if creds_file is None:
        return None
    from natsmesh.reconcile.users import service_login

    return service_login(Path(creds_file))


@cli.command()
@click.argument("ref")
@click.argument("payload", required=False)
@spec_option
@click.option("--subject", default=None, help="Subject to publish on (default: the product's first literal one).")
@click.option(
    "--max-inflight",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="Messages sent ahead of their acks (stdin lines only).",
)
@click.option("--as", "identity", default=None, metavar="DOMAIN", help="Act as this domain's client identity.")
@creds_option
@json_option
def pub(
    ref: str,
    payload: str | None,
    spec_path: str | None,
    subject: str | None,
    max_inflight: int,
    identity: str | None,
    creds_file: str | None,
    as_json: bool,
) -> None:
    """Publish PAYLOAD (or each line of stdin) into product REF (DOMAIN/PRODUCT), waiting for every ack."""
    from natsmesh.client import publish_lines, run

    user = _user(creds_file)
    mesh = load(spec_path, secrets=user is None)
    lines = [payload] if payload is not None else [ln.rstrip("\n") for ln in sys.stdin]
    res = run(publish_lines(mesh, ref, lines, subject=subject, max_inflight=max_inflight, identity=identity, user=user))
    if as_json:
        print_json(res.to_json())
    else:
        click.echo(f"published {res.published} message(s) to {ref}; stream last sequence {res.last_seq}")


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
@click.option(
    "--raw",
    is_flag=True,
    help="Print each payload's bytes as they are, one per line (for pipes); by default control characters and "
    "terminal escapes in payloads are written out (\\x1b), since another domain may have written them.",
)
@creds_option
@json_option
def tail(
    ref: str,
    spec_path: str | None,
    last: int,
    follow: bool,
    identity: str | None,
    raw: bool,
    creds_file: str | None,
    as_json: bool,
) -> None:
    """Print the last messages of stream REF (DOMAIN/STREAM: a product, mirror or source)."""
    from natsmesh.client import run
    from natsmesh.client import tail as messages

    user = _user(creds_file)
    mesh = load(spec_path, secrets=user is None)

    async def go() -> None:
        async for m in messages(mesh, ref, last=last, follow=follow, identity=identity, user=user):
            if as_json:
                click.echo(json.dumps(m.to_json()))
            elif raw:
                sys.stdout.buffer.write(m.payload + b"\n")
                sys.stdout.buffer.flush()
            else:
                say(f"{m.seq:>8} {m.subject} {m.data}", nl=True)

    run(go())


@cli.group(name="policy")
def policy_group() -> None:
    """Who may do what, derived from the spec (ownership and declared consumption)."""


@policy_group.command(name="show")
@click.argument("domain", required=False)
@spec_option
@json_option
def policy_show(domain: str | None, spec_path: str | None, as_json: bool) -> None:
    """The rules for DOMAIN (default: every domain; from a party's folder, its own): what it may manage, publish and
    read, and what not."""
    from natsmesh.cli.tables import tables_policy
    from natsmesh.local.secrets import load_credentials
    from natsmesh.render.policy import policy

    mesh = load(spec_path)
    holder = load_credentials(mesh, create=False).holder if click.get_current_context().find_root().obj else None
    show(policy(mesh, domain or holder), as_json, tables_policy)


@cli.group()
def contract() -> None:
    """Data contracts: check what a product holds, export and import ODCS v3 documents."""


@contract.command(name="test")
@click.argument("ref")
@spec_option
@click.option("--last", type=click.IntRange(1), default=None, help="Check only the last N messages (default: all).")
@json_option
def contract_test_cmd(ref: str, spec_path: str | None, last: int | None, as_json: bool) -> None:
    """Check the messages stored in product REF (DOMAIN/PRODUCT) against its contract in the spec; list each
    violation by sequence. Exits 1 if any message breaks it."""
    from natsmesh.client import contract_test, run

    res = run(contract_test(load(spec_path), ref, last=last))
    if as_json:
        print_json(res.to_json())
    else:
        for v in res.violations:
            click.echo(f"  seq {v.seq} ({v.subject}): {v.problem}")
        verdict = "all satisfy it" if res.ok else f"{len(res.violations)} do not satisfy it"
        click.echo(f"{ref}: checked {res.checked} message(s) against contract {res.version}: {verdict}")
    if not res.ok:
        sys.exit(1)


@contract.command(name="export")
@click.argument("ref")
@spec_option
@click.option("--format", "fmt", type=click.Choice(["odcs"]), default="odcs", show_default=True, help="Document kind.")
@click.option(
    "-o", "--out", type=click.Path(dir_okay=False), default=None, help="Write to this file (default: stdout)."
)
def contract_export(ref: str, spec_path: str | None, fmt: str, out: str | None) -> None:
    """Write product REF's contract as an ODCS v3 document (JSON): the stream as a server of type custom, with
    its NATS stream, subjects and JetStream domain."""
    from natsmesh.errors import UnknownProductError
    from natsmesh.model.odcs import to_odcs

    mesh = load(spec_path)
    try:
        product = mesh.product(ref)
    except KeyError:
        raise UnknownProductError(f"{ref!r} is not a product of mesh {mesh.name!r}") from None
    if product.contract is None:
        raise UnknownProductError(f"{ref} has no contract in the spec")
    text = json.dumps(to_odcs(mesh, product), indent=2) + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        Path(out).write_text(text)
        click.echo(f"wrote the {fmt} document of {ref} to {out}", err=True)


@contract.command(name="import")
@click.argument("path", type=click.Path(dir_okay=False))
def contract_import(path: str) -> None:
    """Read an ODCS v3 document (JSON or YAML) and print it as a spec's `products:` entry (YAML)."""
    import yaml

    from natsmesh.errors import SpecError
    from natsmesh.local.specfile import read_text_file
    from natsmesh.model.odcs import OdcsError, from_odcs
    from natsmesh.model.yamldoc import read_yaml

    doc = read_yaml(read_text_file(Path(path), "an ODCS document is a JSON or YAML text file"), path).value
    try:
        entry = from_odcs(doc)
    except OdcsError as exc:
        raise SpecError(path, [str(exc)]) from None
    click.echo(yaml.safe_dump([entry], sort_keys=False), nl=False)
