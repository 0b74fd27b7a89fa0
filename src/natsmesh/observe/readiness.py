"""When is a mesh ready: every node healthy, every cluster with a meta leader, every leaf linked in both accounts.

Asked of each node's own HTTP monitoring port, in parallel, so the answer does not depend on the hub being up
or on the system account crossing leaf links.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from natsmesh.errors import NotReadyError
from natsmesh.model.identities import SYSTEM_ACCOUNT, account_of
from natsmesh.model.topology import monitor_host
from natsmesh.observe.monitor import healthz, jsz, leafz

if TYPE_CHECKING:  # only for types: the bare benchmark loop uses this poll without loading the mesh model
    from natsmesh.model.mesh import Mesh

POLL_INTERVAL = 0.05


@dataclass(frozen=True)
class Target:
    """One node as readiness sees it: where its monitoring port is and what it must report."""

    name: str
    host: str
    http_port: int
    cluster: str
    clustered: bool
    leaf: bool
    link_accounts: tuple[str, ...] = ()  # accounts a leaf node links to the hub: its data account (and SYS)


def targets(mesh: Mesh) -> list[Target]:
    return [
        Target(
            n.name,
            monitor_host(n),
            n.http_port,
            c.name,
            len(c.nodes) > 1,
            not c.is_hub,
            (SYSTEM_ACCOUNT, account_of(c.name)) if mesh.system_bridge else (account_of(c.name),),
        )
        for c in mesh.clusters
        for n in c.nodes
    ]


@dataclass(frozen=True)
class NodeState:
    """What one node says of itself; `problems` is empty when it is ready."""

    node: str
    problems: tuple[str, ...]

    @property
    def ready(self) -> bool:
        return not self.problems


def check_node(node: Target, timeout: float = 1.0) -> NodeState:
    """Health, meta leader and (for leaf nodes) hub links in both accounts, as seen by NODE."""
    try:
        health = healthz(node.host, node.http_port, timeout)
    except (OSError, ValueError):
        return NodeState(node.name, ("not answering its health check",))
    problems: list[str] = []
    if not health.ok:
        problems.append(f"unhealthy: {health.error or health.status}")
    try:
        if node.clustered:
            meta = jsz(node.host, node.http_port, timeout).meta
            if meta is None or not meta.leader:
                problems.append(f"no JetStream meta leader in {node.cluster}")
        if node.leaf:
            accounts = leafz(node.host, node.http_port, timeout).accounts()
            missing = [a for a in node.link_accounts if a not in accounts]
            if missing:
                problems.append(f"leaf link to the hub not connected for {', '.join(missing)}")
    except (OSError, ValueError):
        problems.append("monitoring endpoint not answering")
    return NodeState(node.name, tuple(problems))


def check_mesh(mesh: Mesh | list[Target], pool: ThreadPoolExecutor | None = None) -> list[NodeState]:
    todo = mesh if isinstance(mesh, list) else targets(mesh)
    if pool is None:
        with ThreadPoolExecutor(max_workers=min(32, max(1, len(todo)))) as own:
            return list(own.map(check_node, todo))
    return list(pool.map(check_node, todo))


ProgressFn = Callable[[int, int, list[NodeState]], None]


def wait_ready(
    mesh: Mesh | list[Target],
    timeout: float = 60.0,
    on_progress: ProgressFn | None = None,
    alive: Callable[[], str | None] | None = None,
    name: str | None = None,
) -> float:
    """Poll until every node is ready; return the seconds it took. ALIVE may return a reason to stop early."""
    start = time.monotonic()
    nodes = mesh if isinstance(mesh, list) else targets(mesh)
    label = name or (getattr(mesh, "name", None) or "mesh")
    pending = list(nodes)
    last: list[NodeState] = []
    with ThreadPoolExecutor(max_workers=min(32, max(1, len(nodes)))) as pool:
        while True:
            states = check_mesh(pending, pool)
            last = [s for s in states if not s.ready]
            done = {s.node for s in states if s.ready}
            pending = [n for n in pending if n.name not in done]
            if on_progress:
                on_progress(len(nodes) - len(pending), len(nodes), last)
            if not pending:
                # Confirm once more across all nodes: a link that came up early may have dropped since.
                again = [s for s in check_mesh(nodes, pool) if not s.ready]
                if not again:
                    return time.monotonic() - start
                pending = [n for n in nodes if n.name in {s.node for s in again}]
                last = again
            reason = alive() if alive else None
            if reason:
                raise NotReadyError(f"mesh {label!r} stopped before it was ready: {reason}")
            if time.monotonic() - start > timeout:
                detail = "; ".join(f"{s.node}: {', '.join(s.problems)}" for s in last[:10])
                more = f" (and {len(last) - 10} more)" if len(last) > 10 else ""
                raise NotReadyError(f"mesh {label!r} not ready after {timeout:.0f} s: {detail}{more}")
            time.sleep(POLL_INTERVAL)


def _linked(host: str, port: int, account: str) -> bool:
    try:
        return account in leafz(host, port).accounts()
    except (OSError, ValueError):
        return False


def linked_domains(mesh: Mesh, domains: set[str]) -> set[str]:
    """Which of DOMAINS have at least one server with its data link at the hub (the hub domain always has)."""
    hub = mesh.hub.name
    checks = [(d, n) for d in domains if d != hub for n in mesh.domain(d).nodes]  # any one linked will do
    with ThreadPoolExecutor(max_workers=min(32, max(1, len(checks)))) as pool:
        results = list(pool.map(lambda c: _linked(monitor_host(c[1]), c[1].http_port, account_of(c[0])), checks))
    return {d for (d, _), ok in zip(checks, results, strict=True) if ok} | ({hub} & domains)
