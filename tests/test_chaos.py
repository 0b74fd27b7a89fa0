"""Fault injection through the supervisor's view: kill, pause and restart on a real mesh."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from helpers import MeshRunner, read_state, run_cli, small_mesh_text
from natsmesh.faults import chaos
from natsmesh.observe.readiness import check_node, targets, wait_ready

pytestmark = pytest.mark.integration


def _restarted(mesh, node: str, old_pid: int, timeout: float = 15) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        info = (read_state(mesh) or {})["nodes"][node]
        if info["state"] == "running" and info["pid"] != old_pid:
            return
        assert time.monotonic() < deadline, info
        time.sleep(0.05)


def test_kill_pause_and_restart(runner: MeshRunner, tmp_path: Path) -> None:
    mesh = runner.up(runner.load(small_mesh_text(tmp_path / "d", domains=1, nodes=3, hub_nodes=1)))
    spec = tmp_path / "m.yaml"
    spec.write_text(yaml.safe_dump(mesh.document))

    res = run_cli("chaos", "kill", "leaf-domain-a-1", "-f", str(spec))
    assert res.returncode == 0, res.stderr
    old = int(res.stdout.split("pid ")[1].split(")")[0])
    _restarted(mesh, "leaf-domain-a-1", old)
    wait_ready(mesh, timeout=30)

    target = next(t for t in targets(mesh) if t.name == "leaf-domain-a-2")
    start = time.monotonic()
    import threading

    pauser = threading.Thread(target=chaos.pause, args=(mesh, "leaf-domain-a-2", 2.0))
    pauser.start()
    time.sleep(0.5)
    assert not check_node(target, timeout=0.5).ready  # frozen: not even its health check answers
    pauser.join()
    assert time.monotonic() - start >= 2.0
    wait_ready(mesh, timeout=30)  # continued, and the mesh is whole again

    pids = chaos.restart(mesh, "leaf-domain-a")
    for node, pid in zip(["leaf-domain-a-0", "leaf-domain-a-1", "leaf-domain-a-2"], pids, strict=True):
        _restarted(mesh, node, pid)
    wait_ready(mesh, timeout=30)

    bad = run_cli("chaos", "kill", "nope-0", "-f", str(spec))
    assert bad.returncode == 1 and "has no node 'nope-0'" in bad.stderr and "Traceback" not in bad.stderr


def test_partition_cuts_the_links_and_restores_them(runner: MeshRunner, tmp_path: Path) -> None:
    doc = yaml.safe_load(small_mesh_text(tmp_path / "d", domains=2, nodes=1))
    doc["domains"][0]["products"] = [{"name": "ORDERS", "subjects": ["leaf-domain-a.orders.>"]}]
    doc["domains"][1]["consumes"] = [{"product": "leaf-domain-a/ORDERS", "as": "ORDERS_FROM_A"}]
    mesh = runner.load(yaml.safe_dump(doc))
    spec = tmp_path / "m.yaml"
    spec.write_text(yaml.safe_dump(mesh.document))

    runner.up(mesh)  # without fault proxies a partition is refused, clearly
    res = run_cli("chaos", "partition", "leaf-domain-a", "--for", "1", "-f", str(spec))
    assert res.returncode == 1 and "started without fault proxies" in res.stderr and "--chaos" in res.stderr
    assert "Traceback" not in res.stderr
    runner.close()

    runner.up(mesh, chaos=True)
    missing = run_cli("heal", "--json", "-f", str(spec))  # declared, not applied: said, not waited for
    assert missing.returncode == 0 and len(json.loads(missing.stdout)["missing"]) == 1, missing.stdout
    assert run_cli("apply", "-f", str(spec)).returncode == 0
    a = next(t for t in targets(mesh) if t.cluster == "leaf-domain-a")
    res = run_cli("chaos", "partition", "leaf-domain-a", "--for", "30", "--no-wait", "-f", str(spec))
    assert res.returncode == 0, res.stderr
    assert "1 connections cut" in res.stdout  # one server's data link (its system account stays local)
    deadline = time.monotonic() + 5
    while check_node(a).ready:  # the leaf sees its links gone: the cut is real, not a stopped process
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1.0)
    assert not check_node(a).ready and "leaf link to the hub not connected" in " ".join(check_node(a).problems)
    assert check_node(next(t for t in targets(mesh) if t.cluster == "leaf-domain-b")).ready  # others unaffected
    res = run_cli("chaos", "restore", "leaf-domain-a", "-f", str(spec))
    assert res.returncode == 0 and "restored leaf-domain-a" in res.stdout, res.stderr
    wait_ready(mesh, timeout=10)

    res = run_cli("chaos", "partition", "leaf-domain-a", "--for", "1", "--json", "-f", str(spec))
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["connections_cut"] == 1 and doc["relinked_seconds"] < 5

    hub = run_cli("chaos", "partition", "hub", "--for", "1", "-f", str(spec))
    assert hub.returncode == 1 and "is the hub" in hub.stderr
    healed = run_cli("heal", "--json", "-f", str(spec))
    assert healed.returncode == 0 and json.loads(healed.stdout)["healed"], healed.stdout + healed.stderr
