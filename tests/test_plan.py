"""The pure decisions, without servers: what `apply` plans from the facts, and what the heal step nudges."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from natsmesh.local.specfile import parse_spec
from natsmesh.model.mesh import Mesh
from natsmesh.model.templates import init_spec_text
from natsmesh.observe.lag import LagRow
from natsmesh.reconcile.catalog import descriptors, visible_keys, with_history
from natsmesh.reconcile.heal import involved, plan_nudges
from natsmesh.reconcile.plan import CATALOG_STREAM, Facts, plan_catalog, plan_changes, plan_streams
from natsmesh.render.streams import desired_streams

A, B, C = "leaf-domain-a", "leaf-domain-b", "leaf-domain-c"


def _mesh(*, mirror_replicas: int = 3, name: str = "plan") -> Mesh:
    doc = yaml.safe_load(init_spec_text(name=name, domains=3, nodes=3, hub_nodes=3))
    doc["domains"][0]["products"] = [{"name": "ORDERS", "subjects": [f"{A}.orders.>"]}]
    doc["domains"][2]["products"] = [{"name": "SHIP", "subjects": [f"{C}.ship.>"]}]
    doc["domains"][1]["consumes"] = [{"product": f"{A}/ORDERS", "replicas": mirror_replicas}]
    doc["hub"]["consumes"] = [
        {"as": "ALL", "mode": "source", "replicas": 1, "products": [f"{A}/ORDERS", f"{C}/SHIP"]},
        {"as": "ALL3", "mode": "source", "products": [f"{A}/ORDERS", f"{C}/SHIP"]},
    ]
    return parse_spec(yaml.safe_dump(doc), source="plan.yaml", cache=False)


def _facts(streams: dict[str, dict[str, Any]] | None = None, **kw: Any) -> Facts:
    return Facts(
        streams=streams or {},
        catalog=kw.get("catalog", {}),
        copies=kw.get("copies", {}),
        consumers=kw.get("consumers", {}),
    )


def _actions(changes: list[Any]) -> list[tuple[str, str, str]]:
    return [(c.action, c.domain, c.name) for c in changes]


# ---------------------------------------------------------------------------------------------------------------
# Streams


def test_an_empty_mesh_gets_every_stream_created_upstreams_first() -> None:
    mesh = _mesh()
    changes = plan_streams(mesh, {}, prune=False)
    assert {c.action for c in changes} == {"create"}
    order = [f"{c.domain}/{c.name}" for c in changes]
    assert set(order) == {f"{A}/ORDERS", f"{C}/SHIP", f"{B}/ORDERS", "hub/ALL", "hub/ALL3"}
    assert max(order.index(f"{A}/ORDERS"), order.index(f"{C}/SHIP")) < min(
        order.index("hub/ALL"), order.index(f"{B}/ORDERS")
    )
    assert all(c.config for c in changes)


def test_streams_as_desired_are_unchanged_and_a_changed_field_is_an_update() -> None:
    mesh = _mesh()
    actual = copy.deepcopy(desired_streams(mesh))
    assert {c.action for c in plan_streams(mesh, actual, prune=False)} == {"unchanged"}
    actual[A]["ORDERS"]["description"] = "something else"
    actual[A]["ORDERS"]["max_msgs"] = 0  # the server's way of saying unlimited: not a change
    changed = [c for c in plan_streams(mesh, actual, prune=False) if c.action != "unchanged"]
    assert _actions(changed) == [("update", A, "ORDERS")]
    assert changed[0].detail == "description: 'something else' -> none"


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda cfg: cfg["metadata"].clear(), "was not created by natsmesh"),
        (lambda cfg: cfg.update(storage="memory"), "JetStream cannot change storage in place"),
        (lambda cfg: cfg["mirror"].update(name="OTHER"), "a mirror's origin cannot change in place"),
        (lambda cfg: cfg.pop("mirror"), "is not a mirror and the spec wants a mirror"),
    ],
)
def test_what_jetstream_cannot_change_in_place_is_refused(edit: Any, why: str) -> None:
    mesh = _mesh()
    actual = copy.deepcopy(desired_streams(mesh))
    edit(actual[B]["ORDERS"])
    refused = [c for c in plan_streams(mesh, actual, prune=False) if c.action == "refused"]
    assert _actions(refused) == [("refused", B, "ORDERS")] and why in refused[0].detail


def test_streams_no_longer_in_the_spec_are_kept_unless_pruning_and_others_are_never_touched() -> None:
    mesh = _mesh()
    actual = copy.deepcopy(desired_streams(mesh))
    actual[A]["OLD"] = {**actual[A]["ORDERS"], "name": "OLD"}  # managed by this mesh, dropped from the spec
    actual[A]["THEIRS"] = {**actual[A]["ORDERS"], "metadata": {}}  # not natsmesh's
    other = desired_streams(_mesh(name="other"))[A]["ORDERS"]
    actual[A]["FOREIGN"] = {**other, "name": "FOREIGN"}  # another mesh's
    kept = [c for c in plan_streams(mesh, actual, prune=False) if c.action != "unchanged"]
    assert _actions(kept) == [("would-delete", A, "OLD")] and "use --prune" in kept[0].detail
    pruned = [c for c in plan_streams(mesh, actual, prune=True) if c.action != "unchanged"]
    assert _actions(pruned) == [("delete", A, "OLD")]


# ---------------------------------------------------------------------------------------------------------------
# The catalog


def test_a_new_catalog_is_created_in_the_hub_with_a_read_copy_in_every_domain() -> None:
    mesh = _mesh()
    changes = plan_catalog(mesh, _facts(), prune=False)
    assert ("create", "hub", "natsmesh_catalog") in _actions(changes)
    entries = [c for c in changes if c.kind == "catalog" and c.name != "natsmesh_catalog"]
    assert {c.name for c in entries} == {f"{A}.ORDERS", f"{C}.SHIP"} and {c.action for c in entries} == {"create"}
    copies = [c for c in changes if c.kind == "catalog-copy"]
    assert [(c.action, c.domain) for c in copies] == [("create", d.name) for d in mesh.domains]


def _views(mesh: Mesh, entries: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each leaf cluster's read copy as `apply` leaves it: the entries it may read."""
    views = visible_keys(mesh)
    return {d: {k: v for k, v in entries.items() if k in keys} for d, keys in views.items()}


def test_each_read_copy_holds_what_its_cluster_may_read_and_a_drift_updates_only_those_that_hold_it() -> None:
    mesh = _mesh()
    streams = {d.name: {CATALOG_STREAM: {}} for d in mesh.clusters}
    entries = {k: v | {"created": "t0", "updated": "t0"} for k, v in descriptors(mesh).items()}
    views = _views(mesh, entries)
    # its own product, the one it mirrors, its own: nothing another domain keeps to itself
    assert {d: set(v) for d, v in views.items()} == {A: {f"{A}.ORDERS"}, B: {f"{A}.ORDERS"}, C: {f"{C}.SHIP"}}
    same = _facts(streams, catalog=entries, copies=views)
    assert {c.action for c in plan_catalog(mesh, same, prune=False)} == {"unchanged"}

    for stale in ({}, views[B] | {f"{C}.SHIP": entries[f"{C}.SHIP"]}):  # missing its entry; holding another's
        facts = _facts(streams, catalog=entries, copies=views | {B: stale})
        changed = [c for c in plan_catalog(mesh, facts, prune=False) if c.action != "unchanged"]
        assert _actions(changed) == [("update", B, "natsmesh_catalog")]

    drifted = dict(entries) | {f"{A}.ORDERS": entries[f"{A}.ORDERS"] | {"owner": "someone"}, "gone.X": {}}
    facts = _facts(streams, catalog=drifted, copies=_views(mesh, drifted))
    changed = [c for c in plan_catalog(mesh, facts, prune=False) if c.action != "unchanged"]
    assert ("update", "hub", f"{A}.ORDERS") in _actions(changed)
    assert ("would-delete", "hub", "gone.X") in _actions(changed)
    assert {c.domain for c in changed if c.kind == "catalog-copy"} == {A, B}


def test_a_whole_plan_counts_its_changes() -> None:
    plan = plan_changes(_mesh(), _facts())
    # 5 streams, a consumer per copy's upstream (2 for each hub aggregate, 1 for the mirror), the catalog
    # bucket, 2 entries and 3 read copies
    assert plan.summary()["create"] == 5 + 5 + 1 + 2 + 3 and not plan.refused and len(plan.pending) == 16


# ---------------------------------------------------------------------------------------------------------------
# The heal decision


def _row(domain: str, stream: str, upstream: str, active: float | None = 9.0, **kw: Any) -> LagRow:
    mode = "mirror" if stream == "ORDERS" else "source"
    up = kw.get("upstream_last_seq", 10)
    return LagRow(domain, stream, mode, upstream, up, 10, 0, active, kw.get("error"))


ALL_LINKED = {"hub", A, B, C}


def test_nothing_stalled_nothing_nudged() -> None:
    rows = [_row(B, "ORDERS", f"{A}/ORDERS", active=0.5)]
    plan = plan_nudges(_mesh(), rows, ALL_LINKED, {}, now=100.0)
    assert plan.nudges == [] and plan.waiting == [] and involved(rows) == set()


def test_a_stalled_replicated_copy_gets_one_stepdown_then_waits_its_turn() -> None:
    mesh = _mesh()
    rows = [_row("hub", "ALL3", f"{A}/ORDERS"), _row("hub", "ALL3", f"{C}/SHIP"), _row(B, "ORDERS", f"{A}/ORDERS")]
    plan = plan_nudges(mesh, rows, ALL_LINKED, {}, now=100.0)
    assert [n.what for n in plan.nudges] == ["stepdown hub/ALL3", f"stepdown {B}/ORDERS"]  # ALL3 once, not per source
    assert len(plan.waiting) == 3 and all(w.endswith("nudged, waiting for it to resume") for w in plan.waiting)
    last = {n.key: 100.0 for n in plan.nudges}
    assert plan_nudges(mesh, rows, ALL_LINKED, last, now=101.0).nudges == []  # within `every`
    assert len(plan_nudges(mesh, rows, ALL_LINKED, last, now=102.5).nudges) == 2  # again after it


def test_a_single_replica_copy_of_several_sources_gets_its_stalled_source_readded() -> None:
    plan = plan_nudges(_mesh(), [_row("hub", "ALL", f"{C}/SHIP")], ALL_LINKED, {}, now=0.0)
    assert [(n.kind, n.source, n.what) for n in plan.nudges] == [("readd", "SHIP", f"re-add hub/ALL <- {C}/SHIP")]


@pytest.mark.parametrize(
    ("row", "linked", "why"),
    [
        (_row(B, "ORDERS", f"{A}/ORDERS", upstream_last_seq=None), ALL_LINKED, f"upstream {A}/ORDERS not answering"),
        (_row(B, "ORDERS", f"{A}/ORDERS"), {"hub", B}, f"{A} has no link at the hub"),
        (_row(B, "ORDERS", f"{A}/ORDERS"), {"hub", A}, f"{B} has no link at the hub"),
    ],
)
def test_no_nudge_while_an_end_is_unreachable(row: LagRow, linked: set[str], why: str) -> None:
    plan = plan_nudges(_mesh(), [row], linked, {}, now=0.0)
    assert plan.nudges == [] and plan.waiting == [f"{B}/ORDERS <- {A}/ORDERS: {why}"]
    assert involved([row]) == {A, B}


def test_a_single_replica_mirror_waits_for_the_servers_own_retry() -> None:
    plan = plan_nudges(_mesh(mirror_replicas=1), [_row(B, "ORDERS", f"{A}/ORDERS")], ALL_LINKED, {}, now=0.0)
    assert plan.nudges == [] and "waiting for the server's own retry" in plan.waiting[0]


def test_a_copy_not_applied_yet_is_missing_not_stalled() -> None:
    row = _row(B, "ORDERS", f"{A}/ORDERS", error=f"{B}/ORDERS: stream not found")
    plan = plan_nudges(_mesh(), [row], ALL_LINKED, {}, now=0.0)
    assert plan.nudges == [] and plan.stalled == [] and plan.missing == [f"{B}/ORDERS <- {A}/ORDERS: {row.error}"]
    assert involved([row]) == set()


# ---------------------------------------------------------------------------------------------------------------
# The shares' consumers


def _consumer_facts(mesh: Mesh) -> Facts:
    from natsmesh.render.streams import desired_consumers

    streams = copy.deepcopy(desired_streams(mesh))
    return _facts(streams, consumers=copy.deepcopy(desired_consumers(mesh)))


def test_every_copy_gets_its_own_consumer_from_its_owner() -> None:
    mesh = _mesh()
    consumers = [c for c in plan_changes(mesh, _facts()).changes if c.kind == "consumer"]
    assert sorted((c.action, c.domain, c.name) for c in consumers) == sorted(
        [
            ("create", A, "ORDERS/leaf-domain-b~ORDERS"),
            ("create", A, "ORDERS/hub~ALL"),
            ("create", A, "ORDERS/hub~ALL3"),
            ("create", C, "SHIP/hub~ALL"),
            ("create", C, "SHIP/hub~ALL3"),
        ]
    )
    cfg = next(c.config for c in consumers if c.name == "ORDERS/leaf-domain-b~ORDERS")
    assert cfg is not None and cfg["ack_policy"] == "flow_control" and "inactive_threshold" not in cfg
    assert cfg["deliver_subject"] == "_MESH.DLV.leaf-domain-a.leaf-domain-b.ORDERS.ORDERS"


def test_consumers_in_step_are_kept_and_changes_update_or_make_them_anew() -> None:
    mesh = _mesh()
    facts = _consumer_facts(mesh)
    assert {c.action for c in plan_changes(mesh, facts).changes if c.kind == "consumer"} == {"unchanged"}
    facts.consumers[A]["ORDERS"]["leaf-domain-b~ORDERS"]["description"] = "edited by hand"
    facts.consumers[C]["SHIP"]["hub~ALL"]["ack_policy"] = "explicit"
    changed = [c for c in plan_changes(mesh, facts).changes if c.kind == "consumer" and c.action != "unchanged"]
    assert [(c.name, c.recreate) for c in changed] == [("ORDERS/leaf-domain-b~ORDERS", False), ("SHIP/hub~ALL", True)]


def test_a_new_copy_gets_its_consumer_made_anew_so_it_reads_from_the_first_message() -> None:
    mesh = _mesh()
    facts = _consumer_facts(mesh)
    del facts.streams[B]["ORDERS"]  # the copy is gone, its consumer (with its ack floor) is still there
    changes = plan_changes(mesh, facts).changes
    made = [c for c in changes if c.kind == "consumer" and c.action != "unchanged"]
    assert [(c.name, c.recreate) for c in made] == [("ORDERS/leaf-domain-b~ORDERS", True)]
    assert ("create", B, "ORDERS") in _actions(changes)


def test_consumers_no_copy_needs_are_kept_unless_pruning() -> None:
    mesh = _mesh()
    facts = _consumer_facts(mesh)
    old = facts.consumers[A]["ORDERS"]["leaf-domain-b~ORDERS"]
    facts.consumers[A]["ORDERS"]["leaf-domain-b~GONE"] = dict(old, name="leaf-domain-b~GONE")
    kept = [c for c in plan_changes(mesh, facts).changes if c.kind == "consumer" and c.action != "unchanged"]
    assert [(c.action, c.name) for c in kept] == [("would-delete", "ORDERS/leaf-domain-b~GONE")]
    pruned = [c for c in plan_changes(mesh, facts, prune=True).changes if c.action == "delete"]
    assert [(c.kind, c.name) for c in pruned] == [("consumer", "ORDERS/leaf-domain-b~GONE")]


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "amount": {"type": "number"}},
    "required": ["id", "amount"],
}


def _with_contract(schema: dict[str, Any], version: str) -> Mesh:
    doc = yaml.safe_load(init_spec_text(name="plan", domains=3, nodes=3, hub_nodes=3))
    doc["domains"][0]["products"] = [
        {"name": "ORDERS", "subjects": [f"{A}.orders.>"], "contract": {"schema": schema, "version": version}}
    ]
    return parse_spec(yaml.safe_dump(doc), source="plan.yaml", cache=False)


def _running(mesh: Mesh) -> Facts:
    streams = {d.name: {CATALOG_STREAM: {}} for d in mesh.clusters}
    entries = {k: with_history(v, None, "t0") for k, v in descriptors(mesh).items()}
    return _facts(streams, catalog=entries, copies=_views(mesh, entries))


def test_a_breaking_contract_change_is_refused_and_the_whole_plan_with_it() -> None:
    facts = _running(_with_contract(SCHEMA, "1.0.0"))
    narrowed = copy.deepcopy(SCHEMA) | {"required": ["id"]}
    narrowed["properties"]["amount"] = {"type": "integer"}
    plan = plan_changes(_with_contract(narrowed, "2.0.0"), facts)
    [refused] = plan.refused
    assert (refused.kind, refused.name) == ("contract", f"{A}.ORDERS")
    assert "amount:" in refused.detail and "is not backward-compatible" in refused.detail
    assert "required field removed or renamed" in refused.detail and "new major version" in refused.detail


def test_a_compatible_contract_change_is_an_update_recorded_in_its_history() -> None:
    old_mesh = _with_contract(SCHEMA, "1.0.0")
    facts = _running(old_mesh)
    wider = copy.deepcopy(SCHEMA)
    wider["properties"]["note"] = {"type": "string"}
    new_mesh = _with_contract(wider, "1.1.0")
    plan = plan_changes(new_mesh, facts)
    assert not plan.refused
    [update] = [c for c in plan.changes if c.kind == "catalog" and c.action == "update"]
    assert update.detail == "contract 1.0.0 -> 1.1.0 (backward-compatible)"
    assert update.config is not None
    written = with_history(update.config, facts.catalog[f"{A}.ORDERS"], "t1")
    assert written["created"] == "t0" and written["contract"]["version"] == "1.1.0"
    assert written["contract"]["since"] == "t1"
    assert [(h["version"], h["since"], h["schema"]) for h in written["contract_history"]] == [("1.0.0", "t0", SCHEMA)]
    # applied again: unchanged, and its history and since stay as they are
    again = _facts(facts.streams, catalog={f"{A}.ORDERS": written}, copies={})
    assert [c.action for c in plan_catalog(new_mesh, again, False) if c.kind == "catalog"] == ["unchanged"]
    assert with_history(update.config, written, "t2")["contract"]["since"] == "t1"
