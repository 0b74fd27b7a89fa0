"""Domains with more than one cluster, and a product's move between them, as the spec and the pure code see
them: validation with each problem's place, placement, the copies' address, the hub's mapping, the catalog, the
lineage, and the refusals of `natsmesh move`. No servers (the move itself: tests/test_move.py)."""

from __future__ import annotations

import pytest
import yaml

from natsmesh.errors import SpecError
from natsmesh.local.secrets import new_credentials
from natsmesh.local.specfile import parse_spec
from natsmesh.model import jwt
from natsmesh.model.mesh import Mesh
from natsmesh.reconcile.catalog import descriptors, visible_keys
from natsmesh.reconcile.move import bridged_mesh, move_problem, moved_mesh
from natsmesh.reconcile.plan import plan_streams
from natsmesh.render.lineage import lineage
from natsmesh.render.policy import policy_for
from natsmesh.render.servers import render_node
from natsmesh.render.streams import consumption_config, desired_streams
from natsmesh.render.trust import realise

SPEC = """
name: teams
hub: {nodes: 1}
domains:
  - name: sales
    nodes: 3
    clusters:
      - {name: sales-big, nodes: 1}
    products:
      - {name: ORDERS, subjects: [sales.orders.>], replicas: 1, cluster: sales-big}
      - {name: LEDGER, subjects: [sales.ledger.>]}
  - name: ship
    nodes: 1
    consumes:
      - {product: sales/ORDERS}
"""


def _mesh(text: str = SPEC) -> Mesh:
    return parse_spec(text, source="teams.yaml", cache=False)


def _problems(edit: str, value: object) -> str:
    doc = yaml.safe_load(SPEC)
    target: object = doc
    *path, last = edit.split(".")
    for key in path:
        target = target[int(key)] if isinstance(target, list) else target[key]  # type: ignore[index]
    target[last] = value  # type: ignore[index]
    with pytest.raises(SpecError) as err:
        _mesh(yaml.safe_dump(doc, sort_keys=False))
    return str(err.value)


def test_a_domain_with_two_clusters_places_its_products_and_keeps_one_ref() -> None:
    mesh = _mesh()
    big = mesh.domain("sales-big")
    assert (big.owner, big.team, len(big.nodes)) == ("sales", "sales", 1)
    assert [c.name for c in mesh.domains] == ["sales", "ship", "sales-big"]  # more clusters after every domain
    orders, ledger = mesh.products
    assert (orders.ref, orders.domain, orders.owner_domain) == ("sales/ORDERS", "sales-big", "sales")
    assert (ledger.ref, ledger.domain, ledger.replicas) == ("sales/LEDGER", "sales", 3)
    assert set(desired_streams(mesh)["sales-big"]) == {"ORDERS"} and "ORDERS" not in desired_streams(mesh)["sales"]
    assert mesh.namespace("sales-big") == "sales"  # one namespace per domain, whichever cluster


def test_a_copy_addresses_the_owning_domain_and_the_hub_maps_it_to_the_cluster() -> None:
    mesh = _mesh()
    [copy] = mesh.consumptions
    [source] = copy.sources
    assert (source.ref, source.domain) == ("sales/ORDERS", "sales-big")
    # the copy's own config names the domain, not the cluster: it stays the same when the product moves
    assert consumption_config(mesh.name, copy)["mirror"]["external"] == {"api": "$JS.sales.API"}
    [share] = [s for s in mesh.shares if s.taker == "ship"]
    assert (share.owner, share.address, share.deliver) == ("sales-big", "sales", "_MESH.DLV.sales.ship.ORDERS.ORDERS")
    creds = new_credentials(mesh, cost=4)
    reset = "API.CONSUMER.RESET.ORDERS.ship~ORDERS"
    back = moved_mesh(mesh, "sales/ORDERS", "sales")  # after a move to the domain's own cluster
    assert consumption_config(back.name, back.consumptions[0]) == consumption_config(mesh.name, copy)  # the same
    if mesh.trust == "operator":  # the mapping is in the taker's claims, the export in the cluster's
        mode = realise(mesh, creds)
        claims = {str(jwt.decode(t)["name"]): jwt.decode(t)["nats"] for t in mode.claims(1).values()}
        [imp] = [i for i in claims["ship"]["imports"] if i["subject"] == f"$JS.sales-big.{reset}"]
        assert imp["account"] == mode.account_key("sales-big") and imp["local_subject"] == f"$JS.sales.{reset}"
        assert any(e["subject"] == f"$JS.sales-big.{reset}" for e in claims["sales-big"]["exports"])
        moved = {str(jwt.decode(t)["name"]): jwt.decode(t)["nats"] for t in realise(back, creds).claims(1).values()}
        assert not [i for i in moved["ship"]["imports"] if i.get("local_subject")]  # and then no mapping
        return
    hub = render_node(mesh, mesh.hub, mesh.hub.nodes[0], creds)
    assert (
        f'{{ service: {{ account: "sales-big", subject: "$JS.sales-big.{reset}" }}, to: "$JS.sales.{reset}" }}' in hub
    )
    assert f'{{ service: "$JS.sales-big.{reset}", accounts: ["ship"] }}' in hub
    assert "to: " not in render_node(back, back.hub, back.hub.nodes[0], creds)  # the mapping gone after the move


def test_the_catalog_and_the_lineage_say_where_a_product_lives() -> None:
    mesh = _mesh()
    orders = descriptors(mesh)["sales.ORDERS"]
    assert (orders["domain"], orders["cluster"], orders["jetstream_api"]) == ("sales", "sales-big", "$JS.sales-big.API")
    assert "sales/ORDERS (product, on cluster sales-big)" in lineage(mesh)
    assert "sales/LEDGER (product)\n" in lineage(mesh)
    assert '["sales/ORDERS @ sales-big"]' in lineage(mesh, "mermaid")
    # each of the domain's clusters keeps every product of the domain; ship keeps what it takes
    assert visible_keys(mesh) == {
        "sales": {"sales.ORDERS", "sales.LEDGER"},
        "sales-big": {"sales.ORDERS", "sales.LEDGER"},
        "ship": {"sales.ORDERS"},
    }


def test_a_domains_clusters_keep_their_own_accounts_and_one_namespace() -> None:
    rules = policy_for(_mesh(), "sales-big")
    assert ("allow", "publish", "sales.>") in [(r.effect, r.action, r.target) for r in rules]
    assert ("deny", "publish", "sales.>") not in [(r.effect, r.action, r.target) for r in rules]
    assert ("deny", "manage", "JetStream domain sales") in [(r.effect, r.action, r.target) for r in rules]


@pytest.mark.parametrize(
    ("edit", "value", "expected"),
    [
        (
            "domains.0.products.0.cluster",
            "nowhere",
            "domains[0].products[0].cluster (line 15): 'nowhere' is not a cluster of domain 'sales' (its clusters:",
        ),
        ("domains.0.products.0.replicas", 3, "3 replicas, but cluster 'sales-big' of domain 'sales' has 1 node"),
        ("domains.1.consumes.0.cluster", "sales", "'sales' is not a cluster of domain 'ship'"),
        ("domains.0.clusters", [{"name": "ship"}], "duplicate cluster/domain name 'ship'"),
        (
            "hub.clusters",
            [{"name": "hub2"}],
            "hub.clusters (line 4): the hub is one cluster; more clusters belong to a domain",
        ),
        ("domains.0.clusters", [{"name": "SYS"}], "'SYS' is the system account's name"),
        ("domains.0.clusters", [{"name": "x", "bogus": 1}], "unknown key 'bogus'"),
    ],
)
def test_bad_cluster_specs_are_refused_with_their_place(edit: str, value: object, expected: str) -> None:
    assert expected in _problems(edit, value)


def test_a_copy_within_its_own_domain_is_refused() -> None:
    doc = yaml.safe_load(SPEC)
    doc["domains"][0]["consumes"] = [{"product": "sales/ORDERS", "as": "LOCAL", "cluster": "sales"}]
    with pytest.raises(SpecError, match="cannot consume its own product"):
        _mesh(yaml.safe_dump(doc))


def test_a_move_is_refused_with_its_reason_where_it_cannot_be_done_safely() -> None:
    mesh = _mesh()
    assert move_problem(mesh, "sales/ORDERS", "sales") is None
    assert move_problem(mesh, "sales/LEDGER", "sales-big") == (
        "cluster sales-big has 1 node(s) and sales/LEDGER keeps 3 replicas; give the cluster more nodes or the "
        "product fewer replicas first"
    )
    assert move_problem(mesh, "sales/ORDERS", "sales-big") == "sales/ORDERS already lives on cluster sales-big"
    assert "belongs to domain ship, not to sales" in (move_problem(mesh, "sales/ORDERS", "ship") or "")
    assert "the mesh has no cluster 'mars'" in (move_problem(mesh, "sales/ORDERS", "mars") or "")


def test_during_a_move_the_new_cluster_mirrors_the_product_through_a_share_of_its_own() -> None:
    mesh = _mesh()
    bridged = bridged_mesh(mesh, "sales/ORDERS", "sales")
    [share] = [s for s in bridged.shares if s.taker == "sales"]
    assert (share.owner, share.address, share.consumer) == ("sales-big", "sales-big", "sales~ORDERS")


def test_apply_refuses_to_make_again_a_product_that_moved_away() -> None:
    mesh = _mesh()
    moved = {"metadata": {"natsmesh.managed": "true", "natsmesh.mesh": "teams", "natsmesh.kind": "product"}}
    changes = plan_streams(mesh, {"sales": {"ORDERS": moved}}, prune=True)
    [refused] = [c for c in changes if c.action == "refused"]
    assert (refused.domain, refused.name) == ("sales-big", "ORDERS")
    assert "sales/ORDERS lives on cluster sales (moved there)" in refused.detail
    assert "natsmesh move sales/ORDERS --to sales-big" in refused.detail
