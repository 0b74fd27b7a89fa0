"""The benchmark suite in one command: chosen scenarios, each script's own table, then every goal met or not.

Scenarios (by name or number, default all):
  1 bringup   the default mesh: `natsmesh up` vs the same configs started by a plain loop   (bench_bringup.py)
  2 publish   into an R1 and an R3 product: natsmesh API vs raw nats-py                     (bench_products.py)
  3 mirror    cross-domain mirror at fixed rates: latency, highest rate under 1 s behind    (bench_products.py)
  4 fanin     a hub aggregate sourcing 3, 5 and 10 domains: convergence, exact counts       (bench_flows.py)
  5 catchup   a 100,000-message backlog after a partition heals, R3 and R1 mirrors          (bench_flows.py)
  6 scale     single-node spokes 10 -> 200 on a 3-node hub: ready, RSS, report, apply      (bench_scale.py)
  7 report    `report jetstream` on the default mesh vs a bare system request              (bench_report.py)

Usage: python benchmarks/suite.py [SCENARIO ...] [--json FILE] [--sizes N ...]
       make bench [SCENARIOS="publish mirror"]
Each script prints its figures as it goes; the suite writes every result, with the machine, to FILE.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_bringup import machine  # noqa: E402

SCENARIOS = ["bringup", "publish", "mirror", "fanin", "catchup", "scale", "report"]
SCRIPTS = {
    "bringup": "bench_bringup.py",
    "publish": "bench_products.py",
    "mirror": "bench_products.py",
    "fanin": "bench_flows.py",
    "catchup": "bench_flows.py",
    "scale": "bench_scale.py",
    "report": "bench_report.py",
}


def select(names: list[str]) -> list[str]:
    """Scenario names in suite order from names or numbers; all of them for none; ValueError names a bad one."""
    chosen = set()
    for name in names:
        key = SCENARIOS[int(name) - 1] if name.isdigit() and 1 <= int(name) <= len(SCENARIOS) else name
        if key not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}: expected one of {', '.join(SCENARIOS)} or 1-{len(SCENARIOS)}")
        chosen.add(key)
    return [s for s in SCENARIOS if s in chosen] if chosen else list(SCENARIOS)


def runs(chosen: list[str], sizes: list[int]) -> list[tuple[str, list[str]]]:
    """(script, extra args) to run, each script once, in suite order."""
    out: list[tuple[str, list[str]]] = []
    for s in chosen:
        script = SCRIPTS[s]
        if any(script == done for done, _ in out):
            continue
        args: list[str] = []
        if script == "bench_flows.py" and "fanin" not in chosen:
            args = ["--fan-in"]  # an empty list: catch-up only
        elif script == "bench_flows.py" and "catchup" not in chosen:
            args = ["--catch-up-nodes"]
        elif script == "bench_scale.py":
            args = ["--sizes", *map(str, sizes)]
        out.append((script, args))
    return out


@dataclass
class Goal:
    scenario: str
    goal: str
    measured: str
    met: bool | None  # None: measured, no goal set


def _pick(rows: list[dict[str, Any]], spokes: int) -> dict[str, Any] | None:
    return next((r for r in rows if r["spokes"] == spokes), None)


def _bringup(r: dict[str, Any]) -> list[Goal]:
    x = r["ratio_cli_vs_bare_process"]
    return [Goal("bringup", "natsmesh up <= 1.25x the bare loop", f"{x:.2f}x", x <= 1.25)]


def _products(r: dict[str, Any], chosen: list[str]) -> list[Goal]:
    out = []
    if "publish" in chosen:
        for key in ("publish_r1", "publish"):
            p = r[key]
            out.append(Goal("publish", f"R{p['replicas']} natsmesh >= 0.9x raw", f"{p['ratio']:.2f}x", p["goal_met"]))
    if "mirror" in chosen:
        lat = r["latency"]
        p99 = lat["mirror"]["p99_ms"]
        out.append(
            Goal(
                "mirror",
                "p99 < 250 ms at half the R3 maximum",
                f"{p99:.1f} ms at {lat['rate_msgs_per_s']:,.0f}/s",
                p99 < 250,
            )
        )
        top = r["sustained_ingest_msgs_per_s"]
        best = r["highest_rate_lag_under_1s"] or 0.0
        out.append(
            Goal(
                "mirror",
                "under 1 s behind at >= 90% of sustained R3 ingest",
                f"up to {best:,.0f}/s = {best / top:.0%} of {top:,.0f}/s",
                r["keeps_up_goal_met"],
            )
        )
    return out


def _flows(r: dict[str, Any]) -> list[Goal]:
    out = []
    for f in r["fan_in"]:
        out.append(
            Goal(
                "fanin",
                f"{f['domains']} domains: aggregate exact",
                f"{f['aggregate_held']} in {f['converge_s']} s",
                f["exact"],
            )
        )
    for c in r["catch_up"]:
        out.append(
            Goal(
                "catchup",
                f"R{c['mirror_replicas']} mirror: 100k backlog",
                f"{c['catch_up_s']} s, {c['ratio_to_ingest']}x ingest",
                None,
            )
        )
    return out


def _scale(r: dict[str, Any]) -> list[Goal]:
    out = []
    rows = r["rows"]
    if (h := _pick(rows, 100)) is not None:
        x = h["up_ratio_to_best_bare"]
        out.append(Goal("scale", "100 spokes ready <= 1.5x best bare", f"{h['up_s']} s = {x}x", x <= 1.5))
        out.append(Goal("scale", "100 spokes apply 1,000 products < 60 s", f"{h['apply_s']} s", h["apply_s"] < 60))
    for row in rows:
        if row["spokes"] >= 100:
            ok = row["report_s"] < 1 and row["report_servers"] == row["servers"]
            out.append(
                Goal(
                    "scale",
                    f"{row['spokes']} spokes: report covers all in < 1 s",
                    f"{row['report_s']} s, {row['report_servers']}/{row['servers']}",
                    ok,
                )
            )
    if (t := _pick(rows, 200)) is not None:
        out.append(Goal("scale", "200 spokes ready < 15 s", f"{t['up_s']} s", t["up_s"] < 15))
    per = [row["rss_per_spoke_mib"] for row in rows if row["spokes"] >= 50]
    if len(per) >= 2:
        spread = max(per) / min(per)
        out.append(
            Goal("scale", "memory linear: MiB per spoke within 1.25x", f"{min(per)}-{max(per)} MiB", spread <= 1.25)
        )
    return out


def _report(r: dict[str, Any]) -> list[Goal]:
    x = r["result"]
    return [Goal("report", "report jetstream vs bare request", f"{x['natsmesh_median_s']} s = {x['ratio']}x", None)]


def goals(results: dict[str, dict[str, Any]], chosen: list[str]) -> list[Goal]:
    """Every goal of issue 6 the chosen scenarios measure, from the scripts' JSON results."""
    by: dict[str, Callable[[dict[str, Any]], list[Goal]]] = {
        "bench_bringup.py": _bringup,
        "bench_products.py": lambda r: _products(r, chosen),
        "bench_flows.py": _flows,
        "bench_scale.py": _scale,
        "bench_report.py": _report,
    }
    out: list[Goal] = []
    for script, result in results.items():
        out += by[script](result)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="names or numbers (default: all)")
    ap.add_argument("--json", dest="json_out", help="write every result and the goals to this file")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 100, 150, 200], help="spokes for scale")
    args = ap.parse_args()
    try:
        chosen = select(args.scenarios)
    except ValueError as exc:
        ap.error(str(exc))
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="natsmesh-bench-suite-") as tmp:
        for script, extra in runs(chosen, args.sizes):
            out = Path(tmp) / f"{script}.json"
            print(f"\n## {script} {' '.join(extra)}".rstrip(), flush=True)
            rc = subprocess.run([sys.executable, str(HERE / script), *extra, "--json", str(out)]).returncode
            if rc != 0 or not out.exists():
                print(f"{script} failed (exit {rc})", file=sys.stderr)
                return 1
            results[script] = json.loads(out.read_text())
    found = goals(results, chosen)
    m = machine()
    where = f"{m['cores']} cores ({m['cpu']}), {m['ram_gib']} GiB, Linux {m['kernel']}, Python {m['python']}"
    print(f"\n## goals\n\n{where}, nats-server {m['nats_server']}, {m['date']}\n")
    print("| scenario | goal | measured | met |\n| --- | --- | --- | --- |")
    for g in found:
        print(f"| {g.scenario} | {g.goal} | {g.measured} | {'-' if g.met is None else 'yes' if g.met else 'NO'} |")
    if args.json_out:
        doc = {"machine": machine(), "scenarios": chosen, "results": results, "goals": [g.__dict__ for g in found]}
        Path(args.json_out).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
