"""Owning the mesh's nats-server processes: start, restart on crash with backoff, keep logs, stop cleanly.

One supervisor per mesh, found through its lock and state file (`natsmesh.local.state`). Nodes get SIGTERM if
the supervisor itself dies (Linux parent-death signal), so nothing is left behind. Whatever else should live as
long as the nodes (the heal watch, fault proxies) is handed in as background tasks, which run in one asyncio
loop on a thread of their own; `natsmesh.run.lifecycle` decides which.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from natsmesh.errors import NotReadyError, NotRunningError
from natsmesh.local.layout import MeshDirs
from natsmesh.local.records import recorded_members
from natsmesh.local.state import (
    NodeRecord,
    ProcessState,
    SupervisorState,
    acquire_lock,
    lock_is_held,
    pid_alive,
    process_start,
)
from natsmesh.model.mesh import Mesh
from natsmesh.model.topology import Node
from natsmesh.observe.readiness import targets, wait_ready
from natsmesh.render.servers import config_name

if TYPE_CHECKING:  # asyncio loads only in a supervisor that runs background tasks: `up` starts fast
    import asyncio

PR_SET_PDEATHSIG = 1
STAGE_TIMEOUT = 20.0  # an ordered start waits at most this long for one stage before starting the next
SERVICE_GRACE = 8.0  # a service (a gate answering what it has in flight) gets this long after SIGTERM

EchoFn = Callable[[str, str], None]


@dataclass
class Background:
    """What a background task gets from its supervisor: a stop signal, a poke, and a way to say things."""

    stop: asyncio.Event
    poke: asyncio.Event  # set when something changed that is worth looking at now (a node restarted)
    say: Callable[[str], None]


# A background task: entering it starts it (the nodes start after every task has been entered), leaving it stops
# it. It runs in the supervisor's loop until `stop` is set.
BackgroundTask = Callable[[Background], AbstractAsyncContextManager[None]]


@dataclass(frozen=True)
class RestartPolicy:
    """Restart a dead node after `initial` s, doubling up to `maximum`; give up after `limit` in `window` s."""

    initial: float = 0.25
    maximum: float = 5.0
    limit: int = 5
    window: float = 60.0


@dataclass(frozen=True)
class Service:
    """A process the supervisor runs beside the nodes (started after them, stopped before them, restarted like
    them): e.g. a domain's contract gate (`natsmesh.run.lifecycle` says which)."""

    name: str
    command: tuple[str, ...]
    cwd: Path


@dataclass
class NodeProcess:
    node: Node | None  # None: a service
    cwd: Path
    log_path: Path
    command: tuple[str, ...] = ()  # a service's; a node's is the binary with its config
    proc: subprocess.Popen[bytes] | None = None
    state: ProcessState = "stopped"
    restarts: int = 0
    recent: deque[float] = field(default_factory=deque)
    next_start: float = 0.0
    last_exit: int | None = None
    reason: str = ""
    started_ticks: int | None = None  # when its current process started (`natsmesh.local.state.process_start`)


def parent_death_guard() -> tuple[list[str], Callable[[], None] | None]:
    """How nodes learn that the supervisor died: a command prefix, or a pre-exec hook, or neither.

    Linux delivers SIGTERM to a child whose parent dies if the child asked for it (PR_SET_PDEATHSIG). util-linux
    `setpriv --pdeathsig` asks for it and then execs nats-server, keeping the fast spawn path; a Python
    pre-exec hook does the same but makes each spawn several times slower while other nodes boot.
    """
    if not sys.platform.startswith("linux"):
        return [], None
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, "--pdeathsig", "TERM", "--"], None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # libc is already loaded; find_library would run ldconfig

    def setup() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return [], setup


# ---------------------------------------------------------------------------------------------------------------
# The supervisor


class Supervisor:
    """Runs every node of MESH with BINARY; restarts the dead ones; stops them all on `request_stop`."""

    def __init__(
        self,
        mesh: Mesh,
        binary: str,
        *,
        echo: EchoFn | None = None,
        policy: RestartPolicy | None = None,
        owner_pid: int | None = None,
        mode: str = "foreground",
        background: list[BackgroundTask] | None = None,
        services: list[Service] | None = None,
    ) -> None:
        """BACKGROUND tasks run as long as the nodes (started before them, stopped before them); so do SERVICES
        (processes, started after the nodes)."""
        self.mesh = mesh
        self.dirs = MeshDirs.of(mesh)
        self.background = list(background or [])
        self._loop: asyncio.AbstractEventLoop | None = None
        self._bg: threading.Thread | None = None
        self._bg_stop: asyncio.Event | None = None
        self._poke: asyncio.Event | None = None
        self.binary = binary
        self.echo = echo
        self.policy = policy or RestartPolicy()
        self.owner_pid = owner_pid
        self.mode = mode
        self.stopping = threading.Event()
        self.members_due = threading.Event()  # `apply` asked for clusters to join or leave (`run/members.json`)
        self.events: deque[str] = deque(maxlen=100)
        self.started = time.time()
        self._prefix, self._preexec = parent_death_guard()
        self._readers: list[threading.Thread] = []
        self.procs = {
            n.name: NodeProcess(node=n, cwd=self.dirs.cluster(mesh.cluster_of(n.name)), log_path=self.dirs.log(n.name))
            for n in mesh.nodes()
        }
        self.services = [sv.name for sv in services or ()]
        for sv in services or ():
            self.procs[sv.name] = NodeProcess(None, sv.cwd, self.dirs.log(sv.name), sv.command)

    # -- process handling -------------------------------------------------------------------------------------

    def _spawn(self, np: NodeProcess) -> None:
        np.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(np.log_path, "ab")  # noqa: SIM115 - handed to the child / the reader thread
        cmd = (
            [*self._prefix, *np.command]
            if np.node is None
            else [*self._prefix, self.binary, "-c", config_name(np.node)]
        )
        if self.echo is None:
            np.proc = subprocess.Popen(
                cmd,
                cwd=np.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=self._preexec,
                process_group=0,  # its own group: a Ctrl-C at the terminal reaches the supervisor, which stops it
            )
            log.close()
        else:
            np.proc = subprocess.Popen(
                cmd,
                cwd=np.cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                preexec_fn=self._preexec,
                process_group=0,  # its own group: a Ctrl-C at the terminal reaches the supervisor, which stops it
            )
            name = np.node.name if np.node else np.log_path.stem
            t = threading.Thread(target=self._pump, args=(name, np.proc.stdout, log), daemon=True)
            t.start()
            self._readers.append(t)
        np.started_ticks = process_start(np.proc.pid)
        np.state = "running"

    def _pump(self, name: str, stream: IO[bytes] | None, log: IO[bytes]) -> None:
        assert stream is not None
        with log:
            for raw in stream:
                log.write(raw)
                log.flush()
                if self.echo:
                    self.echo(name, raw.decode(errors="replace").rstrip("\n"))

    def _event(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.events.append(f"{stamp} {text}")
        if self.echo:
            self.echo("natsmesh", text)
        else:
            print(f"{stamp} {text}", flush=True)

    def stages(self) -> list[list[str]]:
        """The order nodes start in: all at once, unless the mesh has stores and a copy that no nudge can restart
        (a single-replica mirror or single source, see `Consumption.nudge`). Then the hub, the domains whose
        products others take, and the rest start in turn, each stage ready (links included) before the next,
        so no such copy sends its first request into a domain that is not there yet (that request would wait
        out nats-server's 30 s). All at once is faster; the heal watch restarts every other kind of copy."""
        nodes = {n: np.node for n, np in self.procs.items() if np.node is not None}
        names = list(nodes)
        has_store = any(self.dirs.store(self.mesh.cluster_of(n), node).exists() for n, node in nodes.items())
        if not has_store or all(c.nudge for c in self.mesh.consumptions):
            return [names]
        hub = {n.name for n in self.mesh.hub.nodes}
        owners = {s.domain for c in self.mesh.consumptions for s in c.sources if s.domain != c.domain}
        owner_nodes = {n.name for d in owners if d != self.mesh.hub.name for n in self.mesh.domain(d).nodes}
        stages = [[n for n in names if n in hub], [n for n in names if n in owner_nodes]]
        stages.append([n for n in names if n not in hub and n not in owner_nodes])
        return [st for st in stages if st]

    def start_all(self) -> None:
        self._start_background()
        stages = self.stages()
        by_name = {t.name: t for t in targets(self.mesh)}
        for i, stage in enumerate(stages):
            for name in stage:
                self._spawn(self.procs[name])
            self.write_state()
            if i == len(stages) - 1 or self.stopping.is_set():
                continue
            try:
                secs = wait_ready(
                    [by_name[n] for n in stage],
                    timeout=STAGE_TIMEOUT,
                    alive=lambda: "stopping" if self.stopping.is_set() else None,
                    name=f"start stage {i + 1}",
                )
                self._event(f"ordered start: stage {i + 1}/{len(stages)} ({len(stage)} nodes) ready in {secs:.1f} s")
            except NotReadyError as exc:
                self._event(f"ordered start: {exc}; starting the next stage anyway")
        if self.stopping.is_set():
            return
        for name in self.services:
            self._spawn(self.procs[name])
        started = len(self.procs) - len(self.services)
        extra = f" and {len(self.services)} services ({', '.join(self.services)})" if self.services else ""
        self._event(f"started {started} nodes{extra} of mesh {self.mesh.name!r}")
        self.write_state()

    # -- the asyncio side: background tasks ---------------------------------------------------------------------

    def _start_background(self) -> None:
        if not self.background:
            return
        ready = threading.Event()
        self._bg = threading.Thread(target=self._background, args=(ready,), daemon=True, name="background")
        self._bg.start()
        ready.wait(10)

    def _background(self, ready: threading.Event) -> None:
        import asyncio

        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._background_main(ready))
        except Exception as exc:
            self._event(f"background tasks failed: {exc!r}")
        finally:
            ready.set()
            loop.close()

    async def _background_main(self, ready: threading.Event) -> None:
        import asyncio

        self._bg_stop, self._poke = asyncio.Event(), asyncio.Event()
        bg = Background(stop=self._bg_stop, poke=self._poke, say=self._event)
        async with contextlib.AsyncExitStack() as stack:
            for task in self.background:
                await stack.enter_async_context(task(bg))
            ready.set()
            await self._bg_stop.wait()

    def poke(self) -> None:
        """Tell the background tasks that something changed (a node restarted)."""
        if self._loop is not None and self._poke is not None:
            self._loop.call_soon_threadsafe(self._poke.set)

    def _stop_background(self) -> None:
        if self._loop is not None and self._bg_stop is not None and self._bg is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._bg_stop.set)
            self._bg.join(timeout=5)

    def _reap(self) -> bool:
        """Notice dead nodes and restart them when due. Returns True if any state changed."""
        now = time.monotonic()
        changed = False
        for name, np in self.procs.items():
            if np.state == "running" and np.proc is not None and np.proc.poll() is not None:
                np.last_exit = np.proc.returncode
                while np.recent and now - np.recent[0] > self.policy.window:
                    np.recent.popleft()
                if len(np.recent) >= self.policy.limit:
                    np.state = "failed"
                    np.reason = (
                        f"gave up after {self.policy.limit} restarts in {self.policy.window:.0f} s "
                        f"(last exit code {np.last_exit}); see {np.log_path}"
                    )
                    self._event(f"node {name} {np.reason}")
                else:
                    delay = min(self.policy.maximum, self.policy.initial * (2 ** len(np.recent)))
                    np.state = "restarting"
                    np.next_start = now + delay
                    self._event(f"node {name} exited with code {np.last_exit}; restarting in {delay:.2f} s")
                changed = True
            elif np.state == "restarting" and now >= np.next_start:
                np.recent.append(now)
                np.restarts += 1
                self._spawn(np)
                self._event(f"node {name} restarted (restart {np.restarts})")
                self.poke()
                changed = True
        return changed

    # -- clusters joining and leaving a running mesh ------------------------------------------------------------

    def request_members(self, *_: object) -> None:
        """SIGUSR1: `apply` wrote the mesh to run next (`MeshDirs.members`); its loop takes it on its next tick."""
        self.members_due.set()

    def _members(self) -> None:
        """Run the nodes of the mesh in `run/members.json`: start the ones it adds, stop the ones it no longer
        names (SIGTERM, their stores kept); every other node and service is left as it is."""
        self.members_due.clear()
        mesh = recorded_members(self.mesh)
        if mesh is None:
            self._event(f"cannot read the members asked for ({self.dirs.members}); nothing changed")
            return
        wanted = {n.name: n for n in mesh.nodes()}
        leaving = [np for name, np in self.procs.items() if np.node is not None and name not in wanted]
        for np in leaving:
            if np.proc is not None and np.proc.poll() is None:
                np.proc.send_signal(signal.SIGTERM)
        for np in leaving:
            if np.proc is not None:
                try:
                    np.proc.wait(10)
                except subprocess.TimeoutExpired:
                    np.proc.kill()
                    np.proc.wait()
            assert np.node is not None
            del self.procs[np.node.name]
        joining = [n for name, n in wanted.items() if name not in self.procs]
        for n in joining:
            np = NodeProcess(node=n, cwd=self.dirs.cluster(mesh.cluster_of(n.name)), log_path=self.dirs.log(n.name))
            self.procs[n.name] = np
            self._spawn(np)
        self.mesh = mesh
        said = [f"started {', '.join(n.name for n in joining)}"] * bool(joining)
        said += [f"stopped {', '.join(np.node.name for np in leaving if np.node)}"] * bool(leaving)
        self._event(f"members of mesh {mesh.name!r}: {'; '.join(said) or 'unchanged'}")
        self.write_state()

    def run(self, tick: float = 0.05) -> None:
        """Supervise until `request_stop` (or the owner process dies), then stop every node."""
        try:
            while not self.stopping.wait(tick):
                if self.members_due.is_set():
                    self._members()
                if self._reap():
                    self.write_state()
                if self.owner_pid and not pid_alive(self.owner_pid):
                    self._event(f"owner process {self.owner_pid} is gone; stopping")
                    break
        finally:
            self.stop_all()

    def request_stop(self, *_: object) -> None:
        self.stopping.set()

    def stop_all(self, grace: float = 10.0) -> None:
        """Stop everything: background tasks, then services (SIGTERM, SERVICE_GRACE to finish what they hold),
        then every node at once with SIGTERM (nats-server's clean stop: JetStream snapshots its metadata and
        closes its stores), SIGKILL after GRACE.

        Lame-duck mode would hand a node's leaders and clients to the other nodes of its cluster; when the whole
        mesh stops there is no node left to take them, so it would only add its grace period (3-6 s for the seed
        mesh). A unit rendered for a host (`natsmesh.render.hosts`) stops one node in lame-duck mode, where the
        rest of its cluster stays up."""
        live = [np for np in self.procs.values() if np.proc is not None and np.proc.poll() is None]
        for np in self.procs.values():
            np.state = "stopping" if np in live else "stopped"
        self.write_state()
        self._stop_background()
        services = [np for np in live if np.node is None]  # first, while the nodes still take what they hand over
        for np in services:
            assert np.proc is not None
            with contextlib.suppress(ProcessLookupError):
                np.proc.send_signal(signal.SIGTERM)
        for np in services:
            assert np.proc is not None
            try:
                np.proc.wait(SERVICE_GRACE)
            except subprocess.TimeoutExpired:
                np.proc.kill()
                np.proc.wait()
            np.state = "stopped"
        live = [np for np in live if np.node is not None]
        for np in live:
            assert np.proc is not None
            if np.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    np.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for np in live:
            assert np.proc is not None
            try:
                np.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                np.proc.kill()
                np.proc.wait()
            np.state = "stopped"
        for t in self._readers:
            t.join(timeout=2)
        self._event(f"stopped {len(live)} nodes")
        self.write_state()

    # -- state ---------------------------------------------------------------------------------------------------

    def snapshot(self) -> SupervisorState:
        return SupervisorState(
            pid=os.getpid(),
            mesh=self.mesh.name,
            mode=self.mode,
            binary=self.binary,
            started=self.started,
            stopping=self.stopping.is_set(),
            nodes={
                name: NodeRecord(
                    pid=np.proc.pid if np.proc else None,
                    state=np.state,
                    restarts=np.restarts,
                    last_exit=np.last_exit,
                    reason=np.reason,
                    log=str(np.log_path),
                    started=np.started_ticks,
                )
                for name, np in self.procs.items()
            },
            events=tuple(self.events),
        )

    def write_state(self) -> None:
        self.snapshot().write(self.mesh)


# ---------------------------------------------------------------------------------------------------------------
# Detached supervisors


def start_detached(
    mesh: Mesh,
    binary: str,
    *,
    owner_pid: int | None = None,
    policy: RestartPolicy | None = None,
    background: list[BackgroundTask] | None = None,
    handover: list[socket.socket] | None = None,
    services: list[Service] | None = None,
) -> int:
    """Fork a supervisor that outlives this process; return its pid as soon as it runs (it then starts the
    nodes, so the caller's readiness poll overlaps their start). It runs BACKGROUND and keeps the sockets of
    HANDOVER (bound listeners its tasks serve), which this process closes."""
    lock_fd = acquire_lock(mesh)
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked supervisor; covered by integration tests
        code = 0
        try:
            os.close(read_end)
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            logfd = os.open(MeshDirs.of(mesh).supervisor_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(logfd, 1)
            os.dup2(logfd, 2)
            sys.stdout = sys.stderr = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - for its life
            sup = Supervisor(
                mesh,
                binary,
                owner_pid=owner_pid,
                policy=policy,
                mode="detached",
                background=background,
                services=services,
            )
            signal.signal(signal.SIGTERM, sup.request_stop)
            signal.signal(signal.SIGINT, sup.request_stop)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
            signal.signal(signal.SIGUSR1, sup.request_members)
            os.write(write_end, f"{os.getpid()}\n".encode())  # the caller polls while nodes start
            os.close(write_end)
            sup.start_all()
            sup.run()
        except BaseException as exc:
            print(f"supervisor failed: {exc!r}", flush=True)
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    os.close(lock_fd)  # the supervisor keeps its own copy of the locked descriptor
    for sock in handover or []:  # and of the listeners its tasks serve
        sock.close()
    os.waitpid(child, 0)
    with os.fdopen(read_end) as r:
        line = r.readline().strip()
    if not line:
        raise NotRunningError(f"the supervisor failed to start; see {MeshDirs.of(mesh).supervisor_log}")
    return int(line)


def not_running(mesh: Mesh) -> NotRunningError:
    from natsmesh.local.registry import elsewhere_hint

    return NotRunningError(f"mesh {mesh.name!r} is not running (nothing supervises {mesh.data_dir}){elsewhere_hint()}")


def stop_detached(
    mesh: Mesh, timeout: float = 30.0, on_wait: Callable[[], None] | None = None
) -> SupervisorState | None:
    """Ask the running supervisor to stop every node and wait until it has. Returns its last state."""
    if not lock_is_held(mesh):
        raise not_running(mesh)
    state = SupervisorState.read(mesh)
    pid = state.pid if state else 0
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while lock_is_held(mesh):
        if time.monotonic() > deadline:
            # The supervisor hangs: end it and every node it listed, so nothing is left behind.
            for info in state.nodes.values() if state else ():
                if (live := info.live_pid()) is not None:  # only the very process it started, never a reused pid
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(live, signal.SIGKILL)
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
            break
        if on_wait:
            on_wait()
        time.sleep(0.05)
    return SupervisorState.read(mesh) or state
