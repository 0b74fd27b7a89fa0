"""Writing access requests and answers (`natsmesh.observe.access` reads them; `natsmesh.model.access` says what
they mean): a domain posts its own from its folder (`act`), and the platform's `apply` records every document in
the hub's audit trail, relays to each domain what is about it, and sets the owners' side of each grant
(`relay`, `hold_back`).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from natsmesh.client import when_answered
from natsmesh.errors import AccessRefusedError, ApplyError, NotHeldError
from natsmesh.local.ownkeys import read_keys
from natsmesh.model.access import AccessDoc, Kind, Ledger, activations, doc_id, fold, share_of, sign
from natsmesh.model.audit import sign_event
from natsmesh.model.identities import Credentials, trust_key_name
from natsmesh.model.mesh import Mesh
from natsmesh.model.products import AUDIT_STREAM, KIND_KEY, MESH_KEY
from natsmesh.model.units import visible
from natsmesh.observe.access import (
    ACCESS_PREFIX,
    ACCESS_STREAM,
    AUDIT_ACCESS,
    AUDIT_PLATFORM,
    AUDIT_PREFIX,
    AUDIT_REFUSED,
    REFUSED_HEADER,
    Gathered,
    docs_of,
    keys_of,
    read_tokens,
)
from natsmesh.observe.connect import Connections
from natsmesh.observe.wire import ApiError
from natsmesh.reconcile.concurrency import bounded

REFUSED_RECORDED = 20  # refused documents of one cluster recorded per apply
PAUSED_UNTIL = "2999-12-31T00:00:00Z"  # a revoked copy's consumer: paused until its owner grants again
AT_ONCE = 64
POST_SETTLE = 10.0  # seconds a post waits for a stream just made to answer


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


async def relay(mesh: Mesh, mc: Connections, got: Gathered) -> int:
    """Record every document the audit trail lacks, as signed (taken: under its domain and kind; refused: under
    the cluster whose stream held it, with why, at most REFUSED_RECORDED of one cluster's per apply), then give
    each leaf cluster the documents about it that its stream lacks (a cluster whose stream fails is skipped and
    tried again by the next apply). Returns how many messages were written."""
    hub = await mc.jetstream(mesh.hub.name)
    refused = {r.doc.id: r.why for r in got.ledger.refused}
    new = sorted(got.new, key=lambda d: (d.issued, d.id))
    if new:
        await ensure(hub, audit_config(min(3, len(mesh.hub.nodes)), mesh.name))
    per_cluster: dict[str, int] = {}
    written = 0
    for doc in new:
        if doc.id in refused:
            where = got.found_in.get(doc.id, doc.domain)
            per_cluster[where] = per_cluster.get(where, 0) + 1
            if per_cluster[where] > REFUSED_RECORDED:
                continue  # the rest next time: a domain filling its stream does not fill the trail at once
            subject, msg_id = f"{AUDIT_REFUSED}.{where}", f"{doc.id}-refused"
            why = visible(refused[doc.id][:1000], keep="").replace("\n", " ")
            headers = {"Nats-Msg-Id": msg_id, REFUSED_HEADER: why}
        else:
            subject, headers = f"{AUDIT_ACCESS}.{doc.domain}.{doc.kind}", {"Nats-Msg-Id": doc.id}
        await hub.publish(subject, doc.token.encode(), headers=headers)
        written += 1

    async def deliver(cluster: str) -> int:
        if cluster in got.unread or cluster in got.unreachable:
            return 0
        missing = [d for d in got.ledger.about(cluster).taken if d.id not in got.held.get(cluster, set())]
        if not missing:
            return 0
        try:
            js = await mc.jetstream(cluster)
            await ensure(js, access_config(min(3, len(mesh.domain(cluster).nodes))))
            for d in missing:
                await js.publish(f"{ACCESS_PREFIX}.in.{d.kind}", d.token.encode(), headers={"Nats-Msg-Id": d.id})
        except Exception:  # its stream, its doing (or its cluster away): the others' go on, the next apply retries
            return 0
        return len(missing)

    return written + sum(await bounded([deliver(c.name) for c in mesh.domains], AT_ONCE))


async def record(mesh: Mesh, mc: Connections, event: str, **detail: Any) -> str | None:
    """Record the platform's EVENT with DETAIL in the audit trail, signed by the operator's signing key (operator
    mode; None elsewhere: there is no such key). Returns the entry's id."""
    key = mc.creds.trust_keys.get(trust_key_name("operator-signing"))
    if key is None or not key.seed:
        return None
    token = sign_event(event, key.public, key.seed, **detail)
    hub = await mc.jetstream(mesh.hub.name)
    await ensure(hub, audit_config(min(3, len(mesh.hub.nodes)), mesh.name))
    entry = doc_id(token)
    await hub.publish(f"{AUDIT_PLATFORM}.{event}", token.encode(), headers={"Nats-Msg-Id": entry})
    return entry


async def record_expiries(mesh: Mesh, mc: Connections, got: Gathered, now: float | None = None) -> int:
    """An `expired` event for every grant whose time is over and that the audit trail does not say so of yet."""
    at = now if now is not None else time.time()
    over = [
        a
        for a in got.ledger.requests.values()
        if a.grant is not None and a.expires and a.expires <= at and a.status in ("granted", "expired")
    ]
    done = 0
    for a in sorted(over, key=lambda x: x.expires):
        assert a.grant is not None
        if (a.id, a.grant.id) not in got.expired:
            detail = {"about": a.product, "request": a.id, "grant": a.grant.id, "requester": a.requester}
            await record(mesh, mc, "expired", at=a.expires, **detail)
            done += 1
    return done


async def set_paused(nc: Client, stream: str, consumer: str, paused: bool) -> None:
    """Pause (until its owner grants again) or resume the owner's consumer CONSUMER of STREAM."""
    body = json.dumps({"pause_until": PAUSED_UNTIL} if paused else {}).encode()
    reply = await nc.request(f"$JS.API.CONSUMER.PAUSE.{stream}.{consumer}", body, timeout=5)
    if (err := ApiError.of_reply(reply.data)) is not None and err.code != 404:
        raise ApplyError(f"pausing consumer {consumer} of {stream}: {err.description} ({err.code})")


async def hold_back(
    mesh: Mesh,
    mc: Connections,
    ledger: Ledger,
    unread: Collection[str] = (),
    now: float | None = None,
    paused: Mapping[tuple[str, str, str], bool] | None = None,
) -> int:
    """Pause the owner's consumer of every revoked or expired copy (the servers already refuse its activations:
    this stops the owner's side too), and resume every granted one: a consumer is resumed if any grant for it
    holds. An owner whose own stream was UNREAD is left as it is (its revocation may be what could not be read).
    PAUSED: (owner, stream, consumer) -> whether it is paused now, as `apply` read it: those already as they
    should be are not asked again. Returns how many were asked."""
    at = now if now is not None else time.time()
    flowing: dict[tuple[str, str, str], bool] = {}
    for a in ledger.requests.values():
        if a.grant is None or a.owner in unread:
            continue
        share = share_of(mesh, a.requester, a.product, a.copy, a.filter)
        key = (share.owner, share.stream, share.consumer)
        flowing[key] = flowing.get(key, False) or (a.status == "granted" and not (a.expires and a.expires <= at))

    async def one(owner: str, stream: str, consumer: str, paused: bool) -> None:
        with contextlib.suppress(Exception):  # one owner's cluster away or refusing: the others' go on
            await set_paused(await mc.connection(owner), stream, consumer, paused)

    todo = [(key, not ok) for key, ok in flowing.items() if (paused or {}).get(key) != (not ok)]
    await bounded([one(*key, stop) for key, stop in todo], AT_ONCE)
    return len(todo)


# ---------------------------------------------------------------------------------------------------------------
# A domain's own acts, from its folder


async def post(mesh: Mesh, mc: Connections, cluster: str, doc: AccessDoc) -> None:
    """Post DOC into CLUSTER's own access stream (made if it is not there), where the platform's `apply` reads it."""
    js = await mc.jetstream(cluster)
    await ensure(js, access_config(min(3, len(mesh.domain(cluster).nodes))))
    subject, headers = f"{ACCESS_PREFIX}.out.{doc.kind}", {"Nats-Msg-Id": doc.id}
    # a stream just made elects its leader first (its id keeps a retry from being stored twice)
    await when_answered(lambda: js.publish(subject, doc.token.encode(), headers=headers), POST_SETTLE)


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
    docs = docs_of(await read_tokens(await mc.jetstream(signer.cluster), ACCESS_STREAM))
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
