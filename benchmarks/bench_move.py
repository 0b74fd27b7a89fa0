"""A product's live move between two clusters of its domain: the catch-up, the write pause, and what the
producer saw, against a plain mirror of the same backlog made in the same run.

Per replica count (R1: one node a cluster; R3: three), a mesh of a hub, domain `sales` with a second cluster
`sales-big` (the same size), and `ship`, which mirrors `sales/ORDERS`. The product gets --backlog messages
(one publisher, --inflight acks in flight: the ingest rate), then:

- baseline: `apply` adds a second mirror of the product in `ship` (a plain cross-cluster copy through the hub of
  the same backlog, from the request that makes it to holding everything);
- the move: `natsmesh.reconcile.move` to `sales-big` while the loss checker's producer writes --rate messages a
  second with message ids. Figures: the move's catch-up (its mirror, from made to holding every message) and its
  ratio to the baseline; the write pause (from the old stream's last write taken to the new one taking writes);
  the producer's longest wait between two acks (its usual gap is 1/rate); the whole move's time; lost and
  duplicated messages in the product and both copies (0 and 0, or the benchmark fails).

Usage: python benchmarks/bench_move.py [--replicas 1 3] [--backlog 100000] [--rate 500] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats.errors
import yaml

from natsmesh.client import MeshClient
from natsmesh.faults.losscheck import compare, held, publish_steady
from natsmesh.local.specfile import load_spec
from natsmesh.model.topology import block_size, plan_ports
from natsmesh.reconcile.apply import reconcile
from natsmesh.reconcile.move import move
from natsmesh.run import lifecycle
from natsmesh.run.ports import free_port_base

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bringup import machine
from bench_flows import until
from reporting import machine_line, write_json

PRODUCT = "sales/ORDERS"
SUBJECT = "sales.orders.x"  # the backlog's
STEADY = "sales.orders.steady"  # the loss checker's producer's, during the move
PAYLOAD = b'{"id": 1, "sku": "ABC-123", "qty": 2, "price": 9.5, "note": "0123456789012345678901234567890123456"}'


def spec_doc(nodes: int, data: Path) -> dict[str, Any]:
    hub: dict[str, Any] = {"name": "hub", "nodes": 1}
    big: dict[str, Any] = {"name": "sales-big", "nodes": nodes}
    sales: dict[str, Any] = {
        "name": "sales",
        "nodes": nodes,
        "clusters": [big],
        "products": [{"name": "ORDERS", "subjects": ["sales.orders.>"]}],
    }
    ship = {"name": "ship", "nodes": 1, "consumes": [{"product": PRODUCT}]}
    block = block_size(3)
    base = free_port_base(block * 4)
    for k, c in enumerate([hub, sales, ship, big]):
        c["ports"] = plan_ports(base, block, k, c["nodes"], c is hub).as_spec()
    return {"name": "moving", "data_dir": str(data), "hub": hub, "domains": [sales, ship]}


async def _ids(mc: MeshClient, cluster: str, stream: str, run: str, want: int) -> list[int]:
    """The ids of RUN's messages in STREAM of CLUSTER, in stored order (only the producer's subject is read)."""
    js = await mc.jetstream(cluster)
    out: list[int] = []
    for _ in range(60):  # a copy still catching up: read again
        sub = await js.subscribe(STEADY, stream=stream, ordered_consumer=True)
        out = []
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=2.0)
                except nats.errors.TimeoutError:
                    break
                doc = json.loads(msg.data)
                if doc.get("run") == run:
                    out.append(int(doc["id"]))
        finally:
            await sub.unsubscribe()
        if len(set(out)) >= want:
            return out
        await asyncio.sleep(1.0)
    return out


def one(nodes: int, backlog: int, rate: float, inflight: int, root: Path) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    data = root / f"r{nodes}"
    spec, late_spec = root / f"r{nodes}.yaml", root / f"r{nodes}-late.yaml"
    spec.write_text(yaml.safe_dump(spec_doc(nodes, data)))
    mesh = load_spec(spec)
    late_doc = yaml.safe_load(spec.read_text())
    late_doc["domains"][1]["consumes"].append({"product": PRODUCT, "as": "LATE"})
    late_spec.write_text(yaml.safe_dump(late_doc))
    lifecycle.up_detached(mesh, owner_pid=os.getpid(), timeout=120)
    try:

        async def go() -> dict[str, Any]:
            late = load_spec(late_spec)
            async with MeshClient(late, name="bench-move") as mc:  # knows LATE, made below
                await reconcile(mesh, mc=mc)
                await mc.publish(PRODUCT, PAYLOAD, subject=SUBJECT)
                t0 = time.monotonic()
                async with mc.publisher(PRODUCT, subject=SUBJECT, max_inflight=inflight) as pub:
                    for _ in range(backlog - 1):
                        await pub.publish(PAYLOAD)
                ingest_s = time.monotonic() - t0
                await until(mc, "ship/ORDERS", backlog)
                t0 = time.monotonic()
                await reconcile(late, mc=mc)
                await until(mc, "ship/LATE", backlog)
                plain_s = time.monotonic() - t0  # from the request that makes it

                stop = asyncio.Event()
                producer = asyncio.create_task(
                    publish_steady(mc, PRODUCT, count=None, rate=rate, subject=STEADY, stop=stop, retries=50)
                )
                await asyncio.sleep(2.0)
                t0 = time.monotonic()
                result = await move(late, PRODUCT, "sales-big")
                move_s = time.monotonic() - t0
                await asyncio.sleep(2.0)
                stop.set()
                run = await producer
                expected = set(run.acked)
                checks = {}
                for cluster, stream in (("sales-big", "ORDERS"), ("ship", "ORDERS"), ("ship", "LATE")):
                    seen = await _ids(mc, cluster, stream, run.run, len(expected))
                    checks[f"{cluster}/{stream}"] = compare(expected, seen, f"{cluster}/{stream}")
                total = await held(mc, PRODUCT)
                bad = [c.to_json() for c in checks.values() if not c.ok]
                bad += [{"failed": run.failed}] if run.failed else []
                if bad:
                    raise SystemExit(f"the move lost or duplicated messages: {bad}")
                return {
                    "replicas": min(3, nodes),
                    "backlog": backlog,
                    "ingest_rate": round(backlog / ingest_s),
                    "plain_mirror_copy_s": round(plain_s, 2),
                    "move_catch_up_s": result.catch_up_seconds,
                    "catch_up_ratio": round(result.catch_up_seconds / plain_s, 2),
                    "write_pause_s": result.pause_seconds,
                    "producer_rate": rate,
                    "producer_longest_wait_s": round(run.longest_wait, 3),
                    "producer_retries": run.retries,
                    "move_s": round(move_s, 2),
                    "acked_during": len(run.acked),
                    "lost": 0,
                    "duplicated": 0,
                    "checked": sorted(checks),
                    "product_total": total,
                }

        return asyncio.run(go())
    finally:
        lifecycle.down(mesh)


def main() -> None:
    began = time.monotonic()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicas", type=int, nargs="*", default=[1, 3], choices=[1, 3])
    ap.add_argument("--backlog", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=500.0, help="the producer's messages a second during the move")
    ap.add_argument("--inflight", type=int, default=1000)
    ap.add_argument("--json", dest="json_out", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="natsmesh-move-") as tmp:
        for r in args.replicas:
            row = one(r, args.backlog, args.rate, args.inflight, Path(tmp) / f"r{r}")
            print(json.dumps(row), flush=True)
            rows.append(row)
    cols = ["replicas", "backlog", "plain mirror copy", "move catch-up (ratio)", "write pause", "producer's wait"]
    print("\n| " + " | ".join([*cols, "move", "lost / dup"]) + " |")
    print("| --- " * (len(cols) + 2) + "|")
    for r in rows:
        wait = f"{r['producer_longest_wait_s'] * 1000:.0f} ms (every {1000 / r['producer_rate']:.0f} ms)"
        print(
            f"| R{r['replicas']} | {r['backlog']:,} | {r['plain_mirror_copy_s']} s | {r['move_catch_up_s']} s "
            f"({r['catch_up_ratio']}x) | {r['write_pause_s'] * 1000:.0f} ms | {wait} | {r['move_s']} s | 0 / 0 |"
        )
    m = machine()
    print(machine_line(m, began=began))
    write_json(args.json_out, "move", m, rows=rows)


if __name__ == "__main__":
    main()
