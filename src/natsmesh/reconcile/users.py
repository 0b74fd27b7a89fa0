"""A domain's users per service, from its own folder (`natsmesh user add/list/revoke`): nothing of the platform's is
touched, and no server restarts or reloads.

Issuing a user signs a JWT with the domain's data account signing key and writes its creds file: the servers check
the signature on its first connection, so nothing is sent to them but the signed record of it, posted to the
domain's own access stream (where `user list` reads it, and the platform's `apply` copies it into the audit trail).
Revoking one signs the data account anew with the user's key in its revocations and pushes it to the cluster's own
resolver (`$SYS.REQ.CLAIMS.UPDATE` with the domain's system user), which closes the user's connections at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from natsmesh.errors import NotHeldError, NotRunningError
from natsmesh.local.files import write_private
from natsmesh.local.secrets import new_nkey
from natsmesh.model import jwt
from natsmesh.model.access import AccessDoc
from natsmesh.model.identities import Credentials, NKey, trust_key_name
from natsmesh.model.mesh import Mesh
from natsmesh.model.record import Record
from natsmesh.model.users import Role, ServiceUser, check, described, rights_of, tags, users_of
from natsmesh.observe.access import ACCESS_STREAM, docs_of, keys_of, read_tokens
from natsmesh.observe.connect import Connections, ServiceLogin, connect_system
from natsmesh.observe.grants import lookup_claims
from natsmesh.reconcile.access import Signer, post, signer_of
from natsmesh.reconcile.claims import push_tokens
from natsmesh.render.trust import OperatorMode, OwnOperator, realise


def own_operator(mesh: Mesh, creds: Credentials) -> OwnOperator:
    """The folder's cluster under its own operator; `NotHeldError` if this is not a folder of a domain with users
    of its own, or it holds no keys for them."""
    cluster = creds.holder
    if cluster is None:
        raise NotHeldError("users are issued by their domain, from its own folder (`natsmesh --bundle FOLDER user`)")
    check(mesh, cluster, "x", "admin", ())  # a cluster that keeps its users in its configs: says so
    trust = realise(mesh, creds)
    own = trust.own(mesh.domain(cluster)) if isinstance(trust, OperatorMode) else None
    if own is None or not own.creds.trust_keys.get(trust_key_name("leaf-account-signing", cluster), NKey("")).seed:
        raise NotHeldError(f"{cluster}'s folder holds no keys of its cluster's own operator: render it anew")
    return own


@dataclass(frozen=True)
class Issued(Record):
    """A user issued: who it is and where its creds file was written."""

    user: dict[str, Any]
    creds: str
    record: str  # the id of its signed record in the domain's access stream


def _record(signer: Signer, kind: str, user: ServiceUser, reason: str = "") -> AccessDoc:
    from natsmesh.model.access import sign

    what = {"user": user.name, "key": user.key, "role": user.role, "streams": user.streams, "reason": reason}
    return sign(kind, signer.cluster, signer.account, signer.seed, expires=user.expires, **what)  # type: ignore[arg-type]


async def issue(
    mesh: Mesh,
    creds: Credentials,
    name: str,
    role: Role,
    streams: tuple[str, ...],
    out: Path,
    expires: int = 0,
    keys_file: Path | None = None,
) -> Issued:
    """Issue user NAME with ROLE over STREAMS (until EXPIRES, unix seconds; 0: until revoked), its creds file at
    OUT (never over an existing file); its signed record posted to the domain's stream first, so nothing is
    issued if the cluster cannot be reached."""
    own = own_operator(mesh, creds)
    cluster = own.cluster.name
    rights = rights_of(mesh, cluster, name, role, streams)
    if out.exists():
        raise NotHeldError(f"{out} exists: natsmesh writes a creds file only where there is none")
    held = await listing(mesh, creds)
    if any(u.name == name and u.status() == "active" for u in held):
        raise NotHeldError(f"{cluster} has an active user {name!r}: revoke it first, or pick another name")
    key, now = new_nkey("user"), int(time.time())
    text = own.user_creds(key, name, rights, expires=expires, issued_at=now, tags=tags(cluster, role, streams))
    user = ServiceUser(cluster, name, key.public, role, streams, now, expires)
    doc = _record(signer_of(mesh, creds, keys_file), "user-issue", user)
    async with Connections(mesh, creds, name="natsmesh-user") as mc:
        await post(mesh, mc, cluster, doc)
    write_private(out, text)
    return Issued(user.to_json(), str(out), doc.id)


async def listing(mesh: Mesh, creds: Credentials) -> list[ServiceUser]:
    """Every user the folder's domain issued (its access stream's records), newest first, revoked ones marked."""
    own = own_operator(mesh, creds)
    cluster = own.cluster.name
    signers = keys_of(mesh).get(cluster)
    async with Connections(mesh, creds, name="natsmesh-user") as mc:
        docs = docs_of(await read_tokens(await mc.jetstream(cluster), ACCESS_STREAM))
    return users_of(cluster, docs, signers.signers if signers is not None else frozenset())


@dataclass(frozen=True)
class Revoked(Record):
    """A user revoked: its name and key, and how many of its cluster's servers took the new account claims."""

    name: str
    key: str
    servers: int
    record: str


async def revoke(mesh: Mesh, creds: Credentials, name: str, reason: str = "", keys_file: Path | None = None) -> Revoked:
    """Revoke the domain's active user NAME: its account signed anew with the user's key revoked, pushed to the
    cluster's resolver (its connections close), then its signed record posted."""
    own = own_operator(mesh, creds)
    cluster = own.cluster
    held = [u for u in await listing(mesh, creds) if u.name == name and not u.revoked]
    if not held:
        raise NotHeldError(f"{cluster.name} has no user {name!r} to revoke (`natsmesh user list`)")
    nc = await connect_system(mesh, creds, cluster=cluster)
    try:
        current = await lookup_claims(nc, own.data.public)
        said = jwt.decode(current) if current else {}
        nats = said.get("nats") if isinstance(said.get("nats"), dict) else {}
        revocations = {str(k): int(v) for k, v in ((nats or {}).get("revocations") or {}).items()}
        now = max(int(time.time()), int(said.get("iat") or 0) + 1)  # the resolver takes only a newer JWT
        revocations |= {u.key: now for u in held}
        token = own.account_jwt(False, revocations, now)
        answers = await push_tokens(nc, {own.data.public: token}, len(cluster.nodes))
    finally:
        await nc.close()
    replies = answers.get(own.data.public, [])
    if not any(b'"code":200' in r.replace(b" ", b"") for r in replies):
        raise NotRunningError(f"{cluster.name}'s resolver did not take the revocation: {replies[:1]!r}")
    signer = signer_of(mesh, creds, keys_file)
    doc = _record(signer, "user-revoke", held[0], reason)
    async with Connections(mesh, creds, name="natsmesh-user") as mc:
        await post(mesh, mc, cluster.name, doc)
    return Revoked(name, held[0].key, len(replies), doc.id)


def service_login(path: Path) -> ServiceLogin:
    """The user of a creds file natsmesh issued (`natsmesh user add`); `NotHeldError` saying why if it is none."""
    try:
        if path.stat().st_size > 64 * 1024:
            raise ValueError("larger than 64 KiB")
        text = path.read_text()
        token = text.split("-----BEGIN NATS USER JWT-----")[1].split("------END")[0].strip()
        user = described(token)
    except (OSError, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise NotHeldError(f"{path} is not a creds file natsmesh issued: {exc}") from None
    if not user.name:
        raise NotHeldError(f"{path} is not a creds file natsmesh issued: its user has no name")
    return ServiceLogin(user.cluster, user.name, text, user.role, user.streams)


def user_credentials(login: ServiceLogin) -> Credentials:
    """Credentials that hold nothing but who acts (LOGIN's cluster): a service with its creds file only."""
    return Credentials({}, {}, {}, {}, {}, holder=login.cluster)
