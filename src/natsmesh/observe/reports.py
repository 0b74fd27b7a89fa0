"""The seed's reports as data, built from typed system replies. Pure apart from `report`, which asks the mesh.

The three reports follow the seed's natscli output: the JetStream Summary with totals plus one RAFT meta-group
table per domain, the Server and Cluster Overviews, and a table of leaf links. `build_*` turn replies into a
report; `to_json()` is its `--json` shape; `natsmesh.cli.tables` draws it for people.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol

from natsmesh.model.identities import SYSTEM_ACCOUNT, account_of
from natsmesh.model.mesh import Mesh
from natsmesh.observe.wire import Jsz, LeafLink, Leafz, Load, MetaCluster, ServerInfo, Statsz, Traffic, Usage

if TYPE_CHECKING:  # the NATS client loads only when a report is asked for, not to list the reports
    from natsmesh.observe.system import Replies


class Report(Protocol):
    """What every report has: the servers that answered, those that did not, how long it took."""

    @property
    def missing(self) -> list[str]: ...
    @property
    def seconds(self) -> float: ...
    @property
    def conflicts(self) -> list[str]: ...
    def to_json(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class _ReportJson:
    """A report's `to_json`: the report's NAME, then its fields with the round's `seconds` rounded."""

    NAME: ClassVar[str]

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        return {"report": self.NAME, **doc, "seconds": round(doc["seconds"], 4)}


def _part(obj: object, group: type) -> dict[str, Any]:
    """The fields of dataclass GROUP (which OBJ's class shares) with OBJ's values: a wire reply's part of a row."""
    return {f.name: getattr(obj, f.name) for f in fields(group)}


def _sorted(mesh: Mesh, names: Iterable[str]) -> list[str]:
    order = {n.name: i for i, n in enumerate(mesh.nodes())}
    return sorted(names, key=lambda n: (order.get(n, len(order)), n))


@dataclass(frozen=True)
class Identity:
    """Which server a row is about: its name, cluster and JetStream domain."""

    name: str
    cluster: str
    domain: str

    @classmethod
    def of(cls, mesh: Mesh, name: str, server: ServerInfo) -> Identity:
        try:
            known = mesh.cluster_of(name).name
        except KeyError:
            known = server.cluster
        return cls(name, server.cluster or known, server.domain or known)


# ---------------------------------------------------------------------------------------------------------------
# report jetstream


@dataclass(frozen=True, kw_only=True)
class JetStreamRow(Usage, Identity):
    meta_leader: bool = False


TOTALED = tuple(f.name for f in fields(Usage))


@dataclass(frozen=True)
class PeerRow:
    name: str
    id: str
    leader: bool
    current: bool
    online: bool
    active_seconds: float | None
    lag: int | None


@dataclass(frozen=True)
class MetaGroup:
    domain: str
    cluster: str
    leader: str | None
    cluster_size: int
    peers: list[PeerRow]


@dataclass(frozen=True)
class JetStreamReport(_ReportJson):
    NAME = "jetstream"

    servers: list[JetStreamRow]
    totals: dict[str, int]
    meta_groups: list[MetaGroup]
    missing: list[str]
    seconds: float
    conflicts: list[str] = field(default_factory=list)  # answered for more than once: not trusted


def _jetstream_row(mesh: Mesh, name: str, server: ServerInfo, data: Jsz) -> JetStreamRow:
    leader = (data.meta.leader == name) if data.meta is not None else data.enabled
    return JetStreamRow(**asdict(Identity.of(mesh, name, server)), **_part(data, Usage), meta_leader=leader)


def _peers(names: list[str], leader: str | None, view: MetaCluster, answered: set[str]) -> list[PeerRow]:
    replicas = {r.name: r for r in view.replicas}
    out = []
    for n in names:
        if n == leader:
            out.append(PeerRow(n, view.peer, True, True, True, 0.0, 0))
        elif n in replicas:
            r = replicas[n]
            out.append(PeerRow(n, r.peer, False, r.current, not r.offline, r.active_seconds, r.lag))
        else:
            out.append(PeerRow(n, "", False, False, n in answered, None, None))
    return out


def build_jetstream(mesh: Mesh, jsz: Replies[Jsz]) -> JetStreamReport:
    servers = [_jetstream_row(mesh, n, jsz.replies[n].server, jsz.replies[n].data) for n in _sorted(mesh, jsz.replies)]
    totals = {k: sum(getattr(s, k) for s in servers) for k in TOTALED}
    groups = []
    for cluster in mesh.clusters:
        names = [n.name for n in cluster.nodes]
        views = {n: data.meta for n in names if (data := jsz.data(n)) is not None and data.meta is not None}
        leader = next((v.leader for v in views.values() if v.leader), None)
        if len(names) == 1 and names[0] in jsz.replies:
            leader = names[0]
        view = views.get(leader or "") or MetaCluster()
        groups.append(
            MetaGroup(
                domain=cluster.domain,
                cluster=cluster.name,
                leader=leader,
                cluster_size=view.cluster_size if view.cluster_size is not None else len(names),
                peers=_peers(names, leader, view, set(jsz.replies)),
            )
        )
    return JetStreamReport(servers, totals, groups, jsz.missing, jsz.seconds, jsz.conflicts)


# ---------------------------------------------------------------------------------------------------------------
# report servers


@dataclass(frozen=True, kw_only=True)
class ServerRow(Load, Identity):
    host: str = ""
    version: str = ""
    jetstream: bool = False
    routes: int = 0  # servers it has routes to
    uptime_seconds: float | None = None
    rtt_ms: float = 0.0


@dataclass(frozen=True)
class ClusterRow:
    cluster: str
    nodes: int
    expected_nodes: int
    gateways_out: int
    gateways_in: int
    connections: int


@dataclass(frozen=True)
class ServersReport(_ReportJson):
    NAME = "servers"

    servers: list[ServerRow]
    clusters: list[ClusterRow]
    totals: dict[str, int]
    missing: list[str]
    seconds: float
    conflicts: list[str] = field(default_factory=list)  # answered for more than once: not trusted


def _server_row(mesh: Mesh, name: str, info: ServerInfo, st: Statsz, rtt: float) -> ServerRow:
    return ServerRow(
        **asdict(Identity.of(mesh, name, info)),
        **_part(st, Load),
        host=info.host,
        version=info.version,
        jetstream=info.jetstream,
        routes=len(set(st.routes)),
        uptime_seconds=(info.time - st.start).total_seconds() if info.time and st.start else None,
        rtt_ms=round(rtt * 1000, 3),
    )


def build_servers(mesh: Mesh, statsz: Replies[Statsz]) -> ServersReport:
    servers = [
        _server_row(mesh, n, statsz.replies[n].server, statsz.replies[n].data, statsz.rtt.get(n, 0))
        for n in _sorted(mesh, statsz.replies)
    ]
    clusters = []
    for cluster in mesh.clusters:
        rows = [s for s in servers if s.cluster == cluster.name]
        clusters.append(ClusterRow(cluster.name, len(rows), len(cluster.nodes), 0, 0, sum(s.connections for s in rows)))
    totals = {
        "servers": len(servers),
        "connections": sum(s.connections for s in servers),
        "subscriptions": sum(s.subscriptions for s in servers),
        "memory": sum(s.memory for s in servers),
    }
    return ServersReport(servers, clusters, totals, statsz.missing, statsz.seconds, statsz.conflicts)


# ---------------------------------------------------------------------------------------------------------------
# report leafnodes


@dataclass(frozen=True)
class LeafServerRow(Identity):
    leafnodes: int = 0


@dataclass(frozen=True, kw_only=True)
class LinkRow(Traffic):
    domain: str
    leaf_server: str
    account: str
    hub_server: str
    rtt_ms: float | None

    @classmethod
    def of(cls, mesh: Mesh, hub_server: str, lf: LeafLink) -> LinkRow:
        try:
            domain = mesh.cluster_of(lf.name).domain
        except KeyError:
            domain = "?"
        rtt = None if lf.rtt_seconds is None else round(lf.rtt_seconds * 1000, 3)
        return cls(
            **_part(lf, Traffic),
            domain=domain,
            leaf_server=lf.name,
            account=lf.account,
            hub_server=hub_server,
            rtt_ms=rtt,
        )


@dataclass(frozen=True)
class LeafnodesReport(_ReportJson):
    NAME = "leafnodes"

    servers: list[LeafServerRow]
    links: list[LinkRow]
    missing_links: list[str]
    missing: list[str]
    seconds: float
    conflicts: list[str] = field(default_factory=list)  # answered for more than once: not trusted


def build_leafnodes(mesh: Mesh, leafz: Replies[Leafz]) -> LeafnodesReport:
    hub_names = {n.name for n in mesh.hub.nodes}
    servers, links = [], []
    for name in _sorted(mesh, leafz.replies):
        reply = leafz.replies[name]
        servers.append(LeafServerRow(**asdict(Identity.of(mesh, name, reply.server)), leafnodes=reply.data.leafnodes))
        if name in hub_names:
            links += [LinkRow.of(mesh, name, lf) for lf in reply.data.leafs]
    order = {n.name: i for i, n in enumerate(mesh.nodes())}
    links.sort(key=lambda x: (order.get(x.leaf_server, 1 << 30), x.account))
    seen = {(x.leaf_server, x.account) for x in links}
    every_hub_answered = hub_names <= leafz.replies.keys()
    expected_missing = [
        f"{n.name}/{acct}"
        for d in mesh.domains
        for n in d.nodes
        for acct in (SYSTEM_ACCOUNT, account_of(d.name))[0 if mesh.system_bridge else 1 :]  # SYS: bridged only
        if (n.name, acct) not in seen and every_hub_answered
    ]
    return LeafnodesReport(servers, links, expected_missing, leafz.missing, leafz.seconds, leafz.conflicts)


# ---------------------------------------------------------------------------------------------------------------
# Asking the mesh


class ReportKind(NamedTuple):
    """One report: the system ping it needs and how its replies become the report."""

    ping: str
    build: Callable[[Mesh, Any], Report]  # Replies of the ping's kind -> the report
    help: str


REPORTS: dict[str, ReportKind] = {
    "jetstream": ReportKind(
        "JSZ", build_jetstream, "JetStream Summary per server with totals, and the RAFT meta group of every domain."
    ),
    "servers": ReportKind("STATSZ", build_servers, "Server Overview (one row per server) and Cluster Overview."),
    "leafnodes": ReportKind(
        "LEAFZ", build_leafnodes, "Every leaf link: domain, account, hub server, RTT, messages and bytes in/out."
    ),
}


def report(mesh: Mesh, name: str, timeout: float = 3.0) -> Report:
    """Report NAME of the running mesh: one system ping, answered by every server (or named as missing)."""
    from natsmesh.local.secrets import load_credentials
    from natsmesh.observe.system import collect_sync

    kind = REPORTS[name]
    replies = collect_sync(mesh, load_credentials(mesh, create=False), [kind.ping], timeout=timeout)[kind.ping]
    return kind.build(mesh, replies)
