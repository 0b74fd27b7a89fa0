"""Sizes, durations and times as the spec, nats-server and people write them. Pure."""

from __future__ import annotations

import math
import re
from datetime import datetime

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # matched whole (`fullmatch`): `$` would let a final "\n" by
NAME_RULE = "letters, digits, '-' and '_' only (no spaces, dots, '*' or '>'), starting with a letter or digit"
SIZE_RE = re.compile(r"^\s*(\d{1,20})\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
DURATION_RE = re.compile(r"^\s*(\d{1,15}(?:\.\d{1,9})?)\s*(ms|s|m|h|d|w)?\s*$")
DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_SIZE = 2**63 - 1  # JetStream limits are int64
MAX_SECONDS = (2**63 - 1) / 1e9  # JetStream durations are int64 nanoseconds (about 292 years)


def shown(value: object, limit: int = 60) -> str:
    """VALUE's repr for a message, cut short if long (a hostile spec may hold megabytes in one value)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]}"


def visible(text: str, keep: str = "\n") -> str:
    """TEXT as it may reach a terminal: every character a terminal would act on rather than show (control
    characters such as ESC and BEL, bidirectional overrides, other invisible ones) written out as its escape
    (`\\x1b`, `\\u202e`), except those in KEEP. Spec text, catalog entries, server replies and payloads all come
    from parties natsmesh does not trust with the platform's screen."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch in keep else ascii(ch)[1:-1] for ch in text)


def parse_size(text: str | int) -> int:
    """Bytes from `64MiB`, `1GB`, `512K` or a plain integer (binary units either way, as nats-server does)."""
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise ValueError(f"expected a size such as 64MiB or 1GiB, got {shown(text)}")
    if isinstance(text, int):
        value = text
    else:
        m = SIZE_RE.match(text)
        if not m:
            raise ValueError(f"expected a size such as 64MiB or 1GiB, got {shown(text)}")
        unit = (m.group(2) or "B").upper()[0]
        value = int(m.group(1)) * {"B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}[unit]
    if value > MAX_SIZE:
        raise ValueError(f"size {shown(text)} is larger than JetStream can hold (2^63-1 bytes)")
    return value


def parse_duration(text: str | int | float) -> float:
    """Seconds from `7d`, `24h`, `30m`, `90s`, `500ms` or a number of seconds."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"expected a duration such as 7d, 24h, 30m or 90s, got {shown(text)}")
    if isinstance(text, int | float):
        value = float(text)
    else:
        m = DURATION_RE.match(text)
        if not m:
            raise ValueError(f"expected a duration such as 7d, 24h, 30m or 90s, got {shown(text)}")
        value = float(m.group(1)) * DURATION_UNITS[m.group(2) or "s"]
    if not math.isfinite(value) or abs(value) > MAX_SECONDS:
        raise ValueError(
            f"duration {shown(text)} is not a finite duration JetStream can hold (at most about 292 years)"
        )
    return value


def check_duration(value: str, example: str, units: str = "ms|s|m") -> str:
    """VALUE if it is a whole number of UNITS (`250ms`, `5s`, `2m`), else a ValueError naming EXAMPLE."""
    if not re.fullmatch(rf"\d{{1,9}}({units})", value):  # whole: `$` would let a final "\n" through
        raise ValueError(f"expected a duration such as {example}, got {shown(value)}")
    return value


_GO_DURATION = re.compile(r"([\d.]+)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(text: str | None) -> float | None:
    """Seconds from a Go duration string such as `612µs`, `16.5ms` or `1m2s`."""
    if not text:
        return None
    parts = _GO_DURATION.findall(text)
    try:
        return sum(float(v) * _GO_UNIT[u] for v, u in parts) if parts else None
    except ValueError:  # "1.2.3s"
        return None


def parse_iso(text: str | None) -> datetime | None:
    """A server timestamp (RFC 3339 with up to nanoseconds) as an aware datetime, or None."""
    if not text:
        return None
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?", text)
    if not m:
        return None
    frac = (m.group(2) or ".0")[:7]
    tz = "+00:00" if (m.group(3) or "Z") == "Z" else m.group(3)
    try:
        return datetime.fromisoformat(m.group(1) + frac + tz)
    except ValueError:
        return None


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1:
        return f"{s * 1000:.2f}ms"
    if s < 120:
        return f"{s:.2f}s"
    minutes, sec = divmod(int(s), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return (f"{days}d" if days else "") + (f"{hours}h" if hours or days else "") + f"{minutes}m{sec}s"


def duration_text(seconds: float) -> str:
    """SECONDS as a spec writes a duration: `7d`, `36h`, `90m`, `45s` (the largest whole unit), else `1.5s`."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
