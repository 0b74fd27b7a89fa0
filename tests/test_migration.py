"""Moving a running mesh from `trust: config` to `trust: operator` with `natsmesh apply` (real servers).

The hub's nodes restart together with their new configs (nats-server cannot reload into operator mode); the leaf
nodes keep running and reload their link; products written meanwhile are all copied afterwards, none twice; the
catalog is carried into the hub's new account. What the move costs (the hub away, the copies paused) is printed.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import MeshRunner, run_cli, servers_under
from natsmesh.client import MeshClient, run
from natsmesh.local.specfile import load_spec
from natsmesh.local.state import SupervisorState
from natsmesh.model.mesh import Mesh
from natsmesh.model.topology import block_size, monitor_host, plan_ports
from natsmesh.observe.monitor import http_json
from natsmesh.run.ports import free_port_base

pytestmark = pytest.mark.integration
A, B = "sales", "billing"


def _doc(data_dir: Path, trust: str, base: int) -> dict[str, Any]:
    block = block_size(3)
    clusters: list[dict[str, Any]] = [
        {"name": "hub", "nodes": 3},
        {"name": A, "nodes": 1, "products": [{"name": "ORDERS", "subjects": [f"{A}.orders.>"]}]},
        {"name": B, "nodes": 1, "consumes": [{"product": f"{A}/ORDERS"}]},
    ]
    for k, c in enumerate(clusters):
        c["ports"] = plan_ports(base, block, k, c["nodes"], k == 0).as_spec()
    return {"name": "mig", "trust": trust, "data_dir": str(data_dir), "hub": clusters[0], "domains": clusters[1:]}


async def _publish(mesh: Mesh, start: int, n: int) -> None:
    async with MeshClient(mesh, name="producer") as mc:
        for i in range(start, start + n):
            await mc.publish(f"{A}/ORDERS", json.dumps({"i": i}).encode(), subject=f"{A}.orders.x")


async def _state(mesh: Mesh, domain: str) -> tuple[int, int]:
    async with MeshClient(mesh, name="counter") as mc:
        st = (await (await mc.jetstream(domain)).stream_info("ORDERS")).state
        return int(st.messages), int(st.last_seq)


def _pids(mesh: Mesh) -> dict[str, int]:
    state = SupervisorState.read(mesh)
    assert state is not None
    return {n.name: int(state.node(n.name).pid or 0) for n in mesh.nodes()}  # type: ignore[union-attr]


def test_a_running_mesh_moves_from_config_to_operator_mode(tmp_path: Path) -> None:
    data = tmp_path / "data"
    spec = tmp_path / "mig.yaml"
    base = free_port_base(block_size(3) * 3)
    spec.write_text(yaml.safe_dump(_doc(data, "config", base), sort_keys=False))
    runner = MeshRunner(tmp_path)
    try:
        mesh = runner.up(load_spec(spec))
        assert run_cli("apply", "-f", str(spec)).returncode == 0
        run(_publish(mesh, 0, 200))
        deadline = time.monotonic() + 30
        while run(_state(mesh, B))[0] < 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        catalog_before = json.loads(run_cli("catalog", "list", "-f", str(spec), "--json").stdout)
        before = _pids(mesh)

        spec.write_text(yaml.safe_dump(_doc(data, "operator", base), sort_keys=False))
        dry = run_cli("apply", "--dry-run", "-f", str(spec), "--json")
        assert dry.returncode == 0, dry.stderr
        row = next(c for c in json.loads(dry.stdout)["changes"] if c["kind"] == "trust")
        assert "restart together" in row["detail"], row
        assert _pids(mesh) == before  # a dry run changes nothing
        hub_conf = (data / mesh.hub.folder / f"{mesh.hub.nodes[0].name}.conf").read_text()
        assert "operator:" not in hub_conf

        # the owner keeps writing while the hub changes mode: every acknowledged message reaches the copy
        stop = threading.Event()
        sent = [200]

        async def keep_writing() -> None:
            async with MeshClient(mesh, name="producer") as mc:
                while not stop.is_set():
                    await mc.publish(f"{A}/ORDERS", json.dumps({"i": sent[0]}).encode(), subject=f"{A}.orders.x")
                    sent[0] += 1  # acknowledged by the owner's cluster
                    await asyncio.sleep(0.005)

        writing = threading.Thread(target=lambda: run(keep_writing()))
        started = time.monotonic()
        writing.start()
        res = run_cli("apply", "-f", str(spec), "--json", timeout=180)
        stop.set()
        writing.join()
        assert res.returncode == 0, res.stderr
        total = sent[0]
        moved = next(c for c in json.loads(res.stdout)["changes"] if c["kind"] == "trust")
        migrated = load_spec(spec)
        deadline = time.monotonic() + 60
        while run(_state(migrated, B)) != (total, total):
            assert time.monotonic() < deadline, run(_state(migrated, B))
            time.sleep(0.1)
        whole = time.monotonic() - started
        assert run(_state(migrated, A)) == (total, total)  # none lost, none twice: the mirror holds all the owner's

        after = _pids(migrated)
        hub = {n.name for n in mesh.hub.nodes}
        assert all(after[n] != before[n] for n in hub)  # the hub restarted ...
        assert all(after[n] == before[n] for n in after if n not in hub)  # ... the leaves only reloaded
        hub_conf = (data / mesh.hub.folder / f"{mesh.hub.nodes[0].name}.conf").read_text()
        assert 'operator: "operator.jwt"' in hub_conf and "accounts {" not in hub_conf.split("operator:")[1]
        links = [
            lf for n in migrated.hub.nodes for lf in http_json(monitor_host(n), n.http_port, "/leafz").get("leafs", [])
        ]
        assert len(links) == 2 and all(lf["account"].startswith("A") for lf in links), links  # JWT accounts

        catalog_after = json.loads(run_cli("catalog", "list", "-f", str(spec), "--json").stdout)
        assert catalog_after == catalog_before  # carried over, created times and all
        assert run_cli("apply", "-f", str(spec), "--json").returncode == 0  # and then nothing more to do
        print(f"\nmove: {moved['detail']}; {total} written, apply until the copy held them all: {whole:.1f} s")
    finally:
        runner.close()
        assert not servers_under(tmp_path)


def test_the_move_is_refused_when_the_hub_owns_products(tmp_path: Path) -> None:
    """A hub with products of its own keeps them in its account, which the move renames: refused, nothing done."""
    from natsmesh.errors import ApplyError
    from natsmesh.reconcile.migration import move_trust

    doc = _doc(tmp_path / "data", "config", free_port_base(block_size(3) * 3))
    doc["hub"]["products"] = [{"name": "EVENTS", "subjects": ["hub.events.>"]}]
    spec = tmp_path / "h.yaml"
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    runner = MeshRunner(tmp_path)
    try:
        mesh = runner.up(load_spec(spec))
        before = _pids(mesh)
        spec.write_text(yaml.safe_dump(doc | {"trust": "operator"}, sort_keys=False))
        with pytest.raises(ApplyError, match="owns products"):
            asyncio.run(move_trust(load_spec(spec)))
        assert _pids(mesh) == before
    finally:
        runner.close()
        assert not servers_under(tmp_path)
