"""Typed mirrors of what the servers answer: monitoring endpoints and system-account replies. Pure.

Server JSON becomes these frozen dataclasses here, once, at the edge (as nats.py's `nats.js.api` does for the
JetStream API; its `ClusterInfo` lacks the peer ids and cluster size JSZ carries, hence `MetaCluster`).
Unknown fields are ignored and missing ones take a neutral default, so a newer or older server still parses;
nothing above this module reads a server's raw JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Generic, TypeVar

from natsmesh.model.units import go_duration, parse_iso

T = TypeVar("T")
Doc = dict[str, Any]


def _doc(value: Any) -> Doc:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _list(value: Any) -> list[Doc]:
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


def _ints(d: Doc, *names: str) -> dict[str, int]:
    """The integer fields NAMES of D, each 0 when missing or not a number."""
    return {n: _int(d.get(n)) for n in names}


def _strs(d: Doc, **names: str) -> dict[str, str]:
    """Text fields: each keyword's value names the key of D it comes from."""
    return {name: str(d.get(key) or "") for name, key in names.items()}


def _at(d: Doc, path: tuple[str, ...]) -> Any:
    """The value at PATH in D: the last key's, in the objects the keys before it name (None where one is missing)."""
    *parents, key = path
    for parent in parents:
        d = _doc(d.get(parent))
    return d.get(key)


def _count(*path: str) -> Any:
    """A `Counters` field, 0 unless the reply says: read from PATH (`_at`), by default the field's own name."""
    return field(default=0, metadata={"path": path})


@dataclass(frozen=True, kw_only=True)
class Counters:
    """A block of integer counters a reply carries, each field declared with `_count`: one parser for them all."""

    @classmethod
    def fields_of(cls, d: Doc) -> dict[str, Any]:
        """The counters of CLS read from D, each 0 when missing or not a number (a subclass adds what is not)."""
        return {f.name: _int(_at(d, f.metadata["path"] or (f.name,))) for f in fields(cls) if "path" in f.metadata}


@dataclass(frozen=True)
class ServerInfo:
    """The `server` block of every system reply: who answered."""

    name: str = ""
    id: str = ""
    host: str = ""
    cluster: str = ""
    domain: str = ""
    version: str = ""
    jetstream: bool = False
    time: datetime | None = None

    @classmethod
    def from_response(cls, d: Doc) -> ServerInfo:
        texts = _strs(d, name="name", id="id", host="host", cluster="cluster", domain="domain", version="ver")
        return cls(**texts, jetstream=bool(d.get("jetstream")), time=parse_iso(d.get("time")))


@dataclass(frozen=True)
class MetaPeer:
    """A follower of a JetStream meta group, as its leader sees it."""

    name: str
    peer: str = ""
    current: bool = False
    offline: bool = False
    active_seconds: float = 0.0
    lag: int = 0

    @classmethod
    def from_response(cls, d: Doc) -> MetaPeer:
        return cls(
            **_strs(d, name="name", peer="peer"),
            current=bool(d.get("current")),
            offline=bool(d.get("offline", False)),
            active_seconds=_int(d.get("active")) / 1e9,
            lag=_int(d.get("lag")),
        )


@dataclass(frozen=True)
class MetaCluster:
    """JSZ `meta_cluster`: a server's view of its domain's meta group."""

    leader: str | None = None
    peer: str = ""  # the leader's peer id (as the leader reports it)
    cluster_size: int | None = None
    replicas: tuple[MetaPeer, ...] = ()

    @classmethod
    def from_response(cls, d: Doc) -> MetaCluster:
        size = d.get("cluster_size")
        return cls(
            leader=str(d["leader"]) if d.get("leader") else None,
            peer=str(d.get("peer") or ""),
            cluster_size=_int(size) if size is not None else None,
            replicas=tuple(MetaPeer.from_response(r) for r in _list(d.get("replicas"))),
        )


@dataclass(frozen=True, kw_only=True)
class Usage(Counters):
    """How much JetStream a server holds and serves: what JSZ reports and `report jetstream` totals."""

    streams: int = _count()
    consumers: int = _count()
    messages: int = _count()
    bytes: int = _count()
    memory: int = _count()
    storage: int = _count()
    api_requests: int = _count("api", "total")
    api_errors: int = _count("api", "errors")


@dataclass(frozen=True, kw_only=True)
class Jsz(Usage):
    """JSZ: a server's JetStream usage and its meta group (`/jsz`, `$SYS.REQ.SERVER.PING.JSZ`)."""

    meta: MetaCluster | None = None  # None: the server reported no meta group
    enabled: bool = False  # the server reported JetStream data at all

    @classmethod
    def from_response(cls, d: Doc) -> Jsz:
        meta = d.get("meta_cluster")
        return cls(
            **cls.fields_of(d),
            meta=MetaCluster.from_response(meta) if isinstance(meta, dict) and meta else None,
            enabled=bool(d),
        )


@dataclass(frozen=True, kw_only=True)
class Upstream:
    """What a mirror or source knows of its upstream (JSZ `mirror` / `sources`, as in stream info)."""

    name: str
    lag: int = 0
    active_seconds: float | None = None  # since it last heard from it; None: never (the server says -1)
    api: str = ""  # the upstream domain's JetStream API prefix, for a cross-domain copy

    @classmethod
    def from_response(cls, d: Doc) -> Upstream:
        active = d.get("active")
        ext = _doc(d.get("external"))
        seconds = int(active) / 1e9 if isinstance(active, int | float) and active >= 0 else None
        return cls(
            name=str(d.get("name") or ""), lag=_int(d.get("lag")), active_seconds=seconds, api=str(ext.get("api") or "")
        )


@dataclass(frozen=True, kw_only=True)
class ConsumerDetail(Counters):
    """One consumer as JSZ describes it (`stream_detail[].consumer_detail[]`, or a consumer's info): how far it
    has delivered and had acknowledged, in stream sequences, and what is left. For the owner's consumer of a
    durable copy this is the truth about the copy even while it is cut off (`copy_progress`)."""

    name: str
    pending: int = _count("num_pending")
    ack_pending: int = _count("num_ack_pending")
    delivered_seq: int = _count("delivered", "stream_seq")
    ack_floor_seq: int = _count("ack_floor", "stream_seq")

    @classmethod
    def from_response(cls, d: Doc) -> ConsumerDetail:
        return cls(name=str(d.get("name") or ""), **cls.fields_of(d))


CONNECTED_SECONDS = 3.0  # a copy that heard from its upstream this recently is linked (heartbeats come every 1 s)


@dataclass(frozen=True)
class CopyProgress:
    """How far one copy is behind one upstream, by the owner's consumer for it: LAG messages, LAST the upstream
    sequence it has copied up to."""

    lag: int
    last: int


def copy_progress(consumer: ConsumerDetail, active_seconds: float | None) -> CopyProgress:
    """The owner's consumer's word on its copy. While linked (the copy heard from it within `CONNECTED_SECONDS`)
    what it delivered has been stored, and only what is pending is behind (flow-control acks come in steps of up to
    1,000 messages, so counting the unacknowledged would show a copy that keeps up as behind). Otherwise only what
    the copy acknowledged is known to be stored: pending and unacknowledged are both behind, and keep growing while
    it is cut off (measured on 2.15.1: the copy's own `lag` stays 0 then)."""
    if active_seconds is not None and active_seconds < CONNECTED_SECONDS:
        return CopyProgress(consumer.pending, consumer.delivered_seq)
    return CopyProgress(consumer.pending + consumer.ack_pending, consumer.ack_floor_seq)


@dataclass(frozen=True, kw_only=True)
class StreamDetail:
    """One stream as its leader describes it in JSZ (`account_details[].stream_detail[]`)."""

    account: str
    name: str
    messages: int = 0
    bytes: int = 0
    first_seq: int = 0
    last_seq: int = 0
    consumers: int = 0
    leader: str = ""
    metadata: dict[str, str]
    mirror: Upstream | None = None
    sources: tuple[Upstream, ...] = ()
    consumer_details: tuple[ConsumerDetail, ...] = ()

    def consumer(self, name: str) -> ConsumerDetail | None:
        return next((c for c in self.consumer_details if c.name == name), None)

    @classmethod
    def from_response(cls, account: str, d: Doc) -> StreamDetail:
        state, config, cluster = _doc(d.get("state")), _doc(d.get("config")), _doc(d.get("cluster"))
        mirror = d.get("mirror")
        return cls(
            account=account,
            name=str(d.get("name") or ""),
            **_ints(state, "messages", "bytes", "first_seq", "last_seq"),
            consumers=_int(state.get("consumer_count")),
            leader=str(cluster.get("leader") or ""),
            metadata={str(k): str(v) for k, v in _doc(config.get("metadata")).items()},
            mirror=Upstream.from_response(mirror) if isinstance(mirror, dict) else None,
            sources=tuple(Upstream.from_response(x) for x in _list(d.get("sources"))),
            consumer_details=tuple(ConsumerDetail.from_response(x) for x in _list(d.get("consumer_detail"))),
        )


# With each consumer: the owner's consumer of a copy is where its lag is known while it is cut off (`copy_progress`)
JSZ_STREAMS_BODY = {"accounts": True, "streams": True, "consumer": True, "config": True, "stream_leader_only": True}


@dataclass(frozen=True, kw_only=True)
class JszStreams(Usage):
    """JSZ asked for every stream it leads (`accounts`, `streams`, `config`, `stream_leader_only`): a server's
    JetStream use against its limits, and each of those streams."""

    max_memory: int = _count("config", "max_memory")
    max_storage: int = _count("config", "max_storage")
    details: tuple[StreamDetail, ...] = ()
    enabled: bool = False

    @classmethod
    def from_response(cls, d: Doc) -> JszStreams:
        details = tuple(
            StreamDetail.from_response(str(a.get("name") or ""), sd)
            for a in _list(d.get("account_details"))
            for sd in _list(a.get("stream_detail"))
        )
        return cls(**cls.fields_of(d), details=details, enabled=bool(d))


@dataclass(frozen=True, kw_only=True)
class Traffic(Counters):
    """What crossed one leafnode connection, and the interest on it."""

    in_msgs: int = _count()
    out_msgs: int = _count()
    in_bytes: int = _count()
    out_bytes: int = _count()
    subscriptions: int = _count()


@dataclass(frozen=True, kw_only=True)
class LeafLink(Traffic):
    """One leafnode connection of a server (`/leafz` `leafs`)."""

    id: int = _count()
    name: str = ""  # the server at the other end
    account: str = ""
    rtt_seconds: float | None = None

    @classmethod
    def from_response(cls, d: Doc) -> LeafLink:
        name, account = str(d.get("name") or ""), str(d.get("account") or "")
        return cls(**cls.fields_of(d), name=name, account=account, rtt_seconds=go_duration(d.get("rtt")))


@dataclass(frozen=True)
class Leafz:
    """LEAFZ: a server's leafnode connections."""

    leafnodes: int = 0
    leafs: tuple[LeafLink, ...] = ()

    @classmethod
    def from_response(cls, d: Doc) -> Leafz:
        return cls(_int(d.get("leafnodes")), tuple(LeafLink.from_response(x) for x in _list(d.get("leafs"))))

    def accounts(self) -> set[str]:
        return {lf.account for lf in self.leafs}


@dataclass(frozen=True, kw_only=True)
class Load(Counters):
    """A server's connections, memory and CPU: what STATSZ reports and `report servers` shows."""

    connections: int = _count()
    subscriptions: int = _count()
    gateways: int = 0  # how many the server has
    memory: int = _count("mem")
    cpu: float = 0.0
    cores: int = _count()
    slow_consumers: int = _count()

    @classmethod
    def fields_of(cls, d: Doc) -> dict[str, Any]:
        try:
            cpu = float(d.get("cpu") or 0)
        except (TypeError, ValueError):
            cpu = 0.0
        gateways = d.get("gateways")
        return super().fields_of(d) | {"cpu": cpu, "gateways": len(gateways) if isinstance(gateways, list) else 0}


@dataclass(frozen=True, kw_only=True)
class Statsz(Load):
    """STATSZ: a server's load (`$SYS.REQ.SERVER.PING`)."""

    start: datetime | None = None
    routes: tuple[str, ...] = ()  # the names of the servers it has routes to, one per route connection

    @classmethod
    def from_response(cls, d: Doc) -> Statsz:
        routes = tuple(str(r.get("name") or "") for r in _list(d.get("routes")))
        return cls(**cls.fields_of(d), start=parse_iso(d.get("start")), routes=routes)


@dataclass(frozen=True)
class Healthz:
    """HEALTHZ: `ok`, or what is wrong."""

    status: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def from_response(cls, d: Doc) -> Healthz:
        return cls(**_strs(d, status="status", error="error"))


@dataclass(frozen=True)
class Varz:
    """The part of VARZ natsmesh reads: when the configuration was last loaded (changes on every reload)."""

    config_load_time: str | None = None

    @classmethod
    def from_response(cls, d: Doc) -> Varz:
        t = d.get("config_load_time")
        return cls(config_load_time=str(t) if t is not None else None)


@dataclass(frozen=True)
class ServerReply(Generic[T]):
    """One server's answer to a system ping: who it is, and what it said."""

    server: ServerInfo
    data: T


@dataclass(frozen=True)
class AccountImport:
    """One import an account holds at a server: the exporter's SUBJECT from ACCOUNT, and whether it is INVALID."""

    subject: str
    account: str
    invalid: bool = False


@dataclass(frozen=True)
class Accountz:
    """ACCOUNTZ of one account: whether all its claims hold (`complete`) and the imports the server kept (one it
    refused, for want of a valid activation from its exporter, is missing or `invalid`)."""

    name: str = ""
    complete: bool = True
    imports: tuple[AccountImport, ...] = ()

    @classmethod
    def from_response(cls, d: Doc) -> Accountz:
        detail = _doc(d.get("account_detail"))
        imports = tuple(
            AccountImport(str(i.get("subject") or ""), str(i.get("account") or ""), bool(i.get("invalid")))
            for i in _list(detail.get("imports"))
        )
        return cls(str(detail.get("account_name") or ""), bool(detail.get("complete", True)), imports)

    def kept(self, subject: str, account: str) -> bool:
        """Whether the server holds a valid import of ACCOUNT's SUBJECT."""
        return any(i.subject == subject and i.account == account and not i.invalid for i in self.imports)


PARSERS: dict[str, Any] = {
    "ACCOUNTZ": Accountz,
    "JSZ": Jsz,
    "JSZS": JszStreams,
    "LEAFZ": Leafz,
    "VARZ": Varz,
    "HEALTHZ": Healthz,
    "STATSZ": Statsz,
}


def server_reply(kind: str, raw: bytes) -> ServerReply[Any] | None:
    """A system ping reply of KIND parsed, or None if it is not JSON or names no server."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    server = ServerInfo.from_response(_doc(doc.get("server")))
    if not server.name:
        return None
    body = doc.get("statsz") if kind == "STATSZ" else doc.get("data")
    return ServerReply(server, PARSERS[kind].from_response(_doc(body)))


@dataclass(frozen=True)
class ApiError:
    """The error of a JetStream API reply, if it has one."""

    code: int = 0
    description: str = ""

    @classmethod
    def of_reply(cls, raw: bytes) -> ApiError | None:
        """The reply's error, or None when it succeeded."""
        try:
            doc = json.loads(raw or b"{}")
        except ValueError:
            return cls(0, f"not a JSON reply: {raw[:80]!r}")
        err = _doc(doc).get("error")
        if not err:
            return None
        if not isinstance(err, dict):
            return cls(0, str(err))
        return cls(_int(err.get("code")), str(err.get("description") or err))


def claims_account(raw: bytes) -> str:
    """The account a resolver's answer to a claims push is about ("" if it does not say)."""
    try:
        doc = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        return ""
    if not isinstance(doc, dict):
        return ""
    for key in ("data", "error"):
        part = doc.get(key)
        if isinstance(part, dict) and isinstance(part.get("account"), str):
            return str(part["account"])
    return ""


def claims_list(raw: bytes) -> list[str]:
    """The account keys in a resolver's answer to `$SYS.REQ.CLAIMS.LIST` (`{"data": [...]}`; [] if unreadable)."""
    try:
        doc = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        return []
    data = doc.get("data") if isinstance(doc, dict) else None
    return [str(k) for k in data if isinstance(k, str)] if isinstance(data, list) else []


def claims_refusal(raw: bytes) -> str | None:
    """Why a resolver refused a pushed JWT (`$SYS.REQ.CLAIMS.UPDATE`'s reply), or None if it took it."""
    try:
        doc = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        return f"an unreadable reply: {raw[:200]!r}"
    error = doc.get("error") if isinstance(doc, dict) else None
    if error is None:
        return None
    return str(error.get("description", error)) if isinstance(error, dict) else str(error)
