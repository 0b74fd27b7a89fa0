"""Bringing a mesh up and down: pre-flight checks, rendering into the data dir, supervising, readiness.

Pre-flight runs before anything is written, so a refused `up` leaves no process and no half-written state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from natsmesh import binary as binmod
from natsmesh.certs import cert_texts
from natsmesh.credentials import Credentials, load_credentials
from natsmesh.errors import AlreadyRunningError, NotReadyError, NotRunningError, PreflightError
from natsmesh.ports import ephemeral_range, port_problem
from natsmesh.proxies import allocate, record, via
from natsmesh.readiness import NodeState, ProgressFn, check_mesh, wait_ready
from natsmesh.render import render_mesh, write_files
from natsmesh.spec import Mesh
from natsmesh.supervisor import (
    RestartPolicy,
    lock_is_held,
    pid_alive,
    read_state,
    start_detached,
    stop_detached,
)

if TYPE_CHECKING:
    from natsmesh.faultproxy import ProxyLink


def _writable(path: Path) -> bool:
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def preflight(mesh: Mesh) -> binmod.ServerBinary:
    """Everything that would stop `up`, checked without writing anything. Returns the checked binary."""
    if lock_is_held(mesh):
        pid = (read_state(mesh) or {}).get("pid", "?")
        raise AlreadyRunningError(
            f"mesh {mesh.name!r} is already up (supervisor pid {pid}, data dir {mesh.data_dir}); "
            "use `natsmesh status`, or `natsmesh down` first"
        )
    server = binmod.resolve(mesh.server)
    if not _writable(mesh.data_dir):
        raise PreflightError(f"data dir {mesh.data_dir} is not writable; set `data_dir` in the spec")
    problems = []
    eph = ephemeral_range()
    for node in mesh.nodes():
        for kind, port in node.ports().items():
            if eph and eph[0] <= port <= eph[1]:
                problems.append(
                    f"{node.name} {kind} port {port} is inside the OS ephemeral port range {eph[0]}-{eph[1]}, "
                    "where it can collide with outgoing connections; choose ports below it (`natsmesh init` does)"
                )
            elif (why := port_problem(mesh.host, port)) is not None:
                problems.append(f"{node.name} {kind} port {mesh.host}:{port} is {why}")
    if problems:
        shown = problems[:10] + ([f"... and {len(problems) - 10} more"] if len(problems) > 10 else [])
        raise PreflightError("cannot start the mesh:\n  - " + "\n  - ".join(shown))
    return server


def prepare(mesh: Mesh, links: list[ProxyLink] | None = None) -> Credentials:
    """Create the data dir, secrets and rendered configs (stores are left as they are); LINKS are the fault
    proxies the leaf links go through (`up --chaos`)."""
    mesh.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    creds = load_credentials(mesh)
    record(mesh, links)
    write_files(render_mesh(mesh, creds, certs=cert_texts(mesh), via=via(links) if links else None), mesh.data_dir)
    from natsmesh.policysync import record_shares

    record_shares(mesh)
    return creds


@dataclass(frozen=True)
class UpResult:
    supervisor_pid: int
    seconds: float
    nodes: int


def _alive_check(mesh: Mesh, pid: int) -> Any:
    def alive() -> str | None:
        if not pid_alive(pid):
            return "the supervisor exited; see " + str(mesh.data_dir / "run" / "supervisor.log")
        state = read_state(mesh) or {}
        for name, info in (state.get("nodes") or {}).items():
            if info.get("state") == "failed":
                return f"node {name} {info.get('reason')}"
        return None

    return alive


def up_detached(
    mesh: Mesh,
    *,
    timeout: float = 60.0,
    on_progress: ProgressFn | None = None,
    owner_pid: int | None = None,
    policy: RestartPolicy | None = None,
    chaos: bool = False,
) -> UpResult:
    """Start MESH under a background supervisor and return once it is ready (or stop it and raise). CHAOS puts
    a fault proxy on every leaf link, for `natsmesh chaos partition`."""
    import time

    start = time.monotonic()
    server = preflight(mesh)
    links, sockets = allocate(mesh) if chaos else (None, None)
    try:
        prepare(mesh, links)
        pid = start_detached(mesh, server.path, owner_pid=owner_pid, policy=policy, links=links, sockets=sockets)
    finally:
        for sock in (sockets or {}).values():
            sock.close()
    try:
        wait_ready(mesh, timeout=timeout, on_progress=on_progress, alive=_alive_check(mesh, pid))
    except NotReadyError as exc:
        stop_detached(mesh)
        raise NotReadyError(f"{exc}; the mesh was stopped again (logs in {mesh.data_dir / 'logs'})") from None
    return UpResult(supervisor_pid=pid, seconds=time.monotonic() - start, nodes=len(mesh.nodes()))


def down(mesh: Mesh, timeout: float = 30.0) -> dict[str, Any]:
    """Stop a detached mesh; its data stays for the next `up`."""
    return stop_detached(mesh, timeout=timeout)


@dataclass(frozen=True)
class NodeStatus:
    name: str
    cluster: str
    pid: int | None
    state: str
    restarts: int
    ready: bool
    problems: tuple[str, ...]
    client_url: str


@dataclass(frozen=True)
class MeshStatus:
    running: bool
    supervisor_pid: int | None
    nodes: tuple[NodeStatus, ...]
    events: tuple[str, ...]

    @property
    def ready(self) -> bool:
        return self.running and all(n.ready for n in self.nodes)

    def to_json(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "ready": self.ready,
            "supervisor_pid": self.supervisor_pid,
            "nodes": [n.__dict__ | {"problems": list(n.problems)} for n in self.nodes],
            "events": list(self.events),
        }


def status(mesh: Mesh) -> MeshStatus:
    """The supervisor's view of every node plus what each node says of its readiness."""
    if not lock_is_held(mesh):
        raise NotRunningError(f"mesh {mesh.name!r} is not running (nothing supervises {mesh.data_dir})")
    state = read_state(mesh) or {}
    nodes_state = state.get("nodes") or {}
    checks: dict[str, NodeState] = {s.node: s for s in check_mesh(mesh)}
    out = []
    for node in mesh.nodes():
        info = nodes_state.get(node.name) or {}
        check = checks[node.name]
        out.append(
            NodeStatus(
                name=node.name,
                cluster=node.cluster,
                pid=info.get("pid"),
                state=info.get("state", "unknown"),
                restarts=int(info.get("restarts") or 0),
                ready=check.ready,
                problems=check.problems,
                client_url=f"nats://{mesh.host}:{node.client_port}",
            )
        )
    return MeshStatus(
        running=True,
        supervisor_pid=state.get("pid"),
        nodes=tuple(out),
        events=tuple(state.get("events") or ()),
    )


def up_foreground(
    mesh: Mesh,
    *,
    echo: Any,
    on_ready: Any,
    on_progress: ProgressFn | None = None,
    timeout: float = 60.0,
    policy: RestartPolicy | None = None,
    chaos: bool = False,
) -> None:
    """Run MESH in this process like goreman: ECHO(node, line) for every log line; Ctrl-C stops it all."""
    import signal
    import threading

    from natsmesh.supervisor import Supervisor, acquire_lock

    server = preflight(mesh)
    links, sockets = allocate(mesh) if chaos else (None, None)
    prepare(mesh, links)
    lock_fd = acquire_lock(mesh)
    sup = Supervisor(mesh, server.path, echo=echo, policy=policy, mode="foreground", links=links, sockets=sockets)
    previous = {s: signal.signal(s, sup.request_stop) for s in (signal.SIGINT, signal.SIGTERM)}

    def waiter() -> None:
        try:
            secs = wait_ready(
                mesh,
                timeout=timeout,
                on_progress=on_progress,
                alive=lambda: "stopping" if sup.stopping.is_set() else None,
            )
        except NotReadyError as exc:
            if not sup.stopping.is_set():
                echo("natsmesh", str(exc))
            return
        on_ready(secs)

    try:
        sup.start_all()
        threading.Thread(target=waiter, daemon=True, name="readiness").start()
        sup.run()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        os.close(lock_fd)
