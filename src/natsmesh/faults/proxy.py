"""A TCP proxy on every leafnode link of a leaf domain, so a fault can partition the domain for real.

The supervisor owns one `FaultProxy`; leaf nodes connect to a link's `listen_port` and the proxy forwards to the
hub node's leafnode port. `cut` partitions a domain: "reset" closes its connections at once (and every new one
while cut), "drop" silently stops forwarding (nothing is read, so TCP back-pressure holds the data) until
`restore`. A unix socket (`serve_control`, `control`) lets other processes cut, restore and inspect. Pure
asyncio, stdlib only; `cut`, `restore` and `status` must be called from the proxy's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import os
import random
import socket
import stat
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from natsmesh.errors import FaultProxyError
from natsmesh.local.records import CUT_MODES, ProxyLink

CHUNK = 64 * 1024  # bytes per read when forwarding
STREAM_LIMIT = 4 * CHUNK  # StreamReader buffer: reading pauses beyond twice this
CLOSE_GRACE = 2.0  # seconds a closing connection may take to flush before it is aborted
CONTROL_LINE_LIMIT = 1024 * 1024
OPS = ("cut", "restore", "status")


def listen(host: str, port: int) -> socket.socket:
    """A listening, non-blocking TCP socket on HOST:PORT, bound as nats-server binds (SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def bind_listeners(host: str, count: int, avoid: set[int], low: int = 10000, high: int = 32000) -> list[socket.socket]:
    """COUNT listening, non-blocking TCP sockets on HOST at ports in [LOW, HIGH) not in AVOID.

    Starts at a random port and skips ports in use (SO_REUSEADDR, as nats-server binds). Bound before the supervisor
    forks, so ports are fixed before configs are rendered. Raises RuntimeError if not enough ports are free.
    """
    span = high - low
    bound: list[socket.socket] = []
    if count > 0 and span > 0:
        start = random.randrange(span)
        for i in range(span):
            port = low + (start + i) % span
            if port in avoid:
                continue
            try:
                bound.append(listen(host, port))
            except OSError:
                continue
            if len(bound) == count:
                return bound
    for sock in bound:
        sock.close()
    if count <= 0:
        return []
    raise RuntimeError(f"cannot bind {count} listening ports on {host} between {low} and {high}")


@dataclass
class _Cut:
    mode: str
    since: float  # epoch
    started: float  # monotonic
    until: float | None
    timer: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class _Conn:
    link: ProxyLink
    client: asyncio.StreamWriter
    target: asyncio.StreamWriter | None = None
    task: asyncio.Task[None] | None = None
    closed: bool = False

    def writers(self) -> list[asyncio.StreamWriter]:
        return [w for w in (self.client, self.target) if w is not None]

    def reset(self) -> None:
        """Close both sides now with a TCP reset (SO_LINGER 0), dropping anything unsent."""
        self.closed = True
        for w in self.writers():
            sock = w.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.transport.abort()

    async def shut(self) -> None:
        """Close both sides, letting buffered bytes flush for up to CLOSE_GRACE seconds."""
        writers = self.writers()
        for w in writers:
            w.close()
        try:
            await asyncio.wait_for(
                asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True), CLOSE_GRACE
            )
        except TimeoutError:
            pass
        finally:
            for w in writers:
                w.transport.abort()


@dataclass(eq=False)
class _LinkState:
    link: ProxyLink
    sock: socket.socket | None
    server: asyncio.Server | None = None
    conns: set[_Conn] = field(default_factory=set)
    bytes_up: int = 0
    bytes_down: int = 0


class FaultProxy:
    """Forwards every link and partitions domains on demand. `on_restore(domain)` runs in the loop once a
    partition is lifted."""

    def __init__(self, host: str, links: list[ProxyLink], sockets: dict[int, socket.socket] | None = None) -> None:
        sockets = dict(sockets or {})
        ports = [link.listen_port for link in links]
        if len(set(ports)) != len(ports):
            raise ValueError(f"proxy links share a listen port: {sorted(p for p in set(ports) if ports.count(p) > 1)}")
        if stray := sorted(set(sockets) - set(ports)):
            raise ValueError(f"sockets given for ports no link listens on: {stray}")
        self.host = host
        self.links = list(links)
        self.on_restore: Callable[[str], None] | None = None
        self._states = {link.listen_port: _LinkState(link, sockets.get(link.listen_port)) for link in links}
        self._gates: dict[str, asyncio.Event] = {}
        for link in links:
            self._gates.setdefault(link.domain, asyncio.Event()).set()
        self._cuts: dict[str, _Cut] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._control: asyncio.Server | None = None
        self._control_path: Path | None = None
        self._control_writers: set[asyncio.StreamWriter] = set()
        self._closing = False

    @property
    def domains(self) -> list[str]:
        """The domains with at least one proxied link, in link order."""
        return list(self._gates)

    async def start(self) -> None:
        """Start accepting on every link; links without a pre-bound socket are bound now on their listen port."""
        for state in self._states.values():
            if state.server is not None:
                continue
            if state.sock is None:
                state.sock = self._bind(state.link)
            accept = functools.partial(self._accept, state)
            state.server = await asyncio.start_server(accept, sock=state.sock, limit=STREAM_LIMIT)

    def _bind(self, link: ProxyLink) -> socket.socket:
        try:
            return listen(self.host, link.listen_port)
        except OSError as exc:
            raise FaultProxyError(
                f"fault proxy cannot listen on {self.host}:{link.listen_port} for {link.name}: {exc.strerror or exc}"
            ) from exc

    async def close(self) -> None:
        """Stop listening, close every connection (control ones too), cancel timers; leaves no task running."""
        self._closing = True
        for cut in self._cuts.values():
            if cut.timer is not None:
                cut.timer.cancel()
                cut.timer = None
        servers = [s.server for s in self._states.values() if s.server is not None]
        if self._control is not None:
            servers.append(self._control)
            self._control = None
        for server in servers:
            server.close()
        for state in self._states.values():
            self._drop_link(state)
        for writer in self._control_writers:
            writer.transport.abort()
        self._control_writers.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in servers:
            await server.wait_closed()
        if self._control_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._control_path.unlink()
            self._control_path = None

    @staticmethod
    def _drop_link(state: _LinkState) -> None:
        """Forget a link's listener (closing one that was bound but never served) and abort its connections."""
        if state.server is None and state.sock is not None:
            state.sock.close()
        state.server = None
        state.sock = None
        for conn in list(state.conns):
            conn.closed = True
            for w in conn.writers():
                w.transport.abort()

    def _track(self, coro: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # forwarding

    def _accept(self, state: _LinkState, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(state.link, writer)
        if self._closing:
            conn.reset()
            return
        state.conns.add(conn)
        conn.task = self._track(self._serve(state, conn, reader), f"faultproxy {state.link.name}")
        conn.task.add_done_callback(lambda _: state.conns.discard(conn))  # also when cancelled before it ran

    async def _serve(self, state: _LinkState, conn: _Conn, reader: asyncio.StreamReader) -> None:
        link = conn.link
        gate = self._gates[link.domain]
        pumps: list[asyncio.Task[None]] = []
        try:
            cut = self._cuts.get(link.domain)
            if cut is not None and cut.mode == "reset":
                conn.reset()
                return
            await gate.wait()  # drop mode: connect to the hub only once restored
            try:
                t_reader, t_writer = await asyncio.open_connection(self.host, link.target_port, limit=STREAM_LIMIT)
            except OSError:
                return
            conn.target = t_writer
            if conn.closed:  # reset while connecting
                conn.reset()
                return
            pumps = [
                self._track(self._pump(reader, t_writer, gate, state, up=True), f"faultproxy {link.name} up"),
                self._track(self._pump(t_reader, conn.client, gate, state, up=False), f"faultproxy {link.name} down"),
            ]
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            if conn.closed:
                for w in conn.writers():
                    w.transport.abort()
            await asyncio.gather(*pumps, return_exceptions=True)
            await conn.shut()

    @staticmethod
    async def _pump(
        src: asyncio.StreamReader, dst: asyncio.StreamWriter, gate: asyncio.Event, state: _LinkState, up: bool
    ) -> None:
        """Copy SRC to DST until EOF; while GATE is clear neither read nor write (a chunk already read is held)."""
        with contextlib.suppress(OSError):
            while True:
                if not gate.is_set():
                    await gate.wait()
                data = await src.read(CHUNK)
                if not data:
                    return
                if not gate.is_set():
                    await gate.wait()
                dst.write(data)
                if up:
                    state.bytes_up += len(data)
                else:
                    state.bytes_down += len(data)
                await dst.drain()

    # faults

    def _check_domain(self, domain: str) -> None:
        if domain not in self._gates:
            known = ", ".join(self._gates) or "none"
            raise KeyError(f"unknown domain {domain!r}: the fault proxy has links for {known}")

    def _conns(self, domain: str) -> list[_Conn]:
        return [c for s in self._states.values() if s.link.domain == domain for c in s.conns]

    def cut(self, domain: str, seconds: float | None, mode: str = "reset") -> dict[str, Any]:
        """Partition DOMAIN now ("reset": close its connections; "drop": stop forwarding), restored after SECONDS.

        A cut of a domain already cut replaces its mode and timer. Returns domain, mode, connections_cut, until.
        """
        self._check_domain(domain)
        if mode not in CUT_MODES:
            raise ValueError(f"unknown cut mode {mode!r}: expected one of {', '.join(CUT_MODES)}")
        if seconds is not None and (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
            or seconds <= 0
        ):
            raise ValueError(f"cut seconds must be a positive number or null, not {seconds!r}")
        loop = asyncio.get_running_loop()
        old = self._cuts.get(domain)
        if old is not None and old.timer is not None:
            old.timer.cancel()
        now = time.time()
        cut = _Cut(
            mode=mode,
            since=old.since if old else now,
            started=old.started if old else time.monotonic(),
            until=now + seconds if seconds is not None else None,
        )
        self._cuts[domain] = cut
        conns = self._conns(domain)
        if mode == "reset":
            for conn in conns:
                conn.reset()
                if conn.task is not None:
                    conn.task.cancel()
            self._gates[domain].set()  # new connections are refused before the gate
        else:
            self._gates[domain].clear()
        if seconds is not None:
            cut.timer = loop.call_later(seconds, self._timer_restore, domain, cut)
        return {"domain": domain, "mode": mode, "connections_cut": len(conns), "until": cut.until}

    def _timer_restore(self, domain: str, cut: _Cut) -> None:
        if self._cuts.get(domain) is cut:
            cut.timer = None
            self.restore(domain)

    def restore(self, domain: str) -> dict[str, Any]:
        """End DOMAIN's partition: forwarding resumes on held connections, new ones are served. Then on_restore."""
        self._check_domain(domain)
        cut = self._cuts.pop(domain, None)
        if cut is None:
            return {"domain": domain, "was_cut": False, "cut_seconds": 0.0}
        if cut.timer is not None:
            cut.timer.cancel()
        self._gates[domain].set()
        result = {"domain": domain, "was_cut": True, "cut_seconds": round(time.monotonic() - cut.started, 3)}
        if self.on_restore is not None:
            try:
                self.on_restore(domain)
            except Exception as exc:
                asyncio.get_running_loop().call_exception_handler(
                    {"message": f"fault proxy on_restore({domain!r}) failed", "exception": exc}
                )
        return result

    def status(self) -> dict[str, Any]:
        """Every link with its open connections and bytes forwarded (up: leaf to hub), and every current cut."""
        links = [
            {
                "domain": s.link.domain,
                "name": s.link.name,
                "listen_port": s.link.listen_port,
                "target_port": s.link.target_port,
                "connections": len(s.conns),
                "bytes_up": s.bytes_up,
                "bytes_down": s.bytes_down,
            }
            for s in self._states.values()
        ]
        cuts = {d: {"mode": c.mode, "since": c.since, "until": c.until} for d, c in self._cuts.items()}
        return {"links": links, "cut": cuts}

    # control socket

    async def serve_control(self, path: Path) -> None:
        """Start the control server on unix socket PATH (mode 0600) and return; it runs until close().

        One JSON object per line each way: {"op": "cut", "domain", "seconds", "mode"} | {"op": "restore", "domain"} |
        {"op": "status"}, answered {"ok": true, "result": {...}} or {"ok": false, "error": "..."}.
        """
        if self._control is not None:
            raise FaultProxyError(f"fault proxy control server already running at {self._control_path}")
        path = Path(path)
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise FaultProxyError(f"cannot create fault proxy control socket {path}: a file that is not a socket")
            path.unlink()  # stale, from a supervisor that died
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
            os.chmod(path, 0o600)
            sock.listen(16)
        except OSError as exc:
            sock.close()
            raise FaultProxyError(f"cannot create fault proxy control socket {path}: {exc.strerror or exc}") from exc
        sock.setblocking(False)
        self._control_path = path
        self._control = await asyncio.start_unix_server(self._accept_control, sock=sock, limit=CONTROL_LINE_LIMIT)

    def _accept_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing:
            writer.transport.abort()
            return
        self._control_writers.add(writer)
        self._track(self._control_session(reader, writer), "faultproxy control")

    async def _control_session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:
                    reply: dict[str, Any] = {"ok": False, "error": f"request longer than {CONTROL_LINE_LIMIT} bytes"}
                    writer.write(json.dumps(reply).encode() + b"\n")
                    await writer.drain()
                    return
                if not line:
                    return
                if not line.strip():
                    continue
                writer.write(json.dumps(self._handle(line)).encode() + b"\n")
                await writer.drain()
        except OSError:
            pass
        finally:
            self._control_writers.discard(writer)
            writer.transport.abort()

    def _handle(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError as exc:
            return {"ok": False, "error": f"request is not JSON: {exc}"}
        if not isinstance(request, dict):
            return {"ok": False, "error": 'request must be a JSON object such as {"op": "status"}'}
        op = request.get("op")
        try:
            if op == "cut":
                mode = request.get("mode", "reset")
                if not isinstance(mode, str):
                    raise ValueError(f"cut mode must be a string, one of {', '.join(CUT_MODES)}")
                result = self.cut(_domain_field(request), request.get("seconds"), mode)
            elif op == "restore":
                result = self.restore(_domain_field(request))
            elif op == "status":
                result = self.status()
            else:
                return {"ok": False, "error": f"unknown op {op!r}: expected one of {', '.join(OPS)}"}
        except KeyError as exc:
            return {"ok": False, "error": str(exc.args[0]) if exc.args else "unknown key"}
        except (ValueError, TypeError) as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # never let a request take the proxy down
            return {"ok": False, "error": f"fault proxy failed on {op}: {type(exc).__name__}: {exc}"}
        return {"ok": True, "result": result}


def _domain_field(request: dict[str, Any]) -> str:
    domain = request.get("domain")
    if not isinstance(domain, str) or not domain:
        raise ValueError(f'{request.get("op")} needs "domain": a domain name string')
    return domain


def control(path: Path, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send REQUEST to the fault proxy's control socket at PATH and return its result.

    Raises FaultProxyError with the proxy's error text, or saying why the proxy could not be reached.
    """
    buf = bytearray()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(request).encode() + b"\n")
            while b"\n" not in buf:
                chunk = sock.recv(CHUNK)
                if not chunk:
                    break
                buf += chunk
    except FileNotFoundError as exc:
        raise FaultProxyError(f"no fault proxy control socket at {path}: is the mesh running?") from exc
    except ConnectionRefusedError as exc:
        raise FaultProxyError(
            f"fault proxy control socket {path} refuses connections: stale from a stopped mesh?"
        ) from exc
    except TimeoutError as exc:
        raise FaultProxyError(f"fault proxy at {path} did not answer within {timeout} s") from exc
    except OSError as exc:
        raise FaultProxyError(f"cannot talk to the fault proxy at {path}: {exc.strerror or exc}") from exc
    try:
        reply = json.loads(buf.split(b"\n", 1)[0])
    except ValueError:
        reply = None
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise FaultProxyError(f"fault proxy at {path} sent no valid reply (got {bytes(buf[:200])!r})")
    if not reply["ok"]:
        raise FaultProxyError(str(reply.get("error") or "fault proxy refused the request without a reason"))
    result = reply.get("result")
    return result if isinstance(result, dict) else {}
