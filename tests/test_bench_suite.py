"""The benchmark suite's runner: which scripts a choice of scenarios runs, and how goals are judged (pure)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import suite


def test_scenarios_by_name_or_number_in_suite_order() -> None:
    assert suite.select([]) == suite.SCENARIOS
    assert suite.select(["7", "publish", "1"]) == ["bringup", "publish", "report"]
    with pytest.raises(ValueError, match="unknown scenario 'fan-in': expected one of bringup"):
        suite.select(["fan-in"])
    with pytest.raises(ValueError, match="unknown scenario '8'"):
        suite.select(["8"])


def test_each_script_runs_once_with_only_the_chosen_parts() -> None:
    assert suite.runs(["publish", "mirror"], [10]) == [("bench_products.py", [])]
    assert suite.runs(["fanin"], [10]) == [("bench_flows.py", ["--catch-up-nodes"])]
    assert suite.runs(["catchup"], [10]) == [("bench_flows.py", ["--fan-in"])]
    assert suite.runs(["fanin", "catchup", "scale"], [10, 20]) == [
        ("bench_flows.py", []),
        ("bench_scale.py", ["--sizes", "10", "20"]),
    ]


def _row(spokes: int, up: float, ratio: float, report: float, covered: int, per: float) -> dict[str, object]:
    return {
        "spokes": spokes,
        "servers": spokes + 3,
        "up_s": up,
        "up_ratio_to_best_bare": ratio,
        "report_s": report,
        "report_servers": covered,
        "apply_s": 12.0,
        "rss_per_spoke_mib": per,
    }


def test_goals_are_judged_from_the_scripts_results() -> None:
    scale = {"rows": [_row(50, 1.0, 1.2, 0.3, 53, 16.0), _row(100, 1.7, 1.49, 0.4, 103, 17.0)]}
    scale["rows"].append(_row(200, 3.1, 1.3, 0.6, 190, 24.0))  # a report that missed servers; memory not linear
    got = {(g.goal, g.met) for g in suite.goals({"bench_scale.py": scale}, ["scale"])}
    assert ("100 spokes ready <= 1.5x best bare", True) in got
    assert ("100 spokes: report covers all in < 1 s", True) in got
    assert ("200 spokes: report covers all in < 1 s", False) in got
    assert ("200 spokes ready < 15 s", True) in got
    assert ("memory linear: MiB per spoke within 1.25x", False) in got


def test_mirror_goal_needs_a_rate_that_kept_up_at_ninety_percent() -> None:
    pub = {"replicas": 3, "ratio": 1.0, "goal_met": True, "median_msgs_per_s": {"natsmesh": 10000.0}}
    result = {
        "publish": pub,
        "publish_r1": pub | {"replicas": 1, "ratio": 0.85, "goal_met": False},
        "latency": {"mirror": {"p99_ms": 120.0}, "rate_msgs_per_s": 5000.0},
        "highest_rate_lag_under_1s": 7500.0,
        "sustained_ingest_msgs_per_s": 9000.0,
        "keeps_up_goal_met": False,
    }
    got = {g.goal: g.met for g in suite.goals({"bench_products.py": result}, ["publish", "mirror"])}
    assert got == {
        "R1 natsmesh >= 0.9x raw": False,
        "R3 natsmesh >= 0.9x raw": True,
        "p99 < 250 ms at half the R3 maximum": True,
        "under 1 s behind at >= 90% of sustained R3 ingest": False,
    }
    only_publish = suite.goals({"bench_products.py": result}, ["publish"])
    assert {g.scenario for g in only_publish} == {"publish"}
