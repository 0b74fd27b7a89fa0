"""The loss checker: pure accounting, and a real run that finds nothing lost, then finds what was removed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from helpers import MeshRunner, small_mesh_text
from natsmesh.client import MeshClient
from natsmesh.faults.losscheck import compare, publish_steady, verify
from natsmesh.reconcile.apply import reconcile


def test_compare_accounts_for_every_id() -> None:
    check = compare({0, 1, 2, 3, 4}, [0, 1, 3, 3, 2], "a/X")
    assert check.lost == [4]
    assert check.duplicated == 1
    assert check.out_of_order == 1
    assert not check.ok
    assert compare({0, 1}, [0, 1]).ok


@pytest.mark.integration
async def test_every_acknowledged_message_is_in_the_origin_and_every_copy(runner: MeshRunner, tmp_path: Path) -> None:
    doc = yaml.safe_load(small_mesh_text(tmp_path / "d", domains=2, nodes=1, hub_nodes=1))
    doc["domains"][0]["products"] = [{"name": "EVENTS", "subjects": ["leaf-domain-a.events.>"]}]
    doc["domains"][1]["consumes"] = [{"product": "leaf-domain-a/EVENTS", "as": "EVENTS_COPY"}]
    doc["hub"]["consumes"] = [{"as": "AGG", "mode": "source", "products": ["leaf-domain-a/EVENTS"]}]
    mesh = runner.up(runner.load(yaml.safe_dump(doc)))
    async with MeshClient(mesh) as mc:
        await reconcile(mesh, mc=mc)
        run = await publish_steady(mc, "leaf-domain-a/EVENTS", count=300, rate=600, subject="leaf-domain-a.events.lc")
        assert len(run.acked) == 300 and not run.failed
        checks = await verify(mesh, mc, run)
        print({c.stream: (c.stored, len(c.lost), c.duplicated) for c in checks})
        assert {(c.stream, c.role) for c in checks} == {
            ("leaf-domain-a/EVENTS", "origin"),
            ("leaf-domain-b/EVENTS_COPY", "mirror"),
            ("hub/AGG", "source"),
        }
        assert all(c.ok and c.stored == 300 and c.out_of_order == 0 for c in checks)
        # The checker notices a message that is acknowledged but gone.
        js = await mc.jetstream("leaf-domain-a")
        await js.delete_msg("EVENTS", 7)
        origin = (await verify(mesh, mc, run, settle=0))[0]
        assert origin.lost == [6] and not origin.ok


@pytest.mark.integration
def test_chaos_verify_cli(runner: MeshRunner, tmp_path: Path) -> None:
    import json

    from helpers import run_cli

    doc = yaml.safe_load(small_mesh_text(tmp_path / "d", domains=2, nodes=1, hub_nodes=1))
    doc["domains"][0]["products"] = [{"name": "EVENTS", "subjects": ["leaf-domain-a.events.>"]}]
    doc["domains"][1]["consumes"] = [{"product": "leaf-domain-a/EVENTS"}]
    mesh = runner.up(runner.load(yaml.safe_dump(doc)))
    spec = tmp_path / "m.yaml"
    spec.write_text(yaml.safe_dump(mesh.document))
    assert run_cli("apply", "-f", str(spec)).returncode == 0
    res = run_cli(
        "chaos", "verify", "leaf-domain-a/EVENTS", "--count", "100", "--rate", "1000", "-f", str(spec), "--json"
    )
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert doc["acked"] == 100 and doc["ok"]
    assert [(s["stream"], s["stored"], s["lost_count"]) for s in doc["streams"]] == [
        ("leaf-domain-a/EVENTS", 100, 0),
        ("leaf-domain-b/EVENTS", 100, 0),
    ]
