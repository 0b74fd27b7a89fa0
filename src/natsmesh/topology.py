"""The topology: clusters and nodes with concrete names and ports, resolved from a validated spec document."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from natsmesh.schema import ClusterSpec, MeshSpec

HUB_FOLDER_SUFFIX = "-cluster"


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

    @property
    def domain(self) -> str:
        return self.name


def block_size(nodes: int) -> int:
    """Ports a cluster takes in the plan: 4 per node (client, route, http, leafnode), rounded up to tens."""
    return max(10, -(-4 * nodes // 10) * 10)


def default_folder(name: str, is_hub: bool) -> str:
    """The seed's folder names: `hub-cluster`, and `leaf-cluster-a` for domain `leaf-domain-a`."""
    if not is_hub and name.startswith("leaf-domain-"):
        return "leaf-cluster-" + name.removeprefix("leaf-domain-")
    return name + HUB_FOLDER_SUFFIX if is_hub else name


def resolve_clusters(spec: MeshSpec) -> tuple[Cluster, ...]:
    """Concrete node names and ports for every cluster of a validated document (hub first)."""
    specs: list[tuple[ClusterSpec, bool]] = [(spec.hub, True), *((d, False) for d in spec.domains)]
    block = spec.ports.block or max(block_size(c.nodes) for c, _ in specs)
    out = []
    for k, (c, is_hub) in enumerate(specs):
        if c.ports is not None:
            p = c.ports
            client, route, http = p.client, p.cluster, p.http
            leaf = p.leafnode
        else:
            start = spec.ports.base + k * block
            client, route, http = start, start + c.nodes, start + 2 * c.nodes
            leaf = start + 3 * c.nodes if is_hub else None
        if route is None:
            route = client + 2000
        if http is None:
            http = client + 4000
        if is_hub and leaf is None:
            leaf = client + 3200
        prefix = c.server_prefix or ("hub-server" if is_hub else c.name)
        nodes = tuple(
            Node(
                name=f"{prefix}-{i}",
                cluster=c.name,
                index=i,
                client_port=client + i,
                cluster_port=(route + i) if c.nodes > 1 else None,
                http_port=http + i,
                leafnode_port=(leaf + i) if is_hub and leaf is not None else None,
            )
            for i in range(c.nodes)
        )
        out.append(Cluster(name=c.name, folder=c.folder or default_folder(c.name, is_hub), is_hub=is_hub, nodes=nodes))
    return tuple(out)
