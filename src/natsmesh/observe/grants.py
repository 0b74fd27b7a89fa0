"""Which copies the hub refuses (operator mode): imports the servers dropped for want of a valid activation.

nats-server says nothing about a refused import but at debug level, and the copy just stays silent with lag 0.
Here the hub's ACCOUNTZ of each account that takes something is compared with the imports its claims carry
(`natsmesh.render.trust`): an import the hub does not hold, or holds as invalid, is refused, and the copy waits for
its owner's signature. In config mode there is nothing to refuse: the imports are the configs'.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from natsmesh.model.identities import Credentials
from natsmesh.model.mesh import Mesh
from natsmesh.observe.system import collect
from natsmesh.observe.wire import Accountz
from natsmesh.render.trust import realise


@dataclass(frozen=True)
class Refusal:
    """An import the hub does not hold: account TAKER's import of OWNER's SUBJECT."""

    taker: str
    owner: str
    subject: str

    def __str__(self) -> str:
        return (
            f"the hub refuses {self.taker}'s import of {self.subject} from {self.owner}: no valid activation signed "
            f"by {self.owner} (waiting for the owner's signature)"
        )


async def refusals(mesh: Mesh, creds: Credentials, timeout: float = 2.0) -> list[Refusal]:
    """Every import the hub's claims carry that the hub does not hold (empty in config mode)."""
    wanted = realise(mesh, creds).imports()
    takers = {i.taker_key: i.taker for i in wanted}
    hub = {n.name for n in mesh.hub.nodes}

    async def one(key: str) -> Accountz | None:
        got = await collect(mesh, creds, ["ACCOUNTZ"], timeout=timeout, body={"account": key}, expected=hub)
        return next((r.data for r in got["ACCOUNTZ"].replies.values()), None)

    keys = sorted(takers)
    states = dict(zip(keys, await asyncio.gather(*(one(k) for k in keys)), strict=True))
    return [
        Refusal(i.taker, i.owner, i.subject)
        for i in wanted
        if (state := states.get(i.taker_key)) is not None and not state.kept(i.subject, i.owner_key)
    ]
