"""The topology: clusters and nodes with concrete names and ports, and the one port plan they come from. Pure.

Node i of a cluster listens on the cluster's base ports plus the number of its nodes before it on the same host:
base + i on one machine (the seed), the base ports themselves when each node has a host of its own (`hosts`).
A cluster that names no ports gets a block of the plan: cluster k (the hub is 0) owns `block` ports from
`base + k * block`, in the order client, route, http and (hub only) leafnode, one of each per node. Templates
(`natsmesh.model.templates`), tests and benchmarks write ports with the same `plan_ports`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

HUB_FOLDER_SUFFIX = "-cluster"
ROUTE_OFFSET, HTTP_OFFSET, LEAF_OFFSET = 2000, 4000, 3200  # explicit ports: where the ones left out go


@dataclass(frozen=True)
class Node:
    """One nats-server process."""

    name: str
    cluster: str
    index: int
    client_port: int
    cluster_port: int | None
    http_port: int
    leafnode_port: int | None
    host: str = "127.0.0.1"  # the address the other nodes, leaf links and the platform dial
    bind: str = "127.0.0.1"  # the address its client, route and leafnode listeners bind
    http_bind: str = "127.0.0.1"  # the address its monitoring HTTP binds

    def ports(self) -> dict[str, int]:
        out = {"client": self.client_port, "http": self.http_port}
        if self.cluster_port is not None:
            out["cluster"] = self.cluster_port
        if self.leafnode_port is not None:
            out["leafnode"] = self.leafnode_port
        return out


@dataclass(frozen=True)
class Cluster:
    """A cluster of nodes that is also one JetStream domain: the hub or a team's leaf cluster."""

    name: str
    folder: str
    is_hub: bool
    nodes: tuple[Node, ...]
    team: str = ""  # the domain it is a cluster of, if not its own (`clusters` in the spec)

    @property
    def domain(self) -> str:
        return self.name

    @property
    def owner(self) -> str:
        """The domain (team) whose cluster it is: its own name, or the domain that declared it."""
        return self.team or self.name


@dataclass(frozen=True)
class Limits:
    """What a domain may use: of its own account on its servers, and of its link account at the hub."""

    connections: int | None = None
    subscriptions: int = 100_000
    payload: int = 1024 * 1024
    streams: int | None = None
    consumers: int | None = None
    memory: int | None = None  # None: no reservation, as far as the servers' bounds allow
    file: int | None = None


@dataclass(frozen=True)
class BasePorts:
    """The first port of each kind of a cluster; node i listens on base + i."""

    client: int
    cluster: int
    http: int
    leafnode: int | None

    def as_spec(self) -> dict[str, int]:
        """The `ports:` mapping a spec writes for these."""
        out = {"client": self.client, "cluster": self.cluster, "http": self.http}
        if self.leafnode is not None:
            out["leafnode"] = self.leafnode
        return out


class PortsShape(Protocol):
    """Explicit base ports as a spec document gives them (`natsmesh.model.document.PortsSpec`)."""

    client: int
    cluster: int | None
    http: int | None
    leafnode: int | None


class HostShape(Protocol):
    """One node's addresses as a spec document gives them (`natsmesh.model.document.HostSpec`)."""

    address: str
    bind: str | None


class ClusterShape(Protocol):
    """What resolving needs of one cluster of a spec document (`natsmesh.model.document.ClusterSpec`)."""

    name: str
    nodes: int
    server_prefix: str | None
    folder: str | None

    @property
    def ports(self) -> PortsShape | None: ...  # read-only, so a document's own ports type fits

    @property
    def monitoring(self) -> str | None: ...

    @property
    def hosts(self) -> Sequence[HostShape] | None: ...


def block_size(nodes: int) -> int:
    """Ports a cluster takes in the plan: 4 per node (client, route, http, leafnode), rounded up to tens."""
    return max(10, -(-4 * nodes // 10) * 10)


def plan_ports(base: int, block: int, k: int, nodes: int, is_hub: bool) -> BasePorts:
    """The base ports of cluster K (the hub is 0) of NODES nodes in the plan starting at BASE."""
    start = base + k * block
    return BasePorts(start, start + nodes, start + 2 * nodes, start + 3 * nodes if is_hub else None)


def explicit_ports(p: PortsShape, is_hub: bool) -> BasePorts:
    """Base ports a spec names; the ones it leaves out follow the client port (the seed's offsets)."""
    leaf = p.leafnode if p.leafnode is not None else (p.client + LEAF_OFFSET if is_hub else None)
    return BasePorts(
        p.client,
        p.cluster if p.cluster is not None else p.client + ROUTE_OFFSET,
        p.http if p.http is not None else p.client + HTTP_OFFSET,
        leaf if is_hub else None,
    )


def default_folder(name: str, is_hub: bool) -> str:
    """The seed's folder names: `hub-cluster`, and `leaf-cluster-a` for domain `leaf-domain-a`."""
    if not is_hub and name.startswith("leaf-domain-"):
        return "leaf-cluster-" + name.removeprefix("leaf-domain-")
    return name + HUB_FOLDER_SUFFIX if is_hub else name


LOOPBACK = "127.0.0.1"


def node_addresses(c: ClusterShape, i: int, default_host: str) -> tuple[str, str, str]:
    """Node I's (host, bind, http_bind): the cluster's `hosts` entry, else the mesh's host for all three.
    Monitoring binds the node's bind address on one machine, loopback once the cluster names its hosts, unless
    the cluster's `monitoring` says otherwise."""
    entry = c.hosts[i] if c.hosts and i < len(c.hosts) else None
    host = entry.address if entry is not None else default_host
    bind = (entry.bind or entry.address) if entry is not None else default_host
    monitoring = c.monitoring or ("loopback" if c.hosts else "node")
    return host, bind, LOOPBACK if monitoring == "loopback" else bind


def is_loopback(address: str) -> bool:
    return address == "localhost" or address.startswith("127.") or address == "::1"


def monitoring_only_local(node: Node) -> bool:
    """Whether NODE's monitoring HTTP answers only on its own host (loopback there, the node elsewhere): then
    the platform reads it through the cluster's system account instead."""
    return is_loopback(node.http_bind) and not is_loopback(node.host)


def monitor_host(node: Node) -> str:
    """The address NODE's monitoring HTTP answers at: where it binds, or the node's own address for a wildcard."""
    return node.host if node.http_bind in ("0.0.0.0", "::") else node.http_bind


def resolve_clusters(
    hub: ClusterShape,
    domains: Sequence[ClusterShape],
    base: int,
    block: int | None = None,
    host: str = LOOPBACK,
) -> tuple[Cluster, ...]:
    """Concrete node names, addresses and ports for every cluster (hub first); BLOCK defaults to the largest one
    needs; HOST is the mesh's default address."""
    shapes: list[tuple[ClusterShape, bool]] = [(hub, True), *((d, False) for d in domains)]
    block = block or max(block_size(c.nodes) for c, _ in shapes)
    out = []
    for k, (c, is_hub) in enumerate(shapes):
        ports = explicit_ports(c.ports, is_hub) if c.ports is not None else plan_ports(base, block, k, c.nodes, is_hub)
        prefix = c.server_prefix or ("hub-server" if is_hub else c.name)
        addresses = [node_addresses(c, i, host) for i in range(c.nodes)]
        # node i listens on the base ports plus the number of this cluster's nodes before it on the same host:
        # all on one machine, base + i (the seed's plan); each on its own host, every one on the base ports
        offsets = [sum(1 for a in addresses[:i] if a[0] == addresses[i][0]) for i in range(c.nodes)]
        nodes = tuple(
            Node(
                f"{prefix}-{i}",
                c.name,
                i,
                ports.client + off,
                (ports.cluster + off) if c.nodes > 1 else None,
                ports.http + off,
                (ports.leafnode + off) if ports.leafnode is not None else None,
                *addresses[i],
            )
            for i, off in enumerate(offsets)
        )
        out.append(Cluster(name=c.name, folder=c.folder or default_folder(c.name, is_hub), is_hub=is_hub, nodes=nodes))
    return tuple(out)
