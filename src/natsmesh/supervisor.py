"""Owning the mesh's nats-server processes: start, restart on crash with backoff, keep logs, stop cleanly.

One supervisor per mesh, found through files in `<data_dir>/run/`: `supervisor.lock` (held with flock for the
supervisor's whole life, so a second `up` is refused and a crashed supervisor never looks alive) and
`state.json` (its pid and every node's pid, state and restart count, rewritten atomically on each change).
Nodes get SIGTERM if the supervisor itself dies (Linux parent-death signal), so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from natsmesh.errors import AlreadyRunningError, NotRunningError
from natsmesh.render import config_name
from natsmesh.spec import Mesh
from natsmesh.topology import Node

RUN_DIR = "run"
LOG_DIR = "logs"
LOCK_FILE = "supervisor.lock"
STATE_FILE = "state.json"
SUPERVISOR_LOG = "supervisor.log"
PR_SET_PDEATHSIG = 1

EchoFn = Callable[[str, str], None]


@dataclass(frozen=True)
class RestartPolicy:
    """Restart a dead node after `initial` s, doubling up to `maximum`; give up after `limit` in `window` s."""

    initial: float = 0.25
    maximum: float = 5.0
    limit: int = 5
    window: float = 60.0


@dataclass
class NodeProcess:
    node: Node
    cwd: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    state: str = "stopped"
    restarts: int = 0
    recent: deque[float] = field(default_factory=deque)
    next_start: float = 0.0
    last_exit: int | None = None
    reason: str = ""


def run_dir(mesh: Mesh) -> Path:
    return mesh.data_dir / RUN_DIR


def log_path(mesh: Mesh, node: str) -> Path:
    return mesh.data_dir / LOG_DIR / f"{node}.log"


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
# The lock and the state file, as other processes see them


def lock_is_held(mesh: Mesh) -> bool:
    """True while a supervisor runs for MESH. Never creates anything."""
    path = run_dir(mesh) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def acquire_lock(mesh: Mesh) -> int:
    """Take the mesh's lock or raise `AlreadyRunningError`. The returned fd holds it until closed."""
    rd = run_dir(mesh)
    rd.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(rd / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        pid = (read_state(mesh) or {}).get("pid", "?")
        raise AlreadyRunningError(
            f"mesh {mesh.name!r} is already up (supervisor pid {pid}, data dir {mesh.data_dir}); "
            "use `natsmesh status`, or `natsmesh down` first"
        ) from None
    return fd


def read_state(mesh: Mesh) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((run_dir(mesh) / STATE_FILE).read_text())
        return data
    except (FileNotFoundError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    ) -> None:
        self.mesh = mesh
        self.binary = binary
        self.echo = echo
        self.policy = policy or RestartPolicy()
        self.owner_pid = owner_pid
        self.mode = mode
        self.stopping = threading.Event()
        self.events: deque[str] = deque(maxlen=100)
        self.started = time.time()
        self._prefix, self._preexec = parent_death_guard()
        self._readers: list[threading.Thread] = []
        self.procs = {
            n.name: NodeProcess(
                node=n,
                cwd=mesh.data_dir / mesh.cluster_of(n.name).folder,
                log_path=log_path(mesh, n.name),
            )
            for n in mesh.nodes()
        }

    # -- process handling -------------------------------------------------------------------------------------

    def _spawn(self, np: NodeProcess) -> None:
        np.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(np.log_path, "ab")  # noqa: SIM115 - handed to the child / the reader thread
        cmd = [*self._prefix, self.binary, "-c", config_name(np.node)]
        if self.echo is None:
            np.proc = subprocess.Popen(
                cmd,
                cwd=np.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=self._preexec,
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
            )
            t = threading.Thread(target=self._pump, args=(np.node.name, np.proc.stdout, log), daemon=True)
            t.start()
            self._readers.append(t)
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

    def start_all(self) -> None:
        for np in self.procs.values():
            self._spawn(np)
        self._event(f"started {len(self.procs)} nodes of mesh {self.mesh.name!r}")
        self.write_state()

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
                changed = True
        return changed

    def run(self, tick: float = 0.05) -> None:
        """Supervise until `request_stop` (or the owner process dies), then stop every node."""
        try:
            while not self.stopping.wait(tick):
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
        """SIGTERM every node, wait up to GRACE seconds, then SIGKILL what is left."""
        live = [np for np in self.procs.values() if np.proc is not None and np.proc.poll() is None]
        for np in self.procs.values():
            np.state = "stopping" if np in live else "stopped"
        self.write_state()
        for np in live:
            with contextlib.suppress(ProcessLookupError):
                assert np.proc is not None
                np.proc.terminate()
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

    def snapshot(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "mesh": self.mesh.name,
            "mode": self.mode,
            "binary": self.binary,
            "started": self.started,
            "stopping": self.stopping.is_set(),
            "nodes": {
                name: {
                    "pid": np.proc.pid if np.proc else None,
                    "state": np.state,
                    "restarts": np.restarts,
                    "last_exit": np.last_exit,
                    "reason": np.reason,
                    "log": str(np.log_path),
                }
                for name, np in self.procs.items()
            },
            "events": list(self.events),
        }

    def write_state(self) -> None:
        path = run_dir(self.mesh) / STATE_FILE
        tmp = path.with_name(STATE_FILE + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.snapshot(), indent=1))
        tmp.replace(path)


# ---------------------------------------------------------------------------------------------------------------
# Detached supervisors


def start_detached(
    mesh: Mesh, binary: str, *, owner_pid: int | None = None, policy: RestartPolicy | None = None
) -> int:
    """Fork a supervisor that outlives this process; return its pid as soon as it runs (it then starts the
    nodes, so the caller's readiness poll overlaps their start)."""
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
            logfd = os.open(run_dir(mesh) / SUPERVISOR_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(logfd, 1)
            os.dup2(logfd, 2)
            sup = Supervisor(mesh, binary, owner_pid=owner_pid, policy=policy, mode="detached")
            signal.signal(signal.SIGTERM, sup.request_stop)
            signal.signal(signal.SIGINT, sup.request_stop)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
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
    os.waitpid(child, 0)
    with os.fdopen(read_end) as r:
        line = r.readline().strip()
    if not line:
        log = run_dir(mesh) / SUPERVISOR_LOG
        raise NotRunningError(f"the supervisor failed to start; see {log}")
    return int(line)


def stop_detached(mesh: Mesh, timeout: float = 30.0, on_wait: Callable[[], None] | None = None) -> dict[str, Any]:
    """Ask the running supervisor to stop every node and wait until it has. Returns its last state."""
    if not lock_is_held(mesh):
        raise NotRunningError(f"mesh {mesh.name!r} is not running (nothing supervises {mesh.data_dir})")
    state = read_state(mesh) or {}
    pid = int(state.get("pid") or 0)
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while lock_is_held(mesh):
        if time.monotonic() > deadline:
            # The supervisor hangs: end it and every node it listed, so nothing is left behind.
            for info in (state.get("nodes") or {}).values():
                if info.get("pid"):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(info["pid"]), signal.SIGKILL)
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
            break
        if on_wait:
            on_wait()
        time.sleep(0.05)
    return read_state(mesh) or state
