"""Reading the running mesh through the system account: one request, many replies.

A `$SYS.REQ.SERVER.PING.*` request at a hub server reaches every server whose system account is bridged over
its leaf links (`leafnodes.system_bridge`); without the bridge the same request goes to each cluster at once.
`ping` collects replies until every expected server has answered, or a bounded wait ends, and says which
servers stayed silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from nats.aio.client import Client
from nats.aio.msg import Msg

from natsmesh.errors import NotRunningError
from natsmesh.model.identities import Credentials
from natsmesh.model.mesh import Mesh
from natsmesh.model.topology import Cluster
from natsmesh.observe.connect import connect_system
from natsmesh.observe.wire import JSZ_STREAMS_BODY, ServerReply, server_reply

T = TypeVar("T")

# What each report asks: the STATSZ ping has no suffix.
SUBJECTS = {
    "STATSZ": "$SYS.REQ.SERVER.PING",
    "JSZ": "$SYS.REQ.SERVER.PING.JSZ",
    "JSZS": "$SYS.REQ.SERVER.PING.JSZ",  # with every stream a server leads (`natsmesh.observe.wire.JszStreams`)
    "VARZ": "$SYS.REQ.SERVER.PING.VARZ",
    "LEAFZ": "$SYS.REQ.SERVER.PING.LEAFZ",
    "HEALTHZ": "$SYS.REQ.SERVER.PING.HEALTHZ",
}

BODIES: dict[str, dict[str, Any]] = {"JSZS": JSZ_STREAMS_BODY}  # what a kind asks for unless a body is given


@dataclass
class Replies(Generic[T]):
    """Replies to one system ping, keyed by server name, each typed by its kind (`natsmesh.observe.wire`)."""

    kind: str
    replies: dict[str, ServerReply[T]] = field(default_factory=dict)
    rtt: dict[str, float] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    seconds: float = 0.0
    conflicts: list[str] = field(default_factory=list)  # servers answered for more than once (not trusted)

    def data(self, name: str) -> T | None:
        """What server NAME said, or None if it did not answer."""
        reply = self.replies.get(name)
        return reply.data if reply is not None else None


async def ping(nc: Client, kind: str, expected: set[str], timeout: float = 3.0, body: Any = None) -> Replies[Any]:
    """Send one system ping; return as soon as every EXPECTED server answered, or after TIMEOUT."""
    out: Replies[Any] = Replies(kind=kind)
    done = asyncio.Event()
    start = time.monotonic()

    answers: dict[str, int] = {}

    async def on_reply(msg: Msg) -> None:
        reply = server_reply(kind, msg.data)
        if reply is None:
            return
        name = reply.server.name
        answers[name] = answers.get(name, 0) + 1
        if answers[name] > 1:  # a server answers once: someone else answers in its name
            out.replies.pop(name, None)
            if name not in out.conflicts:
                out.conflicts.append(name)
            return
        out.replies[name] = reply
        out.rtt[name] = time.monotonic() - start
        if expected <= out.replies.keys():
            done.set()

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=on_reply)
    await nc.publish(SUBJECTS[kind], json.dumps(body or {}).encode(), reply=inbox)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout)
    await sub.unsubscribe()
    out.seconds = time.monotonic() - start
    out.missing = sorted(expected - out.replies.keys())
    return out


class SystemPool:
    """System-account connections kept open, one per cluster, for a process that asks again and again."""

    def __init__(self, mesh: Mesh, creds: Credentials) -> None:
        self.mesh, self.creds = mesh, creds
        self._conns: dict[str, Client] = {}

    async def connection(self, cluster: Cluster, timeout: float) -> Client:
        nc = self._conns.get(cluster.name)
        if nc is None or not nc.is_connected:
            if nc is not None:
                with contextlib.suppress(Exception):
                    await nc.close()
            nc = await connect_system(self.mesh, self.creds, timeout=timeout, cluster=cluster)
            self._conns[cluster.name] = nc
        return nc

    async def close(self) -> None:
        for nc in self._conns.values():
            with contextlib.suppress(Exception):
                await nc.close()
        self._conns.clear()


async def collect(
    mesh: Mesh,
    creds: Credentials,
    kinds: list[str],
    timeout: float = 3.0,
    body: dict[str, Any] | None = None,
    expected: set[str] | None = None,
    pool: SystemPool | None = None,
) -> dict[str, Replies[Any]]:
    """Several pings at once; EXPECTED defaults to every server of the mesh.

    With the system account bridged, over one connection at the hub; otherwise over one connection per
    cluster, all in parallel, each ping expecting only that cluster's servers (a cluster that cannot be
    reached shows up as missing servers, not as a failure, unless none can be). With POOL, its connections
    are used and kept for the next call (a process that asks every few seconds: `natsmesh serve`)."""
    if expected is None:
        expected = {n.name for n in mesh.nodes()}

    async def at(cluster: Cluster, want: set[str]) -> list[Replies[Any]]:
        if pool is not None:
            nc = await pool.connection(cluster, min(timeout, 2.0))
        else:
            nc = await connect_system(mesh, creds, timeout=min(timeout, 2.0), cluster=cluster)
        try:
            return list(await asyncio.gather(*(ping(nc, k, want, timeout, body or BODIES.get(k)) for k in kinds)))
        finally:
            if pool is None:
                await nc.close()

    if mesh.system_bridge and creds.holder is None:  # a party's folder reaches only its own cluster's
        return dict(zip(kinds, await at(mesh.hub, expected), strict=True))
    clusters = [c for c in mesh.clusters if any(n.name in expected for n in c.nodes)]
    errors: list[str] = []

    async def one(cluster: Cluster) -> list[Replies[Any]]:
        want = {n.name for n in cluster.nodes} & expected
        try:
            return await at(cluster, want)
        except NotRunningError as exc:
            errors.append(str(exc))
            return [Replies(kind=k, missing=sorted(want)) for k in kinds]

    parts = await asyncio.gather(*(one(c) for c in clusters))
    if clusters and len(errors) == len(clusters):
        raise NotRunningError(errors[0])
    unknown = sorted(expected - {n.name for n in mesh.nodes()})  # expected, but in no cluster to ask
    out = {}
    for i, kind in enumerate(kinds):
        merged: Replies[Any] = Replies(kind=kind, missing=list(unknown))
        for part in parts:
            r = part[i]
            merged.replies.update(r.replies)
            merged.rtt.update(r.rtt)
            merged.missing += r.missing
            merged.conflicts += r.conflicts
            merged.seconds = max(merged.seconds, r.seconds)
        merged.missing.sort()
        out[kind] = merged
    return out


def collect_sync(mesh: Mesh, creds: Credentials, kinds: list[str], **options: Any) -> dict[str, Replies[Any]]:
    """`collect` from synchronous code; OPTIONS as `collect` takes them (timeout, body, expected)."""
    return asyncio.run(collect(mesh, creds, kinds, **options))
