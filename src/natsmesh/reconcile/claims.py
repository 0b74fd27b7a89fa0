"""Keeping the hub's resolver in step with the spec (operator mode): push each account JWT that says something new.

The accounts come from `natsmesh.render.trust` (`Realisation.claims`); in config mode there are none and this
does nothing. Each is looked up first (`$SYS.REQ.ACCOUNT.<key>.CLAIMS.LOOKUP`) and pushed
(`$SYS.REQ.CLAIMS.UPDATE`) only if what it says differs, with an issue time after the one the resolver holds (it
refuses an older JWT). A push reaches every hub node through the resolver's own sync; no config changes and no
server reloads.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field

from nats.aio.client import Client

from natsmesh.errors import ApplyError, NotRunningError
from natsmesh.model import jwt
from natsmesh.model.identities import Credentials
from natsmesh.model.mesh import Mesh
from natsmesh.observe.connect import connect_system
from natsmesh.observe.grants import lookup_claims
from natsmesh.observe.wire import claims_account, claims_refusal
from natsmesh.reconcile.concurrency import bounded
from natsmesh.render.trust import realise

TIMEOUT = 2.0
LOOKUPS_AT_ONCE = 64
PUSH_TIMEOUT = 10.0  # a hub linking 500 leaves at once answered a push in more than 2 s


@dataclass
class ClaimsChange:
    """Which accounts a push changed (by name), and which were already as the spec says."""

    pushed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return f"pushed to the hub's resolver: {', '.join(self.pushed)}" if self.pushed else ""


async def push_tokens(
    nc: Client, tokens: dict[str, str], servers: int, timeout: float = PUSH_TIMEOUT
) -> dict[str, list[bytes]]:
    """Push TOKENS (by account) to a resolver (the hub's, or a domain's own), pipelined, and wait until every one of
    its SERVERS answered
    for each (the first answer alone would leave a server that has not taken it yet to meet the next client with
    the account's old claims): at most TIMEOUT for the first answers, TIMEOUT more once answers come; the
    resolver's own sync brings a push to a server that did not answer. Returns the answers by account."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    answers: dict[str, list[bytes]] = {account: [] for account in tokens}
    got = 0
    try:
        for token in tokens.values():
            await nc.publish("$SYS.REQ.CLAIMS.UPDATE", token.encode(), reply=inbox)
        await nc.flush()
        deadline = time.monotonic() + timeout
        while got < servers * len(tokens) and (left := deadline - time.monotonic()) > 0:
            try:
                raw = (await sub.next_msg(timeout=left)).data
            except TimeoutError:
                break
            got += 1
            answers.setdefault(claims_account(raw), []).append(raw)
            deadline = min(deadline, time.monotonic() + TIMEOUT)  # once answers come, the rest get TIMEOUT
    finally:
        await sub.unsubscribe()
    silent = [account for account in tokens if not answers.get(account)]
    if silent and not answers.get(""):  # a hub still starting, or too busy
        raise NotRunningError(f"the resolver did not answer the push of {len(silent)} accounts within {timeout:g} s")
    return answers


async def push_claims(
    mesh: Mesh,
    creds: Credentials,
    nc: Client | None = None,
    *,
    dry_run: bool = False,
    only: Collection[str] | None = None,
) -> ClaimsChange:
    """Push every account of MESH's hub whose claims differ from what its resolver holds (operator mode); with
    DRY_RUN only say which; ONLY: of these accounts (by name), such as those a join changes
    (`natsmesh.model.trust.changed_hub_accounts`)."""
    now = int(time.time())
    trust = realise(mesh, creds)
    wanted = trust.claims(now, only)
    change = ClaimsChange()
    if not wanted:
        return change
    own = nc is None
    conn = nc or await connect_system(mesh, creds, cluster=mesh.hub)
    try:
        accounts = list(wanted)
        held = dict(
            zip(accounts, await bounded([lookup_claims(conn, a) for a in accounts], LOOKUPS_AT_ONCE), strict=True)
        )
        names = {a: str(jwt.decode(t).get("name") or a) for a, t in wanted.items()}
        push: dict[str, str] = {}
        later = 0
        for account, token in wanted.items():
            old = held[account]
            if old is not None and jwt.says(old) == jwt.says(token):
                change.unchanged.append(names[account])
                continue
            if old is not None:  # a resolver keeps a JWT only for one issued after the one it holds
                later = max(later, int(jwt.decode(old).get("iat") or 0) + 1)
            push[account] = token
        if later > now:
            newer = trust.claims(later, only)
            push = {account: newer[account] for account in push}
        change.pushed = [names[a] for a in push]
        if dry_run or not push:
            return change
        # accounts the hub knows first, then new ones: a new account's imports name exports its owners' claims
        # only now carry, and a server that met the importer first would hold its imports incomplete a while
        known = {a: t for a, t in push.items() if held[a] is not None}
        waves = [w for w in (known, {a: t for a, t in push.items() if a not in known}) if w]
        for wave in waves:
            for account, answers in (await push_tokens(conn, wave, len(mesh.hub.nodes))).items():
                for raw in answers:
                    if (why := claims_refusal(raw)) is not None:
                        raise ApplyError(f"the hub's resolver refused account {names.get(account, account)}: {why}")
    finally:
        if own:
            await conn.close()
    return change
