"""`natsmesh serve` (issue 13): scrape latency and CPU against a bare system request, and the portal's first page
load in a real browser. Ratios in the same run.

Meshes, each brought up on free ports in a temporary directory and applied:
- seed: examples/data-mesh.yaml (the seed's 18 servers, 6 products, 5 copies);
- spokes: a hub of 3 and N one-node spokes (default 200), every fifth spoke owning a product the next one mirrors.

Per mesh:
1. bare: one round of plain JSZ system requests to every server (`natsmesh.observe.system.collect`, what
   `report jetstream` asks, connecting anew), median of K; and the same over connections kept open between rounds
   (as `serve` keeps them);
2. scrape: `GET /metrics` of a running `natsmesh serve --cache 0.5`, each scrape after the cache expired (so every
   one takes its own round: JSZ with every stream a server leads, and LEAFZ), median and worst of K, and the serve
   process's CPU seconds per scrape (from /proc); goal: under 1 s on 200 spokes;
3. portal: Debian's headless Chromium (Playwright) loading `/`, `/catalog` and a product page to their `load`
   event, against loading `/healthz` (no mesh work) in the same browser, median of K.

Usage: python benchmarks/bench_serve.py [--spokes N] [--runs K] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parent))

from bench_bringup import machine
from reporting import machine_line, write_json

from natsmesh.local.secrets import load_credentials
from natsmesh.local.specfile import load_spec
from natsmesh.model.templates import init_spec_text
from natsmesh.observe.system import SystemPool, collect
from natsmesh.run.ports import free_port_base

HERE = Path(__file__).parent
EXE = shutil.which("natsmesh", path=str(Path(sys.executable).parent)) or "natsmesh"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]  # fmt: skip


def seed_doc() -> dict[str, Any]:
    sys.path.insert(0, str(HERE.parent / "tests"))
    from helpers import example_on_free_ports

    doc: dict[str, Any] = yaml.safe_load(example_on_free_ports("data-mesh.yaml", Path("/unused")))
    return doc


def spokes_doc(n: int) -> dict[str, Any]:
    from natsmesh.model.topology import block_size

    base = free_port_base(block_size(3) * (n + 1) + 10)
    doc: dict[str, Any] = yaml.safe_load(init_spec_text(name=f"spokes{n}", domains=n, nodes=1, hub_nodes=3, base=base))
    doms = doc["domains"]
    for i in range(0, n - 1, 5):
        owner, taker = doms[i], doms[i + 1]
        stream = f"DATA{i:03d}"  # shared streams need names unique across the mesh
        owner["products"] = [{"name": stream, "subjects": [f"{owner['name']}.data.>"]}]
        taker["consumes"] = [{"product": f"{owner['name']}/{stream}"}]
    return doc


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def get(url: str) -> tuple[float, bytes]:
    began = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as r:
        body = r.read()
    return time.perf_counter() - began, body


def measure(name: str, doc: dict[str, Any], root: Path, runs: int) -> dict[str, Any]:
    work = root / name
    work.mkdir()
    spec = work / "mesh.yaml"
    spec.write_text(yaml.safe_dump(doc | {"data_dir": str(work / "data")}, sort_keys=False))
    out: dict[str, Any] = {"mesh": name}
    up = subprocess.run([EXE, "up", "--detach", "-f", str(spec), "--timeout", "300"], capture_output=True, text=True)
    if up.returncode != 0:
        raise RuntimeError(up.stderr)
    serve: subprocess.Popen[str] | None = None
    try:
        subprocess.run([EXE, "apply", "-f", str(spec)], check=True, capture_output=True, timeout=600)
        mesh = load_spec(spec)
        creds = load_credentials(mesh, create=False)
        out["servers"], out["copies"] = len(mesh.nodes()), len(mesh.consumptions)

        async def bare() -> float:
            began = time.perf_counter()
            got = await collect(mesh, creds, ["JSZ"], timeout=5.0)
            assert not got["JSZ"].missing, got["JSZ"].missing
            return time.perf_counter() - began

        out["bare_jsz_s"] = [asyncio.run(bare()) for _ in range(runs)]

        async def kept() -> list[float]:  # the same request over connections kept open, as serve keeps them
            pool = SystemPool(mesh, creds)
            try:
                await collect(mesh, creds, ["JSZ"], timeout=5.0, pool=pool)  # connect once
                times = []
                for _ in range(runs):
                    began = time.perf_counter()
                    got = await collect(mesh, creds, ["JSZ"], timeout=5.0, pool=pool)
                    assert not got["JSZ"].missing, got["JSZ"].missing
                    times.append(time.perf_counter() - began)
                return times
            finally:
                await pool.close()

        out["kept_jsz_s"] = asyncio.run(kept())
        port = free_port_base(1)
        serve = subprocess.Popen(
            [EXE, "serve", "-f", str(spec), "--port", str(port), "--cache", "0.5"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        url = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        for _ in range(3000):
            try:
                get(f"{url}/healthz")
                break
            except OSError:
                time.sleep(0.01)
        out["serve_start_s"] = time.perf_counter() - started  # process start to its first answer
        get(f"{url}/metrics")  # warm: imports, first connections
        scrapes, cpu = [], []
        for _ in range(runs):
            time.sleep(0.6)  # past the cache: this scrape takes its own round
            before = cpu_seconds(serve.pid)
            took, body = get(f"{url}/metrics")
            cpu.append(cpu_seconds(serve.pid) - before)
            scrapes.append(took)
        out["scrape_s"], out["scrape_cpu_s"] = scrapes, cpu
        out["scrape_bytes"] = len(body)
        up_servers = sum(
            1 for ln in body.decode().splitlines() if ln.startswith("natsmesh_server_up") and ln.endswith(" 1.0")
        )
        out["servers_up_in_scrape"] = up_servers
        out["portal"] = portal_loads(url, mesh.products[0].ref if mesh.products else None, runs)
    finally:
        if serve is not None:
            serve.terminate()
            serve.wait(15)
        subprocess.run([EXE, "down", "-f", str(spec)], capture_output=True, timeout=300)
    return out


def portal_loads(url: str, product: str | None, runs: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    pages = {"healthz": "/healthz", "topology": "/", "catalog": "/catalog"}
    if product:
        pages["product"] = f"/products/{product}"
    out: dict[str, list[float]] = {k: [] for k in pages}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            for _ in range(runs):
                for name, path in pages.items():
                    page = browser.new_page()  # a first load each time: nothing cached
                    time.sleep(0.6)  # past serve's cache, so the page waits for a round like a first visit
                    began = time.perf_counter()
                    page.goto(url + path, wait_until="load")
                    out[name].append(time.perf_counter() - began)
                    page.close()
        finally:
            browser.close()
    return out


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spokes", type=int, default=200)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    began = time.monotonic()
    results = []
    try:
        for name, doc in (("seed", seed_doc()), (f"spokes{args.spokes}", spokes_doc(args.spokes))):
            print(f"{name}…", file=sys.stderr)
            results.append(measure(name, doc, root, args.runs))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    m = machine()
    print(f"\nnatsmesh serve, medians of {args.runs}:")
    for r in results:
        bare, scrape = med(r["bare_jsz_s"]), med(r["scrape_s"])
        print(
            f"  {r['mesh']:<10} {r['servers']:>4} servers {r['copies']:>3} copies: scrape {scrape * 1000:7.1f} ms "
            f"(worst {max(r['scrape_s']) * 1000:7.1f}, CPU {med(r['scrape_cpu_s']) * 1000:6.1f} ms, "
            f"{r['scrape_bytes'] / 1024:.0f} KiB) vs bare JSZ {bare * 1000:7.1f} ms = {scrape / bare:4.2f}x, "
            f"kept connections {med(r['kept_jsz_s']) * 1000:6.1f} ms = {scrape / med(r['kept_jsz_s']):4.2f}x; "
            f"{r['servers_up_in_scrape']} up"
        )
        print(f"  {'':<10} serve answered {r['serve_start_s'] * 1000:.0f} ms after its process started")
        p = r["portal"]
        base = med(p["healthz"])
        loads = ", ".join(f"{k} {med(v) * 1000:.0f} ms ({med(v) / base:.1f}x)" for k, v in p.items() if k != "healthz")
        print(f"  {'':<10} portal first load: {loads}; /healthz {base * 1000:.0f} ms")
    print(machine_line(m, began=began))
    write_json(args.json, "serve", m, results=results)


if __name__ == "__main__":
    main()
