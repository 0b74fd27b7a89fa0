"""`natsmesh report jetstream` on the default mesh against a bare system request that collects the same replies.

The seed topology (18 servers) on free ports. Both sides run as a fresh process each time, alternating:

- natsmesh: `natsmesh report jetstream --json`, the whole command (start-up, spec, request, tables as JSON);
- bare: a Python process that imports only nats-py, connects to the hub's system account, sends one
  `$SYS.REQ.SERVER.PING.JSZ` and returns once all 18 servers replied (what `nats server report jetstream` does).

Usage: python benchmarks/bench_report.py [--runs N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from natsmesh.local.secrets import load_credentials
from natsmesh.local.specfile import parse_spec
from natsmesh.model.templates import seed_spec_text
from natsmesh.model.topology import block_size
from natsmesh.observe.connect import system_urls
from natsmesh.run import lifecycle
from natsmesh.run.ports import free_port_base

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bringup import machine

BARE = """
import asyncio, json, sys, nats
async def main():
    nc = await nats.connect(servers=json.loads(sys.argv[1]))
    want, got, done = int(sys.argv[2]), set(), asyncio.Event()
    async def cb(msg):
        got.add(json.loads(msg.data)["server"]["name"])
        if len(got) >= want:
            done.set()
    inbox = nc.new_inbox()
    await nc.subscribe(inbox, cb=cb)
    await nc.publish("$SYS.REQ.SERVER.PING.JSZ", b"{}", reply=inbox)
    await asyncio.wait_for(done.wait(), 10)
    await nc.close()
asyncio.run(main())
"""


def timed(cmd: list[str]) -> float:
    start = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.monotonic() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()
    exe = str(Path(sys.executable).parent / "natsmesh")
    with tempfile.TemporaryDirectory(prefix="natsmesh-report-") as tmp:
        doc = yaml.safe_load(seed_spec_text(base=free_port_base(block_size(3) * 6)))
        doc["data_dir"] = str(Path(tmp) / "data")
        spec = Path(tmp) / "seed.yaml"
        spec.write_text(yaml.safe_dump(doc, sort_keys=False))
        mesh = parse_spec(spec.read_text(), source=str(spec), base_dir=Path(tmp))
        lifecycle.up_detached(mesh, owner_pid=os.getpid())
        try:
            urls = json.dumps(system_urls(mesh, load_credentials(mesh, create=False)))
            servers = str(len(mesh.nodes()))
            ours, bare = [], []
            for _ in range(args.runs):
                ours.append(timed([exe, "report", "jetstream", "--json", "-f", str(spec)]))
                bare.append(timed([sys.executable, "-c", BARE, urls, servers]))
        finally:
            lifecycle.down(mesh)
    row = {
        "natsmesh_median_s": round(statistics.median(ours), 3),
        "bare_median_s": round(statistics.median(bare), 3),
        "ratio": round(statistics.median(ours) / statistics.median(bare), 2),
        "runs": args.runs,
    }
    print(json.dumps(row))
    print("\n| side | median | min | max |\n| --- | --- | --- | --- |")
    for name, xs in (("natsmesh report jetstream --json", ours), ("bare system request (nats-py)", bare)):
        print(f"| {name} | {statistics.median(xs):.3f} s | {min(xs):.3f} s | {max(xs):.3f} s |")
    print(f"\nratio of medians: {row['ratio']}x")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"machine": machine(), "result": row}, indent=1))


if __name__ == "__main__":
    main()
