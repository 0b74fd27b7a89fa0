"""Reading the running mesh through the system account: one request, many replies.

A `$SYS.REQ.SERVER.PING.*` request at a hub server reaches every server whose system account is bridged over
its leaf links (`leafnodes.system_bridge`); without the bridge the same request goes to each cluster at once.
`ping` collects replies until every expected server has answered, or a bounded wait ends, and says which
servers stayed silent.

Anyone who may publish on a system account's inbox can answer a ping (a domain's folder holds its own cluster's
system user), so a reply is believed only where it can be true: its server is one the spec places in the cluster
that was asked, with that cluster's name, and it answered once. Anything else is dropped and listed as a conflict
naming the cluster whose system account carried it. Reports, readiness, lag, metrics and the portal all read
through here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from nats.aio.client import Client
from nats.aio.msg import Msg

from natsmesh.errors import NotRunningError
from natsmesh.model.identities import Credentials, account_of
from natsmesh.model.mesh import Mesh
from natsmesh.model.topology import Cluster
from natsmesh.observe.connect import connect_system
from natsmesh.observe.wire import JSZ_STREAMS_BODY, ServerReply, server_reply
from natsmesh.render.trust import realise

T = TypeVar("T")

# What each report asks: the STATSZ ping has no suffix.
SUBJECTS = {
    "STATSZ": "$SYS.REQ.SERVER.PING",
    "JSZ": "$SYS.REQ.SERVER.PING.JSZ",
    "JSZS": "$SYS.REQ.SERVER.PING.JSZ",  # with every stream a server leads (`natsmesh.observe.wire.JszStreams`)
    "VARZ": "$SYS.REQ.SERVER.PING.VARZ",
    "LEAFZ": "$SYS.REQ.SERVER.PING.LEAFZ",
    "HEALTHZ": "$SYS.REQ.SERVER.PING.HEALTHZ",
    "ACCOUNTZ": "$SYS.REQ.SERVER.PING.ACCOUNTZ",  # with {"account": <key>}: that account's imports, complete or not
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


def _conflict(out: Replies[Any], text: str) -> None:
    if text not in out.conflicts and len(out.conflicts) < MAX_CONFLICTS:
        out.conflicts.append(text)


MAX_CONFLICTS = 100  # listed per ping; a flood of forged replies is not kept in memory


async def ping(
    nc: Client, kind: str, expected: dict[str, str], timeout: float = 3.0, body: Any = None, asked: str = ""
) -> Replies[Any]:
    """Send one system ping on NC (the system account of cluster ASKED, for messages); return as soon as every
    EXPECTED server (name -> the cluster the spec places it in) answered, or after TIMEOUT. A reply is kept only
    from an expected server naming its own cluster, answering once; any other is a conflict."""
    out: Replies[Any] = Replies(kind=kind)
    done = asyncio.Event()
    start = time.monotonic()
    on = f"on the system account of {asked}" if asked else "on this system account"
    answers: dict[str, int] = {}

    async def on_reply(msg: Msg) -> None:
        reply = server_reply(kind, msg.data)
        if reply is None:
            return
        # Judged by the JetStream domain a server names: natsmesh gives every cluster one of the cluster's name,
        # and a single-node cluster has no `cluster {}` block (it names no cluster, or its own server name)
        name, cluster = reply.server.name, reply.server.domain or reply.server.cluster
        if name not in expected:  # no server of the cluster asked: someone answers in another's name
            _conflict(out, f"{name[:80]!r} (cluster {cluster[:80]!r}) answered {on}, where it does not run")
            return
        if cluster != expected[name]:
            _conflict(out, f"{name} answered {on} naming domain {cluster[:80]!r}, not its own {expected[name]!r}")
            out.replies.pop(name, None)
            answers[name] = answers.get(name, 0) + 2  # never believed in this round
            return
        answers[name] = answers.get(name, 0) + 1
        if answers[name] > 1:  # a server answers once: someone else answers in its name
            out.replies.pop(name, None)
            _conflict(out, f"{name} answered more than once {on} (someone answers in its name)")
            return
        out.replies[name] = reply
        out.rtt[name] = time.monotonic() - start
        if expected.keys() <= out.replies.keys():
            done.set()

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=on_reply)
    await nc.publish(SUBJECTS[kind], json.dumps(body or {}).encode(), reply=inbox)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout)
    await sub.unsubscribe()
    out.seconds = time.monotonic() - start
    out.missing = sorted(expected.keys() - out.replies.keys())
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
    placed = {n.name: c.name for c in mesh.clusters for n in c.nodes}

    async def at(cluster: Cluster, want: set[str], asked: str) -> list[Replies[Any]]:
        if pool is not None:
            nc = await pool.connection(cluster, min(timeout, 2.0))
        else:
            nc = await connect_system(mesh, creds, timeout=min(timeout, 2.0), cluster=cluster)
        where = {name: placed[name] for name in want if name in placed}
        try:
            pings = (ping(nc, k, where, timeout, body or BODIES.get(k), asked) for k in kinds)
            return list(await asyncio.gather(*pings))
        finally:
            if pool is None:
                await nc.close()

    if mesh.system_bridge and creds.holder is None:  # a party's folder reaches only its own cluster's
        bridged = dict(zip(kinds, await at(mesh.hub, expected, "the hub (bridged to every cluster)"), strict=True))
        for r in bridged.values():
            r.missing = sorted(set(r.missing) | (expected - placed.keys()))
        return _accounts_named(mesh, creds, bridged)
    clusters = [c for c in mesh.clusters if any(n.name in expected for n in c.nodes)]
    errors: list[str] = []

    async def one(cluster: Cluster) -> list[Replies[Any]]:
        want = {n.name for n in cluster.nodes} & expected
        try:
            return await at(cluster, want, cluster.name)
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
    return _accounts_named(mesh, creds, out)


def _accounts_named(mesh: Mesh, creds: Credentials, out: dict[str, Replies[Any]]) -> dict[str, Replies[Any]]:
    """OUT with every leaf link's account by its domain's account name, as the hub's servers report it under
    another (operator mode: its public key), so reports, metrics and readiness read one name in either mode."""
    leafz = out.get("LEAFZ")
    trust = realise(mesh, creds)
    names = {trust.hub_account(d.name): account_of(d.name) for d in mesh.domains}
    names = {reported: name for reported, name in names.items() if reported and reported != name}
    if leafz is None or not names:
        return out
    for server, reply in leafz.replies.items():
        links = tuple(replace(lf, account=names.get(lf.account, lf.account)) for lf in reply.data.leafs)
        leafz.replies[server] = replace(reply, data=replace(reply.data, leafs=links))
    return out


def collect_sync(mesh: Mesh, creds: Credentials, kinds: list[str], **options: Any) -> dict[str, Replies[Any]]:
    """`collect` from synchronous code; OPTIONS as `collect` takes them (timeout, body, expected)."""
    return asyncio.run(collect(mesh, creds, kinds, **options))
