"""How far each mirror and source is behind its upstream, asked of both ends directly.

The upstream's last sequence is read from the owning domain's own servers and the local state from the
consuming domain's, so the figure stays true while the hub link between them is down (that is when it matters).
For a mirror, which keeps its product's sequence numbers, lag is the difference of the last sequences; for a
source it is the count the server reports.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any

from nats.js.api import StreamInfo, StreamSourceInfo

from natsmesh.model.mesh import Mesh
from natsmesh.model.products import Consumption, SourceRef
from natsmesh.observe.connect import Connections

TIMEOUT = 2.0


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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def _info(mc: Connections, domain: str, stream: str) -> StreamInfo | str:
    try:
        js = await asyncio.wait_for(mc.jetstream(domain), TIMEOUT)
        return await js.stream_info(stream)
    except Exception as exc:  # unreachable domain, missing stream: report, do not stop
        return f"{domain}/{stream}: {str(exc) or type(exc).__name__}"


def _row(c: Consumption, s: SourceRef, local: StreamInfo | str, upstream: StreamInfo | str | None) -> LagRow:
    """One copy's row; UPSTREAM None when it was not asked (a party's folder holds no key of the owner's:
    the lag is then what the copy's own servers count)."""
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
    lag: int | None = None
    if c.mode == "mirror" and up_last is not None and local_last is not None:
        lag = max(0, up_last - local_last)
    elif src is not None:
        lag = src.lag
    active = src.active / 1e9 if src is not None and src.active is not None and src.active >= 0 else None
    return LagRow(
        c.domain, c.stream, c.mode, s.ref, up_last, local_last, lag, active, "; ".join(errors) if errors else None
    )


async def _upstream(mc: Connections, s: SourceRef) -> StreamInfo | str | None:
    if mc.creds.holder is not None and mc.creds.holder != s.domain:
        return None
    return await _info(mc, s.domain, s.stream)


async def measure(mesh: Mesh, mc: Connections) -> list[LagRow]:
    """One row per (consumption, upstream) pair; from a party's folder, of that party's own copies only."""
    holder = mc.creds.holder
    pairs = [(c, s) for c in mesh.consumptions for s in c.sources if holder in (None, c.domain)]
    locals_ = await asyncio.gather(*(_info(mc, c.domain, c.stream) for c, _ in pairs))
    uppers = await asyncio.gather(*(_upstream(mc, s) for _, s in pairs))
    return [_row(c, s, lo, up) for (c, s), lo, up in zip(pairs, locals_, uppers, strict=True)]


def violations(rows: list[LagRow], max_lag: int | None, max_inactive: float | None) -> list[str]:
    """Why the lag check fails, one line per offending row; empty when healthy."""
    out = []
    for r in rows:
        name = f"{r.domain}/{r.stream} <- {r.upstream}"
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
        rows = await measure(mesh, mc)
    return LagReport(rows, violations(rows, max_lag, max_inactive), max_lag is not None or max_inactive is not None)
