"""How far each mirror and source is behind its upstream, asked of both ends directly.

The upstream's last sequence is read from the owning domain's own servers and the local state from the
consuming domain's, so the figure stays true while the hub link between them is down (that is when it matters).
For a mirror, which keeps its product's sequence numbers, lag is the difference of the last sequences and "local
last" its own last sequence. For a source, the owner's consumer for the copy says both, read in the owner's
cluster (`natsmesh.observe.wire.copy_progress`): what it has not had stored, and the upstream sequence the copy
holds up to; the source's own count stays 0 while it is cut off. From a party's folder (no key of the owner's)
a source's row is what its own servers count.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, replace
from typing import Any

from nats.js.api import StreamInfo, StreamSourceInfo

from natsmesh.errors import NotRunningError
from natsmesh.model.access import status_of, with_access
from natsmesh.model.mesh import Mesh
from natsmesh.model.products import Consumption, Share, SourceRef
from natsmesh.observe.access import ledger_of
from natsmesh.observe.connect import Connections
from natsmesh.observe.grants import Refusal, refusals
from natsmesh.observe.wire import ConsumerDetail, copy_progress

TIMEOUT = 2.0
LEDGER_TIMEOUT = 1.0  # reading who granted what (the hub's audit trail, the domains' streams) for a report


@dataclass(frozen=True)
class LagRow:
    domain: str
    stream: str
    mode: str
    upstream: str
    upstream_last_seq: int | None
    local_last_seq: int | None
    lag: int | None
    active_seconds: float | None
    error: str | None
    access: str | None = None  # what the owner said of a copy made by request ("revoked: …", "expired at …")

    @property
    def stopped(self) -> bool:
        """Stopped by its owner (revoked, expired, denied): not a copy that stalled."""
        return bool(self.access) and not str(self.access).startswith(("granted", "waiting"))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def _info(mc: Connections, domain: str, stream: str) -> StreamInfo | str:
    try:
        js = await asyncio.wait_for(mc.jetstream(domain), TIMEOUT)
        return await js.stream_info(stream)
    except Exception as exc:  # unreachable domain, missing stream: report, do not stop
        return f"{domain}/{stream}: {str(exc) or type(exc).__name__}"


def _row(
    c: Consumption,
    s: SourceRef,
    local: StreamInfo | str,
    upstream: StreamInfo | str | None,
    owner: ConsumerDetail | None = None,
) -> LagRow:
    """One copy's row; UPSTREAM None when it was not asked (a party's folder holds no key of the owner's:
    the lag is then what the copy's own servers count); OWNER the owner's consumer for the copy, if read."""
    errors = [x for x in (local, upstream) if isinstance(x, str)]
    src: StreamSourceInfo | None = None
    local_last = None
    if isinstance(local, StreamInfo):
        local_last = local.state.last_seq
        candidates = [local.mirror] if c.mode == "mirror" else list(local.sources or [])
        src = next((x for x in candidates if x is not None and x.name == s.stream), None)
        if src is None:
            errors.append(f"{c.ref} does not take {s.ref} (not applied yet?)")
        elif src.error:
            errors.append(str(src.error.get("description") or src.error))
    up_last = upstream.state.last_seq if isinstance(upstream, StreamInfo) else None
    active = src.active / 1e9 if src is not None and src.active is not None and src.active >= 0 else None
    lag: int | None = None
    if c.mode == "mirror" and up_last is not None and local_last is not None:
        lag = max(0, up_last - local_last)
    elif c.mode == "source" and owner is not None and src is not None:
        progress = copy_progress(owner, active)
        lag, local_last = max(src.lag or 0, progress.lag), progress.last  # per upstream: its sequence copied
    elif src is not None:
        lag = src.lag
    return LagRow(
        c.domain, c.stream, c.mode, s.ref, up_last, local_last, lag, active, "; ".join(errors) if errors else None
    )


async def _upstream(mc: Connections, s: SourceRef) -> StreamInfo | str | None:
    if mc.creds.holder is not None and mc.creds.holder != s.domain:
        return None
    return await _info(mc, s.domain, s.stream)


async def _owner_consumer(mc: Connections, c: Consumption, s: SourceRef) -> ConsumerDetail | None:
    """The owner's consumer for copy C of upstream S, read in the owner's cluster (None: not held, or no answer)."""
    if c.mode != "source" or (mc.creds.holder is not None and mc.creds.holder != s.domain):
        return None
    try:
        js = await asyncio.wait_for(mc.jetstream(s.domain), TIMEOUT)
        info = await js.consumer_info(
            s.stream, Share(s.domain, s.stream, c.domain, c.stream, s.filter, s.team).consumer
        )
    except Exception:  # unreachable owner, consumer not made yet: the copy's own count stands
        return None
    return ConsumerDetail.from_response(info.as_dict())


async def measure(mesh: Mesh, mc: Connections) -> list[LagRow]:
    """One row per (consumption, upstream) pair; from a party's folder, of that party's own copies only."""
    holder = mc.creds.holder
    pairs = [(c, s) for c in mesh.consumptions for s in c.sources if holder in (None, c.domain)]
    locals_ = await asyncio.gather(*(_info(mc, c.domain, c.stream) for c, _ in pairs))
    uppers = await asyncio.gather(*(_upstream(mc, s) for _, s in pairs))
    owners = await asyncio.gather(*(_owner_consumer(mc, c, s) for c, s in pairs))
    return [_row(c, s, lo, up, ow) for (c, s), lo, up, ow in zip(pairs, locals_, uppers, owners, strict=True)]


def violations(rows: list[LagRow], max_lag: int | None, max_inactive: float | None) -> list[str]:
    """Why the lag check fails, one line per offending row; empty when healthy."""
    out = []
    for r in rows:
        name = f"{r.domain}/{r.stream} <- {r.upstream}"
        if r.stopped:
            continue  # its owner stopped it: what it holds stays, and nothing more is due
        if r.error:
            out.append(f"{name}: {r.error}")
        if max_lag is not None and (r.lag is None or r.lag > max_lag):
            out.append(f"{name}: lag {r.lag if r.lag is not None else 'unknown'} > {max_lag}")
        if max_inactive is not None and (r.active_seconds is None or r.active_seconds > max_inactive):
            shown = "unknown" if r.active_seconds is None else f"{r.active_seconds:.1f} s"
            out.append(f"{name}: last active {shown} ago > {max_inactive:g} s")
    return out


@dataclass(frozen=True)
class LagReport:
    """Every copy's lag, and what breaks the thresholds asked for."""

    rows: list[LagRow]
    violations: list[str]
    checked: bool  # thresholds were given: violations make the check fail

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_json(self) -> dict[str, Any]:
        return {"report": "lag", "rows": [r.to_json() for r in self.rows], "violations": self.violations, "ok": self.ok}


async def lag_report(mesh: Mesh, max_lag: int | None = None, max_inactive: float | None = None) -> LagReport:
    """`natsmesh report lag`: measure every copy from both ends and judge it by MAX_LAG and MAX_INACTIVE."""
    async with Connections(mesh, name="natsmesh-lag") as mc:
        try:
            ledger = await asyncio.wait_for(ledger_of(mesh, mc), LEDGER_TIMEOUT)
        except Exception:  # the hub away (when lag matters most) or a stream unread: the copies' figures stand
            ledger = None
        if ledger is not None:  # the copies made by request, and what their owners said of each
            mesh = with_access(mesh, ledger)
        rows = await measure(mesh, mc)
        if ledger is not None:
            rows = [replace(r, access=status_of(ledger, r.domain, r.stream)) for r in rows]
        if mc.creds.holder is None:  # the platform: a copy the hub refuses says why, not just "lag"
            try:
                refused = await refusals(mesh, mc.creds)
            except (NotRunningError, OSError, TimeoutError):  # a hub away is when lag matters most: said without
                refused = []
            rows = refused_rows(mesh, rows, refused)
    return LagReport(rows, violations(rows, max_lag, max_inactive), max_lag is not None or max_inactive is not None)


def refused_rows(mesh: Mesh, rows: list[LagRow], refused: list[Refusal]) -> list[LagRow]:
    """ROWS with the hub's refusals said in each refused copy's error (operator mode: no owner's signature)."""
    if not refused:
        return rows
    out = []
    for r in rows:
        c = next(x for x in mesh.consumptions if x.domain == r.domain and x.stream == r.stream)
        s = next(x for x in c.sources if x.ref == r.upstream)
        share = Share(s.domain, s.stream, c.domain, c.stream, s.filter, s.team)
        why = next(
            (
                str(f)
                for f in refused
                if f.taker == c.domain and (share.consumer in f.subject or f.subject == share.deliver)
            ),
            None,
        )
        out.append(r if why is None else replace(r, error="; ".join(x for x in (r.error, why) if x)))
    return out
