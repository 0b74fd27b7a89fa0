"""Keeping the hub's resolver in step with the spec (operator mode): push each account JWT that says something new.

The accounts come from `natsmesh.render.trust` (`Realisation.claims`); in config mode there are none and this
does nothing. Each is looked up first (`$SYS.REQ.ACCOUNT.<key>.CLAIMS.LOOKUP`) and pushed
(`$SYS.REQ.CLAIMS.UPDATE`) only if what it says differs, with an issue time after the one the resolver holds (it
refuses an older JWT). A push reaches every hub node through the resolver's own sync; no config changes and no
server reloads.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from nats.aio.client import Client

from natsmesh.errors import ApplyError, NotRunningError
from natsmesh.model import jwt
from natsmesh.model.identities import Credentials
from natsmesh.model.mesh import Mesh
from natsmesh.observe.connect import connect_system
from natsmesh.observe.grants import lookup_claims
from natsmesh.observe.wire import claims_refusal
from natsmesh.render.trust import realise

TIMEOUT = 2.0
PUSH_TIMEOUT = 10.0  # a hub linking 500 leaves at once answered a push in more than 2 s


@dataclass
class ClaimsChange:
    """Which accounts a push changed (by name), and which were already as the spec says."""

    pushed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return f"pushed to the hub's resolver: {', '.join(self.pushed)}" if self.pushed else ""


def says(token: str) -> object:
    """What a JWT says, its issue time and id aside."""
    doc = jwt.decode(token)
    return {k: v for k, v in doc.items() if k not in ("iat", "jti")}


async def _update(nc: Client, token: str, servers: int, timeout: float = PUSH_TIMEOUT) -> list[bytes]:
    """Push TOKEN to the hub's resolver and wait for every one of its SERVERS to answer (the first answer alone
    would leave a server that has not taken it yet to meet the next client with the account's old claims), for
    at most TIMEOUT; the resolver's own sync brings the push to a server that did not answer."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, max_msgs=servers)
    replies: list[bytes] = []
    try:
        await nc.publish("$SYS.REQ.CLAIMS.UPDATE", token.encode(), reply=inbox)
        deadline = time.monotonic() + timeout
        while len(replies) < servers and (left := deadline - time.monotonic()) > 0:
            try:
                replies.append((await sub.next_msg(timeout=left)).data)
            except TimeoutError:
                break
            deadline = min(deadline, time.monotonic() + TIMEOUT)  # once one answered, the others get TIMEOUT
    finally:
        await sub.unsubscribe()
    if not replies:  # a hub still starting, or too busy: `push_when_up` asks again
        raise NotRunningError(f"the hub's resolver did not answer a claims push within {timeout:g} s")
    return replies


async def push_claims(
    mesh: Mesh, creds: Credentials, nc: Client | None = None, *, dry_run: bool = False
) -> ClaimsChange:
    """Push every account of MESH's hub whose claims differ from what its resolver holds (operator mode); with
    DRY_RUN only say which."""
    now = int(time.time())
    wanted = realise(mesh, creds).claims(now)
    change = ClaimsChange()
    if not wanted:
        return change
    own = nc is None
    conn = nc or await connect_system(mesh, creds, cluster=mesh.hub)
    try:
        for account, token in wanted.items():
            name = str(jwt.decode(token).get("name") or account)
            held = await lookup_claims(conn, account)
            if held is not None and says(held) == says(token):
                change.unchanged.append(name)
                continue
            if dry_run:
                change.pushed.append(name)
                continue
            if held is not None and int(jwt.decode(held).get("iat") or 0) >= now:  # not older than what it holds
                token = realise(mesh, creds).claims(int(jwt.decode(held)["iat"]) + 1)[account]
            for reply in await _update(conn, token, len(mesh.hub.nodes)):
                if (why := claims_refusal(reply)) is not None:
                    raise ApplyError(f"the hub's resolver refused account {name}: {why}")
            change.pushed.append(name)
    finally:
        if own:
            await conn.close()
    return change


async def push_when_up(mesh: Mesh, creds: Credentials, timeout: float = 30.0) -> ClaimsChange:
    """`push_claims` as soon as the hub's system account answers (a mesh just started), for at most TIMEOUT."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await push_claims(mesh, creds)
        except NotRunningError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
