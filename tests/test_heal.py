"""The heal step's decisions and the supervisor's start order (pure parts; the faults tests run them live)."""

from __future__ import annotations

from pathlib import Path

import yaml

from helpers import seed_on_free_ports
from natsmesh.local.specfile import parse_spec
from natsmesh.observe.lag import LagRow
from natsmesh.reconcile.heal import is_stalled
from natsmesh.reconcile.heal import nudge_kind as _nudge_kind
from natsmesh.render.servers import store_dir
from natsmesh.run.supervisor import Supervisor


def _row(active: float | None, error: str | None = None, domain: str = "leaf-domain-b") -> LagRow:
    return LagRow(domain, "ORDERS_FROM_A", "mirror", "leaf-domain-a/ORDERS", 10, 10, 0, active, error)


def test_a_copy_is_stalled_when_silent_longer_than_heartbeats_allow_or_unreadable() -> None:
    assert not is_stalled(_row(0.4))
    assert is_stalled(_row(3.5))
    assert is_stalled(_row(None))  # never heard from
    assert is_stalled(_row(0.1, error="leaf-domain-b/ORDERS_FROM_A: timeout"))


def _mesh(tmp: Path, replicas: int | None = None, extra: dict | None = None):  # type: ignore[no-untyped-def, type-arg]
    doc = yaml.safe_load(seed_on_free_ports(tmp))
    if replicas is not None:
        doc["domains"][1]["consumes"][0]["replicas"] = replicas
    doc["domains"][2]["products"] = [{"name": "SHIP", "subjects": ["leaf-domain-c.ship.>"]}]
    doc["hub"]["consumes"] = [
        {"as": "ALL", "mode": "source", "replicas": 1, "products": ["leaf-domain-a/ORDERS", "leaf-domain-c/SHIP"]}
    ]
    doc.update(extra or {})
    return parse_spec(yaml.safe_dump(doc), source="t", base_dir=tmp, cache=False)


def test_nudge_by_replicas_and_sources(tmp_path: Path) -> None:
    r3 = _mesh(tmp_path)
    assert _nudge_kind(r3, _row(9)) == "stepdown"  # R3 copy: a new leader starts fresh
    r1 = _mesh(tmp_path, replicas=1)
    assert _nudge_kind(r1, _row(9)) is None  # an R1 mirror has no nudge in nats-server
    hub_row = LagRow("hub", "ALL", "source", "leaf-domain-a/ORDERS", 1, 1, 0, 9.0, None)
    assert _nudge_kind(r1, hub_row) == "readd"  # R1 with several sources: remove and re-add the stalled one


def test_ordered_start_only_when_stores_exist_and_a_copy_has_no_nudge(tmp_path: Path) -> None:
    all_at_once = [[n.name for n in _mesh(tmp_path / "d").nodes()]]
    mesh = _mesh(tmp_path / "d", replicas=1)  # ORDERS_FROM_A: a single-replica mirror
    sup = Supervisor(mesh, "nats-server")
    assert sup.stages() == all_at_once  # a new mesh starts all at once (fastest)
    node = mesh.domain("leaf-domain-e").nodes[0]
    (mesh.data_dir / mesh.domain("leaf-domain-e").folder / store_dir(node)).mkdir(parents=True)
    assert Supervisor(_mesh(tmp_path / "d"), "nats-server").stages() == all_at_once  # R3 copies: the heal watch
    stages = sup.stages()
    hub = [n.name for n in mesh.hub.nodes]
    owners = [n.name for d in ("leaf-domain-a", "leaf-domain-c") for n in mesh.domain(d).nodes]
    assert stages[0] == hub and sorted(stages[1]) == sorted(owners)
    assert sorted(stages[2]) == sorted(n.name for n in mesh.nodes() if n.name not in hub + owners)
