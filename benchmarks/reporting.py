"""How a benchmark script ends: the closing `machine:` line, and its figures written to `--json FILE`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def machine_line(m: dict[str, object], *, nats_server: bool = True, began: float | None = None) -> str:
    """The `machine:` line of M (`bench_bringup.machine()`): cores, CPU, RAM, kernel, Python, the nats-server
    version unless NATS_SERVER is false, the date, and with BEGAN (a `time.monotonic()`) the time taken."""
    where = f"{m['cores']} cores {m['cpu']}, {m['ram_gib']} GiB, Linux {m['kernel']}, Python {m['python']}"
    server = f", nats-server {m['nats_server']}" if nats_server else ""
    took = f"; took {time.monotonic() - began:.0f} s" if began is not None else ""
    return f"\nmachine: {where}{server}, {m['date']}{took}"


def write_json(path: Path | None, benchmark: str, m: dict[str, object], **figures: Any) -> None:
    """With a PATH, write {"benchmark": BENCHMARK, "machine": M, **FIGURES} there as indented JSON."""
    if path is not None:
        path.write_text(json.dumps({"benchmark": benchmark, "machine": m, **figures}, indent=2, default=str))
