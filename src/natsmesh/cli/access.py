"""Commands for access to private products: a domain asks, the owner grants, denies or revokes (`access ...`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from natsmesh.cli.app import cli
from natsmesh.cli.output import json_option, load, print_json, say

if TYPE_CHECKING:
    from natsmesh.model.access import AccessDoc

KEYS_HELP = "The team's own keys file (`natsmesh keys init`), when the folder holds no signing key of its account."


def keys_option(f: Any) -> Any:
    return click.option("--keys", "keys_file", type=click.Path(dir_okay=False), default=None, help=KEYS_HELP)(f)


def _act(kind: str, keys_file: str | None, as_json: bool, **what: Any) -> AccessDoc:
    from natsmesh.client import run
    from natsmesh.local.secrets import load_credentials
    from natsmesh.observe.connect import Connections
    from natsmesh.reconcile.access import act, signer_of

    mesh = load(None)
    creds = load_credentials(mesh, create=False)
    signer = signer_of(mesh, creds, Path(keys_file) if keys_file else None)

    async def go() -> AccessDoc:
        async with Connections(mesh, creds, name=f"natsmesh-access-{kind}") as mc:
            return await act(mesh, mc, signer, kind, **what)  # type: ignore[arg-type]

    doc: AccessDoc = run(go())
    if as_json:
        print_json(doc.to_json())
    return doc


@cli.group()
def access() -> None:
    """Access to private products: a domain asks for one, its owner grants (until a time), denies or revokes.

    Each request and answer is signed by the acting domain's own account key, from its own folder
    (`natsmesh --bundle FOLDER access ...`); the platform's `natsmesh apply` records them in the hub's audit
    trail, relays them to the other domain, and makes the copy a grant allows. The hub's servers let a copy
    read only with the owner's signed activation, so nothing flows without the owner's grant.
    """


@access.command(name="request")
@click.argument("product")
@click.option("--as", "copy", required=True, help="The copy's stream name in your domain.")
@click.option(
    "--mode",
    type=click.Choice(["mirror", "source"]),
    default="mirror",
    show_default=True,
    help="A mirror (an exact copy, same sequence numbers) or a source.",
)
@click.option("--filter", "filter_", default="", help="Only these subjects of the product (a source's filter).")
@click.option("--reason", required=True, help="Why your domain needs it (the owner reads this).")
@keys_option
@json_option
def access_request(
    product: str, copy: str, mode: str, filter_: str, reason: str, keys_file: str | None, as_json: bool
) -> None:
    """Ask PRODUCT's owner (DOMAIN/PRODUCT) for a copy of it in your domain."""
    doc = _act("request", keys_file, as_json, product=product, copy=copy, mode=mode, filter=filter_, reason=reason)
    if not as_json:
        say(f"request {doc.id}: {doc.domain} asks for {product} as {copy} ({mode}); the platform's next apply")
        say("relays it to its owner (`natsmesh access list` shows its state)")


@access.command(name="grant")
@click.argument("request_id")
@click.option("--expires", default=None, help="Until when, from now (90d, 12h, 30s); default: until revoked.")
@click.option(
    "--retain",
    default=None,
    help="How long the copy may keep a message (30d); default: as long as the product lets every copy.",
)
@click.option("--reason", default="", help="A note for the requester and the audit trail.")
@keys_option
@json_option
def access_grant(
    request_id: str, expires: str | None, retain: str | None, reason: str, keys_file: str | None, as_json: bool
) -> None:
    """Grant request REQUEST_ID for a product of yours: sign the activations the hub's servers check."""
    until = int(time.time() + seconds(expires, "--expires")) if expires is not None else 0
    keep = int(seconds(retain, "--retain")) if retain is not None else 0
    doc = _act("grant", keys_file, as_json, request=request_id, expires=until, retain=keep, reason=reason)
    if not as_json:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(until)) if until else "until revoked"
        say(f"granted {request_id} ({when}); the copy is made by the platform's next apply")
        say(f"(grant {doc.id})")


def seconds(text: str, option: str) -> float:
    """TEXT as a positive duration in seconds, or a usage error naming OPTION."""
    from natsmesh.model.units import parse_duration

    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None
    if not value > 0:
        raise click.BadParameter("expected a positive duration, like 90d or 12h", param_hint=option)
    return value


@access.command(name="deny")
@click.argument("request_id")
@click.option("--reason", required=True, help="Why (the requester reads this).")
@keys_option
@json_option
def access_deny(request_id: str, reason: str, keys_file: str | None, as_json: bool) -> None:
    """Deny pending request REQUEST_ID for a product of yours."""
    _act("deny", keys_file, as_json, request=request_id, reason=reason)
    if not as_json:
        say(f"denied {request_id}")


@access.command(name="revoke")
@click.argument("request_id")
@click.option("--reason", required=True, help="Why (the requester reads this).")
@keys_option
@json_option
def access_revoke(request_id: str, reason: str, keys_file: str | None, as_json: bool) -> None:
    """Revoke the grant of REQUEST_ID: your consumer for the copy stops at once, the copy keeps its data."""
    _act("revoke", keys_file, as_json, request=request_id, reason=reason)
    if not as_json:
        say(f"revoked {request_id}: nothing more flows to its copy (what it holds stays)")


@access.command(name="list")
@click.option("-f", "--file", "spec_path", type=click.Path(dir_okay=False), default=None, help="Mesh spec file.")
@json_option
def access_list(spec_path: str | None, as_json: bool) -> None:
    """Requests and their state: from a domain's folder, its own and those for its products; from the platform's
    spec, every one (the audit trail and every domain's stream), and the documents refused, with why."""
    from natsmesh.cli.output import show
    from natsmesh.cli.tables import tables_access
    from natsmesh.client import run
    from natsmesh.observe.access import ledger_view

    show(run(ledger_view(load(spec_path))), as_json, tables_access)


@cli.command()
@click.option("-f", "--file", "spec_path", type=click.Path(dir_okay=False), default=None, help="Mesh spec file.")
@click.option("--since", default=None, help="Only entries of this last while (1h, 7d).")
@click.option("--product", default=None, help="Only entries about this product (DOMAIN/PRODUCT).")
@json_option
def audit(spec_path: str | None, since: str | None, product: str | None, as_json: bool) -> None:
    """The audit trail: every access request, grant, denial, revocation and expiry, and every apply with its
    plan, each with who signed it and whether its signature holds (checked here, from public keys).

    From the platform's spec: the hub's append-only `natsmesh_audit` stream. From a domain's folder (`--bundle`):
    what its own stream holds, its acts and those about its products and requests.
    """
    from natsmesh.cli.output import show
    from natsmesh.cli.tables import tables_audit
    from natsmesh.client import run
    from natsmesh.model.units import parse_duration
    from natsmesh.observe.access import audit_log

    start = None
    if since is not None:
        try:
            start = time.time() - parse_duration(since)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from None
    show(run(audit_log(load(spec_path), start, product)), as_json, tables_audit)
