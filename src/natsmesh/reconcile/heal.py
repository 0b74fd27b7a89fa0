"""The heal step: bring stalled mirrors and sources back as soon as their upstream is reachable again.

A copy whose setup request was lost while a link or its upstream was down waits out nats-server's fixed 30 s
request timeout and then a growing backoff before it tries again (docs/design/recovery.md). Once both ends are
back, the heal step nudges every copy that has heard nothing for `stall` seconds:

- a copy with more than one replica gets a leader stepdown: the new leader starts fresh and asks at once;
- a single-replica copy with several sources has the stalled source removed and added back (two updates), which
  also starts it fresh; `apply` puts the source back if this is interrupted between the two;
- a single-replica mirror, or a single-source R1 copy, has no nudge in nats-server: it is reported as waiting
  for the server's own retry (an ordered start avoids most of those, see `natsmesh.run.supervisor`).

A nudge is only sent when the upstream answers from its own servers and both domains have a data link at the
hub, so a nudge never races a link that is still down; it is repeated every `every` seconds while the copy
stays stalled. Each round reads the facts (`natsmesh.observe.lag.measure`, `linked_domains`), decides in the
pure `plan_nudges`, then acts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from natsmesh.model.mesh import Mesh
from natsmesh.observe.connect import Connections
from natsmesh.observe.lag import LagRow, measure
from natsmesh.observe.readiness import linked_domains
from natsmesh.observe.wire import ApiError

STALL = 3.0  # seconds without a message or heartbeat (sent every second) before a copy counts as stalled
EVERY = 2.0  # seconds between two nudges of the same copy (a nudge sent a moment too early is lost: try again)
FAST = 10.0  # seconds after a poke during which the watch looks four times as often
POLL = 0.5
MISSING = ("stream not found", "not applied yet")  # what a declared but not applied copy or product reports

EventFn = Callable[[str], None]
NudgeKind = Literal["stepdown", "readd"]


@dataclass
class HealReport:
    """What one heal run saw and did."""

    seconds: float = 0.0
    stalled: list[str] = field(default_factory=list)  # copies seen stalled at least once ("domain/stream <- ref")
    nudges: list[str] = field(default_factory=list)  # "stepdown domain/stream", "re-add domain/stream <- ref"
    waiting: list[str] = field(default_factory=list)  # still stalled at the end, with why
    missing: list[str] = field(default_factory=list)  # declared but not applied (a stream does not exist)

    @property
    def healed(self) -> bool:
        return not self.waiting

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"healed": self.healed}


@dataclass(frozen=True)
class Nudge:
    """One nudge to send: a stepdown of DOMAIN/STREAM, or a re-add of its source SOURCE."""

    kind: NudgeKind
    domain: str
    stream: str
    source: str
    copy: str  # "domain/stream <- owner/source"

    @property
    def key(self) -> str:
        """What the last nudge is remembered by: a stepdown restarts every source of the stream at once."""
        return f"{self.domain}/{self.stream}" if self.kind == "stepdown" else self.copy

    @property
    def what(self) -> str:
        return f"stepdown {self.domain}/{self.stream}" if self.kind == "stepdown" else f"re-add {self.copy}"


@dataclass(frozen=True)
class NudgePlan:
    """What one look at every copy decided."""

    nudges: list[Nudge]
    waiting: list[str]  # every stalled copy, with why it waits
    stalled: list[str]  # the stalled copies' names
    missing: list[str]  # declared copies or products that do not exist


def copy_name(row: LagRow) -> str:
    return f"{row.domain}/{row.stream} <- {row.upstream}"


def is_stalled(row: LagRow, stall: float = STALL) -> bool:
    return row.error is not None or row.active_seconds is None or row.active_seconds > stall


def is_missing(row: LagRow) -> bool:
    return row.error is not None and any(m in row.error for m in MISSING)


def nudge_kind(mesh: Mesh, row: LagRow) -> NudgeKind | None:
    """'stepdown', 'readd' or None (no nudge exists for this copy)."""
    kind = next(c.nudge for c in mesh.consumptions if c.domain == row.domain and c.stream == row.stream)
    return "stepdown" if kind == "stepdown" else "readd" if kind == "readd" else None


def involved(rows: list[LagRow], stall: float = STALL) -> set[str]:
    """The domains at either end of a stalled copy: whose links the decision needs to know."""
    stalled = [r for r in rows if not is_missing(r) and is_stalled(r, stall)]
    return {r.domain for r in stalled} | {r.upstream.split("/")[0] for r in stalled}


def _wait_reason(row: LagRow, kind: NudgeKind | None, linked: set[str]) -> str | None:
    owner = row.upstream.split("/", 1)[0]
    if row.upstream_last_seq is None:
        return f"upstream {row.upstream} not answering"
    if owner not in linked:
        return f"{owner} has no link at the hub"
    if row.domain not in linked:
        return f"{row.domain} has no link at the hub"
    if kind is None:
        return "single-replica mirror or single source: waiting for the server's own retry"
    return None


def plan_nudges(
    mesh: Mesh,
    rows: list[LagRow],
    linked: set[str],
    last: dict[str, float],
    now: float,
    *,
    stall: float = STALL,
    every: float = EVERY,
) -> NudgePlan:
    """Which stalled copies to nudge now, given every copy's state (ROWS), the domains with a data link at the
    hub (LINKED), when each copy was last nudged (LAST, by `Nudge.key`) and the time NOW. Pure."""
    missing = [r for r in rows if is_missing(r)]
    stalled = [r for r in rows if r not in missing and is_stalled(r, stall)]
    nudges: list[Nudge] = []
    waiting = []
    for r in stalled:
        kind = nudge_kind(mesh, r)
        why = _wait_reason(r, kind, linked)
        if why is None and kind is not None:
            nudge = Nudge(kind, r.domain, r.stream, r.upstream.split("/", 1)[1], copy_name(r))
            if all(n.key != nudge.key for n in nudges) and now - last.get(nudge.key, -1e9) >= every:
                nudges.append(nudge)
        waiting.append(f"{copy_name(r)}: {why or 'nudged, waiting for it to resume'}")
    return NudgePlan(
        nudges=nudges,
        waiting=waiting,
        stalled=[copy_name(r) for r in stalled],
        missing=[f"{copy_name(r)}: {r.error}" for r in missing],
    )


# ---------------------------------------------------------------------------------------------------------------
# Acting


async def _stepdown(mc: Connections, domain: str, stream: str) -> str | None:
    """Ask DOMAIN's servers to move STREAM's leader; returns an error text or None."""
    nc = await mc.connection(domain)
    msg = await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", timeout=2.0)
    err = ApiError.of_reply(msg.data)
    return err.description if err else None


async def _readd(mc: Connections, domain: str, stream: str, source: str) -> str | None:
    """Remove the source named SOURCE from DOMAIN/STREAM and add it back unchanged."""
    js = await mc.jetstream(domain)
    info = await js.stream_info(stream)
    cfg = info.config
    keep = [s for s in cfg.sources or [] if s.name != source]
    if len(keep) == len(cfg.sources or []):
        return f"{domain}/{stream} has no source {source}"
    full = list(cfg.sources or [])
    cfg.sources = keep
    await js.update_stream(cfg)
    cfg.sources = full
    await js.update_stream(cfg)
    return None


async def send(mc: Connections, nudge: Nudge) -> str | None:
    """Send NUDGE; an error text, or None when the servers took it."""
    try:
        if nudge.kind == "stepdown":
            return await _stepdown(mc, nudge.domain, nudge.stream)
        return await _readd(mc, nudge.domain, nudge.stream, nudge.source)
    except Exception as exc:  # a server that is still starting: try again next time
        return str(exc) or type(exc).__name__


class Healer:
    """Nudges stalled copies, remembering when each was last nudged so a copy is not nudged too often."""

    def __init__(
        self,
        mesh: Mesh,
        client: Connections,
        *,
        stall: float = STALL,
        every: float = EVERY,
        on_event: EventFn | None = None,
        domains: set[str] | None = None,
    ) -> None:
        self.mesh, self.client, self.stall, self.every, self.domains = mesh, client, stall, every, domains
        self.say: EventFn = on_event or (lambda _text: None)
        self.last: dict[str, float] = {}
        self.report = HealReport()
        self.counts: dict[str, int] = {}  # nudges sent, by the copy they were for ("domain/stream <- ref")

    def forget(self) -> None:
        """Allow an immediate nudge of everything (after a link came back)."""
        self.last.clear()

    async def round(self) -> list[str]:
        """Look at every copy once and nudge the stalled ones that can be; returns what is still waiting."""
        rows = await measure(self.mesh, self.client)
        if self.domains is not None:
            rows = [r for r in rows if r.domain in self.domains or r.upstream.split("/")[0] in self.domains]
        ends = involved(rows, self.stall)
        linked = await asyncio.to_thread(linked_domains, self.mesh, ends) if ends else set()
        decided = plan_nudges(self.mesh, rows, linked, self.last, time.monotonic(), stall=self.stall, every=self.every)
        self.report.missing = decided.missing
        self.report.stalled += [s for s in decided.stalled if s not in self.report.stalled]
        for nudge in decided.nudges:
            self.last[nudge.key] = time.monotonic()
            err = await send(self.client, nudge)
            self.counts[nudge.copy] = self.counts.get(nudge.copy, 0) + 1
            self.report.nudges.append(nudge.what + (f" (failed: {err})" if err else ""))
            self.say(f"heal: {nudge.what}" + (f" failed: {err}" if err else ""))
        return decided.waiting


async def heal(
    mesh: Mesh,
    mc: Connections | None = None,
    *,
    timeout: float = 60.0,
    watch: float = 0.0,
    stall: float = STALL,
    every: float = EVERY,
    on_event: EventFn | None = None,
    domains: set[str] | None = None,
) -> HealReport:
    """Nudge stalled copies until none is stalled (but keep looking for at least WATCH seconds, for a fault
    that has just happened) or TIMEOUT passes. DOMAINS limits the copies looked at to those held by, or taken
    from, these domains (None: every copy of the mesh)."""
    client = mc or Connections(mesh, name="natsmesh-heal")
    healer = Healer(mesh, client, stall=stall, every=every, on_event=on_event, domains=domains)
    start = time.monotonic()
    try:
        while True:
            healer.report.waiting = await healer.round()
            elapsed = time.monotonic() - start
            if (not healer.report.waiting and elapsed >= watch) or elapsed > timeout:
                break
            await asyncio.sleep(POLL)
    finally:
        healer.report.seconds = time.monotonic() - start
        if mc is None:
            await client.close()
    return healer.report


async def watch(mesh: Mesh, stop: asyncio.Event, poke: asyncio.Event, on_event: EventFn, interval: float = 1.0) -> None:
    """Keep the mesh's copies flowing until STOP is set: a heal round every INTERVAL seconds, and at once and
    more often for a while when POKE is set (a partition lifted, a node restarted). Runs in the supervisor."""
    async with Connections(mesh, name="natsmesh-supervisor") as client:
        healer = Healer(mesh, client, on_event=on_event)
        fast_until = 0.0
        while not stop.is_set():
            if poke.is_set():
                poke.clear()
                healer.forget()
                fast_until = time.monotonic() + FAST
            try:
                await healer.round()
            except Exception as exc:  # never let the watch die; say why once per failure
                on_event(f"heal round failed: {exc!r}")
            wait = interval / 4 if time.monotonic() < fast_until else interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(poke.wait(), wait)
