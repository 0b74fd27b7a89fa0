"""Access requests and grants on the wire: where the signed documents live, how a domain posts one, and how the
platform's `apply` gathers, checks, records and relays them (`natsmesh.model.access` says what they mean).

Each leaf cluster keeps its own stream `natsmesh_access` in its data account: the domain posts its documents
there from its own folder (`natsmesh access request/grant/deny/revoke`), and the platform's `apply` relays to it
the documents about it from the others (a request for its product, the answer to its request). The hub keeps
the mesh's audit trail, `natsmesh_audit` in the platform's account: every document taken or refused, once,
as signed, in a stream that refuses deletes, purges and rollups. Nothing in either stream is believed for being
there: each document is checked against its domain's keys whenever it is read, so a domain that writes
anything it likes into its own stream (it is that stream's admin) can only make documents of its own.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from natsmesh.errors import AccessRefusedError, ApplyError, NotHeldError
from natsmesh.local.ownkeys import read_keys
from natsmesh.model.access import AccessDoc, Keys, Kind, Ledger, NotADocument, activations, fold, read, share_of, sign
from natsmesh.model.identities import Credentials, trust_key_name
from natsmesh.model.mesh import Mesh
from natsmesh.model.products import KIND_KEY, MESH_KEY
from natsmesh.observe.connect import Connections
from natsmesh.observe.wire import ApiError
from natsmesh.reconcile.concurrency import bounded
from natsmesh.render.trust import account_keys, realise

ACCESS_STREAM = "natsmesh_access"
ACCESS_PREFIX = "natsmesh.access"  # .out.<kind>: posted by the domain; .in.<kind>: relayed by the platform
AUDIT_STREAM = "natsmesh_audit"
AUDIT_PREFIX = "natsmesh.audit"  # .<domain>.<kind>
MAX_DOCS = 10_000  # documents read from one domain's stream; a domain that posts more is refused, not read
PAUSED_UNTIL = "2999-12-31T00:00:00Z"  # a revoked copy's consumer: paused until its owner grants again
AT_ONCE = 64


@dataclass
class Gathered:
    """What `gather` read: the ledger of every document, each cluster's document ids, the audit's ids, and the
    clusters whose stream could not be read (why)."""

    ledger: Ledger
    held: dict[str, set[str]] = field(default_factory=dict)
    audited: set[str] = field(default_factory=set)
    unread: dict[str, str] = field(default_factory=dict)
    docs: list[AccessDoc] = field(default_factory=list)


def keys_of(mesh: Mesh) -> dict[str, Keys]:
    """Each cluster's public keys as MESH says them (a folder's mesh.json, or the platform's `with_keys`)."""
    return {c: Keys(a, s) for c, a, s in mesh.account_keys}


def access_config(replicas: int) -> StreamConfig:
    return StreamConfig(
        name=ACCESS_STREAM,
        subjects=[f"{ACCESS_PREFIX}.>"],
        storage=StorageType.FILE,
        num_replicas=replicas,
        description="natsmesh: this domain's access requests and answers, and those the platform relayed to it",
        metadata={KIND_KEY: "access"},
    )


def audit_config(replicas: int, mesh: str) -> StreamConfig:
    return StreamConfig(
        name=AUDIT_STREAM,
        subjects=[f"{AUDIT_PREFIX}.>"],
        storage=StorageType.FILE,
        num_replicas=replicas,
        description="natsmesh: the mesh's audit trail (signed documents; no delete, no purge)",
        deny_delete=True,
        deny_purge=True,
        allow_rollup_hdrs=False,
        metadata={KIND_KEY: "audit", MESH_KEY: mesh},
    )


async def ensure(js: JetStreamContext, config: StreamConfig) -> None:
    """Stream CONFIG, made if it is not there (an existing one is left as it is)."""
    try:
        await js.stream_info(str(config.name))
    except NotFoundError:
        await js.add_stream(config)


async def read_tokens(js: JetStreamContext, stream: str, limit: int = MAX_DOCS) -> list[str]:
    """Every message of STREAM as text, oldest first; ValueError if it holds more than LIMIT."""
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return []
    count = info.state.messages
    if count > limit:
        raise ValueError(f"{stream} holds {count} messages, more than the {limit} natsmesh reads")
    if not count:
        return []
    subjects = info.config.subjects or []
    sub = await js.pull_subscribe(subjects[0] if len(subjects) == 1 else "", stream=stream)
    out: list[str] = []
    try:
        while len(out) < count:
            msgs = await sub.fetch(min(256, count - len(out)), timeout=5)
            for m in msgs:
                out.append(m.data.decode(errors="replace"))
                with contextlib.suppress(Exception):
                    await m.ack()
                if m.metadata.num_pending == 0:
                    count = len(out)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return out


def _docs(tokens: Iterable[str]) -> list[AccessDoc]:
    out = []
    for token in tokens:
        with contextlib.suppress(NotADocument):
            out.append(read(token))
    return out


async def gather(mesh: Mesh, mc: Connections, keys: dict[str, Keys], now: float | None = None) -> Gathered:
    """The platform's view: the audit trail and every leaf cluster's stream, folded into one ledger."""
    hub = await mc.jetstream(mesh.hub.name)
    audit = _docs(await read_tokens(hub, AUDIT_STREAM, limit=10**9))
    got = Gathered(Ledger(), audited={d.id for d in audit})
    leaves = [c.name for c in mesh.domains]

    async def one(cluster: str) -> list[AccessDoc]:
        try:
            return _docs(await read_tokens(await mc.jetstream(cluster), ACCESS_STREAM))
        except Exception as exc:  # one domain's stream (its doing) never stops the others'
            got.unread[cluster] = str(exc) or type(exc).__name__
            return []

    read_back = await bounded([one(c) for c in leaves], AT_ONCE)
    docs = {d.id: d for d in audit}
    for cluster, found in zip(leaves, read_back, strict=True):
        got.held[cluster] = {d.id for d in found}
        docs.update({d.id: d for d in found})
    got.docs = list(docs.values())
    got.ledger = fold(mesh, keys, got.docs, now)
    return got


async def relay(mesh: Mesh, mc: Connections, got: Gathered) -> int:
    """Record every document the audit trail lacks (taken or refused, as signed), then give each leaf cluster the
    documents about it that it lacks. Returns how many messages were written."""
    hub = await mc.jetstream(mesh.hub.name)
    new = [d for d in got.docs if d.id not in got.audited]
    if new:
        await ensure(hub, audit_config(min(3, len(mesh.hub.nodes)), mesh.name))
    written = 0
    for doc in sorted(new, key=lambda d: (d.issued, d.id)):
        await hub.publish(
            f"{AUDIT_PREFIX}.{doc.domain}.{doc.kind}", doc.token.encode(), headers={"Nats-Msg-Id": doc.id}
        )
        written += 1

    async def deliver(cluster: str) -> int:
        if cluster in got.unread:
            return 0
        mine = got.ledger.about(cluster).taken
        missing = [d for d in mine if d.id not in got.held.get(cluster, set())]
        if not missing:
            return 0
        js = await mc.jetstream(cluster)
        await ensure(js, access_config(min(3, len(mesh.domain(cluster).nodes))))
        for d in missing:
            await js.publish(f"{ACCESS_PREFIX}.in.{d.kind}", d.token.encode(), headers={"Nats-Msg-Id": d.id})
        return len(missing)

    counts = await bounded([deliver(c.name) for c in mesh.domains], AT_ONCE)
    return written + sum(counts)


async def set_paused(nc: Client, stream: str, consumer: str, paused: bool) -> None:
    """Pause (until its owner grants again) or resume the owner's consumer CONSUMER of STREAM."""
    body = json.dumps({"pause_until": PAUSED_UNTIL} if paused else {}).encode()
    reply = await nc.request(f"$JS.API.CONSUMER.PAUSE.{stream}.{consumer}", body, timeout=5)
    if (err := ApiError.of_reply(reply.data)) is not None and err.code != 404:
        raise ApplyError(f"pausing consumer {consumer} of {stream}: {err.description} ({err.code})")


async def hold_back(mesh: Mesh, mc: Connections, ledger: Ledger, now: float | None = None) -> None:
    """Pause the owner's consumer of every revoked or expired copy (the servers already refuse its activations:
    this stops the owner's side too), and resume every granted one."""
    at = now if now is not None else time.time()
    todo = []
    for a in ledger.requests.values():
        if a.grant is None:
            continue
        share = share_of(mesh, a.requester, a.product, a.copy, a.filter)
        flowing = a.status == "granted" and not (a.expires and a.expires <= at)
        todo.append((share.owner, share.stream, share.consumer, not flowing))

    async def one(owner: str, stream: str, consumer: str, paused: bool) -> None:
        with contextlib.suppress(NotFoundError, ApplyError):
            await set_paused(await mc.connection(owner), stream, consumer, paused)

    await bounded([one(*t) for t in todo], AT_ONCE)


# ---------------------------------------------------------------------------------------------------------------
# A domain's own acts, from its folder


async def post(mesh: Mesh, mc: Connections, cluster: str, doc: AccessDoc) -> None:
    """Post DOC into CLUSTER's own access stream (made if it is not there), where the platform's `apply` reads it."""
    js = await mc.jetstream(cluster)
    await ensure(js, access_config(min(3, len(mesh.domain(cluster).nodes))))
    await js.publish(f"{ACCESS_PREFIX}.out.{doc.kind}", doc.token.encode(), headers={"Nats-Msg-Id": doc.id})


async def own_ledger(mesh: Mesh, mc: Connections, cluster: str, now: float | None = None) -> Ledger:
    """What CLUSTER's own stream says: its requests and answers, and what the platform relayed to it, each
    checked against the keys its folder's mesh.json names."""
    keys = keys_of(mesh)
    if not keys:
        raise NotHeldError("this folder's mesh.json names no account keys: access requests need operator mode")
    docs = _docs(await read_tokens(await mc.jetstream(cluster), ACCESS_STREAM))
    return fold(mesh, keys, docs, now).about(cluster)


def describe(got: Gathered) -> str:
    """One line for `apply`'s plan: how many requests in each state, and what was refused or unread."""
    counts: dict[str, int] = {}
    for a in got.ledger.requests.values():
        counts[a.status] = counts.get(a.status, 0) + 1
    parts = [f"{n} {status}" for status, n in sorted(counts.items())]
    parts += [f"{r.doc.domain}'s {r.doc.kind} {r.doc.id} refused: {r.why}" for r in got.ledger.refused]
    parts += [f"{c}'s access stream unread: {why}" for c, why in sorted(got.unread.items())]
    return "; ".join(parts) or "no access requests"


def to_json(got: Gathered) -> dict[str, Any]:
    return got.ledger.to_json() | {"unread": got.unread}


@dataclass(frozen=True)
class Signer:
    """Who acts: a cluster (its domain), its account's public key and the seed of a key that signs for it."""

    cluster: str
    account: str
    seed: str


def signer_of(mesh: Mesh, creds: Credentials, keys_file: Path | None = None) -> Signer:
    """The folder's party as a signer: its own account signing key, from its folder (`secrets.json`) or, for a
    team that keeps its own account key, from KEYS_FILE (`natsmesh keys init`), checked against the mesh's keys."""
    party = creds.holder
    published = keys_of(mesh).get(party or "")
    if not party or published is None:
        raise NotHeldError(
            "access requests and answers are signed by a domain's own key: run this from the domain's folder "
            "(`natsmesh --bundle FOLDER`) of a mesh in operator mode"
        )
    if keys_file is not None:
        own = read_keys(keys_file)
        if (own.account.public, own.signing.public) != (published.account, published.signing):
            raise NotHeldError(
                f"{keys_file} holds keys of another account than {party}'s (the mesh names {published.account})"
            )
        return Signer(party, published.account, own.signing.seed)
    key = creds.trust_keys.get(trust_key_name("account-signing", party))
    if key is None or not key.seed:
        raise NotHeldError(
            f"this folder holds no signing key of {party}: its team keeps its own; give it with --keys FILE"
        )
    return Signer(party, published.account, key.seed)


async def act(
    mesh: Mesh, mc: Connections, signer: Signer, kind: Kind, now: float | None = None, **what: Any
) -> AccessDoc:
    """Sign and post one document of SIGNER's (a request: product, copy, mode, filter, reason; an answer: request,
    reason and for a grant expires), after checking it against what SIGNER's stream already says: a document the
    platform would refuse is refused here, with the same reason, and nothing is posted."""
    at = int(now if now is not None else time.time())
    keys = keys_of(mesh)
    docs = _docs(await read_tokens(await mc.jetstream(signer.cluster), ACCESS_STREAM))
    if kind == "grant":
        before = fold(mesh, keys, docs, at)
        access = before.requests.get(what.get("request", ""))
        if access is None:
            raise AccessRefusedError(
                f"{signer.cluster} knows no request {what.get('request')!r} (the platform's next `apply` relays the "
                "requests for a domain's products to it; `natsmesh access list` shows them)"
            )
        if access.owner == signer.cluster:
            what["activations"] = activations(mesh, keys, access, signer.seed, int(what.get("expires") or 0), at)
    doc = sign(kind, signer.cluster, signer.account, signer.seed, at, **what)
    after = fold(mesh, keys, [*docs, doc], at)
    if refused := [r for r in after.refused if r.doc.id == doc.id]:
        raise AccessRefusedError(f"{signer.cluster} cannot {kind} this: {refused[0].why}")
    await post(mesh, mc, signer.cluster, doc)
    if kind == "revoke":  # stop the copy now, on the owner's own side: the platform's next apply does the rest
        access = after.requests[doc.request]
        share = share_of(mesh, access.requester, access.product, access.copy, access.filter)
        if share.owner == signer.cluster:
            with contextlib.suppress(NotFoundError, ApplyError):
                await set_paused(await mc.connection(share.owner), share.stream, share.consumer, True)
    return doc


async def ledger_view(mesh: Mesh, now: float | None = None) -> Ledger:
    """`natsmesh access list`: from a domain's folder, what its own stream says (its requests and those for its
    products); from the platform's spec, every request of the mesh and every document refused."""
    from natsmesh.local.secrets import load_credentials

    creds = load_credentials(mesh, create=False)
    async with Connections(mesh, creds, name="natsmesh-access-list") as mc:
        if creds.holder:
            if creds.holder not in {c.name for c in mesh.domains}:
                raise NotHeldError(f"{creds.holder} holds no data products: access is a domain's")
            return await own_ledger(mesh, mc, creds.holder, now)
        if not realise(mesh, creds).pushes:
            raise NotHeldError("access requests need the hub in operator mode (`trust: operator`)")
        keyed = replace(mesh, account_keys=account_keys(mesh, creds))
        return (await gather(keyed, mc, keys_of(keyed), now)).ledger
