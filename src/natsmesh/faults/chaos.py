"""Fault injection on a running local mesh: kill, pause and restart nodes; partition a domain.

Every fault goes through the supervisor's view of the mesh (`natsmesh.local.state`), so it names nodes and
clusters by their mesh names and the supervisor notices and repairs what it should (a killed node is restarted,
a partition is lifted when its time is up, stalled copies are nudged by its heal watch). A partition cuts real
traffic: the fault proxies the supervisor puts on every leaf link with `up --chaos` stop forwarding.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from natsmesh.errors import NoProxiesError, NotRunningError, UnknownDomainError, UnknownNodeError
from natsmesh.faults.proxy import control
from natsmesh.local.layout import MeshDirs
from natsmesh.local.records import CUT_MODES, recorded_links
from natsmesh.local.state import lock_is_held, node_process
from natsmesh.model.mesh import Mesh
from natsmesh.observe.readiness import targets, wait_ready


def node_pid(mesh: Mesh, node: str) -> int:
    """The running process of NODE, from the supervisor's state."""
    if node not in {n.name for n in mesh.nodes()}:
        raise UnknownNodeError(
            f"mesh {mesh.name!r} has no node {node!r} (nodes: {', '.join(n.name for n in mesh.nodes())})"
        )
    if not lock_is_held(mesh):
        raise NotRunningError(f"mesh {mesh.name!r} is not running")
    return node_process(mesh, node)


def kill(mesh: Mesh, node: str) -> int:
    """SIGKILL NODE (the supervisor restarts it). Returns the pid that was killed."""
    pid = node_pid(mesh, node)
    os.kill(pid, signal.SIGKILL)
    return pid


def pause(mesh: Mesh, node: str, seconds: float) -> None:
    """SIGSTOP NODE for SECONDS, then SIGCONT; the node is continued even if this is interrupted."""
    pid = node_pid(mesh, node)
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def restart(mesh: Mesh, cluster: str) -> list[int]:
    """Stop every node of CLUSTER at once (SIGTERM); the supervisor starts them again. Returns the old pids."""
    try:
        nodes = mesh.domain(cluster).nodes
    except KeyError:
        raise UnknownNodeError(
            f"mesh {mesh.name!r} has no cluster {cluster!r} (clusters: {', '.join(c.name for c in mesh.clusters)})"
        ) from None
    pids = [node_pid(mesh, n.name) for n in nodes]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    return pids


def _leaf_domain(mesh: Mesh, domain: str) -> None:
    if domain == mesh.hub.name:
        raise UnknownDomainError(
            f"{domain!r} is the hub: it has no leaf links of its own; partition a leaf domain "
            f"({', '.join(d.name for d in mesh.domains)}), or pause hub nodes"
        )
    if domain not in {d.name for d in mesh.domains}:
        raise UnknownDomainError(
            f"mesh {mesh.name!r} has no leaf domain {domain!r} (domains: {', '.join(d.name for d in mesh.domains)})"
        )


def _control(mesh: Mesh, request: dict[str, Any]) -> dict[str, Any]:
    if not lock_is_held(mesh):
        raise NotRunningError(f"mesh {mesh.name!r} is not running")
    if recorded_links(mesh) is None:
        raise NoProxiesError(
            f"mesh {mesh.name!r} was started without fault proxies, so its links cannot be cut; "
            "start it with `natsmesh up --chaos` (`natsmesh down` first)"
        )
    return control(MeshDirs.of(mesh).control_socket, request)


def partition(mesh: Mesh, domain: str, seconds: float | None, mode: str = "reset") -> dict[str, Any]:
    """Cut every leaf link of DOMAIN (each account it links in) now; the supervisor restores them after SECONDS (None:
    until `restore`). MODE "reset" closes the connections and refuses new ones; "drop" silently stops
    forwarding, so each side only notices through its pings. Returns what the proxy did."""
    _leaf_domain(mesh, domain)
    if mode not in CUT_MODES:
        raise ValueError(f"partition mode must be one of {', '.join(CUT_MODES)}, not {mode!r}")
    return _control(mesh, {"op": "cut", "domain": domain, "seconds": seconds, "mode": mode})


@dataclass(frozen=True)
class PartitionResult:
    """A partition that was made, and (when waited for) how soon the domain's links were back after it ended."""

    domain: str
    mode: str
    seconds: float
    cut: dict[str, Any]  # what the fault proxy said: connections_cut, until
    relinked_seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"domain": self.domain, "mode": self.mode, "seconds": self.seconds, **self.cut}
        if self.relinked_seconds is not None:
            out["relinked_seconds"] = round(self.relinked_seconds, 3)
        return out


def partition_for(
    mesh: Mesh,
    domain: str,
    seconds: float,
    mode: str = "reset",
    *,
    wait: bool = True,
    on_cut: Callable[[PartitionResult], None] | None = None,
    on_tick: Callable[[float], None] | None = None,
) -> PartitionResult:
    """Partition DOMAIN for SECONDS (`partition`); with WAIT, also wait until the partition ends (ON_TICK gets
    the seconds left) and the domain's links are back. The supervisor lifts it on time even if this is
    interrupted. ON_CUT hears of the cut as soon as it is made."""
    res = PartitionResult(domain, mode, seconds, partition(mesh, domain, seconds, mode))
    if on_cut is not None:
        on_cut(res)
    if not wait:
        return res
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if on_tick is not None:
            on_tick(left)
        time.sleep(min(0.5, left))
    nodes = [t for t in targets(mesh) if t.cluster == domain]
    return PartitionResult(domain, mode, seconds, res.cut, wait_ready(nodes, timeout=60, name=domain))


def restore(mesh: Mesh, domain: str) -> dict[str, Any]:
    """End DOMAIN's partition now."""
    _leaf_domain(mesh, domain)
    return _control(mesh, {"op": "restore", "domain": domain})


def proxy_status(mesh: Mesh) -> dict[str, Any]:
    """Every fault proxy with its connections and bytes, and the partitions in force."""
    return _control(mesh, {"op": "status"})
