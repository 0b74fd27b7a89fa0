"""Reading the running mesh through the system account: one request, many replies.

A `$SYS.REQ.SERVER.PING.*` request at a hub server reaches every server whose system account is bridged over
its leaf links. `ping` collects replies until every expected server has answered, or a bounded wait ends, and
says which servers stayed silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from natsmesh.certs import client_context
from natsmesh.credentials import Credentials
from natsmesh.errors import NotRunningError
from natsmesh.spec import Mesh

# What each report asks: the STATSZ ping has no suffix.
SUBJECTS = {
    "STATSZ": "$SYS.REQ.SERVER.PING",
    "JSZ": "$SYS.REQ.SERVER.PING.JSZ",
    "VARZ": "$SYS.REQ.SERVER.PING.VARZ",
    "LEAFZ": "$SYS.REQ.SERVER.PING.LEAFZ",
    "HEALTHZ": "$SYS.REQ.SERVER.PING.HEALTHZ",
}


@dataclass
class Replies:
    """Replies to one system ping, keyed by server name."""

    kind: str
    replies: dict[str, dict[str, Any]] = field(default_factory=dict)
    rtt: dict[str, float] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    seconds: float = 0.0


def system_urls(mesh: Mesh, creds: Credentials) -> list[str]:
    """System-account URLs at every hub server (nats-py tries them in turn)."""
    from urllib.parse import quote

    user, pw = quote(creds.system_user, safe=""), quote(creds.system_password, safe="")
    return [f"{mesh.scheme}://{user}:{pw}@{mesh.host}:{n.client_port}" for n in mesh.hub.nodes]


async def connect_system(mesh: Mesh, creds: Credentials, timeout: float = 2.0) -> Client:
    try:
        return await nats.connect(
            servers=system_urls(mesh, creds),
            tls=client_context(mesh),
            connect_timeout=timeout,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            name="natsmesh-observe",
        )
    except Exception as exc:  # nats-py raises several kinds; all mean "not reachable"
        raise NotRunningError(
            f"cannot reach the system account of mesh {mesh.name!r} at its hub "
            f"({mesh.host}:{', '.join(str(n.client_port) for n in mesh.hub.nodes)}): {exc or type(exc).__name__}; "
            "is it up (`natsmesh status`)?"
        ) from None


async def ping(
    nc: Client,
    kind: str,
    expected: set[str],
    timeout: float = 3.0,
    body: dict[str, Any] | None = None,
) -> Replies:
    """Send one system ping; return as soon as every EXPECTED server answered, or after TIMEOUT."""
    out = Replies(kind=kind)
    done = asyncio.Event()
    start = time.monotonic()

    async def on_reply(msg: Msg) -> None:
        try:
            data = json.loads(msg.data)
        except ValueError:
            return
        name = (data.get("server") or {}).get("name")
        if not name:
            return
        out.replies[name] = data
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


async def collect(
    mesh: Mesh,
    creds: Credentials,
    kinds: list[str],
    timeout: float = 3.0,
    body: dict[str, Any] | None = None,
    expected: set[str] | None = None,
) -> dict[str, Replies]:
    """Several pings at once over one system connection; EXPECTED defaults to every server of the mesh."""
    if expected is None:
        expected = {n.name for n in mesh.nodes()}
    nc = await connect_system(mesh, creds, timeout=min(timeout, 2.0))
    try:
        results = await asyncio.gather(*(ping(nc, k, expected, timeout, body) for k in kinds))
    finally:
        await nc.close()
    return dict(zip(kinds, results, strict=True))


def collect_sync(
    mesh: Mesh,
    creds: Credentials,
    kinds: list[str],
    timeout: float = 3.0,
    body: dict[str, Any] | None = None,
    expected: set[str] | None = None,
) -> dict[str, Replies]:
    return asyncio.run(collect(mesh, creds, kinds, timeout, body, expected))
