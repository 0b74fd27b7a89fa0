"""Data products in the spec: validation of ownership and sharing, desired stream configs, lineage. No servers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from natsmesh.errors import SpecError
from natsmesh.local.specfile import load_spec, parse_spec
from natsmesh.model.products import find_cycle, in_namespace, share_taker, subject_problem, subjects_overlap
from natsmesh.reconcile.catalog import descriptors
from natsmesh.render.lineage import lineage
from natsmesh.render.streams import desired_consumers, desired_streams

EXAMPLE = Path(__file__).parent.parent / "examples" / "data-mesh.yaml"


def mesh_text(domains: str, hub: str = "") -> str:
    """A spec with hub and domains a, b, c (1 node each) and the given domain/hub bodies."""
    return f"hub:\n  nodes: 1\n{hub}domains:\n{domains}"


def _problems(text: str) -> str:
    with pytest.raises(SpecError) as err:
        parse_spec(text, source="bad.yaml", cache=False)
    return str(err.value)


ORDERS = "{name: ORDERS, subjects: [a.orders.>]}"
DOMAIN_B = "  - name: b\n    nodes: 1\n"
BASE = f"""  - name: a
    nodes: 1
    products:
      - {ORDERS}
{DOMAIN_B}"""


def orders_with(keys: str) -> str:
    """BASE with KEYS (`key: value, ...`) added to a's ORDERS."""
    return BASE.replace(ORDERS, ORDERS[:-1] + f", {keys}}}")


def products_of_a(also: str) -> str:
    """BASE with the product ALSO (a flow mapping) after a's ORDERS."""
    return BASE.replace(f"      - {ORDERS}\n", f"      - {ORDERS}\n      - {also}\n")


def b_with(lines: str) -> str:
    """BASE with LINES (indented as its keys) in domain b's body."""
    return BASE.replace(DOMAIN_B, DOMAIN_B + lines)


BAD = [
    (
        "consuming a product that does not exist",
        BASE + "    consumes:\n      - product: a/NOPE\n",
        ["domains[1].consumes[0].product", "domain 'a' has no product 'NOPE'", "its streams: ORDERS"],
    ),
    (
        "consuming from a domain that does not exist",
        BASE + "    consumes:\n      - product: zz/ORDERS\n",
        ["'zz/ORDERS' names no domain"],
    ),
    (
        "a domain consuming its own product",
        BASE.replace(DOMAIN_B, "") + "    consumes:\n      - product: a/ORDERS\n        as: COPY\n",
        ["domains[0].consumes[0].product", "cannot consume its own product 'a/ORDERS'"],
    ),
    (
        "a cycle of mirrors",
        BASE
        + "    consumes:\n      - {product: c/Y, as: X}\n"
        + "  - name: c\n    nodes: 1\n    consumes:\n      - {product: b/X, as: Y}\n",
        ["domains[1].consumes[0] (line 11): mirrors and sources form a cycle", "b/X", "c/Y"],
    ),
    (
        "subjects outside the domain's namespace",
        BASE.replace("[a.orders.>]", "[b.orders.>]"),
        ["domains[0].products[0].subjects[0]", "outside the namespace of domain 'a'", "must start with 'a.'"],
    ),
    (
        "a whole-namespace wildcard without a token",
        BASE.replace("[a.orders.>]", "['>']"),
        ["outside the namespace of domain 'a'"],
    ),
    (
        "two products with one name",
        products_of_a("{name: ORDERS, subjects: [a.other.>]}"),
        ["domains[0].products[1].name", "two streams named 'ORDERS'"],
    ),
    (
        "a mirror whose name collides with a product",
        b_with("    products:\n      - {name: ORDERS, subjects: [b.orders.>]}\n")
        + "    consumes:\n      - product: a/ORDERS\n",
        ["domains[1].consumes[0]", "two streams named 'ORDERS' in domain 'b'", "name this one with `as`"],
    ),
    (
        "consuming a stream of the hub domain",
        BASE + "    consumes:\n      - {product: hub/AGG, as: X}\n",
        ["domains[1].consumes[0].product", "'hub/AGG' lives in the hub domain", "take the products"],
    ),
    (
        "two shared streams of one name",
        b_with("    products:\n      - {name: ORDERS, subjects: [b.orders.>], public: true}\n")
        + "  - name: c\n    nodes: 1\n    consumes:\n      - {product: a/ORDERS, as: A_ORDERS}\n",
        ["are both shared", "shared streams need names unique across the mesh"],
    ),
    (
        "a mirror that also declares subjects",
        BASE + "    consumes:\n      - {product: a/ORDERS, subjects: [b.x.>]}\n",
        ["domains[1].consumes[0].subjects", "a mirror cannot declare subjects"],
    ),
    (
        "a mirror of two products",
        BASE + "    consumes:\n      - {as: BOTH, products: [a/ORDERS, a/ORDERS]}\n",
        ["a mirror copies exactly one product"],
    ),
    (
        "a filtered mirror",
        BASE + "    consumes:\n      - {product: a/ORDERS, filter: a.orders.eu.>}\n",
        ["a mirror is an exact copy", "mode: source"],
    ),
    (
        "overlapping products",
        products_of_a("{name: EU, subjects: [a.orders.eu]}"),
        ["subject 'a.orders.eu' overlaps 'a.orders.>' of product 'ORDERS'"],
    ),
    (
        "more replicas than nodes",
        orders_with("replicas: 3"),
        ["domains[0].products[0].replicas", "3 replicas, but domain 'a' has 1 node"],
    ),
    (
        "a bad stream name",
        BASE.replace("name: ORDERS", "name: ORD.ERS"),
        ["domains[0].products[0].name", "invalid stream name 'ORD.ERS'"],
    ),
    (
        "a source of several products without a name",
        BASE + "    consumes:\n      - {mode: source, products: [a/ORDERS]}\n"
        "      - {mode: source, products: [a/ORDERS, a/ORDERS]}\n",
        ["domains[1].consumes[1]", "needs a name (`as`)"],
    ),
    (
        "one upstream taken twice by one stream",
        BASE + "    consumes:\n      - mode: source\n        as: BOTH\n        products:\n"
        "          - {product: a/ORDERS, filter: a.orders.eu}\n          - {product: a/ORDERS, filter: a.orders.us}\n",
        ["domains[1].consumes[0].products[1]", "'a/ORDERS' is already a source of this stream", "products[0]"],
    ),
    (
        "a consumer limit below the copies taking the product",
        orders_with("public: true, limits: {max_consumers: 1}")
        + "    consumes:\n      - product: a/ORDERS\n"
        + "  - name: c\n    nodes: 1\n    consumes:\n      - product: a/ORDERS\n",
        ["domains[0].products[0].limits.max_consumers", "1 is fewer than the 5 consumers", "at least 5"],
    ),
    (
        "shared namespace",
        b_with("    namespace: a\n"),
        ["domains[1].namespace", "subject namespace 'a' is also that of domain 'a'"],
    ),
    (
        "unknown product key",
        orders_with("owners: x"),
        ["domains[0].products[0].owners", "unknown key 'owners'"],
    ),
]


@pytest.mark.parametrize(("domains", "expected"), [(d, e) for _, d, e in BAD], ids=[i for i, _, _ in BAD])
def test_bad_product_specs_are_rejected_with_their_place(domains: str, expected: list[str]) -> None:
    msg = _problems(mesh_text(domains))
    for part in expected:
        assert part in msg, f"{part!r} not in:\n{msg}"


def test_example_data_mesh_is_valid_and_complete() -> None:
    mesh = load_spec(EXAMPLE)
    assert len(mesh.nodes()) == 18
    assert {p.ref for p in mesh.products} == {
        "leaf-domain-a/ORDERS",
        "leaf-domain-a/CUSTOMERS",
        "leaf-domain-b/SHIPMENTS",
        "leaf-domain-c/INVOICES",
        "leaf-domain-d/STOCK",
    }
    mirrors_of_orders = [
        c for c in mesh.consumptions if c.mode == "mirror" and c.sources[0].ref == "leaf-domain-a/ORDERS"
    ]
    assert {c.domain for c in mirrors_of_orders} == {"leaf-domain-b", "leaf-domain-c"}
    hub_agg = next(c for c in mesh.consumptions if c.domain == "hub")
    assert hub_agg.mode == "source" and len({s.domain for s in hub_agg.sources}) == 3


def test_a_share_name_gives_back_its_taker() -> None:
    """Revoking a share kicks the taker's links: the taker must be read back from the recorded name."""
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["domains"][3]["products"][0]["public"] = True  # leaf-domain-d/STOCK: a slot per domain too
    shares = parse_spec(yaml.safe_dump(doc), source="public", base_dir=EXAMPLE.parent).shares
    assert {s.copy is None for s in shares} == {True, False}  # copies and public slots both
    for share in shares:
        assert share_taker(share.name) == share.taker


def test_desired_configs() -> None:
    mesh = load_spec(EXAMPLE)
    streams = desired_streams(mesh)
    orders = streams["leaf-domain-a"]["ORDERS"]
    assert orders["subjects"] == ["sales.orders.>"]
    assert orders["num_replicas"] == 3
    assert orders["max_age"] == 30 * 86400 * 10**9
    assert orders["max_bytes"] == 512 * 1024**2
    assert orders["metadata"]["natsmesh.managed"] == "true"
    assert orders["metadata"]["natsmesh.owner"] == "sales-team@example.com"
    mirror = streams["leaf-domain-b"]["ORDERS"]
    assert mirror["mirror"] == {  # through the consumer the owner reserves for this copy (durable sourcing)
        "name": "ORDERS",
        "external": {"api": "$JS.leaf-domain-a.API"},
        "consumer": {
            "name": "leaf-domain-b~ORDERS",
            "deliver_subject": "_MESH.DLV.leaf-domain-a.leaf-domain-b.ORDERS.ORDERS",
        },
    }
    assert "subjects" not in mirror
    eu = streams["leaf-domain-c"]["EU_SHIPMENTS"]
    assert eu["sources"] == [
        {
            "name": "SHIPMENTS",
            "external": {"api": "$JS.leaf-domain-b.API"},
            "consumer": {
                "name": "leaf-domain-c~EU_SHIPMENTS",
                "deliver_subject": "_MESH.DLV.leaf-domain-b.leaf-domain-c.SHIPMENTS.EU_SHIPMENTS",
            },
        }
    ]
    owner = desired_consumers(mesh)["leaf-domain-b"]["SHIPMENTS"]["leaf-domain-c~EU_SHIPMENTS"]
    assert owner["filter_subject"] == "shipping.shipments.eu.>"  # the owner's consumer filters
    agg = streams["hub"]["ALL_ACTIVITY"]
    assert [s["external"]["api"] for s in agg["sources"]] == [
        "$JS.leaf-domain-a.API",
        "$JS.leaf-domain-b.API",
        "$JS.leaf-domain-d.API",
    ]


def test_transform_becomes_a_subject_transform() -> None:
    text = mesh_text(
        BASE + "    consumes:\n      - {as: T, mode: source, product: a/ORDERS, filter: 'a.orders.*',"
        " transform: 'b.copied.{{wildcard(1)}}'}\n"
    )
    mesh = parse_spec(text, cache=False)
    src = desired_streams(mesh)["b"]["T"]["sources"][0]
    assert src["subject_transforms"] == [{"src": "a.orders.*", "dest": "b.copied.{{wildcard(1)}}"}]


def test_lineage_lists_every_edge() -> None:
    mesh = load_spec(EXAMPLE)
    text = lineage(mesh, "text")
    edges = {(s.ref, c.ref, c.mode) for c in mesh.consumptions for s in c.sources}
    assert len(edges) == 9
    for src, dst, how in edges:
        assert f"{src} (" in text and f"  -> {dst} ({how})" in text
    mermaid = lineage(mesh, "mermaid")
    assert mermaid.startswith("flowchart LR") and mermaid.count("-->") == 9
    dot = lineage(mesh, "dot")
    assert dot.startswith("digraph lineage {") and dot.count("->") == 9
    with pytest.raises(ValueError):
        lineage(mesh, "svg")


def test_catalog_descriptors_name_their_consumers() -> None:
    desc = descriptors(load_spec(EXAMPLE))
    orders = desc["leaf-domain-a.ORDERS"]
    assert orders["owner"] == "sales-team@example.com"
    assert {(c["domain"], c["mode"]) for c in orders["consumed_by"]} == {
        ("leaf-domain-b", "mirror"),
        ("leaf-domain-c", "mirror"),
        ("hub", "source"),
        ("leaf-domain-e", "source"),
    }
    assert desc["leaf-domain-a.CUSTOMERS"]["consumed_by"] == []


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("a.b", "a.b", True),
        ("a.*", "a.b", True),
        ("a.>", "a.b.c", True),
        ("a.b", "a.c", False),
        ("a.b", "a.b.c", False),
        ("a.*", "a.b.c", False),
        ("a.*.c", "a.b.>", True),
        (">", "x", True),
    ],
)
def test_subject_overlap(a: str, b: str, overlap: bool) -> None:
    assert subjects_overlap(a, b) is overlap
    assert subjects_overlap(b, a) is overlap


def test_subject_rules() -> None:
    assert subject_problem("a.b.>") is None
    assert subject_problem("a..b") and subject_problem("a.>.b") and subject_problem("a b") and subject_problem("a*")
    assert in_namespace("sales.orders.>", "sales") and not in_namespace("sales", "sales")
    assert not in_namespace("salesx.orders", "sales")


def test_find_cycle() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"]}) is None
    assert find_cycle({"a": ["b"], "b": ["a"]}) == ["a", "b", "a"]


def test_policy_follows_ownership_and_declared_consumption() -> None:
    from natsmesh.render.policy import may_read, policy_for

    mesh = load_spec(EXAMPLE)
    b = policy_for(mesh, "leaf-domain-b")
    assert ("allow", "manage", "JetStream domain leaf-domain-b") in [(r.effect, r.action, r.target) for r in b]
    assert ("deny", "manage", "JetStream domain leaf-domain-a") in [(r.effect, r.action, r.target) for r in b]
    assert ("allow", "publish", "shipping.>") in [(r.effect, r.action, r.target) for r in b]
    assert ("deny", "publish", "sales.>") in [(r.effect, r.action, r.target) for r in b]
    assert may_read(mesh, "leaf-domain-b", "leaf-domain-a/ORDERS")  # declared mirror
    assert not may_read(mesh, "leaf-domain-b", "leaf-domain-a/CUSTOMERS")  # not shared
    assert may_read(mesh, "hub", "leaf-domain-d/STOCK")  # the aggregate's source
    assert may_read(mesh, "leaf-domain-e", "leaf-domain-a/ORDERS")  # e's own aggregate sources it
    assert not may_read(mesh, "leaf-domain-e", "leaf-domain-c/INVOICES")
    opened = EXAMPLE.read_text().replace("classification: pii", "classification: internal\n        public: true")
    public = parse_spec(opened, cache=False)
    assert may_read(public, "leaf-domain-e", "leaf-domain-a/CUSTOMERS")


def test_policy_show_cli(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from natsmesh.cli import cli

    res = CliRunner().invoke(cli, ["policy", "show", "leaf-domain-c", "-f", str(EXAMPLE), "--json"])
    assert res.exit_code == 0, res.output
    rules = json.loads(res.output)["leaf-domain-c"]
    assert {
        "effect": "allow",
        "action": "read",
        "target": "leaf-domain-b/SHIPMENTS",
        "why": "declared source as leaf-domain-c/EU_SHIPMENTS",
    } in rules
    bad = CliRunner().invoke(cli, ["policy", "show", "nope", "-f", str(EXAMPLE)])
    assert bad.exit_code == 1 and "has no domain 'nope'" in bad.output
