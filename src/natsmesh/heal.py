"""The heal step: bring stalled mirrors and sources back as soon as their upstream is reachable again.

A copy whose setup request was lost while a link or its upstream was down waits out nats-server's fixed 30 s
request timeout and then a growing backoff before it tries again (docs/design/recovery.md). Once both ends are
back, the heal step nudges every copy that has heard nothing for `stall` seconds:

- a copy with more than one replica gets a leader stepdown: the new leader starts fresh and asks at once;
- a single-replica copy with several sources has the stalled source removed and added back (two updates), which
  also starts it fresh; `apply` puts the source back if this is interrupted between the two;
- a single-replica mirror, or a single-source R1 copy, has no nudge in nats-server: it is reported as waiting
  for the server's own retry (an ordered start avoids most of those, see `supervisor`).

A nudge is only sent when the upstream answers from its own servers and both domains have a data link at the
hub, so a nudge never races a link that is still down; it is repeated every `every` seconds while the copy
stays stalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from natsmesh.client import MeshClient
from natsmesh.credentials import account_of
from natsmesh.lag import LagRow, measure
from natsmesh.readiness import http_json
from natsmesh.spec import Mesh

STALL = 3.0  # seconds without a message or heartbeat (sent every second) before a copy counts as stalled
EVERY = 2.0  # seconds between two nudges of the same copy (a nudge sent a moment too early is lost: try again)
FAST = 10.0  # seconds after a poke during which the watch looks four times as often
POLL = 0.5
MISSING = ("stream not found", "not applied yet")  # what a declared but not applied copy or product reports

EventFn = Callable[[str], None]


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


def is_stalled(row: LagRow, stall: float = STALL) -> bool:
    return row.error is not None or row.active_seconds is None or row.active_seconds > stall


def _linked_one(mesh: Mesh, host: str, port: int, account: str) -> bool:
    try:
        leafz = http_json(host, port, "/leafz", timeout=1.0)
    except (OSError, ValueError):
        return False
    return any(lf.get("account") == account for lf in leafz.get("leafs") or [])


def linked_domains(mesh: Mesh, domains: set[str]) -> set[str]:
    """Which of DOMAINS have at least one server with its data link at the hub (the hub domain always has)."""
    hub = mesh.hub.name
    checks = [
        (d, n.http_port) for d in domains if d != hub for n in mesh.domain(d).nodes
    ]  # every node: any one linked is enough
    with ThreadPoolExecutor(max_workers=min(32, max(1, len(checks)))) as pool:
        results = list(pool.map(lambda c: _linked_one(mesh, mesh.host, c[1], account_of(c[0])), checks))
    return {d for (d, _), ok in zip(checks, results, strict=True) if ok} | ({hub} & domains)


async def _stepdown(mc: MeshClient, domain: str, stream: str) -> str | None:
    """Ask DOMAIN's servers to move STREAM's leader; returns an error text or None."""
    nc = await mc.connection(domain)
    msg = await nc.request(f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}", b"", timeout=2.0)
    reply = json.loads(msg.data or b"{}")
    err = reply.get("error")
    return str(err.get("description") or err) if err else None


async def _readd(mc: MeshClient, domain: str, stream: str, source: str) -> str | None:
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


def _nudge_kind(mesh: Mesh, row: LagRow) -> str | None:
    """'stepdown', 'readd' or None (no nudge exists for this copy)."""
    return next(c.nudge for c in mesh.consumptions if c.domain == row.domain and c.stream == row.stream)


class Healer:
    """Nudges stalled copies, remembering when each was last nudged so a copy is not nudged too often."""

    def __init__(
        self,
        mesh: Mesh,
        client: MeshClient,
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

    def forget(self) -> None:
        """Allow an immediate nudge of everything (after a link came back)."""
        self.last.clear()

    async def round(self) -> list[str]:
        """Look at every copy once and nudge the stalled ones that can be; returns what is still waiting."""
        rows = await measure(self.mesh, self.client)
        if self.domains is not None:
            rows = [r for r in rows if r.domain in self.domains or r.upstream.split("/")[0] in self.domains]
        missing = [r for r in rows if r.error and any(m in r.error for m in MISSING)]
        self.report.missing = [f"{r.domain}/{r.stream} <- {r.upstream}: {r.error}" for r in missing]
        stalled = [r for r in rows if r not in missing and is_stalled(r, self.stall)]
        if not stalled:
            return []
        for r in stalled:
            name = f"{r.domain}/{r.stream} <- {r.upstream}"
            if name not in self.report.stalled:
                self.report.stalled.append(name)
        involved = {r.domain for r in stalled} | {r.upstream.split("/")[0] for r in stalled}
        linked = await asyncio.to_thread(linked_domains, self.mesh, involved)
        waiting = []
        nudged: set[str] = set()
        for r in stalled:
            name = f"{r.domain}/{r.stream} <- {r.upstream}"
            owner, source = r.upstream.split("/", 1)
            kind = _nudge_kind(self.mesh, r)
            why = None
            if r.upstream_last_seq is None:
                why = f"upstream {r.upstream} not answering"
            elif owner not in linked:
                why = f"{owner} has no link at the hub"
            elif r.domain not in linked:
                why = f"{r.domain} has no link at the hub"
            elif kind is None:
                why = "single-replica mirror or single source: waiting for the server's own retry"
            key = f"{r.domain}/{r.stream}" if kind == "stepdown" else name
            now = time.monotonic()
            if why is None and key not in nudged and now - self.last.get(key, -1e9) >= self.every:
                self.last[key] = now
                nudged.add(key)
                what = f"stepdown {r.domain}/{r.stream}" if kind == "stepdown" else f"re-add {name}"
                try:
                    if kind == "stepdown":
                        err = await _stepdown(self.client, r.domain, r.stream)
                    else:
                        err = await _readd(self.client, r.domain, r.stream, source)
                except Exception as exc:  # a server that is still starting: try again next time
                    err = str(exc) or type(exc).__name__
                self.report.nudges.append(what + (f" (failed: {err})" if err else ""))
                self.say(f"heal: {what}" + (f" failed: {err}" if err else ""))
            waiting.append(f"{name}: {why or 'nudged, waiting for it to resume'}")
        return waiting


async def heal(
    mesh: Mesh,
    mc: MeshClient | None = None,
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
    client = mc or MeshClient(mesh, name="natsmesh-heal")
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
    more often for a while when POKE is set (a partition healed, a node restarted). Runs in the supervisor."""
    async with MeshClient(mesh, name="natsmesh-supervisor") as client:
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
