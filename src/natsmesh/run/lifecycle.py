"""Bringing a mesh up and down: pre-flight checks, rendering into the data dir, supervising, readiness.

Pre-flight runs before anything is written, so a refused `up` leaves no process and no half-written state.
This is where the floors meet: the supervisor (`natsmesh.run.supervisor`) is handed the heal watch
(`natsmesh.reconcile.heal`) and, for `up --chaos`, the fault proxies (`natsmesh.faults.proxy`) as background
tasks, so it imports neither.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from natsmesh.errors import NotReadyError, PreflightError
from natsmesh.local import binary as binmod
from natsmesh.local.certs import cert_texts
from natsmesh.local.files import write_files
from natsmesh.local.layout import MeshDirs, own_operator_problems
from natsmesh.local.ownkeys import missing_links
from natsmesh.local.records import ProxyLink, record_links, record_members, record_shares, via
from natsmesh.local.registry import check_identity, claim, register, unregister
from natsmesh.local.resolver import preload
from natsmesh.local.secrets import load_credentials
from natsmesh.local.state import SupervisorState, acquire_lock, lock_is_held, pid_alive, refuse_if_running
from natsmesh.model.identities import Credentials
from natsmesh.model.mesh import Mesh
from natsmesh.observe.readiness import NodeState, ProgressFn, check_mesh, wait_ready
from natsmesh.render.servers import render_mesh
from natsmesh.run.ports import ephemeral_range, port_problem
from natsmesh.run.supervisor import (
    Background,
    BackgroundTask,
    EchoFn,
    RestartPolicy,
    Service,
    Supervisor,
    not_running,
    start_detached,
    stop_detached,
)


def _writable(path: Path) -> bool:
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def preflight(mesh: Mesh) -> binmod.ServerBinary:
    """Everything that would stop `up`, checked without writing anything. Returns the checked binary."""
    check_identity(mesh)  # another spec's mesh in this data dir: never start on its stores
    refuse_if_running(mesh)
    if moved := own_operator_problems(mesh, running=False):
        raise PreflightError("; ".join(moved) + " (nothing was started)")
    server = binmod.resolve()
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
            elif (why := port_problem(bind := node.http_bind if kind == "http" else node.bind, port)) is not None:
                if mesh.hosted and "assign" in why:
                    raise PreflightError(
                        f"{node.name} binds {bind}, which is not an address of this machine: a mesh on hosts of "
                        "its own runs from each party's folder on its hosts (`natsmesh render --out DIR`, then "
                        "each folder's README.md), not from `natsmesh up`"
                    )
                problems.append(f"{node.name} {kind} port {bind}:{port} is {why}")
    if problems:
        shown = problems[:10] + ([f"... and {len(problems) - 10} more"] if len(problems) > 10 else [])
        raise PreflightError("cannot start the mesh:\n  - " + "\n  - ".join(shown))
    return server


def prepare(mesh: Mesh, links: list[ProxyLink] | None = None) -> Credentials:
    """Create the data dir, secrets and rendered configs (stores are left as they are); LINKS are the fault
    proxies the leaf links go through (`up --chaos`)."""
    mesh.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    claim(mesh)
    creds = load_credentials(mesh)
    record_links(mesh, links)
    write_files(render_mesh(mesh, creds, certs=cert_texts(mesh), via=via(links) if links else None), mesh.data_dir)
    if unsigned := missing_links(mesh):
        raise PreflightError(
            f"{', '.join(unsigned)} brought {'its' if len(unsigned) == 1 else 'their'} own account key and "
            "signs its own leaf link: `natsmesh keys link DOMAIN --keys FILE` from the domain's keys first"
        )
    preload(mesh, creds)  # the hub starts holding its accounts: leaves link as soon as it listens
    record_shares(mesh)
    record_members(mesh)
    return creds


# ---------------------------------------------------------------------------------------------------------------
# What the supervisor runs beside the nodes


def heal_watch(mesh: Mesh) -> BackgroundTask:
    """The heal watch (`natsmesh.reconcile.heal.watch`) as a background task: it keeps copies flowing."""

    @contextlib.asynccontextmanager
    async def run(bg: Background) -> AsyncIterator[None]:
        import asyncio

        from natsmesh.reconcile.heal import watch  # the NATS client, in the supervisor only

        task = asyncio.create_task(watch(mesh, bg.stop, bg.poke, bg.say))
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return run


def fault_proxies(mesh: Mesh, links: list[ProxyLink], sockets: dict[int, socket.socket]) -> BackgroundTask:
    """The fault proxies of `up --chaos` on their bound SOCKETS, with their control socket, as a background task;
    a lifted partition pokes the other tasks (the heal watch looks at once)."""

    @contextlib.asynccontextmanager
    async def run(bg: Background) -> AsyncIterator[None]:
        from natsmesh.faults.proxy import FaultProxy

        proxy = FaultProxy(mesh.host, links, sockets)

        def restored(domain: str) -> None:
            bg.say(f"partition of {domain} lifted")
            bg.poke.set()

        proxy.on_restore = restored
        try:
            await proxy.start()
            await proxy.serve_control(MeshDirs.of(mesh).control_socket)
            yield
        finally:
            await proxy.close()

    return run


def _proxy_links(mesh: Mesh) -> tuple[list[ProxyLink], dict[int, socket.socket]]:
    from natsmesh.faults.links import allocate  # asyncio and the proxy load only for `up --chaos`

    return allocate(mesh)


def background_tasks(
    mesh: Mesh, links: list[ProxyLink] | None, sockets: dict[int, socket.socket] | None
) -> list[BackgroundTask]:
    """What runs beside the nodes: fault proxies (if LINKS) and, if the mesh has copies, the heal watch."""
    tasks = [fault_proxies(mesh, links, sockets or {})] if links else []
    if mesh.consumptions:
        tasks.append(heal_watch(mesh))
    return tasks


def gate_services(mesh: Mesh) -> list[Service]:
    """A contract gate (`natsmesh gate`, from the domain's own folder) for every domain with a gated product."""
    dirs = MeshDirs.of(mesh)
    out = []
    for domain in mesh.gated_domains:
        folder = dirs.cluster(mesh.domain(domain))
        command = (sys.executable, "-m", "natsmesh.cli", "--bundle", str(folder), "gate", domain)
        out.append(Service(gate_service_name(domain), command, folder))
    return out


def gate_service_name(domain: str) -> str:
    """The name DOMAIN's gate has in `natsmesh status` and the supervisor's state."""
    return f"gate-{domain}"


# ---------------------------------------------------------------------------------------------------------------
# Up and down


@dataclass(frozen=True)
class UpResult:
    mesh: str
    supervisor_pid: int
    seconds: float
    nodes: int
    data_dir: str

    def to_json(self) -> dict[str, Any]:
        return {"mesh": self.mesh, "ready": True, **asdict(self), "seconds": round(self.seconds, 3)}


def _alive_check(mesh: Mesh, pid: int) -> Callable[[], str | None]:
    def alive() -> str | None:
        if not pid_alive(pid):
            return f"the supervisor exited; see {MeshDirs.of(mesh).supervisor_log}"
        state = SupervisorState.read(mesh)
        for name, info in state.failed() if state else ():
            return f"node {name} {info.reason}"
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
    start = time.monotonic()
    server = preflight(mesh)
    links, sockets = _proxy_links(mesh) if chaos else (None, None)
    try:
        prepare(mesh, links)
        pid = start_detached(
            mesh,
            server.path,
            owner_pid=owner_pid,
            policy=policy,
            background=background_tasks(mesh, links, sockets),
            handover=list((sockets or {}).values()),
            services=gate_services(mesh),
        )
    finally:
        for sock in (sockets or {}).values():
            sock.close()
    try:
        wait_ready(mesh, timeout=timeout, on_progress=on_progress, alive=_alive_check(mesh, pid))
    except NotReadyError as exc:
        stop_detached(mesh)
        raise NotReadyError(f"{exc}; the mesh was stopped again (logs in {MeshDirs.of(mesh).logs})") from None
    register(mesh)
    return UpResult(mesh.name, pid, time.monotonic() - start, len(mesh.nodes()), str(mesh.data_dir))


@dataclass(frozen=True)
class DownResult:
    mesh: str
    stopped: int  # nodes the supervisor listed
    data_dir: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def down(mesh: Mesh, timeout: float = 30.0) -> DownResult:
    """Stop a detached mesh; its data stays for the next `up`."""
    check_identity(mesh)
    state = stop_detached(mesh, timeout=timeout)
    unregister(mesh)
    return DownResult(mesh.name, len(state.nodes) if state else 0, str(mesh.data_dir))


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


def hosted_status(mesh: Mesh) -> MeshStatus:
    """What every node of a mesh on its own hosts says of its readiness (no supervisor here: their hosts'
    service manager runs them)."""
    checks = {s.node: s for s in check_mesh(mesh)}
    out = tuple(
        NodeStatus(
            name=node.name,
            cluster=node.cluster,
            pid=None,
            state="on its host",
            restarts=0,
            ready=checks[node.name].ready,
            problems=checks[node.name].problems,
            client_url=f"nats://{node.host}:{node.client_port}",
        )
        for node in mesh.nodes()
    )
    answering = any("not answering its health check" not in n.problems for n in out)
    return MeshStatus(running=answering, supervisor_pid=None, nodes=out, events=())


def status(mesh: Mesh) -> MeshStatus:
    """The supervisor's view of every node plus what each node says of its readiness (for a mesh on hosts of
    its own, what each node says: `hosted_status`)."""
    if mesh.hosted and not lock_is_held(mesh):
        return hosted_status(mesh)
    if not lock_is_held(mesh):
        raise not_running(mesh)
    state = SupervisorState.read(mesh) or SupervisorState(pid=0)
    checks: dict[str, NodeState] = {s.node: s for s in check_mesh(mesh)}
    out = []
    for node in mesh.nodes():
        info = state.node(node.name)
        check = checks[node.name]
        out.append(
            NodeStatus(
                name=node.name,
                cluster=node.cluster,
                pid=info.pid,
                state=info.state,
                restarts=info.restarts,
                ready=check.ready,
                problems=check.problems,
                client_url=f"nats://{node.host}:{node.client_port}",
            )
        )
    for domain in mesh.gated_domains:  # services: ready while they run
        info = state.node(gate_service_name(domain))
        out.append(
            NodeStatus(
                name=gate_service_name(domain),
                cluster=domain,
                pid=info.pid,
                state=info.state,
                restarts=info.restarts,
                ready=info.state == "running",
                problems=() if info.state == "running" else (info.reason or f"gate {info.state}",),
                client_url="",
            )
        )
    return MeshStatus(running=True, supervisor_pid=state.pid or None, nodes=tuple(out), events=state.events)


def up_foreground(
    mesh: Mesh,
    *,
    echo: EchoFn,
    on_ready: Callable[[float], None],
    on_progress: ProgressFn | None = None,
    timeout: float = 60.0,
    policy: RestartPolicy | None = None,
    chaos: bool = False,
) -> None:
    """Run MESH in this process like goreman: ECHO(node, line) for every log line; Ctrl-C stops it all."""
    import signal
    import threading

    server = preflight(mesh)
    links, sockets = _proxy_links(mesh) if chaos else (None, None)
    prepare(mesh, links)
    lock_fd = acquire_lock(mesh)
    tasks = background_tasks(mesh, links, sockets)
    sup = Supervisor(
        mesh, server.path, echo=echo, policy=policy, mode="foreground", background=tasks, services=gate_services(mesh)
    )
    previous = {s: signal.signal(s, sup.request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, sup.request_members)

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
        register(mesh)
        threading.Thread(target=waiter, daemon=True, name="readiness").start()
        sup.run()
    finally:
        unregister(mesh)
        for s, h in previous.items():
            signal.signal(s, h)
        os.close(lock_fd)
