"""One look at the whole mesh, in one bounded round of system requests: what every server leads (its streams,
with their copies' lag and last contact), its JetStream use against its limits, and every leaf link at the hub.

`take` asks JSZ (every stream a server leads, `natsmesh.observe.wire.JszStreams`) and LEAFZ of every server at
once, through the system account (one connection per cluster, or the hub's with the bridge), and waits at most
`timeout`: a server that does not answer is listed in `missing`, never waited for. `copies`, `products` and
`links` read it against the spec (pure). The metrics endpoint and the portal (`natsmesh.serve`) are built on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from natsmesh.errors import NotRunningError
from natsmesh.model.identities import SYSTEM_ACCOUNT, Credentials, account_of, holds_account, local_account
from natsmesh.model.mesh import Mesh
from natsmesh.model.products import Consumption, Share, SourceRef
from natsmesh.observe.system import SystemPool, collect
from natsmesh.observe.wire import (
    ConsumerDetail,
    CopyProgress,
    JszStreams,
    LeafLink,
    Leafz,
    StreamDetail,
    Upstream,
    copy_progress,
)

KINDS = ["JSZS", "LEAFZ"]


@dataclass(frozen=True)
class Snapshot:
    """What every server answered in one round (by server name), and who did not answer."""

    taken: float  # wall-clock time of the round
    seconds: float  # how long the round took
    jsz: dict[str, JszStreams] = field(default_factory=dict)
    leafz: dict[str, Leafz] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    holder: str | None = None  # taken from one party's folder: only its own cluster was asked

    def shows(self, cluster: str) -> bool:
        """Whether this snapshot speaks for CLUSTER (a folder's speaks for its own only)."""
        return self.holder is None or cluster == self.holder

    def up(self, server: str) -> bool:
        return server in self.jsz

    def stream(self, domain: str, name: str, mesh: Mesh) -> StreamDetail | None:
        """DOMAIN's stream NAME as its leader reported it (None: no leader answered)."""
        names = {n.name for n in mesh.domain(domain).nodes}
        account = local_account(domain, mesh.service_users)
        for server, j in self.jsz.items():
            if server in names:
                for d in j.details:
                    if holds_account([d.account], account) and d.name == name:
                        return d
        return None


async def take(mesh: Mesh, creds: Credentials, timeout: float = 2.0, pool: SystemPool | None = None) -> Snapshot:
    """One round of JSZ and LEAFZ at every server, at most TIMEOUT seconds, over POOL's connections if given; a
    mesh none of whose clusters answers gives a snapshot with every server missing."""
    began, wall = time.monotonic(), time.time()
    # from a party's folder, its own cluster only (it holds no other cluster's system identity)
    expected = {n.name for n in mesh.domain(creds.holder).nodes} if creds.holder else None
    try:
        got = await collect(mesh, creds, KINDS, timeout=timeout, expected=expected, pool=pool)
    except NotRunningError:  # no cluster answered at all: every server missing, the scrape still answers
        names = expected or {n.name for n in mesh.nodes()}
        return Snapshot(wall, time.monotonic() - began, missing=tuple(sorted(names)), holder=creds.holder)
    jsz = {name: r.data for name, r in got["JSZS"].replies.items()}
    leafz = {name: r.data for name, r in got["LEAFZ"].replies.items()}
    missing = tuple(sorted(set(got["JSZS"].missing) | set(got["LEAFZ"].missing)))
    return Snapshot(wall, time.monotonic() - began, jsz, leafz, missing, creds.holder)


@dataclass(frozen=True)
class CopyState:
    """One copy's view of one upstream, judged by its thresholds."""

    consumption: Consumption
    source: SourceRef
    upstream: Upstream | None  # None: the copy's leader did not answer, or the copy does not read it (yet)
    upstream_last_seq: int | None  # the upstream's last sequence, if its leader answered
    local_last_seq: int | None = None  # the copy's own last sequence, if its leader answered
    owner: ConsumerDetail | None = None  # the owner's consumer for this copy, if the owner's leader answered

    @property
    def progress(self) -> CopyProgress | None:
        """The owner's consumer's word on how far the copy is (`copy_progress`), if it answered."""
        if self.owner is None:
            return None
        return copy_progress(self.owner, self.upstream.active_seconds if self.upstream else None)

    @property
    def lag(self) -> int | None:
        """Messages behind: for a mirror (same sequence numbers) the upstream's last sequence against its own
        when both answered, which keeps growing while it hears nothing; for a source what the owner's consumer for
        it has not had stored (a source's own count stays 0 while it is cut off); else what the copy's servers
        count."""
        if self.upstream is None:
            return None
        if self.consumption.mode == "mirror" and self.upstream_last_seq is not None and self.local_last_seq is not None:
            return max(self.upstream.lag, self.upstream_last_seq - self.local_last_seq)
        if (progress := self.progress) is not None:
            return max(self.upstream.lag, progress.lag)
        return self.upstream.lag

    @property
    def copied_seq(self) -> int | None:
        """The upstream sequence the copy holds up to: a mirror's own last sequence, a source's by the owner."""
        if self.consumption.mode == "mirror":
            return self.local_last_seq
        return self.progress.last if self.progress is not None else None

    @property
    def seen_seconds(self) -> float | None:
        return self.upstream.active_seconds if self.upstream is not None else None

    @property
    def stalled(self) -> bool:
        """Heard nothing for longer than its threshold (or nothing to judge it by)."""
        seen = self.seen_seconds
        return seen is None or seen > self.consumption.seen_critical

    @property
    def critical(self) -> bool:
        lag = self.lag
        return self.stalled or lag is None or lag > self.consumption.lag_critical


def copies(mesh: Mesh, snap: Snapshot) -> list[CopyState]:
    """Every (copy, upstream) of the spec, as the snapshot shows it."""
    out = []
    for c in (c for c in mesh.consumptions if snap.shows(c.domain)):
        detail = snap.stream(c.domain, c.stream, mesh)
        ups = ([detail.mirror] if detail and detail.mirror else list(detail.sources)) if detail else []
        for s in c.sources:
            mine = next((u for u in ups if u.name == s.stream and (not u.api or s.domain in u.api)), None)
            owner = snap.stream(s.domain, s.stream, mesh)
            consumer = Share(s.domain, s.stream, c.domain, c.stream, s.filter, s.team).consumer
            out.append(
                CopyState(
                    c,
                    s,
                    mine,
                    owner.last_seq if owner else None,
                    detail.last_seq if detail else None,
                    owner.consumer(consumer) if owner else None,
                )
            )
    return out


@dataclass(frozen=True)
class ProductState:
    ref: str
    domain: str
    name: str
    detail: StreamDetail | None  # None: its leader did not answer (or it is not applied)


def products(mesh: Mesh, snap: Snapshot) -> list[ProductState]:
    return [
        ProductState(p.ref, p.domain, p.name, snap.stream(p.domain, p.name, mesh))
        for p in mesh.products
        if snap.shows(p.domain)
    ]


@dataclass(frozen=True)
class LinkState:
    """One leaf server's link in one account at the hub (LINK None: it has none now)."""

    domain: str
    server: str  # the leaf server
    account: str
    hub_server: str | None
    link: LeafLink | None


def links(mesh: Mesh, snap: Snapshot) -> list[LinkState]:
    """Every leaf link the spec implies (each leaf node, its data account and with the bridge SYS), and where
    the hub sees it."""
    seen: dict[tuple[str, str], tuple[str, LeafLink]] = {}
    for hub in mesh.hub.nodes:
        for lf in (snap.leafz.get(hub.name) or Leafz()).leafs:
            seen[(lf.name, lf.account)] = (hub.name, lf)
    out: list[LinkState] = []
    for d in (d for d in mesh.domains if snap.shows(d.name)):
        accounts = [account_of(d.name), *([SYSTEM_ACCOUNT] if mesh.system_bridge else [])]
        local = {account_of(d.name): local_account(d.name, mesh.service_users), SYSTEM_ACCOUNT: SYSTEM_ACCOUNT}
        for n in d.nodes:
            own = {lf.account: lf for lf in (snap.leafz.get(n.name) or Leafz()).leafs}  # its own end of each link
            for a in accounts:
                at = seen.get((n.name, a))
                mine = next((lf for acct, lf in own.items() if holds_account([acct], local[a])), None)
                if at is None and snap.holder is not None and mine is not None:  # a folder sees its own servers only
                    out.append(LinkState(d.name, n.name, a, mine.name, mine))
                    continue
                out.append(LinkState(d.name, n.name, a, at[0] if at else None, at[1] if at else None))
    return out
