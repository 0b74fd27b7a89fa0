"""A product moving between the clusters of its domain on a running mesh (`natsmesh move`), under continuous
publishing and the loss checker: nothing acknowledged lost or duplicated, sequence numbers kept, the copies go
on from where they were, the producer follows through the catalog, and `apply` of the updated spec finds
nothing to do; a move that cannot be done safely is refused with its reason and changes nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from helpers import MeshRunner, run_cli
from natsmesh.client import MeshClient
from natsmesh.errors import MoveError, MoveRefusedError, PlanRefusedError
from natsmesh.faults.losscheck import publish_steady, verify
from natsmesh.local.specfile import parse_spec
from natsmesh.model.mesh import Mesh
from natsmesh.model.topology import block_size, plan_ports
from natsmesh.reconcile.apply import reconcile
from natsmesh.reconcile.catalog import read_catalog
from natsmesh.reconcile.move import move
from natsmesh.run.ports import free_port_base

pytestmark = pytest.mark.integration

SALES, BIG, SHIP, AUDIT = "sales", "sales-big", "ship", "audit"
ORDERS = f"{SALES}/ORDERS"
SUBJECT = f"{SALES}.orders.eu.1"


def _doc(data_dir: Path) -> dict[str, Any]:
    """Hub (1 node); sales (3 nodes) with a second cluster sales-big (1 node), its ORDERS (R1) and LEDGER (R3);
    ship mirrors ORDERS, audit sources its EU orders."""
    hub: dict[str, Any] = {"name": "hub", "nodes": 1}
    big: dict[str, Any] = {"name": BIG, "nodes": 1}
    sales: dict[str, Any] = {
        "name": SALES,
        "nodes": 3,
        "clusters": [big],
        "products": [
            {"name": "ORDERS", "subjects": [f"{SALES}.orders.>"], "replicas": 1},
            {"name": "LEDGER", "subjects": [f"{SALES}.ledger.>"], "replicas": 3},
        ],
    }
    ship = {"name": SHIP, "nodes": 1, "consumes": [{"product": ORDERS}]}
    audit = {
        "name": AUDIT,
        "nodes": 1,
        "consumes": [
            {"as": "EU_ORDERS", "mode": "source", "products": [{"product": ORDERS, "filter": f"{SALES}.orders.eu.>"}]}
        ],
    }
    block = block_size(3)
    base = free_port_base(block * 5)
    for k, c in enumerate([hub, sales, ship, audit, big]):
        c["ports"] = plan_ports(base, block, k, c["nodes"], c is hub).as_spec()
    return {"name": "mv", "data_dir": str(data_dir), "hub": hub, "domains": [sales, ship, audit]}


async def _seqs(mc: MeshClient, domain: str, stream: str) -> tuple[int, int, int]:
    state = (await (await mc.jetstream(domain)).stream_info(stream)).state
    return int(state.first_seq), int(state.last_seq), int(state.messages)


async def _streams(mc: MeshClient, mesh: Mesh) -> dict[str, set[str]]:
    out = {}
    for c in mesh.clusters:
        js = await mc.jetstream(c.name)
        out[c.name] = {s.config.name or "" for s in await js.streams_info()}
    return out


def test_a_product_moves_to_another_cluster_of_its_domain_under_load(runner: MeshRunner) -> None:
    mesh, spec = runner.up_file(_doc(runner.tmp / "data"), "mv.yaml")

    async def scenario() -> dict[str, Any]:
        await reconcile(mesh)
        async with MeshClient(mesh) as mc:
            # refused with its reason, nothing changed
            before = await _streams(mc, mesh)
            with pytest.raises(MoveRefusedError, match=r"sales-big has 1 node.*LEDGER keeps 3 replicas"):
                await move(mesh, f"{SALES}/LEDGER", BIG)
            assert await _streams(mc, mesh) == before

            stop = asyncio.Event()
            producer = asyncio.create_task(
                publish_steady(mc, ORDERS, count=None, rate=150, subject=SUBJECT, stop=stop, retries=20)
            )
            try:
                await asyncio.sleep(2.0)
                result = await move(mesh, ORDERS, BIG)
                await asyncio.sleep(2.0)  # the producer goes on, now on sales-big
            finally:  # a failed move ends the producer too (left running, it outlived the test's event loop)
                stop.set()
                run = await producer
            checks = await verify(mesh, mc, run)
            return {
                "result": result,
                "run": run,
                "checks": checks,
                "origin": await _seqs(mc, BIG, "ORDERS"),
                "mirror": await _seqs(mc, SHIP, "ORDERS"),
                "streams": await _streams(mc, mesh),
                "catalog": (await read_catalog(await mc.jetstream("hub")))[f"{SALES}.ORDERS"],
                "copy_in_ship": (await read_catalog(await mc.jetstream(SHIP)))[f"{SALES}.ORDERS"],
                "placed": mc.placed.get(ORDERS),
            }

    out = asyncio.run(scenario())
    result, run = out["result"], out["run"]
    assert result.applied and result.source == SALES and result.last_seq > 0
    assert not run.failed, run.failed
    assert out["placed"] == BIG  # the producer found it through the catalog
    # every acknowledged message in the product and in both copies, once each
    assert {(c.stream, c.role) for c in out["checks"]} == {
        (ORDERS, "origin"),
        (f"{SHIP}/ORDERS", "mirror"),
        (f"{AUDIT}/EU_ORDERS", "source"),
    }
    for c in out["checks"]:
        assert c.ok and c.stored == len(run.acked), c
    # sequence numbers kept: 1..N with nothing missing, the same in the mirror
    first, last, count = out["origin"]
    assert (first, count) == (1, last) and last >= len(run.acked) and out["mirror"] == out["origin"]
    assert last > result.last_seq  # written on the new cluster after the move
    # the old stream is gone, the new cluster holds it; the catalog (and ship's copy) say where it lives
    assert "ORDERS" not in out["streams"][SALES] and "ORDERS" in out["streams"][BIG]
    assert out["catalog"]["cluster"] == BIG and out["copy_in_ship"]["cluster"] == BIG
    assert result.pause_seconds < 5.0 and run.longest_wait < 10.0
    print(
        f"move: catch-up {result.catch_up_seconds} s, write pause {result.pause_seconds} s, producer's longest "
        f"wait {run.longest_wait:.2f} s, {len(run.acked)} acked, {run.retries} retries"
    )

    # the spec as it was is refused (it would make the product again on sales); as `move` leaves it, in step
    [refused] = asyncio.run(reconcile(mesh, dry_run=True)).refused
    assert "sales/ORDERS lives on cluster sales-big (moved there)" in refused.detail
    with pytest.raises(PlanRefusedError, match="sales/ORDERS lives on cluster sales-big"):
        asyncio.run(reconcile(mesh))
    text = spec.read_text()
    from natsmesh.local.specfile import placed_text

    moved = parse_spec(placed_text(text, str(spec), ORDERS, BIG), source=str(spec), base_dir=spec.parent, cache=False)
    plan = asyncio.run(reconcile(moved, dry_run=True))
    assert [c.to_json() for c in plan.pending] == []


def test_the_move_command_prints_its_plan_refuses_with_a_reason_and_updates_the_spec(runner: MeshRunner) -> None:
    _, spec = runner.up_file(_doc(runner.tmp / "data"), "mv.yaml")
    res = run_cli("apply", "-f", str(spec), "--json")
    assert res.returncode == 0, res.stderr
    dry = run_cli("move", ORDERS, "--to", BIG, "-f", str(spec), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "sales/ORDERS can move from sales to sales-big; the steps (nothing changed):" in dry.stdout
    assert "pause writes" in dry.stdout and "re-point 2 copy(ies)" in dry.stdout
    refused = run_cli("move", f"{SALES}/LEDGER", "--to", BIG, "-f", str(spec))
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "keeps 3 replicas" in refused.stderr and "nothing was changed" in refused.stderr
    done = run_cli("move", ORDERS, "--to", BIG, "-f", str(spec), "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["applied"] and doc["target"] == BIG and doc["spec_updated"] == str(spec)
    assert "cluster: sales-big" in spec.read_text()
    again = run_cli("apply", "-f", str(spec), "--json", "--dry-run")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["summary"]["create"] == 0
    audit = run_cli("audit", "--product", ORDERS, "-f", str(spec), "--json")
    assert audit.returncode == 0, audit.stderr
    moves = [e for e in json.loads(audit.stdout)["entries"] if e["what"] == "move"]
    assert len(moves) == 1 and moves[0]["valid"] and moves[0]["actor"] == "platform", moves
    assert {"source": SALES, "target": BIG, "moved": True}.items() <= moves[0]["detail"].items(), moves


def test_a_move_that_fails_after_the_pause_is_rolled_back_to_a_working_product(
    runner: MeshRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The promotion refused (as JetStream might): the mirror and its share go, the old stream takes its subjects
    again, its messages and copies intact, and it takes new writes; the hub's policy is as it was."""
    from natsmesh.local.records import recorded_shares, share_names
    from natsmesh.reconcile import move as moving

    mesh, _ = runner.up_file(_doc(runner.tmp / "data"), "mv.yaml")
    real = moving._put_stream

    async def refuse_promotion(mc: Any, domain: str, config: dict[str, Any], create: bool) -> None:
        if domain == BIG and not create and "mirror" not in config:
            raise RuntimeError("promotion refused (injected)")
        await real(mc, domain, config, create)

    monkeypatch.setattr(moving, "_put_stream", refuse_promotion)

    async def scenario() -> None:
        await reconcile(mesh)
        async with MeshClient(mesh) as mc:
            for i in range(50):
                await mc.publish(ORDERS, b'{"n": %d}' % i, subject=SUBJECT)
            with pytest.raises(MoveError, match=r"rolled back: sales/ORDERS lives on sales as before"):
                await move(mesh, ORDERS, BIG)
            streams = await _streams(mc, mesh)
            assert "ORDERS" in streams[SALES] and "ORDERS" not in streams[BIG]
            info = await (await mc.jetstream(SALES)).stream_info("ORDERS")
            assert info.config.subjects == [f"{SALES}.orders.>"] and info.state.messages == 50
            consumers = {c.name for c in await (await mc.jetstream(SALES)).consumers_info("ORDERS")}
            assert f"{BIG}~ORDERS" not in consumers
            assert (await mc.publish(ORDERS, b'{"n": 50}', subject=SUBJECT)).seq == 51
            assert set(recorded_shares(mesh)) == set(share_names(mesh))
            assert (await _seqs(mc, SHIP, "ORDERS"))[1] in (50, 51)  # the copy goes on

    asyncio.run(scenario())
