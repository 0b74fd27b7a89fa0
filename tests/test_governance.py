"""Computational governance (`natsmesh.model.checks._governance_rules`), without servers: a product's classification
against who may read it, an owner contact when the platform requires one, and how long a copy keeps a message."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from natsmesh.errors import SpecError
from natsmesh.local.secrets import new_nkey
from natsmesh.local.specfile import parse_spec
from natsmesh.model import access
from natsmesh.model.mesh import Mesh
from natsmesh.reconcile.catalog import descriptors
from natsmesh.render.streams import desired_streams

DAY = 86400


def _doc(products: list[dict[str, Any]], consumes: list[dict[str, Any]] | None = None, **top: Any) -> dict[str, Any]:
    return {
        "name": "gov",
        "hub": {"name": "hub", "nodes": 1},
        "domains": [
            {"name": "sales", "nodes": 1, "products": products},
            {"name": "billing", "nodes": 1, "consumes": consumes or []},
        ],
        **top,
    }


def _load(doc: dict[str, Any]) -> Mesh:
    return parse_spec(yaml.safe_dump(doc), source="gov.yaml", cache=False)


def _problems(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as err:
        _load(doc)
    return err.value.problems


def test_a_confidential_or_pii_product_cannot_be_public_and_the_refusal_names_the_rule_and_the_product() -> None:
    for cls in ("pii", "confidential"):
        problems = _problems(_doc([{"name": "P", "subjects": ["sales.p.>"], "public": True, "classification": cls}]))
        assert len(problems) == 1, problems
        assert "domains[0].products[0].public" in problems[0]
        assert "governance rule not-public, product sales/P: it is classified " + cls in problems[0]
    for cls in ("public", "internal"):
        mesh = _load(_doc([{"name": "P", "subjects": ["sales.p.>"], "public": True, "classification": cls}]))
        assert mesh.product("sales/P").classification == cls
    private = _load(_doc([{"name": "P", "subjects": ["sales.p.>"], "classification": "pii"}]))
    assert private.product("sales/P").classification == "pii"
    assert desired_streams(private)["sales"]["P"]["metadata"]["natsmesh.classification"] == "pii"
    assert descriptors(private)["sales.P"]["classification"] == "pii"
    defaults = _load(
        _doc([{"name": "P", "subjects": ["sales.p.>"], "public": True}, {"name": "Q", "subjects": ["sales.q.>"]}])
    )
    assert (defaults.product("sales/P").classification, defaults.product("sales/Q").classification) == (
        "public",
        "internal",
    )
    unknown = _problems(_doc([{"name": "P", "subjects": ["sales.p.>"], "classification": "secret"}]))
    assert "public" in unknown[0] and "pii" in unknown[0], unknown


def test_an_owner_contact_when_the_platform_requires_one() -> None:
    unowned = [{"name": "P", "subjects": ["sales.p.>"]}, {"name": "Q", "subjects": ["sales.q.>"], "owner": " "}]
    assert _load(_doc(unowned)).product("sales/P").owner == ""  # a spec without the rule keeps working
    problems = _problems(_doc(unowned, governance={"require_owner": True}))
    assert [p.split(": ")[1] for p in problems] == [
        "governance rule owner-named, product sales/P",
        "governance rule owner-named, product sales/Q",
    ], problems
    owned = [{"name": "P", "subjects": ["sales.p.>"], "owner": "sales@example.com"}]
    assert _load(_doc(owned, governance={"require_owner": True})).product("sales/P").owner == "sales@example.com"


def test_a_copy_keeps_no_longer_than_its_upstream_lets_it() -> None:
    products = [
        {"name": "WEEK", "subjects": ["sales.week.>"], "limits": {"max_age": "7d"}},
        {"name": "LONG", "subjects": ["sales.long.>"], "limits": {"max_age": "7d"}, "copy_retention": "30d"},
        {"name": "ALL", "subjects": ["sales.all.>"]},
    ]
    consumes = [
        {"product": "sales/WEEK"},  # left out: what the upstream allows
        {"product": "sales/LONG"},
        {"product": "sales/ALL"},
        {"as": "MIX", "mode": "source", "products": ["sales/LONG", "sales/ALL", "sales/WEEK"]},  # the shortest
        {"as": "SHORT", "product": "sales/WEEK", "max_age": "1d"},  # shorter is the copy's own choice
    ]
    mesh = _load(_doc(products, consumes))
    kept = {c.stream: c.max_age for c in mesh.consumptions}
    assert kept == {"WEEK": 7 * DAY, "LONG": 30 * DAY, "ALL": 0.0, "MIX": 7 * DAY, "SHORT": 1 * DAY}
    streams = desired_streams(mesh)["billing"]
    assert streams["WEEK"]["max_age"] == 7 * DAY * 10**9 and streams["ALL"]["max_age"] == 0
    assert descriptors(mesh)["sales.LONG"]["copy_retention_seconds"] == 30 * DAY

    longer = [
        {"as": "W8", "product": "sales/WEEK", "max_age": "8d"},
        {"as": "L", "product": "sales/LONG", "max_age": "31d"},
    ]
    problems = _problems(_doc(products, longer))
    assert len(problems) == 2, problems
    assert "domains[1].consumes[0].max_age" in problems[0]
    assert "governance rule copy-retention, product sales/WEEK: copy billing/W8 would keep a message 8d" in problems[0]
    assert "sales/WEEK lets its copies keep one 7d" in problems[0]
    assert "governance rule copy-retention, product sales/LONG" in problems[1] and "30d" in problems[1]
    unlimited_upstream = _load(_doc(products, [{"as": "A", "product": "sales/ALL", "max_age": "400d"}]))
    assert unlimited_upstream.consumptions[0].max_age == 400 * DAY
    for bad in ("0s", "-1d", "soon"):
        assert _problems(_doc(products, [{"product": "sales/WEEK", "max_age": bad}]))


def test_a_grant_may_let_its_copy_keep_longer_and_says_so_in_its_signed_document() -> None:
    doc = _doc([{"name": "WEEK", "subjects": ["sales.week.>"], "limits": {"max_age": "7d"}}], trust="operator")
    mesh = _load(doc)
    keys = {d: (new_nkey("account"), new_nkey("account")) for d in ("sales", "billing")}
    public = {d: access.Keys(a.public, s.public) for d, (a, s) in keys.items()}
    t = 1_800_000_000

    def granted(retain: int) -> float:
        req = access.sign("request", "billing", keys["billing"][0].public, keys["billing"][1].seed, t,
                          product="sales/WEEK", copy="WK", reason="r")  # fmt: skip
        ledger = access.fold(mesh, public, [req], t)
        acts = access.activations(mesh, public, ledger.requests[req.id], keys["sales"][1].seed, 0, t)
        grant = access.sign("grant", "sales", keys["sales"][0].public, keys["sales"][1].seed, t + 1,
                            request=req.id, retain=retain, activations=acts)  # fmt: skip
        assert access.read(grant.token).retain == retain
        ledger = access.fold(mesh, public, [req, grant], t + 2)
        assert ledger.requests[req.id].to_json()["retain"] == (retain or None)
        made = access.with_access(mesh, ledger, t + 2)
        return next(c.max_age for c in made.consumptions if c.stream == "WK")

    for bad in (-1, True, 2**40):
        with pytest.raises(access.NotADocument, match="retention"):
            access.sign("grant", "sales", keys["sales"][0].public, keys["sales"][1].seed, t, request="x", retain=bad)
    assert granted(0) == 7 * DAY  # the product's own word for every copy
    assert granted(90 * DAY) == 90 * DAY  # the owner's grant says more
