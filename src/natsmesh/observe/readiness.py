"""When is a mesh ready: every node healthy, every cluster with a meta leader, every leaf linked in each account
it links (its data account; with the system bridge, SYS too).

Asked of each node's own HTTP monitoring port, in parallel, so the answer does not depend on the hub being up
or on the system account crossing leaf links. A node whose monitoring answers only on its own host (a mesh
across machines, `monitoring: loopback`) is asked the same through its cluster's system account instead, with
the platform's credentials.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from natsmesh.errors import NotReadyError
from natsmesh.model.identities import SYSTEM_ACCOUNT, account_of, holds_account, local_account
from natsmesh.model.topology import monitor_host, monitoring_only_local
from natsmesh.observe.monitor import healthz, jsz, leafz
from natsmesh.observe.wire import Healthz, Jsz, Leafz

if TYPE_CHECKING:  # only for types: the bare benchmark loop uses this poll without loading the mesh model
    from natsmesh.model.mesh import Mesh

POLL_INTERVAL = 0.05
WAIT_ROUND = 0.25  # seconds one readiness round through a system account waits for replies
SYSTEM_TIMEOUT = 3.0  # ... and a one-off check (`status`): TLS links to a loaded host took more than 1 s in CI


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
    by_system: bool = False  # its monitoring answers only on its own host: ask through the system account


def targets(mesh: Mesh) -> list[Target]:
    return [
        Target(
            n.name,
            monitor_host(n),
            n.http_port,
            c.name,
            len(c.nodes) > 1,
            not c.is_hub,
            (SYSTEM_ACCOUNT, account_of(c.name))
            if mesh.system_bridge
            else (local_account(c.name, mesh.service_users),),
            monitoring_only_local(n),
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


def judge(node: Target, health: Healthz | None, meta: Jsz | None, links: Leafz | None) -> NodeState:
    """NODE's readiness from what it answered (None: no answer)."""
    if health is None:
        return NodeState(node.name, ("not answering its health check",))
    problems: list[str] = []
    if not health.ok:
        problems.append(f"unhealthy: {health.error or health.status}")
    if (node.clustered and meta is None) or (node.leaf and links is None):
        problems.append("monitoring endpoint not answering")
    if node.clustered and meta is not None and (meta.meta is None or not meta.meta.leader):
        problems.append(f"no JetStream meta leader in {node.cluster}")
    if node.leaf and links is not None:
        missing = [a for a in node.link_accounts if not holds_account(links.accounts(), a)]
        if missing:
            problems.append(f"leaf link to the hub not connected for {', '.join(missing)}")
    return NodeState(node.name, tuple(problems))


def check_node(node: Target, timeout: float = 1.0) -> NodeState:
    """Meta leader, (for leaf nodes) hub links in each account it links, and health, as seen by NODE.

    The health check comes last: nats-server logs a warning for every failed `/healthz` request, so a poll that
    asked it first would fill the log with "Healthcheck failed" while a cluster elects its leader. Asked only
    once the node's other answers are in order, it fails rarely."""
    try:
        meta = jsz(node.host, node.http_port, timeout) if node.clustered else None
        links = leafz(node.host, node.http_port, timeout) if node.leaf else None
    except (OSError, ValueError):  # not answering: one timeout a round, not one more for the health check
        return judge(node, None, None, None)
    if meta is not None or links is not None:
        early = judge(node, Healthz(status="ok"), meta, links)  # what they say, health not asked yet
        if not early.ready:
            return early
    try:
        health = healthz(node.host, node.http_port, timeout)
    except (OSError, ValueError):
        return judge(node, None, None, None)
    return judge(node, health, meta, links)


SystemCheck = Callable[[list[Target]], list[NodeState]]


def system_check(mesh: Mesh, timeout: float = SYSTEM_TIMEOUT) -> SystemCheck:
    """Readiness asked through each cluster's system account with the platform's credentials, for nodes whose
    monitoring answers only on their own hosts. A round ends when every node asked has answered, so TIMEOUT
    costs only when one does not."""
    from natsmesh.errors import NotRunningError
    from natsmesh.local.secrets import load_credentials
    from natsmesh.observe.system import collect_sync

    creds = load_credentials(mesh, create=False)

    def check(nodes: list[Target]) -> list[NodeState]:
        try:
            got = collect_sync(
                mesh, creds, ["HEALTHZ", "JSZ", "LEAFZ"], timeout=timeout, expected={t.name for t in nodes}
            )
        except NotRunningError:
            return [judge(t, None, None, None) for t in nodes]
        return [
            judge(t, got["HEALTHZ"].data(t.name), got["JSZ"].data(t.name), got["LEAFZ"].data(t.name)) for t in nodes
        ]

    return check


def _unreachable(nodes: list[Target]) -> list[NodeState]:
    return [NodeState(t.name, ("monitoring answers only on its own host; ask with the mesh's spec",)) for t in nodes]


def check_mesh(
    mesh: Mesh | list[Target], pool: ThreadPoolExecutor | None = None, system: SystemCheck | None = None
) -> list[NodeState]:
    """Every node's readiness, in the order given; SYSTEM checks the nodes only their own hosts can read (by
    default, with the spec's mesh, `system_check`)."""
    todo = mesh if isinstance(mesh, list) else targets(mesh)
    remote = [t for t in todo if t.by_system]
    if remote and system is None:
        system = system_check(mesh) if not isinstance(mesh, list) else _unreachable
    local = [t for t in todo if not t.by_system]
    if pool is None:
        with ThreadPoolExecutor(max_workers=min(32, max(1, len(local)))) as own:
            states = list(own.map(check_node, local))
    else:
        states = list(pool.map(check_node, local))
    if remote and system is not None:
        states += system(remote)
    order = {t.name: i for i, t in enumerate(todo)}
    return sorted(states, key=lambda s: order[s.node])


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
    # Each round through the system account waits for the servers it expects; one still starting would hold
    # every round for the whole timeout, so a wait asks often and briefly (a server that is up answers in ms).
    by_system = not isinstance(mesh, list) and any(t.by_system for t in nodes)
    system = system_check(mesh, timeout=WAIT_ROUND) if by_system and not isinstance(mesh, list) else None
    pending = list(nodes)
    last: list[NodeState] = []
    with ThreadPoolExecutor(max_workers=min(32, max(1, len(nodes)))) as pool:
        while True:
            states = check_mesh(pending, pool, system)
            last = [s for s in states if not s.ready]
            done = {s.node for s in states if s.ready}
            pending = [n for n in pending if n.name not in done]
            if on_progress:
                on_progress(len(nodes) - len(pending), len(nodes), last)
            if not pending:
                # Confirm once more across all nodes: a link that came up early may have dropped since.
                again = [s for s in check_mesh(nodes, pool, system) if not s.ready]
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
        return holds_account(leafz(host, port).accounts(), account)
    except (OSError, ValueError):
        return False


def linked_domains(mesh: Mesh, domains: set[str]) -> set[str]:
    """Which of DOMAINS have at least one server with its data link at the hub (the hub domain always has)."""
    hub = mesh.hub.name
    checks = [(d, n) for d in domains if d != hub for n in mesh.domain(d).nodes]  # any one linked will do
    with ThreadPoolExecutor(max_workers=min(32, max(1, len(checks)))) as pool:
        results = list(
            pool.map(
                lambda c: _linked(monitor_host(c[1]), c[1].http_port, local_account(c[0], mesh.service_users)), checks
            )
        )
    return {d for (d, _), ok in zip(checks, results, strict=True) if ok} | ({hub} & domains)
