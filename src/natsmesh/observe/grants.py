"""Which copies the hub refuses (operator mode), and why: imports the servers dropped for want of a valid activation.

nats-server says nothing about a refused import but at debug level, and the copy just stays silent with lag 0.
Here the hub's ACCOUNTZ of each account that takes something is compared with the imports its claims carry
(`natsmesh.render.trust`): an import the hub does not hold, or holds as invalid, is refused. Why is read from the
JWTs the hub's resolver holds (`natsmesh.model.jwt.activation_problem`): no activation, one signed by another key,
for another account, expired, or revoked. In config mode there is nothing to refuse: the imports are the configs'.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from nats.aio.client import Client

from natsmesh.model import jwt
from natsmesh.model.identities import Credentials
from natsmesh.model.mesh import Mesh
from natsmesh.observe.connect import connect_system
from natsmesh.observe.system import collect
from natsmesh.observe.wire import Accountz, claims_list
from natsmesh.render.trust import realise

TIMEOUT = 2.0


@dataclass(frozen=True)
class Refusal:
    """An import the hub does not hold: account TAKER's import of OWNER's SUBJECT, and WHY (if seen)."""

    taker: str
    owner: str
    subject: str
    why: str = ""

    def __str__(self) -> str:
        why = f": {self.why}" if self.why else ""
        return (
            f"the hub refuses {self.taker}'s import of {self.subject} from {self.owner}{why} "
            "(waiting for the owner's signature)"
        )


async def lookup_claims(nc: Client, account: str, timeout: float = TIMEOUT) -> str | None:
    """The JWT of ACCOUNT the hub's resolver holds (`$SYS.REQ.ACCOUNT.<key>.CLAIMS.LOOKUP`), or None."""
    try:
        msg = await nc.request(f"$SYS.REQ.ACCOUNT.{account}.CLAIMS.LOOKUP", b"", timeout=timeout)
    except Exception:  # not found answers nothing on some versions: treat as absent
        return None
    text = msg.data.decode(errors="replace").strip()
    return text if text.count(".") == 2 and not text.startswith("{") else None


async def resolver_accounts(nc: Client, timeout: float = TIMEOUT) -> set[str]:
    """Every account the hub's resolver holds, by key (`$SYS.REQ.CLAIMS.LIST`; a full resolver's servers hold the
    same set, so one answer says it)."""
    msg = await nc.request("$SYS.REQ.CLAIMS.LIST", b"", timeout=timeout)
    return set(claims_list(msg.data))


def _why(taker_jwt: str | None, owner_jwt: str | None, taker: str, owner: str, subject: str) -> str:
    """Why the hub refuses TAKER's import of OWNER's SUBJECT, from the JWTs its resolver holds."""
    if taker_jwt is None:
        return "the hub's resolver holds no claims of the importing account"
    if owner_jwt is None:
        return "the hub's resolver holds no claims of the exporting account"
    with contextlib.suppress(ValueError):
        claims, exporter = jwt.decode(taker_jwt), jwt.decode(owner_jwt)
        for item in (claims.get("nats") or {}).get("imports") or []:
            if isinstance(item, dict) and item.get("account") == owner and item.get("subject") == subject:
                return jwt.activation_problem(str(item.get("token") or ""), taker, exporter, subject, int(time.time()))
        return "the importing account's claims at the hub do not carry this import"
    return "the hub holds claims it cannot read"


async def refusals(mesh: Mesh, creds: Credentials, timeout: float = TIMEOUT) -> list[Refusal]:
    """Every import the hub's claims carry that the hub does not hold, with why (empty in config mode)."""
    wanted = realise(mesh, creds).imports()
    if not wanted:
        return []
    takers = {i.taker_key: i.taker for i in wanted}
    hub = {n.name for n in mesh.hub.nodes}

    async def one(key: str) -> list[Accountz]:
        got = await collect(mesh, creds, ["ACCOUNTZ"], timeout=timeout, body={"account": key}, expected=hub)
        return [r.data for r in got["ACCOUNTZ"].replies.values()]

    keys = sorted(takers)
    states = dict(zip(keys, await asyncio.gather(*(one(k) for k in keys)), strict=True))
    # refused where no hub server keeps it: a server the account has no connection on may not have loaded it
    # (its ACCOUNTZ then lists no import), while the one its leaf links to holds the import and the copy flows
    refused = [
        i
        for i in wanted
        if (replies := states.get(i.taker_key)) and not any(a.kept(i.subject, i.owner_key) for a in replies)
    ]
    if not refused:
        return []
    nc = await connect_system(mesh, creds, cluster=mesh.hub)
    try:
        accounts = sorted({k for i in refused for k in (i.taker_key, i.owner_key)})
        held = dict(zip(accounts, await asyncio.gather(*(lookup_claims(nc, k) for k in accounts)), strict=True))
    finally:
        await nc.close()
    return [
        Refusal(
            i.taker, i.owner, i.subject, _why(held[i.taker_key], held[i.owner_key], i.taker_key, i.owner_key, i.subject)
        )
        for i in refused
    ]
