"""The mirror's own ceiling: several publisher processes flood a product while its cross-domain mirror copies.

One Python publisher is slower than a mirror, so a figure measured with one is the publisher's. Here P
processes (each a `MeshClient.publisher` with up to --inflight unacknowledged messages, on its own connection)
publish flat out into `leaf-domain-a/ORDERS` for --seconds while its mirror in `leaf-domain-b` copies through
the hub. Both streams are sampled every 0.25 s. Figures, per replica count (R3: three nodes a domain; R1: one):

- ingest: messages acknowledged per second by all publishers together (the product's rate);
- mirror during: the mirror's growth over the same window, and how far behind it fell at most;
- ratio: mirror rate ÷ ingest rate in the window (goal >= 0.9);
- drain: from the last ack until the mirror holds everything;
- backlog copy: a second mirror created afterwards copies everything the product holds: its rate ÷ ingest
  (what the mirror does when nothing else competes for the cores).

Usage: python benchmarks/bench_mirror.py [--replicas 3 1] [--publishers 1 4] [--seconds 8] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from natsmesh.client import MeshClient
from natsmesh.faults.losscheck import held
from natsmesh.local.specfile import load_spec
from natsmesh.model.templates import init_spec_text
from natsmesh.model.topology import block_size
from natsmesh.reconcile.apply import reconcile
from natsmesh.run import lifecycle
from natsmesh.run.ports import free_port_base

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bringup import machine
from bench_flows import until
from reporting import machine_line, write_json

GOAL = 0.9
PRODUCT = "leaf-domain-a/ORDERS"
SUBJECT = "leaf-domain-a.orders.x"
PAYLOAD = b'{"id": 1, "sku": "ABC-123", "qty": 2, "price": 9.5, "note": "0123456789012345678901234567890123456"}'


def spec_text(nodes: int, data: Path) -> str:
    base = free_port_base(block_size(3) * 3)
    doc: dict[str, Any] = yaml.safe_load(init_spec_text(name="ceiling", domains=2, nodes=nodes, hub_nodes=1, base=base))
    doc["data_dir"] = str(data)
    a, b = doc["domains"]
    a["products"] = [{"name": "ORDERS", "subjects": ["leaf-domain-a.orders.>"]}]
    b["consumes"] = [{"product": PRODUCT, "as": "MIRROR"}]
    return yaml.safe_dump(doc, sort_keys=False)


# ---------------------------------------------------------------------------------------------------------------
# One publisher process


async def _work(spec: Path, seconds: float, inflight: int, go_at: float) -> dict[str, float]:
    mesh = load_spec(spec)
    async with MeshClient(mesh, name=f"bench-pub-{os.getpid()}") as mc:
        await mc.publish(PRODUCT, PAYLOAD, subject=SUBJECT)  # connected and the stream found before the clock
        while time.time() < go_at:
            await asyncio.sleep(0.005)
        sent = 0
        start = time.time()
        async with mc.publisher(PRODUCT, subject=SUBJECT, max_inflight=inflight) as pub:
            while time.time() - start < seconds:
                for _ in range(100):
                    await pub.publish(PAYLOAD)
                sent += 100
        return {"acked": sent, "start": start, "end": time.time()}  # leaving the block waited for every ack


def worker(argv: list[str]) -> None:
    spec, seconds, inflight, go_at = Path(argv[0]), float(argv[1]), int(argv[2]), float(argv[3])
    print(json.dumps(asyncio.run(_work(spec, seconds, inflight, go_at))), flush=True)


# ---------------------------------------------------------------------------------------------------------------
# The measurement


async def _sample(mc: MeshClient, refs: list[str], stop: asyncio.Event, out: list[tuple[float, list[int]]]) -> None:
    while not stop.is_set():
        asked = time.time()
        counts = list(await asyncio.gather(*(held(mc, ref) for ref in refs)))  # both at once: comparable
        out.append(((asked + time.time()) / 2, counts))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.25)


def _count_at(samples: list[tuple[float, list[int]]], t: float, i: int) -> float:
    """Stream I's count at time T, interpolated between samples."""
    before = max((s for s in samples if s[0] <= t), key=lambda s: s[0], default=samples[0])
    after = min((s for s in samples if s[0] >= t), key=lambda s: s[0], default=samples[-1])
    if after[0] == before[0]:
        return float(before[1][i])
    frac = (t - before[0]) / (after[0] - before[0])
    return before[1][i] + frac * (after[1][i] - before[1][i])


def ceiling(nodes: int, publishers: int, seconds: float, inflight: int, root: Path) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    data = root / f"r{nodes}"
    spec = root / f"r{nodes}.yaml"
    spec.write_text(spec_text(nodes, data))
    mesh = load_spec(spec)
    lifecycle.up_detached(mesh, owner_pid=os.getpid(), timeout=120)
    try:

        async def go() -> dict[str, Any]:
            async with MeshClient(mesh, name="bench") as mc:
                await reconcile(mesh, mc=mc)
                go_at = time.time() + 3.0  # every publisher connected first
                procs = [
                    subprocess.Popen(
                        [sys.executable, __file__, "--worker", str(spec), str(seconds), str(inflight), str(go_at)],
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                    for _ in range(publishers)
                ]
                stop = asyncio.Event()
                samples: list[tuple[float, list[int]]] = []
                sampler = asyncio.create_task(_sample(mc, [PRODUCT, "leaf-domain-b/MIRROR"], stop, samples))
                outs = await asyncio.gather(*(asyncio.to_thread(p.communicate) for p in procs))
                results = [json.loads(o[0]) for o in outs]
                total = await held(mc, PRODUCT)
                drain = await until(mc, "leaf-domain-b/MIRROR", total)
                stop.set()
                await sampler
                start = min(r["start"] for r in results)
                end = max(r["end"] for r in results)
                acked = sum(r["acked"] for r in results)
                window = end - start
                copied = _count_at(samples, end, 1) - _count_at(samples, start, 1)
                behind = max((c[0] - c[1] for t, c in samples if start <= t <= end), default=0)

                late = dict(yaml.safe_load(spec.read_text()))
                late_spec = root / f"r{nodes}-late.yaml"
                late["domains"][1]["consumes"].append({"product": PRODUCT, "as": "LATE"})
                late_spec.write_text(yaml.safe_dump(late, sort_keys=False))
                t0 = time.monotonic()
                await reconcile(load_spec(late_spec), mc=mc)
                await until(mc, "leaf-domain-b/LATE", total)
                backlog_s = time.monotonic() - t0  # from the request that creates it
                ingest = acked / window
                return {
                    "replicas": min(3, nodes),
                    "publishers": publishers,
                    "inflight": inflight,
                    "window_s": round(window, 2),
                    "acked": acked,
                    "ingest_rate": round(ingest),
                    "per_publisher_rate": [round(r["acked"] / (r["end"] - r["start"])) for r in results],
                    "mirror_rate": round(copied / window),
                    "ratio": round(copied / window / ingest, 3),
                    "max_behind_messages": behind,
                    "max_behind_s": round(behind / ingest, 2),
                    "drain_s": round(drain, 2),
                    "product_total": total,
                    "backlog_copy_s": round(backlog_s, 2),
                    "backlog_copy_rate": round(total / backlog_s),
                    "backlog_ratio": round(total / backlog_s / ingest, 2),
                }

        return asyncio.run(go())
    finally:
        lifecycle.down(mesh)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
        return
    began = time.monotonic()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--replicas", type=int, nargs="*", default=[3, 1], choices=[1, 3])
    ap.add_argument("--publishers", type=int, nargs="*", default=[1, 4], help="publisher processes (one row each)")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--inflight", type=int, default=500)
    ap.add_argument("--json", dest="json_out", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="natsmesh-ceiling-") as tmp:
        for r in args.replicas:
            for p in args.publishers:
                row = ceiling(r, p, args.seconds, args.inflight, Path(tmp) / f"p{p}")
                print(json.dumps(row), flush=True)
                rows.append(row)
    print(
        "\n| copy | publishers | ingest (all) | per publisher | mirror in the window | mirror ÷ ingest | "
        "most behind | drain | a new mirror copies the backlog |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for x in rows:
        per = ", ".join(f"{v:,}" for v in x["per_publisher_rate"])
        print(
            f"| R{x['replicas']} | {x['publishers']} | {x['ingest_rate']:,}/s | {per} | {x['mirror_rate']:,}/s | "
            f"**{x['ratio']}×** | {x['max_behind_messages']:,} ({x['max_behind_s']} s) | {x['drain_s']} s | "
            f"{x['product_total']:,} in {x['backlog_copy_s']} s ({x['backlog_copy_rate']:,}/s, "
            f"{x['backlog_ratio']}× ingest) |"
        )
    met = all(x["ratio"] >= GOAL for x in rows if x["publishers"] == max(args.publishers))
    print(f"goal (mirror >= {GOAL}x the ingest of several publishers): {'met' if met else 'NOT met'}")
    m = machine()
    print(machine_line(m, began=began))
    write_json(args.json_out, "mirror_ceiling", m, rows=rows, goal=GOAL, goal_met=met)


if __name__ == "__main__":
    main()
