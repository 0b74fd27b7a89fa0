"""Fan-in and catch-up across domains, each against a floor measured in the same run.

4. fan-in: K single-node domains each hold M messages in a product; a hub aggregate sourcing all K is created
   and timed until it holds exactly K x M, against a hub copy of one product holding the same K x M messages
   (one source, the same total): convergence time, exact counts, ratio.
5. catch-up: a mirror in leaf-domain-b of leaf-domain-a/ORDERS; leaf-domain-a is partitioned (fault proxies)
   while BACKLOG messages are published into it (the ingest rate, measured); then the partition is lifted and the
   mirror timed until it holds them all: catch-up rate against ingest rate.

Usage: python benchmarks/bench_flows.py [--fan-in 3 5 10] [--messages M] [--backlog N] [--json FILE]
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

import yaml

from natsmesh.client import MeshClient
from natsmesh.faults import chaos
from natsmesh.faults.losscheck import held
from natsmesh.local.specfile import parse_spec
from natsmesh.model.mesh import Mesh
from natsmesh.model.templates import init_spec_text
from natsmesh.model.topology import block_size
from natsmesh.reconcile.apply import reconcile
from natsmesh.run import lifecycle
from natsmesh.run.ports import free_port_base

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bringup import machine


def mesh_doc(domains: int, data: Path, nodes: int = 1) -> dict[str, Any]:
    base = free_port_base(block_size(3) * (domains + 1))
    text = init_spec_text(name="flows", domains=domains, nodes=nodes, hub_nodes=1, base=base)
    doc: dict[str, Any] = yaml.safe_load(text)
    doc["data_dir"] = str(data)
    for d in doc["domains"]:
        d["products"] = [{"name": f"P_{d['name'].replace('-', '_')}", "subjects": [f"{d['name']}.events.>"]}]
    return doc


def load(doc: dict[str, Any], root: Path) -> Mesh:
    return parse_spec(yaml.safe_dump(doc, sort_keys=False), source="bench", base_dir=root, cache=False)


async def fill(mc: MeshClient, ref: str, subject: str, count: int) -> float:
    """Publish COUNT messages with acks (bounded in flight); returns the seconds it took."""
    start = time.monotonic()
    async with mc.publisher(ref, max_inflight=1000) as pub:
        for _ in range(count):
            await pub.publish(b"x" * 100, subject=subject)
    return time.monotonic() - start


async def until(mc: MeshClient, ref: str, count: int, timeout: float = 300) -> float:
    start = time.monotonic()
    while await held(mc, ref) < count:
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"{ref} did not reach {count} messages in {timeout} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def fan_in(k: int, m: int, root: Path) -> dict[str, Any]:
    doc = mesh_doc(k, root / f"fan{k}")
    mesh = load(doc, root)
    lifecycle.up_detached(mesh, owner_pid=os.getpid(), timeout=120)
    try:
        products = [f"{d['name']}/{d['products'][0]['name']}" for d in doc["domains"]]

        async def go() -> dict[str, Any]:
            async with MeshClient(mesh, name="bench") as mc:
                await reconcile(mesh, mc=mc)
                for d, ref in zip(doc["domains"], products, strict=True):
                    await fill(mc, ref, f"{d['name']}.events.x", m)
                # the floor: one product already holding k x m, copied to the hub by one source
                await fill(mc, products[0], f"{doc['domains'][0]['name']}.events.x", (k - 1) * m)
                one = dict(doc)
                one["hub"] = dict(doc["hub"], consumes=[{"product": products[0], "as": "ONE", "mode": "source"}])
                await reconcile(load(one, root), mc=mc)
                floor = await until(mc, "hub/ONE", k * m)
                agg = dict(doc)
                agg["hub"] = dict(
                    doc["hub"],
                    consumes=[*one["hub"]["consumes"], {"as": "ALL", "mode": "source", "products": products}],
                )
                t0 = time.monotonic()
                await reconcile(load(agg, root), mc=mc)
                converge = await until(mc, "hub/ALL", (k + (k - 1)) * m) + 0.0
                total = await held(mc, "hub/ALL")
                return {
                    "domains": k,
                    "messages": (2 * k - 1) * m,
                    "aggregate_held": total,
                    "exact": total == (2 * k - 1) * m,
                    "converge_s": round(time.monotonic() - t0, 2),
                    "converge_copy_s": round(converge, 2),
                    "one_source_floor_s": round(floor, 2),
                }

        return asyncio.run(go())
    finally:
        lifecycle.down(mesh)


def catch_up(backlog: int, root: Path, nodes: int) -> dict[str, Any]:
    doc = mesh_doc(2, root / f"catchup{nodes}", nodes)
    a, b = doc["domains"][0]["name"], doc["domains"][1]["name"]
    product = f"{a}/{doc['domains'][0]['products'][0]['name']}"
    doc["domains"][1]["consumes"] = [{"product": product, "as": "MIRROR"}]
    mesh = load(doc, root)
    lifecycle.up_detached(mesh, owner_pid=os.getpid(), timeout=120, chaos=True)
    try:

        async def go() -> dict[str, Any]:
            async with MeshClient(mesh, name="bench") as mc:
                await reconcile(mesh, mc=mc)
                chaos.partition(mesh, a, None)
                ingest = await fill(mc, product, f"{a}.events.x", backlog)
                mirrored_during = await held(mc, f"{b}/MIRROR")
                chaos.restore(mesh, a)
                took = await until(mc, f"{b}/MIRROR", backlog)
                return {
                    "nodes_per_domain": nodes,
                    "mirror_replicas": min(3, nodes),
                    "backlog": backlog,
                    "ingest_s": round(ingest, 2),
                    "ingest_rate": round(backlog / ingest),
                    "mirrored_during_partition": mirrored_during,
                    "catch_up_s": round(took, 2),
                    "catch_up_rate": round(backlog / took),
                    "ratio_to_ingest": round(ingest / took, 2),
                }

        return asyncio.run(go())
    finally:
        lifecycle.down(mesh)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fan-in", type=int, nargs="*", default=[3, 5, 10])
    ap.add_argument("--catch-up-nodes", type=int, nargs="*", default=[3, 1], help="nodes per domain (R3, R1)")
    ap.add_argument("--messages", type=int, default=10_000, help="messages per domain for fan-in")
    ap.add_argument("--backlog", type=int, default=100_000)
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="natsmesh-flows-") as tmp:
        fans = [fan_in(k, args.messages, Path(tmp)) for k in args.fan_in]
        for f in fans:
            print(json.dumps(f), flush=True)
        catches = [catch_up(args.backlog, Path(tmp), n) for n in args.catch_up_nodes]
        for c in catches:
            print(json.dumps(c), flush=True)
    print("\n| domains | messages | aggregate holds | exact | converged (rate) | one source, fewer messages (rate) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for f in fans:
        floor_msgs = f["domains"] * (f["messages"] // (2 * f["domains"] - 1))
        print(
            f"| {f['domains']} | {f['messages']} | {f['aggregate_held']} | {f['exact']} | {f['converge_copy_s']} s "
            f"({f['messages'] / f['converge_copy_s']:.0f}/s) | {f['one_source_floor_s']} s "
            f"({floor_msgs / f['one_source_floor_s']:.0f}/s) |"
        )
    print("\n| mirror | backlog | ingest (local, while cut off) | catch-up after healing | catch-up / ingest rate |")
    print("| --- | --- | --- | --- | --- |")
    for c in catches:
        print(
            f"| R{c['mirror_replicas']} | {c['backlog']} | {c['ingest_s']} s ({c['ingest_rate']}/s) | "
            f"{c['catch_up_s']} s ({c['catch_up_rate']}/s) | {c['ratio_to_ingest']}x |"
        )
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps({"machine": machine(), "fan_in": fans, "catch_up": catches}, indent=1)
        )


if __name__ == "__main__":
    main()
