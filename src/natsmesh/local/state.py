"""The supervisor as other processes see it: its lock, and its state file as a typed record.

A supervisor holds `run/supervisor.lock` (flock) for its whole life, so a second `up` is refused and a crashed
supervisor never looks alive, and rewrites `run/state.json` atomically on every change: its pid and every
node's pid, state and restart count. The file is read and written here only, as `SupervisorState`.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from natsmesh.errors import AlreadyRunningError, NotRunningError
from natsmesh.local.files import write_atomic
from natsmesh.local.layout import MeshDirs
from natsmesh.model.mesh import Mesh

ProcessState = Literal["stopped", "running", "restarting", "failed", "stopping", "unknown"]


@dataclass(frozen=True)
class NodeRecord:
    """One node as the supervisor last saw it."""

    pid: int | None = None
    state: ProcessState = "unknown"
    restarts: int = 0
    last_exit: int | None = None
    reason: str = ""
    log: str = ""
    started: int | None = None  # the process's start time (clock ticks after boot): a pid alone may be reused

    @property
    def running(self) -> bool:
        return self.state == "running" and self.pid is not None

    def live_pid(self) -> int | None:
        """The pid of the process the supervisor started for this node, if that very process still runs: the
        pid exists and started when the supervisor recorded (a dead node's pid may belong to anyone by now)."""
        if not self.running or self.pid is None:
            return None
        now = process_start(self.pid)
        if now is None or (self.started is not None and now != self.started):
            return None
        return self.pid

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> NodeRecord:
        pid, last = doc.get("pid"), doc.get("last_exit")
        return cls(
            pid=int(pid) if pid else None,
            state=doc.get("state", "unknown"),
            restarts=int(doc.get("restarts") or 0),
            last_exit=int(last) if last is not None else None,
            reason=str(doc.get("reason") or ""),
            log=str(doc.get("log") or ""),
            started=int(doc["started"]) if doc.get("started") else None,
        )


@dataclass(frozen=True)
class SupervisorState:
    """What `run/state.json` holds."""

    pid: int
    mesh: str = ""
    mode: str = ""
    binary: str = ""
    started: float = 0.0
    stopping: bool = False
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    events: tuple[str, ...] = ()

    def node(self, name: str) -> NodeRecord:
        """NAME's record; an unknown record for a node the supervisor does not list."""
        return self.nodes.get(name, NodeRecord())

    def failed(self) -> list[tuple[str, NodeRecord]]:
        """The nodes the supervisor gave up on."""
        return [(name, n) for name, n in self.nodes.items() if n.state == "failed"]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["events"] = list(self.events)
        return out

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SupervisorState:
        nodes = doc.get("nodes") or {}
        return cls(
            pid=int(doc.get("pid") or 0),
            mesh=str(doc.get("mesh") or ""),
            mode=str(doc.get("mode") or ""),
            binary=str(doc.get("binary") or ""),
            started=float(doc.get("started") or 0.0),
            stopping=bool(doc.get("stopping")),
            nodes={str(k): NodeRecord.from_json(v) for k, v in nodes.items() if isinstance(v, dict)},
            events=tuple(str(e) for e in doc.get("events") or ()),
        )

    @classmethod
    def read(cls, mesh: Mesh) -> SupervisorState | None:
        """The state the mesh's supervisor last wrote, or None (never started, or a file being replaced)."""
        try:
            doc = json.loads(MeshDirs.of(mesh).state.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return cls.from_json(doc) if isinstance(doc, dict) else None

    def write(self, mesh: Mesh) -> None:
        write_atomic(MeshDirs.of(mesh).state, json.dumps(self.to_json(), indent=1))


def process_start(pid: int) -> int | None:
    """When process PID started (clock ticks after boot, /proc/PID/stat), or None if there is no such process."""
    try:
        stat = open(f"/proc/{pid}/stat", "rb").read()  # noqa: SIM115 - read whole, closed by refcount
    except OSError:
        return None
    fields = stat.rsplit(b")", 1)[-1].split()  # the command name may hold spaces and parentheses
    try:
        return int(fields[19])  # field 22 of the line; the 3rd after the name
    except (IndexError, ValueError):
        return None


def node_process(mesh: Mesh, node: str) -> int:
    """The pid of NODE's running process as the mesh's supervisor started it; `NotRunningError` saying so if it
    is not running, or if the process with its recorded pid is not the one started (it ended; the pid is
    another program's now): natsmesh never signals a process it did not start."""
    state = SupervisorState.read(mesh)
    info = state.node(node) if state else None
    if info is None or not info.running or info.pid is None:
        raise NotRunningError(f"node {node} is not running (state: {info.state if info else 'unknown'})")
    pid = info.live_pid()
    if pid is None:
        raise NotRunningError(
            f"node {node} is not running: its process {info.pid} has ended (the supervisor restarts it, or "
            "`natsmesh status` says why not)"
        )
    return pid


def supervisor_pid(mesh: Mesh) -> int | str:
    """The running supervisor's pid as its state says, or "?"."""
    state = SupervisorState.read(mesh)
    return state.pid if state and state.pid else "?"


def lock_is_held(mesh: Mesh) -> bool:
    """True while a supervisor runs for MESH. Never creates anything."""
    return lock_held_at(MeshDirs.of(mesh).lock)


def lock_held_at(lock: Path) -> bool:
    """True while a supervisor holds the lock file LOCK. Never creates anything."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def refuse_if_running(mesh: Mesh) -> None:
    """`AlreadyRunningError` if a supervisor runs for MESH (naming the clusters of the spec it does not run)."""
    if lock_is_held(mesh):
        state = SupervisorState.read(mesh)
        running = set(state.nodes) if state else set()
        new = [f"cluster {c.name}" for c in mesh.clusters if running and not any(n.name in running for n in c.nodes)]
        raise AlreadyRunningError(mesh.name, supervisor_pid(mesh), mesh.data_dir, new)


def acquire_lock(mesh: Mesh) -> int:
    """Take the mesh's lock or raise `AlreadyRunningError`. The returned fd holds it until closed."""
    dirs = MeshDirs.of(mesh)
    dirs.run.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(dirs.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyRunningError(mesh.name, supervisor_pid(mesh), mesh.data_dir) from None
    return fd


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
