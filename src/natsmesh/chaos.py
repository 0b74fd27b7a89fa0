"""Fault injection on a running local mesh: kill, pause and restart nodes (partitions come later, issue 5).

Every fault goes through the supervisor's view of the mesh (`run/state.json`), so it names nodes and clusters by
their mesh names and the supervisor notices and repairs what it should (a killed node is restarted).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

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
