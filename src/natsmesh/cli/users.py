"""Commands for a domain's own users per service (`user add/list/revoke`), run from the domain's folder."""

from __future__ import annotations

import time
from pathlib import Path

import click

from natsmesh.cli.access import keys_option, seconds
from natsmesh.cli.app import cli
from natsmesh.cli.output import console, json_option, load, print_json, say


@cli.group()
def user() -> None:
    """A domain's own users per service: a producer of named products, a reader of named streams, or an admin.

    From the domain's folder (`natsmesh --bundle FOLDER user ...`) of a domain with `service_users: true`: each user
    is a creds file the domain's own key signs, checked by its cluster's servers on connect; nothing is sent to the
    platform and no server restarts or reloads. A revocation closes the user's connections at once. Each is
    recorded, signed, in the domain's access stream, which the platform's `apply` copies into the audit trail.
    """


@user.command(name="add")
@click.argument("name")
@click.option("--role", type=click.Choice(["producer", "reader", "admin"]), required=True, help="What the user may do.")
@click.option("--stream", "streams", multiple=True, help="A product it produces, or a stream it reads (repeat).")
@click.option("--expires", default=None, help="Until when, from now (90d, 12h, 30s); default: until revoked.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where to write its creds file (never over an existing one); default: ./NAME.creds.",
)
@keys_option
@json_option
def user_add(
    name: str,
    role: str,
    streams: tuple[str, ...],
    expires: str | None,
    out: str | None,
    keys_file: str | None,
    as_json: bool,
) -> None:
    """Issue user NAME of your domain's cluster with ROLE and write its creds file (mode 0600)."""
    from natsmesh.client import run
    from natsmesh.local.secrets import load_credentials
    from natsmesh.reconcile.users import issue

    mesh = load(None)
    until = int(time.time() + seconds(expires, "--expires")) if expires is not None else 0
    path = Path(out) if out else Path(f"{name}.creds")
    creds = load_credentials(mesh, create=False)
    done = run(
        issue(mesh, creds, name, role, tuple(streams), path, until, Path(keys_file) if keys_file else None)  # type: ignore[arg-type]
    )
    if as_json:
        print_json(done.to_json())
        return
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(until)) if until else "until revoked"
    say(f"issued {role} {name} of {creds.holder} ({when}): its creds file is {done.creds}")
    say("hand it to the service only; `natsmesh user revoke` cuts it off at once")


@user.command(name="list")
@json_option
def user_list(as_json: bool) -> None:
    """Every user your domain issued: its role, streams, expiry and whether it is active, expired or revoked."""
    from natsmesh.cli.tables import tables_users
    from natsmesh.client import run
    from natsmesh.local.secrets import load_credentials
    from natsmesh.reconcile.users import listing

    mesh = load(None)
    users = run(listing(mesh, load_credentials(mesh, create=False)))
    if as_json:
        print_json({"users": [u.to_json() for u in users]})
        return
    out = console()
    for table in tables_users(users):
        out.print(table)


@user.command(name="revoke")
@click.argument("name")
@click.option("--reason", default="", help="Why (for the audit trail).")
@keys_option
@json_option
def user_revoke(name: str, reason: str, keys_file: str | None, as_json: bool) -> None:
    """Revoke user NAME: its account is signed anew without it and pushed to your cluster; its connections close."""
    from natsmesh.client import run
    from natsmesh.local.secrets import load_credentials
    from natsmesh.reconcile.users import revoke

    mesh = load(None)
    done = run(revoke(mesh, load_credentials(mesh, create=False), name, reason, Path(keys_file) if keys_file else None))
    if as_json:
        print_json(done.to_json())
        return
    say(f"revoked {name} ({done.key}): {done.servers} server(s) took it; its connections are closed")
