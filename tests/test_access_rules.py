"""What access documents mean (`natsmesh.model.access`, `natsmesh.model.audit`), without servers: who may answer
what, what a grant must carry, how time ends a grant, and that a changed byte or a foreign key is caught."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from natsmesh.local.secrets import new_nkey
from natsmesh.local.specfile import parse_spec
from natsmesh.model import access, audit, jwt
from natsmesh.model.identities import NKey
from natsmesh.model.mesh import Mesh

OWNER, TAKER, OTHER = "sales", "billing", "ops"


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Mesh:
    doc = {
        "name": "rules",
        "trust": "operator",
        "hub": {"name": "hub", "nodes": 1},
        "domains": [
            {
                "name": OWNER,
                "nodes": 1,
                "products": [
                    {"name": "ORDERS", "subjects": [f"{OWNER}.orders.>"]},
                    {"name": "OPEN", "subjects": [f"{OWNER}.open.>"], "public": True},
                ],
            },
            {"name": TAKER, "nodes": 1, "products": [{"name": "INVOICES", "subjects": [f"{TAKER}.invoices.>"]}]},
            {"name": OTHER, "nodes": 1},
        ],
    }
    tmp = tmp_path_factory.mktemp("rules")
    return parse_spec(yaml.safe_dump(doc), base_dir=tmp, cache=False)


@pytest.fixture(scope="module")
def keys() -> dict[str, tuple[NKey, NKey]]:
    return {d: (new_nkey("account"), new_nkey("account")) for d in (OWNER, TAKER, OTHER)}


def _public(keys: dict[str, tuple[NKey, NKey]]) -> dict[str, access.Keys]:
    return {d: access.Keys(a.public, s.public) for d, (a, s) in keys.items()}


def _sign(
    keys: dict[str, tuple[NKey, NKey]], kind: access.Kind, domain: str, at: int, **what: object
) -> access.AccessDoc:
    account, signing = keys[domain]
    return access.sign(kind, domain, account.public, signing.seed, at, **what)


def _grant(
    mesh: Mesh, keys: dict[str, tuple[NKey, NKey]], req: access.AccessDoc, at: int, expires: int = 0
) -> access.AccessDoc:
    ledger = access.fold(mesh, _public(keys), [req], at)
    acts = access.activations(mesh, _public(keys), ledger.requests[req.id], keys[OWNER][1].seed, expires, at)
    return _sign(keys, "grant", OWNER, at, request=req.id, expires=expires, activations=acts)


def test_only_the_owner_grants_and_the_grant_makes_the_copy_with_its_tokens(
    mesh: Mesh, keys: dict[str, tuple[NKey, NKey]]
) -> None:
    t = 1_800_000_000
    req = _sign(keys, "request", TAKER, t, product=f"{OWNER}/ORDERS", copy="ORD", reason="need it")
    by_taker = _sign(keys, "grant", TAKER, t + 1, request=req.id)
    by_other = _sign(keys, "grant", OTHER, t + 1, request=req.id)
    ledger = access.fold(mesh, _public(keys), [req, by_taker, by_other], t + 2)
    assert ledger.requests[req.id].status == "pending"
    why = {r.doc.id: r.why for r in ledger.refused}
    assert "its requester cannot grant" in why[by_taker.id]
    assert "ops cannot grant" in why[by_other.id]

    grant = _grant(mesh, keys, req, t + 3)
    ledger = access.fold(mesh, _public(keys), [grant, req, req], t + 4)  # any order, duplicates once
    assert ledger.requests[req.id].status == "granted" and not ledger.refused
    made = access.with_access(mesh, ledger, t + 4)
    copy = next(c for c in made.consumptions if c.domain == TAKER and c.stream == "ORD")
    assert copy.request == req.id and copy.sources[0].ref == f"{OWNER}/ORDERS"
    tokens = {(c, s): tok for c, s, tok in made.activations}
    share = access.share_of(mesh, TAKER, f"{OWNER}/ORDERS", "ORD")
    assert all(tokens[(TAKER, s)] for s in access.share_subjects(share))
    assert access.with_access(made, ledger, t + 4).consumptions == made.consumptions  # idempotent


def test_a_grant_signed_with_a_foreign_key_or_for_other_subjects_is_refused(
    mesh: Mesh, keys: dict[str, tuple[NKey, NKey]]
) -> None:
    t = 1_800_000_000
    req = _sign(keys, "request", TAKER, t, product=f"{OWNER}/ORDERS", copy="ORD2", reason="x")
    account, _ = keys[OWNER]
    forged = access.sign("grant", OWNER, account.public, keys[OTHER][1].seed, t + 1, request=req.id)
    empty = _sign(keys, "grant", OWNER, t + 1, request=req.id)  # the owner's, but without activations
    ledger = access.fold(mesh, _public(keys), [req, forged, empty], t + 2)
    why = {r.doc.id: r.why for r in ledger.refused}
    assert "which is not a key of sales" in why[forged.id]
    assert "carries activations for nothing" in why[empty.id]
    assert ledger.requests[req.id].status == "pending"


def test_requests_no_domain_may_make(mesh: Mesh, keys: dict[str, tuple[NKey, NKey]]) -> None:
    t = 1_800_000_000
    own = _sign(keys, "request", OWNER, t, product=f"{OWNER}/ORDERS", copy="X")
    public = _sign(keys, "request", TAKER, t, product=f"{OWNER}/OPEN", copy="Y")
    missing = _sign(keys, "request", TAKER, t, product=f"{OWNER}/NOPE", copy="Z")
    clash = _sign(keys, "request", TAKER, t, product=f"{OWNER}/ORDERS", copy="INVOICES")
    badfilter = _sign(keys, "request", TAKER, t, product=f"{OWNER}/ORDERS", copy="F", filter="other.>")
    ledger = access.fold(mesh, _public(keys), [own, public, missing, clash, badfilter], t)
    why = {r.doc.id: r.why for r in ledger.refused}
    assert "sales's own product" in why[own.id]
    assert "is public" in why[public.id]
    assert "no product" in why[missing.id]
    assert "already has a stream" in why[clash.id]
    assert "matches none of" in why[badfilter.id]
    assert not ledger.requests


def test_time_ends_a_grant_and_revocation_and_denial_answer_as_said(
    mesh: Mesh, keys: dict[str, tuple[NKey, NKey]]
) -> None:
    t = 1_800_000_000
    req = _sign(keys, "request", TAKER, t, product=f"{OWNER}/ORDERS", copy="TMP")
    grant = _grant(mesh, keys, req, t + 1, expires=t + 100)
    ledger = access.fold(mesh, _public(keys), [req, grant], t + 50)
    assert ledger.requests[req.id].status == "granted"
    assert access.status_of(ledger, TAKER, "TMP", t + 50) == "granted until 2027-01-15 08:01:40 UTC"
    later = access.fold(mesh, _public(keys), [req, grant], t + 100)
    assert later.requests[req.id].status == "expired"
    made = access.with_access(mesh, later, t + 100)
    assert not any(tok for c, _, tok in made.activations if c == TAKER)  # copy kept, nothing may flow
    assert any(c.stream == "TMP" for c in made.consumptions)

    revoke = _sign(keys, "revoke", OWNER, t + 60, request=req.id, reason="done")
    ledger = access.fold(mesh, _public(keys), [req, grant, revoke], t + 61)
    assert ledger.requests[req.id].status == "revoked" and ledger.requests[req.id].answer == "done"
    assert access.status_of(ledger, TAKER, "TMP", t + 61) == "revoked: done"

    req2 = _sign(keys, "request", TAKER, t, product=f"{OWNER}/ORDERS", copy="DEN")
    deny = _sign(keys, "deny", OWNER, t + 1, request=req2.id, reason="no")
    late_grant = _grant(mesh, keys, req2, t + 2)
    ledger = access.fold(mesh, _public(keys), [req2, deny, late_grant], t + 3)
    assert ledger.requests[req2.id].status == "denied"
    assert "is denied" in next(r.why for r in ledger.refused if r.doc.id == late_grant.id)
    assert not any(c.stream == "DEN" for c in access.with_access(mesh, ledger, t + 3).consumptions)


def test_a_changed_byte_fails_and_what_each_domain_sees(mesh: Mesh, keys: dict[str, tuple[NKey, NKey]]) -> None:
    t = int(time.time())
    req = _sign(keys, "request", TAKER, t, product=f"{OWNER}/ORDERS", copy="SEE", reason="r")
    head, body, sig = req.token.split(".")
    tampered = f"{head}.{body[:-3]}{'A' if body[-3] != 'A' else 'B'}{body[-2:]}.{sig}"
    with pytest.raises(access.NotADocument):
        access.read(tampered)
    assert audit.verify(req.token, _public(keys), "").valid
    assert not audit.verify(tampered, _public(keys), "").valid
    ledger = access.fold(mesh, _public(keys), [req])
    assert req.id in ledger.about(OWNER).requests and req.id in ledger.about(TAKER).requests
    assert not ledger.about(OTHER).requests

    operator = new_nkey("operator")
    event = audit.sign_event("apply", operator.public, operator.seed, summary={"create": 2})
    entry = audit.verify(event, _public(keys), operator.public)
    assert entry.valid and entry.actor == "platform" and entry.what == "apply" and entry.about == "2 create"
    assert not audit.verify(event, _public(keys), new_nkey("operator").public).valid  # another platform's key


def test_any_bytes_are_no_document(tmp_path: Path) -> None:
    for junk in ("", "a.b.c", "x" * 70_000, "e30.e30.e30", "\x00\xff"):
        with pytest.raises(access.NotADocument):
            access.read(junk)


def test_what_a_hostile_domain_writes_is_refused_and_never_breaks_the_fold(
    mesh: Mesh, keys: dict[str, tuple[NKey, NKey]]
) -> None:
    """The review's cases: garbage activations, a copy name reused after a revocation, times beyond any
    calendar, an answer signed before its request, a re-grant after expiry, a request posing as an answer."""
    t = 1_800_000_000
    pub = _public(keys)
    req = _sign(keys, "request", TAKER, t, product=f"{OWNER}/ORDERS", copy="HOSTILE")
    share = access.share_of(mesh, TAKER, f"{OWNER}/ORDERS", "HOSTILE")
    garbage = {s: "garbage" for s in access.share_subjects(share)}
    bad = _sign(keys, "grant", OWNER, t + 1, request=req.id, activations=garbage)
    ledger = access.fold(mesh, pub, [req, bad], t + 2)  # never raises
    assert "is not a JWT" in next(r.why for r in ledger.refused if r.doc.id == bad.id)

    # an answer issued (clock skew) a second before its request is taken after it
    early = _grant(mesh, keys, req, t)
    early = _sign(keys, "grant", OWNER, t - 1, request=req.id, activations=dict(early.activations))
    ledger = access.fold(mesh, pub, [early, req], t + 2)
    assert ledger.requests[req.id].status == "granted", ledger.refused

    # a copy name stays held by a revoked grant: a second request for it is refused, one copy only
    revoke = _sign(keys, "revoke", OWNER, t + 5, request=req.id, reason="r")
    again = _sign(keys, "request", TAKER, t + 6, product=f"{OWNER}/ORDERS", copy="HOSTILE")
    ledger = access.fold(mesh, pub, [req, early, revoke, again], t + 7)
    assert "already has a stream or an open request named HOSTILE" in ledger.refused[-1].why
    made = access.with_access(mesh, ledger, t + 7)
    assert sum(1 for c in made.consumptions if (c.domain, c.stream) == (TAKER, "HOSTILE")) == 1

    # re-granted after it expired
    short = _grant(mesh, keys, req, t + 1, expires=t + 3)
    regrant = _grant(mesh, keys, req, t + 10)
    ledger = access.fold(mesh, pub, [req, short, regrant], t + 11)
    assert ledger.requests[req.id].status == "granted" and ledger.requests[req.id].grant == regrant

    # a request naming another's request as if it answered it is not relayed to that request's parties
    poser = _sign(keys, "request", OTHER, t + 1, product=f"{OWNER}/ORDERS", copy="POSE", request=req.id)
    ledger = access.fold(mesh, pub, [req, poser], t + 2)
    assert poser not in ledger.about(TAKER).taken

    # times no calendar holds, and claims natsmesh never writes, are no documents at all
    account, signing = keys[TAKER]
    for data in ({"natsmesh": "access", "kind": "request", "domain": TAKER, "expires": 10**17},
                 {"natsmesh": "access", "kind": "request", "domain": TAKER, "padding": "x" * 100}):  # fmt: skip
        token = jwt.encode(jwt.GenericClaims(subject=account.public, name=access.DOC_NAME, data=data), signing.seed, t)
        with pytest.raises(access.NotADocument):
            access.read(token)
    far = jwt.GenericClaims(subject=account.public, name=access.DOC_NAME, data={"natsmesh": "access"})
    with pytest.raises(access.NotADocument):
        access.read(jwt.encode(far, signing.seed, 10**17))


def test_a_domains_users_as_its_signed_records_say_an_issue_before_a_revocation_of_the_same_second(
    keys: dict[str, tuple[NKey, NKey]],
) -> None:
    from natsmesh.model.users import users_of

    t = 1_800_000_000
    user = {"user": "feed", "key": "UFEED", "role": "producer", "streams": ("ORDERS",)}
    issued = _sign(keys, "user-issue", OWNER, t, **user)
    revoked = _sign(keys, "user-revoke", OWNER, t, **user)  # the same second
    other = _sign(keys, "user-issue", OWNER, t, **(user | {"user": "other", "key": "UOTHER"}))
    forged = access.sign(
        "user-revoke", OWNER, keys[OWNER][0].public, keys[OTHER][1].seed, t, **user | {"key": "UOTHER"}
    )
    signers = {keys[OWNER][0].public, keys[OWNER][1].public}
    for order in ([issued, revoked, other, forged], [forged, other, revoked, issued]):
        found = {u.name: u.status(t) for u in users_of(OWNER, order, signers)}
        assert found == {"feed": "revoked", "other": "active"}, found
    assert users_of(TAKER, [issued, revoked], signers) == []  # another cluster's records are not its users
