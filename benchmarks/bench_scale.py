"""Scale: single-node spoke domains on a 3-node hub, 10 -> 50 -> 100 (-> 150 -> 200), measured in one run.

For each size N, on free ports below the ephemeral range, from empty data directories:

- ready: RUNS alternating runs of each side, medians (and the best bare run, which the goal is set against):
- bare: the configs natsmesh renders for that mesh, started by a plain loop in a separate process
  (`bare_up.py`) and polled until the same readiness — the floor (its configs have no system-account bridge
  past `system_bridge`'s threshold, like natsmesh's);
- up: `natsmesh up --detach` as a user runs it, timed from exec until it returns ready;
- RSS of all servers once ready, and per spoke; hub CPU at idle over 5 s;
- report: `natsmesh report jetstream --json`, the whole command (median of 3, and the first), and how many servers
  it covered;
- apply: `natsmesh apply` of 10 products per domain (N x 10 streams and catalog entries), the whole command.

Usage: python benchmarks/bench_scale.py [--sizes 10 50 100] [--bridge auto|true|false] [--json FILE]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

import natsmesh
from natsmesh.local import binary
from natsmesh.local.specfile import parse_spec
from natsmesh.model.templates import init_spec_text
from natsmesh.model.topology import block_size
from natsmesh.run import lifecycle
from natsmesh.run.ports import free_port_base

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bringup import machine, rss_bytes, run_bare_process

READY_GOAL = 1.5  # x the bare floor
REPORT_GOAL = 1.0  # seconds for the whole command
APPLY_GOAL = 60.0  # seconds for 5,000 products (500 spokes)


def spec_text(n: int, data: Path, bridge: str = "auto") -> str:
    base = free_port_base(block_size(3) * (n + 1))
    doc = yaml.safe_load(init_spec_text(name=f"scale{n}", domains=n, nodes=1, hub_nodes=3, base=base))
    doc["data_dir"] = str(data)
    doc["leafnodes"]["system_bridge"] = {"auto": "auto", "true": True, "false": False}[bridge]
    return yaml.safe_dump(doc, sort_keys=False)


def cpu_seconds(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return total


def timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed: {res.stderr[-2000:]}")
    return elapsed, res


def one_size(
    n: int, root: Path, server: str, bridge: str = "auto", runs: int = 3, apply: bool = True
) -> dict[str, object]:
    exe = str(Path(sys.executable).parent / "natsmesh")
    data = root / f"n{n}"
    spec = root / f"n{n}.yaml"
    spec.write_text(spec_text(n, data, bridge))
    mesh = parse_spec(spec.read_text(), source=str(spec), base_dir=root)
    subprocess.run([exe, "validate", "-f", str(spec)], capture_output=True, check=True)  # warm the spec cache
    row: dict[str, object] = {"spokes": n, "servers": len(mesh.nodes()), "system_bridge": mesh.system_bridge}
    bares, ups = [], []
    for i in range(runs):  # alternating; the last `up` stays for the other measures
        bare_s, bare_rss = run_bare_process(mesh, root, server, stop_timeout=120)
        bares.append(bare_s)
        ups.append(timed([exe, "up", "--detach", "--timeout", "300", "-f", str(spec), "--json"])[0])
        if i < runs - 1:
            lifecycle.down(mesh, timeout=120)
            shutil.rmtree(data)
    up_s = statistics.median(ups)
    try:
        state = json.loads((data / "run" / "state.json").read_text())
        pids = {name: info["pid"] for name, info in state["nodes"].items()}
        rss = rss_bytes(list(pids.values()))
        hub_pids = [pids[h.name] for h in mesh.hub.nodes]
        hub_rss = rss_bytes(hub_pids)
        time.sleep(2)
        c0 = cpu_seconds(hub_pids)
        time.sleep(5)
        hub_cpu = (cpu_seconds(hub_pids) - c0) / 5 / len(hub_pids)
        reports = [timed([exe, "report", "jetstream", "-f", str(spec), "--json"]) for _ in range(3)]
        report_s = statistics.median(t for t, _ in reports)
        covered = min(len(json.loads(r.stdout).get("servers") or []) for _, r in reports)
        apply_s: float | None = None
        if apply:
            spec.write_text(spec_text_with_products(spec.read_text(), 10))
            apply_s, _ = timed([exe, "apply", "-f", str(spec), "--json"])
    finally:
        lifecycle.down(mesh, timeout=120)
    row.update(
        runs=runs,
        bare_ready_s=round(statistics.median(bares), 2),
        bare_best_s=round(min(bares), 2),
        up_s=round(up_s, 2),
        up_ratio=round(up_s / statistics.median(bares), 2),
        up_ratio_to_best_bare=round(up_s / min(bares), 2),
        bare_rss_mib=round(bare_rss / 2**20),
        rss_mib=round(rss / 2**20),
        rss_per_spoke_mib=round((rss - hub_rss) / n / 2**20, 1),
        hub_rss_mib=round(hub_rss / 2**20),
        hub_cpu_idle_pct=round(100 * hub_cpu, 1),
        report_s=round(report_s, 2),
        report_first_s=round(reports[0][0], 2),
        report_servers=covered,
        apply_products=10 * n if apply else 0,
        apply_s=round(apply_s, 2) if apply_s is not None else None,
    )
    shutil.rmtree(data, ignore_errors=True)
    shutil.rmtree(root / "bare-data", ignore_errors=True)
    return row


def spec_text_with_products(text: str, products: int) -> str:
    doc = yaml.safe_load(text)
    for d in doc["domains"]:
        d["products"] = [{"name": f"P{i}", "subjects": [f"{d['name']}.p{i}.>"]} for i in range(products)]
    return yaml.safe_dump(doc, sort_keys=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 100])
    ap.add_argument("--json", dest="json_out", default=None)
    ap.add_argument("--runs", type=int, default=3, help="alternating bare/up runs per size (medians)")
    ap.add_argument("--bridge", choices=["auto", "true", "false"], default="auto", help="leafnodes.system_bridge")
    ap.add_argument(
        "--apply-up-to",
        type=int,
        default=10_000,
        help="time `apply` of 10 products per domain only up to this many spokes",
    )
    args = ap.parse_args()
    # Bytecode for natsmesh's modules, as a wheel's install writes it (see bench_bringup.py): the CLI commands
    # timed here would otherwise compile them on every run on machines that set PYTHONDONTWRITEBYTECODE.
    compileall.compile_dir(Path(natsmesh.__file__).parent, quiet=1)
    server = binary.resolve().path
    rows = []
    with tempfile.TemporaryDirectory(prefix="natsmesh-scale-") as tmp:
        for n in args.sizes:
            row = one_size(n, Path(tmp), server, args.bridge, args.runs, apply=n <= args.apply_up_to)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    head = ["spokes", "servers", "bridge", "bare ready (median, best)", "up (median)", "ratio to best bare", "RSS"]
    head += ["per spoke", "hub CPU idle", "report", "apply"]
    print("| " + " | ".join(head) + " |")
    print("| " + " | ".join("---" for _ in head) + " |")
    for r in rows:
        cells = [
            r["spokes"],
            r["servers"],
            r["system_bridge"],
            f"{r['bare_ready_s']} s, {r['bare_best_s']} s",
            f"{r['up_s']} s",
            f"{r['up_ratio_to_best_bare']}x",
            f"{r['rss_mib']} MiB",
            f"{r['rss_per_spoke_mib']} MiB",
            f"{r['hub_cpu_idle_pct']} %",
            f"{r['report_s']} s ({r['report_servers']})",
            f"{r['apply_s']} s ({r['apply_products']})" if r["apply_s"] is not None else "not timed",
        ]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
