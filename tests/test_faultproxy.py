"""The fault proxy on its own: forwarding, reset and drop partitions, timed restores, the control socket, shutdown.

Echo servers stand in for hub nodes; every port comes from bind_listeners (below 32000), none is fixed.
"""

from __future__ import annotations

import asyncio
import socket
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from natsmesh.errors import FaultProxyError, NatsmeshError
from natsmesh.faults.proxy import FaultProxy, bind_listeners, control
from natsmesh.local.records import ProxyLink
from natsmesh.run.ports import port_problem

HOST = "127.0.0.1"
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass
class Echo:
    """An echo server recording what it received."""

    server: asyncio.Server
    port: int
    received: bytearray = field(default_factory=bytearray)
    writers: set[asyncio.StreamWriter] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def close(self) -> None:
        self.server.close()
        for w in self.writers:
            w.transport.abort()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()


async def start_echo(sock: socket.socket) -> Echo:
    echo: Echo

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        echo.tasks.add(task)
        echo.writers.add(writer)
        try:
            while data := await reader.read(65536):
                echo.received += data
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            echo.writers.discard(writer)
            writer.transport.abort()

    server = await asyncio.start_server(handle, sock=sock)
    echo = Echo(server, sock.getsockname()[1])
    return echo


@dataclass
class Rig:
    proxy: FaultProxy
    echoes: list[Echo]
    a: ProxyLink
    b: ProxyLink
    dead: ProxyLink  # its target port has nothing listening
    conns: list[asyncio.StreamWriter] = field(default_factory=list)

    async def connect(self, link: ProxyLink) -> Streams:
        reader, writer = await asyncio.open_connection(HOST, link.listen_port)
        self.conns.append(writer)
        return reader, writer


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    socks = bind_listeners(HOST, 6, set())
    ports = [s.getsockname()[1] for s in socks]
    echoes = [await start_echo(socks[0]), await start_echo(socks[1])]
    dead_port = ports[2]
    socks[2].close()
    a = ProxyLink("domain-a", "domain-a->hub-0", ports[3], echoes[0].port)
    b = ProxyLink("domain-b", "domain-b->hub-0", ports[4], echoes[1].port)
    dead = ProxyLink("domain-c", "domain-c->hub-0", ports[5], dead_port)
    # a and b come pre-bound (as from the supervisor's parent); dead is bound by start()
    socks[5].close()
    proxy = FaultProxy(HOST, [a, b, dead], sockets={ports[3]: socks[3], ports[4]: socks[4]})
    await proxy.start()
    r = Rig(proxy, echoes, a, b, dead)
    try:
        yield r
    finally:
        for w in r.conns:
            w.transport.abort()
        await proxy.close()
        for e in echoes:
            await e.close()


async def roundtrip(streams: Streams, data: bytes, timeout: float = 2.0) -> bytes:
    reader, writer = streams
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(data)), timeout)


async def closed_within(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True if READER sees EOF or a reset within TIMEOUT seconds (data read meanwhile is ignored)."""
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            if not await asyncio.wait_for(reader.read(65536), left):
                return True
    except ConnectionError:
        return True
    except TimeoutError:
        return False
    return False


async def silent_for(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        await asyncio.wait_for(reader.read(1), seconds)
    except TimeoutError:
        return True
    return False


async def until(check: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def link_status(proxy: FaultProxy, link: ProxyLink) -> dict[str, int]:
    return next(s for s in proxy.status()["links"] if s["name"] == link.name)


async def test_forwards_both_ways_and_counts_bytes(rig: Rig) -> None:
    conn = await rig.connect(rig.a)
    data = bytes(range(256)) * 2048  # 512 KiB
    assert await roundtrip(conn, data) == data
    assert await roundtrip(conn, b"ping") == b"ping"
    st = link_status(rig.proxy, rig.a)
    assert st["connections"] == 1
    assert st["bytes_up"] == st["bytes_down"] == len(data) + 4
    assert st["listen_port"] == rig.a.listen_port and st["target_port"] == rig.a.target_port
    assert link_status(rig.proxy, rig.b)["bytes_up"] == 0
    conn[1].close()
    await until(lambda: link_status(rig.proxy, rig.a)["connections"] == 0)
    await until(lambda: not rig.echoes[0].writers)  # the hub side was closed too


async def test_target_refusing_closes_client(rig: Rig) -> None:
    reader, _ = await rig.connect(rig.dead)
    assert await closed_within(reader, 1.0)
    await until(lambda: link_status(rig.proxy, rig.dead)["connections"] == 0)


async def test_reset_cut_closes_connections_and_refuses_new_ones(rig: Rig) -> None:
    a1, a2, b1 = await rig.connect(rig.a), await rig.connect(rig.a), await rig.connect(rig.b)
    for c in (a1, a2, b1):
        assert await roundtrip(c, b"hello") == b"hello"
    res = rig.proxy.cut("domain-a", None)
    assert res == {"domain": "domain-a", "mode": "reset", "connections_cut": 2, "until": None}
    assert await closed_within(a1[0], 0.5)
    assert await closed_within(a2[0], 0.5)
    await until(lambda: not rig.echoes[0].writers, 0.5)  # the hub side is gone as well
    new = await rig.connect(rig.a)  # accepted, then closed at once
    assert await closed_within(new[0], 0.5)
    assert await roundtrip(b1, b"still there") == b"still there"  # domain-b unaffected
    assert await roundtrip(await rig.connect(rig.b), b"new b") == b"new b"
    assert rig.proxy.status()["cut"]["domain-a"]["mode"] == "reset"
    restored = rig.proxy.restore("domain-a")
    assert restored["was_cut"] is True and restored["cut_seconds"] >= 0
    assert await roundtrip(await rig.connect(rig.a), b"back") == b"back"
    assert rig.proxy.restore("domain-a") == {"domain": "domain-a", "was_cut": False, "cut_seconds": 0.0}


async def test_timer_restore_restores_service_and_calls_on_restore(rig: Rig) -> None:
    restored: list[str] = []
    rig.proxy.on_restore = restored.append
    res = rig.proxy.cut("domain-a", 10)
    res = rig.proxy.cut("domain-a", 0.3)  # replaces the first timer
    assert res["until"] is not None and res["until"] == pytest.approx(time.time() + 0.3, abs=0.2)
    assert rig.proxy.status()["cut"]["domain-a"]["until"] == res["until"]
    assert await closed_within((await rig.connect(rig.a))[0], 0.25)
    await until(lambda: restored == ["domain-a"])
    assert rig.proxy.status()["cut"] == {}
    assert await roundtrip(await rig.connect(rig.a), b"healed") == b"healed"


async def test_drop_holds_bytes_until_restore_on_the_same_connection(rig: Rig) -> None:
    conn = await rig.connect(rig.a)
    b1 = await rig.connect(rig.b)
    assert await roundtrip(conn, b"before") == b"before"
    res = rig.proxy.cut("domain-a", None, mode="drop")
    assert res["connections_cut"] == 1 and res["mode"] == "drop"
    conn[1].write(b"during the cut")
    await conn[1].drain()
    fresh = await rig.connect(rig.a)  # accepted, but not forwarded
    fresh[1].write(b"fresh")
    await fresh[1].drain()
    assert await silent_for(conn[0], 0.3)
    assert await silent_for(fresh[0], 0.05)
    assert bytes(rig.echoes[0].received) == b"before"  # nothing reached the hub side
    assert await roundtrip(b1, b"b works") == b"b works"  # domain-b unaffected
    assert link_status(rig.proxy, rig.a)["connections"] == 2
    rig.proxy.restore("domain-a")
    assert await asyncio.wait_for(conn[0].readexactly(14), 2) == b"during the cut"
    assert await asyncio.wait_for(fresh[0].readexactly(5), 2) == b"fresh"
    assert await roundtrip(conn, b"after") == b"after"


async def test_drop_then_reset_closes_held_connections(rig: Rig) -> None:
    conn = await rig.connect(rig.a)
    assert await roundtrip(conn, b"x") == b"x"
    rig.proxy.cut("domain-a", None, mode="drop")
    assert rig.proxy.cut("domain-a", None, mode="reset")["connections_cut"] == 1
    assert await closed_within(conn[0], 0.5)
    await until(lambda: link_status(rig.proxy, rig.a)["connections"] == 0)


async def test_bad_cut_arguments(rig: Rig) -> None:
    with pytest.raises(KeyError, match="domain-a, domain-b, domain-c"):
        rig.proxy.cut("nope", None)
    with pytest.raises(ValueError, match="mode"):
        rig.proxy.cut("domain-a", None, mode="explode")
    with pytest.raises(ValueError, match="seconds"):
        rig.proxy.cut("domain-a", -1)
    with pytest.raises(KeyError):
        rig.proxy.restore("nope")
    assert rig.proxy.status()["cut"] == {}


async def test_control_socket_round_trip(rig: Rig, tmp_path: Path) -> None:
    path = tmp_path / "faults.sock"
    path.touch()
    with pytest.raises(FaultProxyError, match="not a socket"):
        await rig.proxy.serve_control(path)
    path.unlink()
    await rig.proxy.serve_control(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    async def ask(request: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(control, path, request)

    cut = await ask({"op": "cut", "domain": "domain-b", "seconds": 5, "mode": "drop"})
    assert cut["domain"] == "domain-b" and cut["mode"] == "drop" and cut["connections_cut"] == 0
    status = await ask({"op": "status"})
    assert set(status["cut"]) == {"domain-b"}
    assert [link["name"] for link in status["links"]] == [rig.a.name, rig.b.name, rig.dead.name]
    restored = await ask({"op": "restore", "domain": "domain-b"})
    assert restored["was_cut"] is True
    assert (await ask({"op": "status"}))["cut"] == {}

    with pytest.raises(FaultProxyError, match="unknown op 'explode'"):
        await ask({"op": "explode"})
    with pytest.raises(FaultProxyError, match=r"unknown domain 'nope'.*domain-a, domain-b, domain-c") as exc:
        await ask({"op": "cut", "domain": "nope"})
    assert isinstance(exc.value, NatsmeshError)
    with pytest.raises(FaultProxyError, match="domain"):
        await ask({"op": "restore"})
    with pytest.raises(FaultProxyError, match="seconds"):
        await ask({"op": "cut", "domain": "domain-a", "seconds": "soon"})

    # raw protocol: several requests on one connection, garbage answered rather than fatal
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(b'not json\n[1]\n{"op": "status"}\n')
    replies = [await asyncio.wait_for(reader.readline(), 2) for _ in range(3)]
    assert [b'"ok": false' in r for r in replies] == [True, True, False]
    writer.close()

    await rig.proxy.close()
    assert not path.exists()
    with pytest.raises(FaultProxyError, match="no fault proxy control socket"):
        await ask({"op": "status"})


async def test_control_refused_socket(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))  # bound, never listening: like a socket left by a dead supervisor
    with pytest.raises(FaultProxyError, match="refuses connections"):
        control(path, {"op": "status"})


async def test_close_leaves_no_port_and_no_task(rig: Rig) -> None:
    held = await rig.connect(rig.a)
    assert await roundtrip(held, b"x") == b"x"
    rig.proxy.cut("domain-b", 30, mode="drop")
    pending = await rig.connect(rig.b)  # held unforwarded by the drop cut
    await until(lambda: link_status(rig.proxy, rig.b)["connections"] == 1)
    await rig.proxy.close()
    await rig.proxy.close()  # idempotent
    assert await closed_within(held[0], 0.5)
    assert await closed_within(pending[0], 0.5)
    for link in (rig.a, rig.b, rig.dead):
        assert port_problem(HOST, link.listen_port) is None
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(HOST, link.listen_port)
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("faultproxy")] == []


def test_bind_listeners_skips_avoided_and_used_ports() -> None:
    first = bind_listeners(HOST, 3, set(), low=20000, high=32000)
    try:
        ports = [s.getsockname()[1] for s in first]
        assert len(set(ports)) == 3 and all(20000 <= p < 32000 for p in ports)
        assert all(not s.getblocking() for s in first)
        # a range holding only used or avoided ports cannot be bound
        with pytest.raises(RuntimeError, match="cannot bind 1"):
            bind_listeners(HOST, 1, set(), low=ports[0], high=ports[0] + 1)  # in use
        free = first.pop()
        free.close()
        with pytest.raises(RuntimeError, match="cannot bind 1"):
            bind_listeners(HOST, 1, {ports[2]}, low=ports[2], high=ports[2] + 1)  # avoided
        again = bind_listeners(HOST, 1, set(), low=ports[2], high=ports[2] + 1)
        assert [s.getsockname()[1] for s in again] == [ports[2]]
        again[0].close()
    finally:
        for s in first:
            s.close()


async def test_many_connections_and_throughput(rig: Rig) -> None:
    data = b"z" * (4 * 1024 * 1024)

    async def one() -> None:
        assert await roundtrip(await rig.connect(rig.a), data, timeout=5) == data

    started = time.monotonic()
    jobs: list[Awaitable[None]] = [one() for _ in range(4)]
    await asyncio.gather(*jobs)
    elapsed = time.monotonic() - started
    st = link_status(rig.proxy, rig.a)
    assert st["bytes_up"] == st["bytes_down"] == 4 * len(data)
    assert elapsed < 2.0  # 32 MiB through the proxy both ways
