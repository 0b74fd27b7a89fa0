"""Revoking a domain's leaf link and issuing a new one (operator mode), without touching a server's config.

A domain's leaf link signs in at the hub as a user its own account's key signed (`natsmesh.render.trust`). To
revoke it, the domain's account JWT names that user's public key under `revocations` and is pushed to the hub's
resolver: the servers close the link at once ("Credentials Revoked") and refuse it from then on. Issuing gives
the link a new key and writes the domain's folder a new `link.creds`; its leaf nodes read that file on their next
attempt and link again, with no restart. In config mode a link's key is in the hub's configs, so this is refused.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from natsmesh.errors import ApplyError
from natsmesh.local.certs import cert_texts
from natsmesh.local.files import write_files
from natsmesh.local.records import recorded_via
from natsmesh.local.secrets import load_credentials, replace_link
from natsmesh.model.mesh import Mesh
from natsmesh.model.record import Record
from natsmesh.reconcile.claims import push_claims
from natsmesh.render.servers import render_mesh
from natsmesh.render.trust import realise


@dataclass(frozen=True)
class LinkChange(Record):
    """What happened to DOMAIN's leaf link: the user key revoked and the one issued (public keys, "" if none)."""

    domain: str
    revoked: str = ""
    issued: str = ""
    pushed: list[str] = field(default_factory=list)

    def describe(self) -> str:
        parts = [f"revoked link user {self.revoked} (its link closes now)"] * bool(self.revoked)
        parts += [f"issued link user {self.issued} (its leaf nodes link with it on their next attempt)"] * bool(
            self.issued
        )
        return f"{self.domain}: " + "; ".join(parts)


def _check(mesh: Mesh, domain: str) -> None:
    if domain not in {d.name for d in mesh.domains}:
        known = ", ".join(d.name for d in mesh.domains)
        raise ApplyError(f"{domain!r} is not a leaf domain of mesh {mesh.name!r} (domains: {known})")
    if mesh.own_keys_of(domain):
        raise ApplyError(
            f"{domain} brought its own account key: only it can sign its link users. From its keys, "
            f"`natsmesh keys link {domain} --keys FILE` issues a new one"
        )
    if not realise(mesh, load_credentials(mesh, create=False)).pushes:
        raise ApplyError(
            f"mesh {mesh.name!r} keeps its accounts in its server configs (trust: config): a link is revoked by "
            "pushing its account's claims, which needs `trust: operator`"
        )


def _write_folder(mesh: Mesh, domain: str) -> None:
    """The domain's folder anew (its `link.creds` and secrets), configs aside: they do not change."""
    files = render_mesh(mesh, load_credentials(mesh, create=False), certs=cert_texts(mesh), via=recorded_via(mesh))
    folder = mesh.domain(domain).folder
    write_files(
        {rel: text for rel, text in files.items() if rel.split("/", 1)[0] == folder and not rel.endswith(".conf")},
        mesh.data_dir,
    )


async def revoke_link(mesh: Mesh, domain: str, *, issue: bool = False) -> LinkChange:
    """Revoke DOMAIN's current leaf-link user (and with ISSUE give it a new one at once)."""
    _check(mesh, domain)
    before, after = replace_link(mesh, domain, revoke=True, issue=issue, now=int(time.time()))
    if issue:
        _write_folder(mesh, domain)
    pushed = await push_claims(mesh, load_credentials(mesh, create=False))
    change = LinkChange(domain, revoked=before, issued=after if issue else "", pushed=pushed.pushed)
    await _audit(mesh, change)
    return change


async def issue_link(mesh: Mesh, domain: str) -> LinkChange:
    """Give DOMAIN's leaf link a new user (signed by the domain's account key) and write it to its folder."""
    _check(mesh, domain)
    _, after = replace_link(mesh, domain, revoke=False, issue=True, now=int(time.time()))
    _write_folder(mesh, domain)
    change = LinkChange(domain, issued=after)
    await _audit(mesh, change)
    return change


async def _audit(mesh: Mesh, change: LinkChange) -> None:
    """The key change in the audit trail, by public keys only (a hub away: the change stands, unrecorded)."""
    from natsmesh.observe.connect import Connections
    from natsmesh.reconcile.access import record

    with contextlib.suppress(Exception):
        async with Connections(mesh, name="natsmesh-audit") as mc:
            detail = {"about": change.domain, "revoked_user": change.revoked, "issued_user": change.issued}
            await record(mesh, mc, "link", **detail)
