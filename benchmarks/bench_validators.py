"""Which JSON Schema validator to validate with (issue 14), chosen by measurement. Ratios in the same run.

A typical 10-field product message (strings, numbers, an enum, a nested object, an array) against its schema,
validated N times by each candidate with its compiled validator: `jsonschema` (Draft 2020-12, `is_valid`),
`fastjsonschema` (compiled to Python), `jsonschema-rs` (Rust); then an invalid message, timing how each reports the
failing field's path. The baseline is `json.dumps` of the same object, which every publish pays anyway.

Usage: python benchmarks/bench_validators.py [--n N] [--runs K] [--json FILE]
(needs the three candidates installed: pip install jsonschema fastjsonschema jsonschema-rs)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bench_bringup import machine
from reporting import machine_line, write_json

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "id": {"type": "string", "minLength": 1},
        "customer": {"type": "string"},
        "amount": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
        "placed_at": {"type": "string"},
        "channel": {"type": "string"},
        "paid": {"type": "boolean"},
        "items": {"type": "integer", "minimum": 1},
        "address": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "string"}}},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["id", "customer", "amount", "currency", "placed_at"],
}
GOOD = {
    "id": "ORD-1",
    "customer": "c-42",
    "amount": 19.9,
    "currency": "EUR",
    "placed_at": "2026-12-02T08:00:00Z",
    "channel": "web",
    "paid": True,
    "items": 3,
    "address": {"city": "Lyon", "zip": "69001"},
    "tags": ["gift", "express"],
}
BAD = GOOD | {"amount": -1, "address": {"city": 7}}


def candidates() -> dict[str, tuple[Callable[[Any], bool], Callable[[Any], str]]]:
    """name -> (is it valid, the first error's path and message) for each library."""
    import fastjsonschema
    import jsonschema
    import jsonschema_rs

    js = jsonschema.Draft202012Validator(SCHEMA)
    fast = fastjsonschema.compile(SCHEMA)
    rs = jsonschema_rs.validator_for(SCHEMA)

    def fast_ok(doc: Any) -> bool:
        try:
            fast(doc)
            return True
        except fastjsonschema.JsonSchemaValueException:
            return False

    def fast_err(doc: Any) -> str:
        try:
            fast(doc)
            return ""
        except fastjsonschema.JsonSchemaValueException as exc:
            return f"{exc.name}: {exc.message}"

    def js_err(doc: Any) -> str:
        e = next(js.iter_errors(doc), None)
        return "" if e is None else f"{e.json_path}: {e.message}"

    def rs_err(doc: Any) -> str:
        e = next(iter(rs.iter_errors(doc)), None)
        return "" if e is None else f"{'/'.join(map(str, e.instance_path))}: {e.message}"

    return {
        "jsonschema": (js.is_valid, js_err),
        "fastjsonschema": (fast_ok, fast_err),
        "jsonschema-rs": (rs.is_valid, rs_err),
    }


def rate(fn: Callable[[Any], Any], doc: Any, n: int) -> float:
    began = time.perf_counter()
    for _ in range(n):
        fn(doc)
    return n / (time.perf_counter() - began)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    libs = candidates()
    for name, (ok, err) in libs.items():
        assert ok(GOOD) and not ok(BAD), name
        print(f"{name:<15} reports: {err(BAD)}", file=sys.stderr)
    dumps: list[float] = []
    valid: dict[str, list[float]] = {name: [] for name in libs}
    invalid: dict[str, list[float]] = {name: [] for name in libs}
    for _ in range(args.runs):  # alternating, so drift hits every candidate alike
        dumps.append(rate(json.dumps, GOOD, args.n))
        for name, (ok, err) in libs.items():
            valid[name].append(rate(ok, GOOD, args.n))
            invalid[name].append(rate(err, BAD, max(1, args.n // 10)))
    base = statistics.median(dumps)
    m = machine()
    print(f"\nvalidations per second, medians of {args.runs} x {args.n:,} (ratio to json.dumps of the same object):")
    print(f"  {'json.dumps':<15} {base:>12,.0f}/s")
    summary = {}
    for name in libs:
        v, e = statistics.median(valid[name]), statistics.median(invalid[name])
        summary[name] = {"valid_per_s": v, "invalid_with_path_per_s": e, "valid_vs_dumps": v / base}
        print(f"  {name:<15} {v:>12,.0f}/s valid ({v / base:5.2f}x)   {e:>10,.0f}/s invalid with its path")
    print(machine_line(m, nats_server=False))
    write_json(args.json, "validators", m, summary=summary)


if __name__ == "__main__":
    main()
