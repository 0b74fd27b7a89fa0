"""Data products across domains: publish throughput, mirror latency, backlog copy. Ratios in the same run.

On `examples/data-mesh.yaml` (the seed's 18 servers) brought up on free ports in a temporary directory:

1. publish: N messages into leaf-domain-a/ORDERS (R3) and leaf-domain-a/ORDERS_R1 (added here, one replica)
   through `MeshClient.publisher` against raw nats-py `publish_async` with the same in-flight bound, alternating,
   median of each side (goal >= 0.9x);
2. latency: one publisher at half the highest R3 rate measured in 1, for a few seconds; the time from publish to
   its arrival at an ordered consumer on the mirror in leaf-domain-b, against the same measure on the product
   itself in leaf-domain-a (p50/p99 of both, and their ratio; goal: mirror p99 < 250 ms);
   keep-up: one publisher flat out for a few seconds while the mirror copies (its sustained R3 ingest, the 100 %
   row; on two cores below the short burst of 1), then a paced publisher at fractions of it (default 25-90 %),
   twice at each rate: once with both consumers as above (latency p50/p99 at that rate), once with no consumer
   in this process and both streams' last sequence sampled every 50 ms (how far the mirror falls behind, how
   long it takes to drain after the last ack); the highest rate at which it stays under 1 s behind
   (goal: keeps up at >= 90 % of the sustained ingest);
3. backlog: 100,000 messages already in a product, then a new mirror declared in another domain (leaf-domain-c's
   take of ORDERS, left out of the spec until then) and applied (`reconcile`: the hub's policy, the owner's
   consumer, the copy), timed until it holds them all, against a mirror created inside the owning domain (no hub
   hop, no consumer of the owner's).

Usage: python benchmarks/bench_products.py [--messages N] [--backlog N] [--seconds S] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
import yaml
from nats.js.api import StreamConfig, StreamSource

from natsmesh.client import MeshClient
from natsmesh.local.specfile import parse_spec
from natsmesh.model.mesh import Mesh
from natsmesh.model.topology import block_size
from natsmesh.reconcile.apply import reconcile
from natsmesh.run import lifecycle
from natsmesh.run.ports import free_port_base

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_bringup import machine  # noqa: E402

PRODUCT = "leaf-domain-a/ORDERS"
PRODUCTS = {3: (PRODUCT, "sales.orders"), 1: ("leaf-domain-a/ORDERS_R1", "sales.orders_r1")}
PAYLOAD = 128


BACKLOG_TAKER = "leaf-domain-c"


def mesh_doc(root: Path) -> dict[str, Any]:
    """examples/data-mesh.yaml on free ports, with ORDERS_R1 added and leaf-domain-c's take of ORDERS left out
    (the backlog scenario declares it later)."""
    doc: dict[str, Any] = yaml.safe_load((HERE.parent / "examples" / "data-mesh.yaml").read_text())
    clusters = [doc["hub"], *doc["domains"]]
    base = free_port_base(block_size(3) * len(clusters))
    for k, c in enumerate(clusters):
        s = base + k * block_size(3)
        c["ports"] = {"client": s, "cluster": s + 3, "http": s + 6} | ({"leafnode": s + 9} if c is doc["hub"] else {})
    doc["data_dir"] = str(root / "data")
    a = next(d for d in doc["domains"] if d["name"] == "leaf-domain-a")
    a["products"].append({"name": "ORDERS_R1", "subjects": ["sales.orders_r1.>"], "replicas": 1})
    c = next(d for d in doc["domains"] if d["name"] == BACKLOG_TAKER)
    c["consumes"] = [t for t in c["consumes"] if t.get("product") != PRODUCT]
    return doc


def parse(doc: dict[str, Any], root: Path) -> Mesh:
    return parse_spec(yaml.safe_dump(doc, sort_keys=False), source="bench", base_dir=root)


def start_mesh(root: Path, doc: dict[str, Any]) -> Mesh:
    mesh = parse(doc, root)
    lifecycle.up_detached(mesh)
    return mesh


async def purge(mc: MeshClient, ref: str) -> None:
    await (await mc.jetstream("leaf-domain-a")).purge_stream(ref.split("/")[1])


async def publish_natsmesh(mc: MeshClient, ref: str, prefix: str, n: int, inflight: int) -> float:
    payload = b"x" * PAYLOAD
    start = time.perf_counter()
    async with mc.publisher(ref, max_inflight=inflight) as pub:
        for i in range(n):
            await pub.publish(payload, subject=f"{prefix}.bench.{i % 16}")
    return n / (time.perf_counter() - start)


async def publish_raw(url: str, prefix: str, n: int, inflight: int) -> float:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(publish_async_max_pending=inflight)
        payload = b"x" * PAYLOAD
        start = time.perf_counter()
        for i in range(n):
            await js.publish_async(f"{prefix}.bench.{i % 16}", payload)
        await js.publish_async_completed()
        return n / (time.perf_counter() - start)
    finally:
        await nc.close()


async def bench_publish(mesh: Mesh, mc: MeshClient, n: int, runs: int, inflight: int, replicas: int) -> dict[str, Any]:
    ref, prefix = PRODUCTS[replicas]
    url = (await mc.connection("leaf-domain-a")).connected_url
    assert url is not None
    user, password = mc.creds.client("leaf-domain-a")
    raw_url = f"nats://{user}:{password}@{url.hostname}:{url.port}"
    res: dict[str, list[float]] = {"natsmesh": [], "raw": []}
    for i in range(runs):
        for side in ("natsmesh", "raw") if i % 2 == 0 else ("raw", "natsmesh"):
            await purge(mc, ref)
            rate = (
                await publish_natsmesh(mc, ref, prefix, n, inflight)
                if side == "natsmesh"
                else await publish_raw(raw_url, prefix, n, inflight)
            )
            res[side].append(rate)
            print(f"  publish R{replicas} run {i + 1} {side}: {rate:,.0f} msg/s", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in res.items()}
    return {
        "product": ref,
        "messages": n,
        "payload_bytes": PAYLOAD,
        "max_inflight": inflight,
        "replicas": replicas,
        "runs": res,
        "median_msgs_per_s": med,
        "ratio": med["natsmesh"] / med["raw"],
        "goal": 0.9,
        "goal_met": med["natsmesh"] / med["raw"] >= 0.9,
    }


async def bench_latency(mesh: Mesh, mc: MeshClient, rate: float, seconds: float) -> dict[str, Any]:
    """Publish at RATE msg/s; time publish -> arrival on the product (A) and on its mirror (B)."""
    arrivals: dict[str, list[float]] = {"origin": [], "mirror": []}
    ja, jb = await mc.jetstream("leaf-domain-a"), await mc.jetstream("leaf-domain-b")
    # The mirror keeps the product's sequence numbers: both consumers start right after the product's end,
    # once the mirror has caught up with everything the throughput runs wrote.
    start = (await ja.stream_info("ORDERS")).state.last_seq + 1
    while (await jb.stream_info("ORDERS")).state.last_seq < start - 1:
        await asyncio.sleep(0.05)

    async def on(name: str, js: Any, start_seq: int) -> Any:
        from nats.js.api import ConsumerConfig, DeliverPolicy

        async def cb(msg: Any) -> None:
            if msg.subject == "sales.orders.lat":
                arrivals[name].append(time.time() - struct.unpack("d", msg.data[:8])[0])

        return await js.subscribe(
            "",
            stream="ORDERS",
            ordered_consumer=True,
            cb=cb,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq),
        )

    subs = [await on("origin", ja, start), await on("mirror", jb, start)]
    total = int(rate * seconds)
    interval = 1.0 / rate
    begin = time.perf_counter()
    async with mc.publisher(PRODUCT, max_inflight=1000) as pub:
        for i in range(total):
            target = begin + i * interval
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await pub.publish(struct.pack("d", time.time()) + b"x" * (PAYLOAD - 8), subject="sales.orders.lat")
    achieved = total / (time.perf_counter() - begin)
    deadline = time.monotonic() + 30
    while (len(arrivals["origin"]) < total or len(arrivals["mirror"]) < total) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    for s in subs:
        await s.unsubscribe()

    def pct(xs: list[float], q: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000

    out: dict[str, Any] = {"rate_msgs_per_s": rate, "achieved_msgs_per_s": achieved, "messages": total}
    for name, xs in arrivals.items():
        out[name] = {"received": len(xs), "p50_ms": pct(xs, 0.5), "p99_ms": pct(xs, 0.99), "max_ms": max(xs) * 1000}
    out["p50_ratio_mirror_vs_origin"] = out["mirror"]["p50_ms"] / out["origin"]["p50_ms"]
    out["p99_ratio_mirror_vs_origin"] = out["mirror"]["p99_ms"] / out["origin"]["p99_ms"]
    out["mirror_p99_under_250ms"] = out["mirror"]["p99_ms"] < 250
    return out


async def bench_keepup(mc: MeshClient, rate: float | None, seconds: float) -> dict[str, Any]:
    """Publish at RATE msg/s (None: as fast as one publisher can) for SECONDS with no consumer in this process;
    sample both streams' last sequence every 50 ms. Behind = messages the mirror lacks / the achieved rate;
    drain = from the last ack until the mirror has all."""
    ja, jb = await mc.jetstream("leaf-domain-a"), await mc.jetstream("leaf-domain-b")
    while (await jb.stream_info("ORDERS")).state.last_seq < (await ja.stream_info("ORDERS")).state.last_seq:
        await asyncio.sleep(0.05)
    samples: list[tuple[int, int]] = []
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            o, m = await asyncio.gather(ja.stream_info("ORDERS"), jb.stream_info("ORDERS"))
            samples.append((o.state.last_seq, m.state.last_seq))
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    begin = time.perf_counter()
    total = 0
    async with mc.publisher(PRODUCT, max_inflight=1000) as pub:
        while True:
            if rate is None:
                if total % 256 == 0 and time.perf_counter() - begin >= seconds:
                    break
            elif total >= rate * seconds:
                break
            elif (delay := begin + total / rate - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            await pub.publish(b"k" * PAYLOAD, subject="sales.orders.keepup")
            total += 1
    acked_at = time.perf_counter()
    achieved = total / (acked_at - begin)
    last = (await ja.stream_info("ORDERS")).state.last_seq
    while (await jb.stream_info("ORDERS")).state.last_seq < last:
        await asyncio.sleep(0.01)
    drain = time.perf_counter() - acked_at
    done.set()
    await sampler
    behind = max((o - m for o, m in samples), default=0) / achieved
    return {
        "rate_msgs_per_s": rate,
        "achieved_msgs_per_s": achieved,
        "messages": total,
        "samples": len(samples),
        "max_behind_s": behind,
        "drain_s": drain,
        "keeps_up": behind < 1.0 and drain < 1.0,
    }


async def bench_backlog(mesh: Mesh, mc: MeshClient, n: int, doc: dict[str, Any], root: Path) -> dict[str, Any]:
    ja = await mc.jetstream("leaf-domain-a")
    await ja.purge_stream("ORDERS")
    t = time.perf_counter()
    async with mc.publisher(PRODUCT, max_inflight=2000) as pub:
        for i in range(n):
            await pub.publish(b"b" * PAYLOAD, subject=f"sales.orders.backlog.{i % 16}")
    ingest = time.perf_counter() - t
    last = (await ja.stream_info("ORDERS")).state.last_seq

    async def held(js: Any, name: str, start: float) -> float:
        while (await js.stream_info(name)).state.last_seq < last:
            await asyncio.sleep(0.02)
        return time.perf_counter() - start

    # across domains: the take declared in the spec and applied, as a domain team would
    c = next(d for d in doc["domains"] if d["name"] == BACKLOG_TAKER)
    c["consumes"].append({"product": PRODUCT, "as": "BACKLOG_COPY"})
    start = time.perf_counter()
    await reconcile(parse(doc, root), mc=mc)
    applied = time.perf_counter() - start
    cross = await held(await mc.jetstream(BACKLOG_TAKER), "BACKLOG_COPY", start)
    # inside the owning domain: a plain mirror, no hub hop
    start = time.perf_counter()
    await ja.add_stream(StreamConfig(name="BACKLOG_LOCAL", mirror=StreamSource(name="ORDERS"), num_replicas=3))
    local = await held(ja, "BACKLOG_LOCAL", start)
    await ja.delete_stream("BACKLOG_LOCAL")
    return {
        "messages": n,
        "ingest_seconds": ingest,
        "ingest_msgs_per_s": n / ingest,
        "cross_domain_apply_seconds": applied,
        "cross_domain_mirror_seconds": cross,
        "cross_domain_msgs_per_s": n / cross,
        "same_domain_mirror_seconds": local,
        "ratio_cross_vs_same_domain": cross / local,
        "ratio_copy_rate_vs_ingest_rate": (n / cross) / (n / ingest),
    }


async def main_async(args: argparse.Namespace, mesh: Mesh, doc: dict[str, Any], root: Path) -> dict[str, Any]:
    async with MeshClient(mesh, name="bench") as mc:
        await reconcile(mesh, mc=mc)
        print("publish throughput…", file=sys.stderr)
        pub_r1 = await bench_publish(mesh, mc, args.messages, args.runs, args.inflight, replicas=1)
        pub = await bench_publish(mesh, mc, args.messages, args.runs, args.inflight, replicas=3)
        half = pub["median_msgs_per_s"]["natsmesh"] / 2
        print(f"mirror latency at {half:,.0f} msg/s…", file=sys.stderr)
        lat = await bench_latency(mesh, mc, half, args.seconds)
        # Scenario 3: the sustained ingest of one publisher going as fast as it can for as long as each step,
        # with the mirror copying meanwhile (on two cores it is below the short burst measured above), then
        # fixed fractions of it.
        print("mirror while one publisher goes flat out…", file=sys.stderr)
        full = await bench_keepup(mc, None, args.sweep_seconds)
        ingest = full["achieved_msgs_per_s"]
        sweep = []
        for frac in args.sweep:
            print(f"mirror at {frac:.0%} of the sustained ingest…", file=sys.stderr)
            lat_at = await bench_latency(mesh, mc, frac * ingest, args.sweep_seconds)
            r = await bench_keepup(mc, frac * ingest, args.sweep_seconds)
            sweep.append({"fraction": frac, **r, "latency": lat_at})
        sweep.append({"fraction": 1.0, **full, "latency": None})
        ok = [r for r in sweep if r["keeps_up"]]
        print(f"backlog of {args.backlog:,}…", file=sys.stderr)
        backlog = await bench_backlog(mesh, mc, args.backlog, doc, root)
    return {
        "publish": pub,
        "publish_r1": pub_r1,
        "latency": lat,
        "sweep": sweep,
        "highest_rate_lag_under_1s": max((r["achieved_msgs_per_s"] for r in ok), default=None),
        "sustained_ingest_msgs_per_s": ingest,
        "keeps_up_goal_met": any(r["achieved_msgs_per_s"] >= 0.9 * ingest for r in ok),
        "backlog": backlog,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--inflight", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--backlog", type=int, default=100000)
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--sweep", type=float, nargs="*", default=[0.25, 0.5, 0.75, 0.9], help="of the sustained ingest")
    ap.add_argument("--sweep-seconds", type=float, default=4.0)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="natsmesh-bench-products-"))
    doc = mesh_doc(root)
    mesh = start_mesh(root, doc)
    try:
        result = asyncio.run(main_async(args, mesh, doc, root))
    finally:
        lifecycle.down(mesh)
        shutil.rmtree(root, ignore_errors=True)
    result = {"benchmark": "products", "machine": machine(), **result}
    p, lat, b = result["publish"], result["latency"], result["backlog"]
    print(f"machine: {result['machine']}")
    print(f"publish, {p['messages']:,} x {PAYLOAD} B, {p['max_inflight']} in flight (medians):")
    print(f"  {'product':<26} {'natsmesh msg/s':>15} {'raw nats-py msg/s':>18} {'ratio':>6}  goal >= 0.9x")
    for x in (result["publish_r1"], p):
        med = x["median_msgs_per_s"]
        print(
            f"  {x['product'] + ' (R' + str(x['replicas']) + ')':<26} {med['natsmesh']:>15,.0f} {med['raw']:>18,.0f}"
            f" {x['ratio']:>5.2f}x  {'met' if x['goal_met'] else 'NOT met'}"
        )
    print(f"latency at {lat['rate_msgs_per_s']:,.0f} msg/s ({lat['messages']:,} messages), publish -> arrival:")
    for name in ("origin", "mirror"):
        x = lat[name]
        print(
            f"  {name:<7} p50 {x['p50_ms']:.2f} ms, p99 {x['p99_ms']:.2f} ms, max {x['max_ms']:.1f} ms "
            f"({x['received']:,} received)"
        )
    print(
        f"  mirror/origin: p50 {lat['p50_ratio_mirror_vs_origin']:.2f}x, p99 {lat['p99_ratio_mirror_vs_origin']:.2f}x;"
        f" mirror p99 < 250 ms: {lat['mirror_p99_under_250ms']}"
    )
    print(
        f"backlog of {b['messages']:,}: ingest {b['ingest_seconds']:.2f} s; new cross-domain mirror applied in "
        f"{b['cross_domain_apply_seconds']:.2f} s, copied it all in {b['cross_domain_mirror_seconds']:.2f} s "
        f"({b['cross_domain_msgs_per_s']:,.0f} msg/s, "
        f"{b['ratio_copy_rate_vs_ingest_rate']:.1f}x ingest); "
        f"same-domain mirror {b['same_domain_mirror_seconds']:.2f} s "
        f"(cross/same {b['ratio_cross_vs_same_domain']:.2f}x)"
    )
    top = result["sustained_ingest_msgs_per_s"]
    print(
        f"mirror at fixed rates, {args.sweep_seconds:g} s each, as fractions of one publisher's sustained R3 ingest"
        f" with the mirror copying ({top:,.0f} msg/s, the 100 % row):"
    )
    print("  with an ordered consumer on the product and one on the mirror in this process (publish -> arrival):")
    print(f"  {'target':>7} {'achieved msg/s':>15} {'origin p50/p99 ms':>18} {'mirror p50/p99 ms':>18}")
    for r in result["sweep"]:
        if (x := r["latency"]) is not None:
            o, m = x["origin"], x["mirror"]
            print(
                f"  {r['fraction']:>7.0%} {x['achieved_msgs_per_s']:>15,.0f} {o['p50_ms']:>8.1f} / {o['p99_ms']:<7.1f}"
                f" {m['p50_ms']:>8.1f} / {m['p99_ms']:<7.1f}"
            )
    print("  with no consumer in the process, both streams' last sequence sampled every 50 ms:")
    print(f"  {'target':>7} {'achieved msg/s':>15} {'most behind':>12} {'drain':>9}  keeps up (< 1 s behind)")
    for r in result["sweep"]:
        print(
            f"  {r['fraction']:>7.0%} {r['achieved_msgs_per_s']:>15,.0f} {r['max_behind_s']:>10.3f} s"
            f" {r['drain_s']:>7.3f} s  {'yes' if r['keeps_up'] else 'NO'}"
        )
    best = result["highest_rate_lag_under_1s"]
    if best is None:
        print("the mirror fell more than 1 s behind at every rate")
    else:
        print(
            f"highest rate with the mirror under 1 s behind: {best:,.0f} msg/s = {best / top:.0%} of the sustained"
            f" ingest (goal: keeps up at >= 90 %: {'met' if result['keeps_up_goal_met'] else 'NOT met'})"
        )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
