"""Data contracts (issue 14): what validation costs a publisher, and what the gate adds. Ratios in the same run.

One mesh on free ports in a temporary directory: a hub of one node, domain leaf-domain-a of one node (R1) and
leaf-domain-b of three (R3). Each domain has three products on the same 10-field object: RAW (no contract),
CHECKED (a contract its publishers check) and GATED (`enforce: gate`: through the domain's gate).

1. client validation: messages/s of `MeshClient.publisher` into CHECKED against RAW (N messages, interleaved
   runs, each into a purged stream), goal >= 0.8x;
2. gate throughput: the same publisher into GATED (through the gate) against RAW (direct);
3. gate latency: one message at a time (publish, await its ack) into GATED against RAW, p50 and p99.

Usage: python benchmarks/bench_contracts.py [--messages N] [--runs K] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench_bringup import machine

from helpers import small_mesh_text
from natsmesh.client import MeshClient
from natsmesh.local.specfile import parse_spec
from natsmesh.model.mesh import Mesh
from natsmesh.reconcile.apply import reconcile
from natsmesh.run import lifecycle

FIELDS = {
    "id": {"type": "string", "minLength": 1},
    "customer": {"type": "string"},
    "amount": {"type": "number", "minimum": 0},
    "currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
    "quantity": {"type": "integer", "minimum": 1},
    "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]+$"},
    "region": {"type": "string"},
    "paid": {"type": "boolean"},
    "created": {"type": "string"},
    "note": {"type": "string", "maxLength": 200},
}
SCHEMA = {"type": "object", "properties": FIELDS, "required": ["id", "customer", "amount", "currency", "quantity"]}


def message(i: int) -> bytes:
    doc = {
        "id": f"o-{i}",
        "customer": f"c-{i % 97}",
        "amount": 12.5 + i % 100,
        "currency": "EUR",
        "quantity": 1 + i % 5,
        "sku": f"ABC-{i % 1000}",
        "region": "eu-west",
        "paid": i % 2 == 0,
        "created": "2026-12-02T10:00:00Z",
        "note": "a typical order",
    }
    return json.dumps(doc).encode()


def mesh_doc(data_dir: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(small_mesh_text(data_dir, domains=2, nodes=3, hub_nodes=1, name="contracts"))
    doc["domains"][0]["nodes"] = 1
    for d in doc["domains"]:
        ns = d["name"]
        d["products"] = [
            {"name": "RAW", "subjects": [f"{ns}.raw"]},
            {"name": "CHECKED", "subjects": [f"{ns}.checked"], "contract": {"schema": SCHEMA}},
            {"name": "GATED", "subjects": [f"{ns}.gated"], "contract": {"schema": SCHEMA, "enforce": "gate"}},
        ]
    return doc


async def _purge(mc: MeshClient, domain: str, stream: str) -> None:
    await (await mc.jetstream(domain)).purge_stream(stream)


async def rate(mc: MeshClient, domain: str, product: str, n: int) -> float:
    """Messages/s of one publisher into a purged PRODUCT, N messages, every ack awaited."""
    await _purge(mc, domain, product)
    msgs = [message(i) for i in range(n)]
    start = time.perf_counter()
    async with mc.publisher(f"{domain}/{product}", max_inflight=1000) as pub:
        for m in msgs:
            await pub.publish(m)
    return n / (time.perf_counter() - start)


async def latencies(mc: MeshClient, domain: str, product: str, n: int) -> list[float]:
    await _purge(mc, domain, product)
    out = []
    for i in range(n):
        start = time.perf_counter()
        await mc.publish(f"{domain}/{product}", message(i))
        out.append((time.perf_counter() - start) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(mesh: Mesh, n: int, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with MeshClient(mesh) as mc:
        for domain, label in (("leaf-domain-a", "R1"), ("leaf-domain-b", "R3")):
            await rate(mc, domain, "RAW", 2000)  # warm: connections, the first ack of each stream
            await rate(mc, domain, "GATED", 2000)
            figures: dict[str, list[float]] = {"RAW": [], "CHECKED": [], "GATED": []}
            for _ in range(runs):
                for product in ("RAW", "CHECKED", "GATED"):
                    figures[product].append(await rate(mc, domain, product, n))
            med = {k: statistics.median(v) for k, v in figures.items()}
            direct = await latencies(mc, domain, "RAW", 1000)
            gated = await latencies(mc, domain, "GATED", 1000)
            out[label] = {
                "rate_raw": round(med["RAW"]),
                "rate_checked": round(med["CHECKED"]),
                "rate_gated": round(med["GATED"]),
                "validation_ratio": round(med["CHECKED"] / med["RAW"], 3),
                "gate_ratio": round(med["GATED"] / med["RAW"], 3),
                "latency_ms": {
                    "direct_p50": round(pct(direct, 0.5), 3),
                    "direct_p99": round(pct(direct, 0.99), 3),
                    "gated_p50": round(pct(gated, 0.5), 3),
                    "gated_p99": round(pct(gated, 0.99), 3),
                },
            }
            print(f"{label}: {json.dumps(out[label])}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-contracts-") as tmp:
        text = yaml.safe_dump(mesh_doc(Path(tmp) / "data"), sort_keys=False)
        mesh = parse_spec(text, source=f"{tmp}/mesh.yaml", base_dir=Path(tmp), cache=False)
        lifecycle.up_detached(mesh, timeout=60, owner_pid=os.getpid())
        try:
            asyncio.run(reconcile(mesh))
            time.sleep(1.5)  # the gates start after the nodes
            result = {"machine": machine(), "messages": args.messages, "runs": args.runs}
            result |= asyncio.run(measure(mesh, args.messages, args.runs))
        finally:
            lifecycle.down(mesh)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
