"""Fault injection on a running local mesh: kill, pause and restart nodes; partition a domain.

Every fault goes through the supervisor's view of the mesh (`run/state.json`), so it names nodes and clusters by
their mesh names and the supervisor notices and repairs what it should (a killed node is restarted, a
partition is lifted when its time is up, stalled copies are nudged by its heal watch). A partition cuts real
traffic: the fault proxies the supervisor puts on every leaf link with `up --chaos` stop forwarding.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

from natsmesh.errors import NatsmeshError, NotRunningError
from natsmesh.spec import Mesh
from natsmesh.supervisor import lock_is_held, read_state


class UnknownNodeError(NatsmeshError):
    """A node or cluster name that is not in the mesh."""


def node_pid(mesh: Mesh, node: str) -> int:
    """The running process of NODE, from the supervisor's state."""
    if node not in {n.name for n in mesh.nodes()}:
        raise UnknownNodeError(
            f"mesh {mesh.name!r} has no node {node!r} (nodes: {', '.join(n.name for n in mesh.nodes())})"
        )
    if not lock_is_held(mesh):
        raise NotRunningError(f"mesh {mesh.name!r} is not running")
    info = ((read_state(mesh) or {}).get("nodes") or {}).get(node) or {}
    if info.get("state") != "running" or not info.get("pid"):
        raise NotRunningError(f"node {node} is not running (state: {info.get('state', 'unknown')})")
    return int(info["pid"])


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


class NoProxiesError(NatsmeshError):
    """A partition was asked of a mesh started without fault proxies."""


def _leaf_domain(mesh: Mesh, domain: str) -> None:
    if domain == mesh.hub.name:
        raise UnknownNodeError(
            f"{domain!r} is the hub: it has no leaf links of its own; partition a leaf domain "
            f"({', '.join(d.name for d in mesh.domains)}), or pause hub nodes"
        )
    if domain not in {d.name for d in mesh.domains}:
        raise UnknownNodeError(
            f"mesh {mesh.name!r} has no leaf domain {domain!r} (domains: {', '.join(d.name for d in mesh.domains)})"
        )


def _control(mesh: Mesh, request: dict[str, Any]) -> dict[str, Any]:
    from natsmesh.faultproxy import control
    from natsmesh.proxies import control_path, recorded

    if not lock_is_held(mesh):
        raise NotRunningError(f"mesh {mesh.name!r} is not running")
    if recorded(mesh) is None:
        raise NoProxiesError(
            f"mesh {mesh.name!r} was started without fault proxies, so its links cannot be cut; "
            "start it with `natsmesh up --chaos` (`natsmesh down` first)"
        )
    return control(control_path(mesh), request)


def partition(mesh: Mesh, domain: str, seconds: float | None, mode: str = "reset") -> dict[str, Any]:
    """Cut every leaf link of DOMAIN (both accounts) now; the supervisor restores them after SECONDS (None:
    until `restore`). MODE "reset" closes the connections and refuses new ones; "drop" silently stops
    forwarding, so each side only notices through its pings. Returns what the proxy did."""
    _leaf_domain(mesh, domain)
    if mode not in ("reset", "drop"):
        raise ValueError(f"partition mode must be 'reset' or 'drop', not {mode!r}")
    return _control(mesh, {"op": "cut", "domain": domain, "seconds": seconds, "mode": mode})


def restore(mesh: Mesh, domain: str) -> dict[str, Any]:
    """End DOMAIN's partition now."""
    _leaf_domain(mesh, domain)
    return _control(mesh, {"op": "heal", "domain": domain})


def proxy_status(mesh: Mesh) -> dict[str, Any]:
    """Every fault proxy with its connections and bytes, and the partitions in force."""
    return _control(mesh, {"op": "status"})
