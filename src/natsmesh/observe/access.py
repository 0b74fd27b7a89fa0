"""Reading access requests and answers where they live (`natsmesh.model.access` says what they mean).

Each leaf cluster keeps its own stream `natsmesh_access` in its data account: the documents the domain posted
from its folder and those the platform relayed to it. The hub keeps the mesh's audit trail `natsmesh_audit`:
every document taken (subject `AUDIT_ACCESS.<domain>.<kind>`) or refused (`AUDIT_REFUSED.<cluster>`), once, as
signed, and the platform's own acts (`AUDIT_PLATFORM.<event>`, signed by the operator's signing key). Nothing is
believed for being there: every document is checked against its domain's keys each time it is read, so a domain
that writes what it likes into its own stream (it is that stream's admin) can only make documents of its own.
The writes are `natsmesh.reconcile.access`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy, StreamInfo
from nats.js.errors import NotFoundError, ServiceUnavailableError

from natsmesh.errors import NotHeldError
from natsmesh.model.access import Access, AccessDoc, Keys, Ledger, NotADocument, fold, read
from natsmesh.model.audit import Entry, verify
from natsmesh.model.identities import trust_key_name
from natsmesh.model.mesh import Mesh
from natsmesh.model.products import AUDIT_STREAM
from natsmesh.observe.connect import Connections
from natsmesh.observe.streams import wait_jetstream
from natsmesh.render.trust import account_keys, realise

ACCESS_STREAM = "natsmesh_access"
ACCESS_PREFIX = "natsmesh.access"  # .out.<kind>: posted by the domain; .in.<kind>: relayed by the platform
AUDIT_PREFIX = "natsmesh.audit"
AUDIT_ACCESS = f"{AUDIT_PREFIX}.access"  # .<domain>.<kind>: a document taken
AUDIT_REFUSED = f"{AUDIT_PREFIX}.refused"  # .<cluster>: a document refused, found in that cluster's stream
AUDIT_PLATFORM = f"{AUDIT_PREFIX}.platform"  # .<event>: the platform's own acts
REFUSED_HEADER = "Natsmesh-Refused"
MAX_DOCS = 10_000  # documents read from one domain's stream; a domain that posts more is not read
MAX_BYTES = 64 * 1024**2  # nor one whose stream holds more than this (a document is a few KiB)
AT_ONCE = 64
READ_DEADLINE = 15.0  # seconds one domain's stream may take to read
SAID = 10  # refused documents named in `apply`'s row (all in `access list`)


@dataclass
class Gathered:
    """What `gather` read: the ledger of every document, each cluster's document ids, the ids the audit trail
    holds (taken or refused), and the clusters whose stream could not be read (why)."""

    ledger: Ledger
    docs: list[AccessDoc] = field(default_factory=list)
    held: dict[str, set[str]] = field(default_factory=dict)
    audited: set[str] = field(default_factory=set)  # recorded as taken
    audited_refused: set[str] = field(default_factory=set)  # recorded as refused
    unread: dict[str, str] = field(default_factory=dict)
    unreachable: set[str] = field(default_factory=set)  # clusters whose relayed documents could not be read
    expired: set[tuple[str, str]] = field(default_factory=set)  # (request, grant) whose expiry is recorded
    found_in: dict[str, str] = field(default_factory=dict)  # document id -> the cluster whose stream held it

    def describe(self) -> str:
        """One line for `apply`'s plan: how many requests in each state, and what was refused or unread."""
        counts: dict[str, int] = {}
        for a in self.ledger.requests.values():
            counts[a.status] = counts.get(a.status, 0) + 1
        parts = [f"{n} {status}" for status, n in sorted(counts.items())]
        refused = self.ledger.refused
        parts += [f"{r.doc.domain}'s {r.doc.kind} {r.doc.id} refused: {r.why[:200]}" for r in refused[:SAID]]
        parts += [f"and {len(refused) - SAID} more refused (`natsmesh access list`)"] if len(refused) > SAID else []
        parts += [f"{c}'s access stream unread: {why}" for c, why in sorted(self.unread.items())]
        return "; ".join(parts) or "no access requests"

    @property
    def new(self) -> list[AccessDoc]:
        """The documents the audit trail does not hold as they stand now: taken and not recorded as taken,
        refused and not recorded at all."""
        refused = {r.doc.id for r in self.ledger.refused}
        return [
            d
            for d in self.docs
            if d.id not in self.audited and (d.id not in refused or d.id not in self.audited_refused)
        ]


def keys_of(mesh: Mesh) -> dict[str, Keys]:
    """Each cluster's public keys as MESH says them (a folder's mesh.json, or the platform's `with_keys`)."""
    return {c: Keys(a, s) for c, a, s in mesh.account_keys}


def with_keys(mesh: Mesh, mc: Connections) -> Mesh:
    """MESH naming every cluster's account keys, as the platform knows them (operator mode)."""
    return replace(mesh, account_keys=account_keys(mesh, mc.creds))


Message = tuple[str, str, dict[str, str]]  # (subject, text, headers)


async def read_messages(
    js: JetStreamContext,
    stream: str,
    subjects: Sequence[str] = (),
    limit: int = MAX_DOCS,
    info: StreamInfo | None = None,
    start_seq: int = 0,
) -> list[Message]:
    """Every message of STREAM on SUBJECTS (all, if none) as (subject, text, headers), oldest first (from
    START_SEQ on, if given); ValueError if there are more than LIMIT, or (with LIMIT at its default: a domain's
    stream, the domain's to fill) more than MAX_BYTES: what a domain writes must not fill the platform's memory.
    INFO: the stream's info, if just asked."""
    if info is None:
        try:
            info = await js.stream_info(stream)
        except NotFoundError:
            return []
    if not info.state.messages:
        return []
    if limit <= MAX_DOCS and info.state.bytes > MAX_BYTES:
        raise ValueError(f"{stream} holds {info.state.bytes} bytes, more than natsmesh reads")
    config = ConsumerConfig(filter_subjects=list(subjects) if subjects else None)
    if start_seq:
        config.deliver_policy, config.opt_start_seq = DeliverPolicy.BY_START_SEQUENCE, start_seq
    own = info.config.subjects or []
    sub = await js.pull_subscribe(own[0] if len(own) == 1 and not subjects else "", stream=stream, config=config)
    out: list[Message] = []
    try:
        pending = subjects or start_seq
        count = ((await sub.consumer_info()).num_pending or 0) if pending else info.state.messages
        if count > limit:
            raise ValueError(f"{stream} holds {count} messages, more than the {limit} natsmesh reads")
        unsettled = asyncio.get_running_loop().time() + 5.0  # a consumer just made elects its leader first
        while len(out) < count:
            try:
                got = await sub.fetch(min(256, count - len(out)), timeout=5)
            except ServiceUnavailableError:
                if asyncio.get_running_loop().time() > unsettled:
                    raise
                await asyncio.sleep(0.1)
                continue
            out += [(m.subject, m.data.decode(errors="replace"), dict(m.headers or {})) for m in got]
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return out


Seen = dict[str, dict[str, Any]]  # cluster -> what its access stream held when last read: "state", "messages"


async def read_known(
    js: JetStreamContext, stream: str, before: dict[str, Any] | None
) -> tuple[list[Message], dict[str, Any] | None]:
    """Every message of STREAM as `read_messages` gives them, reading only what is new since BEFORE (what an
    earlier read of it returned, with the stream's state then) when the stream only grew since; and what to
    remember of it now (None: no stream)."""
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return [], None
    # (a stream deleted and made again starts over with another creation time)
    made = info.created.isoformat() if info.created is not None else ""
    state = [info.state.first_seq, info.state.last_seq, info.state.messages, made]
    known: list[Message] = [(str(m[0]), str(m[1]), dict(m[2])) for m in (before or {}).get("messages", [])]
    old = (before or {}).get("state")
    if old == state:
        return known, before
    appended = old is not None and len(old) == 4 and old[0] == state[0] and old[3] == state[3]
    if appended and old is not None and state[2] - old[2] == state[1] - old[1] >= 0:  # nothing deleted
        messages = known + await read_messages(js, stream, info=info, start_seq=old[1] + 1)
    else:
        messages = await read_messages(js, stream, info=info)
    if len(messages) > MAX_DOCS:
        raise ValueError(f"{stream} holds {len(messages)} messages, more than the {MAX_DOCS} natsmesh reads")
    return messages, {"state": state, "messages": [list(m) for m in messages]}


async def read_tokens(
    js: JetStreamContext, stream: str, subjects: Sequence[str] = (), limit: int = MAX_DOCS
) -> list[str]:
    """The texts of `read_messages`."""
    return [text for _, text, _ in await read_messages(js, stream, subjects, limit)]


def docs_of(tokens: Iterable[str]) -> list[AccessDoc]:
    """The access documents among TOKENS (anything else is dropped: it is nobody's act)."""
    out = []
    for token in tokens:
        with contextlib.suppress(NotADocument):
            out.append(read(token))
    return out


async def gather(
    mesh: Mesh,
    mc: Connections,
    now: float | None = None,
    patient: bool = True,
    leaves: bool = True,
    seen: Seen | None = None,
) -> Gathered:
    """The platform's view (MESH as `with_keys` made it): the audit trail and every leaf cluster's stream, folded
    into one ledger. The audit trail is the platform's memory: a grant stands though its owner empties its own
    stream. PATIENT: wait for a hub that has just started to enable its account's JetStream. LEAVES: read the
    leaf clusters' streams too (`apply`); without, what the audit trail holds: what `apply` carried out. SEEN:
    what each cluster's stream held when last read, so that only what is new is read (updated here)."""
    if patient:  # (`apply`) a hub just started names its account a moment later; a report does not wait
        await wait_jetstream(await mc.connection(mesh.hub.name))
    hub = await mc.jetstream(mesh.hub.name)
    wanted = (f"{AUDIT_ACCESS}.>", f"{AUDIT_REFUSED}.>", f"{AUDIT_PLATFORM}.expired")
    trail = await read_messages(hub, AUDIT_STREAM, wanted, limit=10**7)
    taken = docs_of(t for subject, t, _ in trail if subject.startswith(f"{AUDIT_ACCESS}."))
    refused = docs_of(t for subject, t, _ in trail if subject.startswith(f"{AUDIT_REFUSED}."))
    got = Gathered(Ledger(), audited={d.id for d in taken}, audited_refused={d.id for d in refused})
    got.expired = _expiries_of([t for subject, t, _ in trail if subject.startswith(AUDIT_PLATFORM)], mc)
    clusters = [c.name for c in mesh.domains] if leaves else []
    gate = asyncio.Semaphore(AT_ONCE)

    async def read(cluster: str) -> list[Message]:
        async with gate:
            if seen is None:
                return await read_messages(await mc.jetstream(cluster), ACCESS_STREAM)
            messages, now_held = await read_known(await mc.jetstream(cluster), ACCESS_STREAM, seen.get(cluster))
            if now_held is None:
                seen.pop(cluster, None)
            else:
                seen[cluster] = now_held
            return messages

    async def one(cluster: str) -> list[AccessDoc]:
        """What CLUSTER posted (to fold), and the ids of all its stream holds (what is relayed to it already)."""
        try:
            held = await asyncio.wait_for(read(cluster), READ_DEADLINE)
        except Exception as exc:  # one domain's stream (its doing) never stops the others'
            got.unread[cluster] = str(exc) or type(exc).__name__
            return []
        got.held[cluster] = {d.id for d in docs_of(t for _, t, _ in held)}
        return docs_of(t for subject, t, _ in held if subject.startswith(f"{ACCESS_PREFIX}.out."))

    docs = {d.id: d for d in taken}
    for cluster, found in zip(clusters, await asyncio.gather(*(one(c) for c in clusters)), strict=True):
        for d in found:
            got.found_in.setdefault(d.id, cluster)
            docs.setdefault(d.id, d)
    got.docs = list(docs.values())
    got.ledger = fold(mesh, keys_of(mesh), got.docs, now)
    return got


def _expiries_of(events: list[str], mc: Connections) -> set[tuple[str, str]]:
    """(request, grant) of each expiry the platform's EVENTS record, each checked against its signing key."""
    key = mc.creds.trust_keys.get(trust_key_name("operator-signing"))
    out = set()
    for token in events:
        entry = verify(token, {}, key.public if key is not None else "")
        if entry.valid:
            out.add((str(entry.detail.get("request")), str(entry.detail.get("grant"))))
    return out


async def own_ledger(mesh: Mesh, mc: Connections, cluster: str, now: float | None = None) -> Ledger:
    """What CLUSTER's own stream says (its requests and answers, and what the platform relayed to it), each
    document checked against the keys its folder's mesh.json names."""
    keys = keys_of(mesh)
    if not keys:
        raise NotHeldError("this folder's mesh.json names no account keys: access requests need operator mode")
    docs = docs_of(await read_tokens(await mc.jetstream(cluster), ACCESS_STREAM))
    return fold(mesh, keys, docs, now).about(cluster)


async def ledger_view(mesh: Mesh, now: float | None = None) -> Ledger:
    """`natsmesh access list`: from a domain's folder, what its own stream says (its requests and those for its
    products); from the platform's spec, every request of the mesh and every document refused."""
    async with Connections(mesh, name="natsmesh-access-list") as mc:
        return await _ledger(mesh, mc, now)


async def _ledger(mesh: Mesh, mc: Connections, now: float | None = None, recorded: bool = False) -> Ledger:
    """The ledger as MC's holder reads it; RECORDED (the platform): only what the audit trail holds."""
    holder = mc.creds.holder
    if holder:
        if holder not in {c.name for c in mesh.domains}:
            raise NotHeldError(f"{holder} holds no data products: access is a domain's")
        return await own_ledger(mesh, mc, holder, now)
    if not realise(mesh, mc.creds).pushes:
        raise NotHeldError("access requests need the hub in operator mode (`trust: operator`)")
    return (await gather(with_keys(mesh, mc), mc, now, patient=False, leaves=not recorded)).ledger


async def ledger_of(mesh: Mesh, mc: Connections) -> Ledger | None:
    """The ledger for reports: a domain's folder reads its own stream, the platform what its `apply` recorded in
    the audit trail (one read at the hub); None where there is none to read (config mode, a hub's folder)."""
    if (not mesh.account_keys and mc.creds.holder) or mesh.trust != "operator":
        return None
    if mc.creds.holder and mc.creds.holder not in {c.name for c in mesh.domains}:
        return None
    return await _ledger(mesh, mc, recorded=True)


@dataclass(frozen=True)
class AuditLog:
    """The audit trail's entries, checked (`natsmesh.model.audit.verify`), oldest first, as SCOPE may read them."""

    scope: str
    entries: list[Entry]

    def to_json(self) -> dict[str, Any]:
        return {"scope": self.scope, "entries": [e.to_json() for e in self.entries]}


async def audit_log(mesh: Mesh, since: float | None = None, product: str | None = None) -> AuditLog:
    """`natsmesh audit`: from the platform's spec, the hub's whole audit trail; from a domain's folder, the
    documents its own stream holds (its acts, and those about its products and requests the platform relayed).
    SINCE: unix seconds; PRODUCT: only entries about it."""
    async with Connections(mesh, name="natsmesh-audit") as mc:
        return await _audit(mesh, mc, since, product)


@dataclass(frozen=True)
class ProductAccess:
    """Who holds or asked for access to one product, and its recent audit entries (the portal's product page)."""

    requests: list[Access]
    entries: list[Entry]


async def product_access(mesh: Mesh, ref: str, recent: int = 20) -> ProductAccess | None:
    """The requests for product REF and its RECENT audit entries, as whoever holds MESH's keys may read them;
    None where there is no ledger (config mode, a hub's folder)."""
    async with Connections(mesh, name="natsmesh-portal-access") as mc:
        ledger = await ledger_of(mesh, mc)
        if ledger is None:
            return None
        requests = sorted((a for a in ledger.requests.values() if a.product == ref), key=lambda a: -a.requested)
        log = await _audit(mesh, mc, None, ref)
        return ProductAccess(requests, log.entries[-recent:][::-1])


async def _audit(mesh: Mesh, mc: Connections, since: float | None, product: str | None) -> AuditLog:
    holder = mc.creds.holder
    if holder:
        if not mesh.account_keys or holder not in {c.name for c in mesh.domains}:
            raise NotHeldError(f"{holder}'s folder has no audit entries (a domain's, in operator mode, has)")
        found = await read_messages(await mc.jetstream(holder), ACCESS_STREAM)
        keys, platform, scope = keys_of(mesh), "", f"{holder}'s own stream"
    else:
        if not realise(mesh, mc.creds).pushes:
            raise NotHeldError("the audit trail needs the hub in operator mode (`trust: operator`)")
        keyed = with_keys(mesh, mc)
        found = await read_messages(await mc.jetstream(mesh.hub.name), AUDIT_STREAM, limit=10**7)
        keys, scope = keys_of(keyed), f"the hub's {AUDIT_STREAM}"
        platform = mc.creds.trust_keys[trust_key_name("operator-signing")].public
    products = {d.id: d.product for _, t, _ in found for d in docs_of([t]) if d.kind == "request"}
    entries = [verify(t, keys, platform, products, h.get(REFUSED_HEADER, "")) for _, t, h in found]
    entries = [
        e
        for e in entries
        if (since is None or e.issued >= since)
        and (not product or e.about == product or e.about.startswith(f"{product} ("))
    ]
    return AuditLog(scope, sorted(entries, key=lambda e: (e.issued, e.id)))
