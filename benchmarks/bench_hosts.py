"""A mesh across test hosts against the same mesh on one host (issue 12). Ratios in the same run.

Test hosts are network namespaces on a bridge this script makes and removes (as tests/test_multihost.py does;
run as root). Both layouts have the multi-host test's shape: hub 3 nodes, sales 3 (its R3 product ORDERS),
billing 1 (a mirror of it), analytics 1 (a source of it); TLS; monitoring on each host's loopback, so readiness
and reports go through each cluster's system account. Every node is started as its folder's Procfile says,
inside its host's namespace, from fresh stores each time:

- spread: every node on a test host of its own (8 hosts);
- one host: every node on one test host (each cluster on its own ports).

Per layout, alternating, RUNS times:

1. bring-up: from starting every node until `natsmesh` readiness (asked from the platform over the network,
   through each cluster's system account) says the mesh is ready, against the bare floor of the same configs:
   the same start, judged by the same checks (health, a JetStream meta leader, every leaf link) with each host
   asking its own nodes' monitoring on its loopback;
2. mirror latency: sales/ORDERS taking a steady RATE msg/s for SECONDS; publish -> arrival at an ordered
   consumer on the product (sales) and on its mirror (billing), from the platform: p50/p99 of each;
3. report latency: `report jetstream`, `servers` and `leafnodes` from the platform, median of REPORTS each.

Usage: python benchmarks/bench_hosts.py [--runs N] [--rate R] [--seconds S] [--reports K] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))  # the test hosts of tests/netns.py

from bench_bringup import machine
from reporting import machine_line, write_json

from natsmesh.client import MeshClient
from natsmesh.local import binary
from natsmesh.local.bundle import render_bundle
from natsmesh.local.specfile import load_spec
from natsmesh.model.mesh import Mesh
from natsmesh.observe.readiness import wait_ready
from natsmesh.observe.reports import report
from natsmesh.reconcile.apply import reconcile
from netns import Host, Network

PORTS = {"client": 4222, "cluster": 6222, "http": 8222}
LAYOUTS = ("spread", "one-host")
CHECKER = """
import sys
from dataclasses import replace
from natsmesh.local.specfile import load_spec
from natsmesh.observe.readiness import targets, wait_ready
names = set(sys.argv[2:])
mine = [replace(t, host="127.0.0.1", by_system=False) for t in targets(load_spec(sys.argv[1])) if t.name in names]
print("go", flush=True)
sys.stdin.readline()  # the nodes are being started
wait_ready(mine, timeout=120)
"""


def spec(layout: str, hosts: list[Host], data: Path) -> dict[str, Any]:
    """The multi-host test's mesh, each node on its own host (spread) or all on hosts[8] (one host)."""
    if layout == "spread":
        at = [h.address for h in hosts[:8]]
        ports = [PORTS] * 4
    else:
        at = [hosts[8].address] * 8
        ports = [{k: v + 10 * i for k, v in PORTS.items()} for i in range(4)]  # each cluster its own ports
    hub_ports = ports[0] | {"leafnode": 7422}
    return {
        "name": f"bench-{layout}",
        "data_dir": str(data),
        "tls": {"enabled": True},
        "hub": {"nodes": 3, "ports": hub_ports, "hosts": at[0:3]},
        "domains": [
            {
                "name": "sales",
                "nodes": 3,
                "ports": ports[1],
                "hosts": at[3:6],
                "products": [{"name": "ORDERS", "subjects": ["sales.orders.>"]}],
            },
            {
                "name": "billing",
                "nodes": 1,
                "ports": ports[2],
                "hosts": at[6:7],
                "consumes": [{"product": "sales/ORDERS"}],
            },
            {
                "name": "analytics",
                "nodes": 1,
                "ports": ports[3],
                "hosts": at[7:8],
                "consumes": [{"as": "ALL_ORDERS", "mode": "source", "products": ["sales/ORDERS"]}],
            },
        ],
    }


class Layout:
    """One layout's mesh: its spec, its rendered folders, and which host runs which node."""

    def __init__(self, name: str, net: Network, root: Path, server: str) -> None:
        self.name, self.net = name, net
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(spec(name, net.hosts, root / f"{name}-platform"), sort_keys=False))
        self.mesh: Mesh = load_spec(path)
        self.deploy = root / f"{name}-deploy"
        render_bundle(self.mesh, self.deploy, server_command=server)
        by_address = {h.address: h for h in net.hosts}
        self.placed = [(by_address[n.host], c.folder, n) for c in self.mesh.clusters for n in c.nodes]

    def start(self) -> float:
        """Start every node from a fresh store; returns when the last was started (monotonic)."""
        for _, folder, _ in self.placed:
            shutil.rmtree(self.deploy / folder / "data", ignore_errors=True)
        for host, folder, node in self.placed:
            self.net.start(host, self.deploy / folder, node.name)
        return time.monotonic()

    def stop(self) -> None:
        for host in {h.name: h for h, _, _ in self.placed}.values():
            for p in host.procs:
                p.kill()
            for p in host.procs:
                p.wait()
            host.procs.clear()

    def bare(self) -> float:
        """The same start judged by the same readiness checks, each host asking its own nodes' monitoring on its
        own loopback (one checker per host, loaded before the start so its imports are not timed)."""
        import subprocess

        nodes: dict[str, tuple[Host, list[str]]] = {}
        for host, _, node in self.placed:
            nodes.setdefault(host.name, (host, []))[1].append(node.name)
        checkers = [
            subprocess.Popen(
                ["ip", "netns", "exec", h.name, sys.executable, "-c", CHECKER, self.mesh.source, *names],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for h, names in nodes.values()
        ]
        for c in checkers:
            assert c.stdout is not None and c.stdout.readline().strip() == "go"
        began = self.start()
        for c in checkers:
            assert c.stdin is not None
            c.stdin.write("\n")
            c.stdin.flush()
        if any(c.wait() != 0 for c in checkers):
            raise RuntimeError(f"{self.name}: a node did not become ready")
        return time.monotonic() - began


def bringup(layout: Layout) -> dict[str, float]:
    """Seconds from starting every node until ready: judged from the platform over the network (natsmesh), and
    the bare floor (the same checks, each host asking its own nodes)."""
    out = {"bare": layout.bare()}
    layout.stop()
    began = layout.start()
    wait_ready(layout.mesh, timeout=120)
    out["natsmesh"] = time.monotonic() - began
    layout.stop()
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


async def latency(mesh: Mesh, rate: float, seconds: float) -> dict[str, Any]:
    """Publish into sales/ORDERS at RATE; publish -> arrival on the product and on billing's mirror."""
    from nats.js.api import ConsumerConfig, DeliverPolicy

    arrivals: dict[str, list[float]] = {"origin": [], "mirror": []}
    async with MeshClient(mesh, name="bench-hosts") as mc:
        await reconcile(mesh, mc=mc)
        js = {"origin": await mc.jetstream("sales"), "mirror": await mc.jetstream("billing")}
        subs = []
        for name, ctx in js.items():

            def cb(name: str = name) -> Any:
                async def on(msg: Any) -> None:
                    arrivals[name].append(time.time() - struct.unpack("d", msg.data[:8])[0])

                return on

            subs.append(
                await ctx.subscribe(
                    "",
                    stream="ORDERS",
                    ordered_consumer=True,
                    cb=cb(),
                    config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
                )
            )
        total, interval = int(rate * seconds), 1.0 / rate
        begin = time.perf_counter()
        async with mc.publisher("sales/ORDERS", max_inflight=1000) as pub:
            for i in range(total):
                delay = begin + i * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await pub.publish(struct.pack("d", time.time()) + b"x" * 120, subject="sales.orders.lat")
        deadline = time.monotonic() + 30
        while min(len(x) for x in arrivals.values()) < total and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for s in subs:
            await s.unsubscribe()
    out: dict[str, Any] = {"messages": total}
    for name, xs in arrivals.items():
        out[name] = {"received": len(xs), "p50_ms": pct(xs, 0.5), "p99_ms": pct(xs, 0.99)}
    return out


def reports(mesh: Mesh, k: int) -> dict[str, float]:
    out = {}
    for name in ("jetstream", "servers", "leafnodes"):
        times = []
        for _ in range(k):
            began = time.perf_counter()
            rep = report(mesh, name, timeout=3.0)
            times.append(time.perf_counter() - began)
            if rep.missing:
                raise RuntimeError(f"{mesh.name}: report {name} missed {rep.missing}")
        out[name] = statistics.median(times)
    return out


def measure(layout: Layout, rate: float, seconds: float, k: int) -> dict[str, Any]:
    layout.start()
    try:
        wait_ready(layout.mesh, timeout=120)
        return {"latency": asyncio.run(latency(layout.mesh, rate, seconds)), "reports_s": reports(layout.mesh, k)}
    finally:
        layout.stop()


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    def med(layout: str, *path: str) -> float:
        xs = []
        for r in runs[layout]:
            x: Any = r
            for p in path:
                x = x[p]
            xs.append(float(x))
        return statistics.median(xs)

    out: dict[str, Any] = {}
    for layout in LAYOUTS:
        out[layout] = {
            "bringup_natsmesh_s": med(layout, "bringup", "natsmesh"),
            "bringup_bare_s": med(layout, "bringup", "bare"),
            "origin_p50_ms": med(layout, "latency", "origin", "p50_ms"),
            "origin_p99_ms": med(layout, "latency", "origin", "p99_ms"),
            "mirror_p50_ms": med(layout, "latency", "mirror", "p50_ms"),
            "mirror_p99_ms": med(layout, "latency", "mirror", "p99_ms"),
            **{f"report_{n}_s": med(layout, "reports_s", n) for n in ("jetstream", "servers", "leafnodes")},
        }
        out[layout]["bringup_vs_bare"] = out[layout]["bringup_natsmesh_s"] / out[layout]["bringup_bare_s"]
    s, o = out["spread"], out["one-host"]
    out["spread_vs_one_host"] = {k: s[k] / o[k] for k in s if o.get(k)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--reports", type=int, default=10)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    server = binary.resolve().path
    root = Path(tempfile.mkdtemp(prefix="bench-hosts-"))
    runs: dict[str, list[dict[str, Any]]] = {layout: [] for layout in LAYOUTS}
    began = time.monotonic()
    try:
        with Network(9) as net:
            layouts = [Layout(name, net, root, server) for name in LAYOUTS]
            for i in range(args.runs):
                for layout in layouts if i % 2 == 0 else layouts[::-1]:
                    print(f"run {i + 1}/{args.runs}: {layout.name}…", file=sys.stderr)
                    r = {"bringup": bringup(layout), **measure(layout, args.rate, args.seconds, args.reports)}
                    runs[layout.name].append(r)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    summary = summarize(runs)
    m = machine()
    print(f"\nmesh across test hosts vs on one host ({args.runs} runs each, medians):")
    print(f"  {'':<28} {'spread':>10} {'one host':>10} {'ratio':>7}")
    for key in summary["spread"]:
        s, o = summary["spread"][key], summary["one-host"][key]
        print(f"  {key:<28} {s:>10.3f} {o:>10.3f} {s / o if o else float('nan'):>6.2f}x")
    print(machine_line(m, began=began))
    write_json(args.json, "hosts", m, args=vars(args) | {"json": str(args.json)}, runs=runs, summary=summary)


if __name__ == "__main__":
    main()
