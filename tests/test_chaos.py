"""Fault injection through the supervisor's view: kill, pause and restart on a real mesh."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from conftest import MeshRunner, run_cli, small_mesh_text
from natsmesh import chaos
from natsmesh.readiness import check_node, targets, wait_ready
from natsmesh.supervisor import read_state

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
