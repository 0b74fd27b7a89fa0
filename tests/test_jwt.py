"""natsmesh.model.jwt against the reference libraries: every claim kind encoded here is byte for byte the token the
Go library nats-io/jwt v2 (nsc, nats-server) makes from the same inputs, and field by field the claims @nats-io/jwt
makes. The references were made once (tests/fixtures/jwt/reference.json says how); pure and fast: no server."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import nkeys
import pytest

from natsmesh.model import jwt
from natsmesh.model.jwt import (
    AccountClaims,
    AccountLimits,
    ActivationClaims,
    Export,
    Import,
    JetStreamLimits,
    OperatorClaims,
    Permission,
    Permissions,
    ResponsePermission,
    UserClaims,
)

REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "jwt" / "reference.json").read_text())
KEYS: dict[str, str] = {name: k["public"] for name, k in REFERENCE["keys"].items()}
SEEDS: dict[str, str] = {name: k["seed"] for name, k in REFERENCE["keys"].items()}
CASES: dict[str, Any] = REFERENCE["cases"]
IAT: int = REFERENCE["iat"]
USERS = [name for name, case in CASES.items() if case["kind"] == "user"]
JS_CASES = sorted(name for name, case in CASES.items() if "go_only" not in case)  # 'go_only' says why


def resolve(value: Any, tokens: dict[str, str]) -> Any:
    """VALUE of a case's fields with `key:NAME` as that key's public key, `jwt:NAME` as that reference's token, and
    lists as tuples."""
    if isinstance(value, str) and value.startswith("key:"):
        return KEYS[value[4:]]
    if isinstance(value, str) and value.startswith("jwt:"):
        return tokens[value[4:]]
    if isinstance(value, dict):
        return {resolve(k, tokens): resolve(v, tokens) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(resolve(v, tokens) for v in value)
    return value


def permissions(p: dict[str, Any]) -> Permissions:
    resp = ResponsePermission(**p["resp"]) if "resp" in p else None
    return Permissions(pub=Permission(**p.get("pub", {})), sub=Permission(**p.get("sub", {})), resp=resp)


def limits(lim: dict[str, Any]) -> AccountLimits:
    lim = dict(lim)
    if "jetstream" in lim:
        lim["jetstream"] = JetStreamLimits(**lim["jetstream"])
    if "tiered_limits" in lim:
        lim["tiered_limits"] = {tier: JetStreamLimits(**t) for tier, t in lim["tiered_limits"].items()}
    return AccountLimits(**lim)


def claims_of(name: str, tokens: dict[str, str]) -> jwt.Claims:
    """Case NAME as natsmesh.model.jwt claims; TOKENS are the reference's own (an import may hold one)."""
    kind, fields = CASES[name]["kind"], resolve(CASES[name]["fields"], tokens)
    if kind == "operator":
        return OperatorClaims(**fields)
    if kind == "activation":
        return ActivationClaims(**fields)
    if kind == "delete_accounts":
        return jwt.delete_accounts_request(fields["operator"], fields["accounts"])
    if kind == "user":
        if "permissions" in fields:
            fields["permissions"] = permissions(fields["permissions"])
        return UserClaims(**fields)
    assert kind == "account"
    fields["exports"] = tuple(Export(**e) for e in fields.get("exports", ()))
    fields["imports"] = tuple(Import(**i) for i in fields.get("imports", ()))
    if "limits" in fields:
        fields["limits"] = limits(fields["limits"])
    if "default_permissions" in fields:
        fields["default_permissions"] = permissions(fields["default_permissions"])
    if "signing_keys" in fields:
        fields["signing_keys"] = tuple(scope(k) if isinstance(k, dict) else k for k in fields["signing_keys"])
    return AccountClaims(**fields)


def scope(k: dict[str, Any]) -> jwt.UserScope:
    """A scoped signing key of a case: its template's permissions as natsmesh's types."""
    template = dict(k.get("template", {}))
    if "permissions" in template:
        template["permissions"] = permissions(template["permissions"])
    return jwt.UserScope(**(k | {"template": jwt.UserTemplate(**template)}))


def encoded(name: str, reference: str) -> str:
    tokens = REFERENCE[reference]["tokens"]
    return jwt.encode(claims_of(name, tokens), SEEDS[CASES[name]["signer"]], IAT)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def part(token: str, i: int) -> bytes:
    text = token.split(".")[i]
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_the_fixture_covers_every_claim_kind() -> None:
    assert {c["kind"] for c in CASES.values()} == {"operator", "account", "user", "activation", "delete_accounts"}
    assert set(REFERENCE["go"]["tokens"]) == set(CASES)
    assert set(REFERENCE["js"]["tokens"]) == set(JS_CASES)


def test_public_keys_are_those_of_the_seeds() -> None:
    for name, seed in SEEDS.items():
        assert jwt.public_key(seed) == KEYS[name]


@pytest.mark.parametrize("name", sorted(CASES))
def test_tokens_are_byte_for_byte_those_of_the_go_library(name: str) -> None:
    """Same header, same claims JSON (order, omitted fields, escapes, sorted maps and lists), same jti, same
    signature (ed25519 is deterministic): the whole string."""
    ours, go = encoded(name, "go"), REFERENCE["go"]["tokens"][name]
    assert jwt.decode(ours) == REFERENCE["go"]["claims"][name]
    assert part(ours, 1) == part(go, 1)
    assert ours == go


@pytest.mark.parametrize("name", JS_CASES)
def test_claims_are_field_by_field_those_of_the_js_library(name: str) -> None:
    """@nats-io/jwt writes the same fields and values, except three things of its own: it adds `aud: "NATS"`, keeps
    imports, exports and signing keys in the caller's order (Go sorts them), and makes `jti` another way (below)."""
    ours, js = jwt.decode(encoded(name, "js")), copy.deepcopy(REFERENCE["js"]["claims"][name])
    assert js.pop("aud") == "NATS"
    assert ours.pop("jti") != js.pop("jti")
    for listed in ("imports", "exports"):
        if listed in js["nats"]:
            js["nats"][listed] = sorted(js["nats"][listed], key=lambda x: x["subject"])
    if "signing_keys" in js["nats"]:  # Go writes them as a map's sorted keys
        js["nats"]["signing_keys"].sort(key=lambda k: k if isinstance(k, str) else k["key"])
    assert ours == js
    assert encoded(name, "js").split(".")[0] == REFERENCE["js"]["tokens"][name].split(".")[0]  # the same header


@pytest.mark.parametrize("name", JS_CASES)
def test_the_jti_schemes_of_both_references(name: str) -> None:
    """Go: unpadded base32 of the SHA-512/256 of the top-level claims but `nats`, before jti is set; this module
    does the same. @nats-io/jwt: padded standard base64 of the SHA-512 of its whole claims JSON before jti, so it
    covers `aud` and the JS key order: reproducible from its own bytes, but a different scheme from Go's."""
    go_payload = part(REFERENCE["go"]["tokens"][name], 1).decode()
    jti = json.loads(go_payload)["jti"]
    hashed = go_payload[: go_payload.index(',"nats":')].replace(f'"jti":"{jti}",', "") + "}"
    assert jti == base64.b32encode(hashlib.new("sha512_256", hashed.encode()).digest()).decode().rstrip("=")

    js_payload = part(REFERENCE["js"]["tokens"][name], 1).decode()
    jti = json.loads(js_payload)["jti"]
    js_hashed = js_payload.replace(f',"jti":"{jti}"', "").encode()
    assert jti == base64.b64encode(hashlib.sha512(js_hashed).digest()).decode()


@pytest.mark.parametrize(("name", "reference"), [(n, "go") for n in sorted(CASES)] + [(n, "js") for n in JS_CASES])
def test_signatures_verify_with_nkeys(name: str, reference: str) -> None:
    ours = encoded(name, reference)
    for token in (ours, REFERENCE[reference]["tokens"][name]):
        signed = token.rpartition(".")[0]
        signer = nkeys.from_seed(bytearray(SEEDS[CASES[name]["signer"]].encode()))
        assert signer.verify(signed.encode(), part(token, 2))
        assert jwt.decode(token)["iss"] == KEYS[CASES[name]["signer"]]
        assert jwt.verify(token)


@pytest.mark.parametrize(("name", "reference"), [(n, "go") for n in sorted(CASES)] + [(n, "js") for n in JS_CASES])
def test_reference_tokens_decode(name: str, reference: str) -> None:
    assert jwt.decode(REFERENCE[reference]["tokens"][name]) == REFERENCE[reference]["claims"][name]


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_tampered_token_fails_verification(name: str) -> None:
    token = encoded(name, "go")
    header, payload, signature = token.split(".")
    claims = jwt.decode(token)
    other = b64(json.dumps(claims | {"sub": KEYS["revoked_user"]}).encode())
    forged_issuer = b64(json.dumps(claims | {"iss": KEYS["spoke_account"]}).encode())
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    for bad in (
        f"{header}.{other}.{signature}",  # claims changed
        f"{header}.{forged_issuer}.{signature}",  # claimed to be someone else's
        f"{header}.{payload}.{flipped}",  # signature changed
        f"{header}.{payload}",
        f"{header}.{payload}.{signature}.x",
        "not a token",
        "",
    ):
        assert not jwt.verify(bad)


@pytest.mark.parametrize("name", USERS)
def test_creds_files_are_those_nsc_writes(name: str) -> None:
    seed = SEEDS[CASES[name]["fields"]["subject"][4:]]
    creds = jwt.creds_file(REFERENCE["go"]["tokens"][name], seed)
    assert creds == REFERENCE["go"]["creds"][name]
    assert creds.splitlines() == [
        "-----BEGIN NATS USER JWT-----",
        REFERENCE["go"]["tokens"][name],
        "------END NATS USER JWT------",
        "",
        "************************* IMPORTANT *************************",
        "NKEY Seed printed below can be used to sign and prove identity.",
        "NKEYs are sensitive and should be treated as secrets.",
        "",
        "-----BEGIN USER NKEY SEED-----",
        seed,
        "------END USER NKEY SEED------",
        "",
        "*************************************************************",
    ]
    assert creds.endswith("*\n")
    if name in JS_CASES:  # @nats-io/jwt's fmtCreds: the same blocks, "can be used sign", no closing line of stars
        js = jwt.creds_file(REFERENCE["js"]["tokens"][name], seed).replace("used to sign", "used sign")
        assert js.removesuffix("\n" + "*" * 61 + "\n") == REFERENCE["js"]["creds"][name]


def test_creds_files_hold_only_a_user_with_its_own_seed() -> None:
    with pytest.raises(ValueError, match="user JWT"):
        jwt.creds_file(REFERENCE["go"]["tokens"]["account_hub"], SEEDS["leaf_user"])
    with pytest.raises(ValueError, match="seed"):
        jwt.creds_file(REFERENCE["go"]["tokens"]["user_leaf"], SEEDS["client_user"])


def test_an_account_without_limits_is_unlimited() -> None:
    """nats-server reads absent limits as zero and then refuses every connection of the account."""
    nats = jwt.decode(jwt.encode(AccountClaims(subject=KEYS["spoke_account"]), SEEDS["operator"], IAT))["nats"]
    unlimited = {k: -1 for k in ("subs", "data", "payload", "imports", "exports", "conn", "leaf")}
    assert nats["limits"] == unlimited | {"wildcards": True}
    assert "mem_storage" not in nats["limits"]  # no JetStream unless asked for
    enabled = AccountLimits(jetstream=jwt.JETSTREAM_UNLIMITED)
    token = jwt.encode(AccountClaims(subject=KEYS["spoke_account"], limits=enabled), SEEDS["operator"], IAT)
    limits = jwt.decode(token)["nats"]["limits"]
    jetstream = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}
    assert limits == unlimited | {"wildcards": True} | jetstream


def test_a_delete_request_is_the_operators_own_generic_claim() -> None:
    token = jwt.encode(jwt.delete_accounts_request(KEYS["operator"], [KEYS["spoke_account"]]), SEEDS["operator"], IAT)
    claims = jwt.decode(token)
    assert claims["iss"] == claims["sub"] == KEYS["operator"]
    assert claims["nats"] == {"accounts": [KEYS["spoke_account"]], "version": 2}


def test_why_an_activation_does_not_hold() -> None:
    """`activation_problem` says in words what nats-server logs only at debug level."""
    from natsmesh.local.secrets import new_nkey

    owner, signing, taker, other = (new_nkey("account") for _ in range(4))
    exporter = jwt.decode(
        jwt.encode(AccountClaims(subject=owner.public, signing_keys=(signing.public,)), SEEDS["operator"], IAT)
    )

    def token(sub: str = taker.public, seed: str = signing.seed, exp: int = 0, subject: str = "a.b") -> str:
        claims = ActivationClaims(
            subject=sub, import_subject=subject, import_kind="stream", issuer_account=owner.public, expires=exp
        )
        return jwt.encode(claims, seed, IAT)

    def why(tok: str) -> str:
        return jwt.activation_problem(tok, taker.public, exporter, "a.b", IAT + 10)

    assert why(token()) == ""
    assert why(token(seed=owner.seed)) == ""  # the account's own key signs too
    assert "no activation" in why("")
    assert "not a JWT" in why("x.y")
    assert "not a key of the exporting account" in why(token(seed=other.seed))
    assert "for another account" in why(token(sub=other.public))
    assert "expired at" in why(token(exp=IAT + 5))
    assert "grants c.d" in why(token(subject="c.d"))
    header, payload, _ = token().split(".")
    assert "signature" in why(f"{header}.{payload}.{token(sub=other.public).split('.')[2]}")


@pytest.mark.parametrize(
    ("claims", "signer", "problem"),
    [
        (UserClaims(subject=KEYS["leaf_user"]), "operator", "signer"),  # users are signed by accounts
        (AccountClaims(subject=KEYS["leaf_user"]), "operator", "subject"),
        (OperatorClaims(subject=KEYS["operator"]), "hub_account", "signer"),
        (
            ActivationClaims(subject=KEYS["operator"], import_subject="a", import_kind="service"),
            "hub_account",
            "subject",
        ),
        (UserClaims(subject="UNOTAKEY"), "hub_account", "public nkey"),
        (UserClaims(subject=KEYS["leaf_user"][:-1] + "A"), "hub_account", "checksum|public nkey"),
    ],
)
def test_encode_refuses_keys_of_the_wrong_kind(claims: jwt.Claims, signer: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        jwt.encode(claims, SEEDS[signer], IAT)


def test_encode_needs_an_issue_time_and_a_seed() -> None:
    with pytest.raises(ValueError, match="issued_at"):
        jwt.encode(UserClaims(subject=KEYS["leaf_user"]), SEEDS["hub_account"], 0)
    with pytest.raises(ValueError, match="seed"):
        jwt.encode(UserClaims(subject=KEYS["leaf_user"]), KEYS["hub_account"], IAT)


@pytest.mark.parametrize(
    "token",
    [
        "a.b",
        b64(b'{"typ":"JWT","alg":"ed25519"}') + ".e30.sig",  # a v1 token
        b64(b'{"typ":"JOSE","alg":"ed25519-nkey"}') + ".e30.sig",
        b64(b'{"typ":"JWT","alg":"ed25519-nkey"}') + "." + b64(b"[1]") + ".sig",
        b64(b'{"typ":"JWT","alg":"ed25519-nkey"}') + ".!!!.sig",
    ],
)
def test_decode_refuses_what_is_not_a_nats_v2_jwt(token: str) -> None:
    with pytest.raises(ValueError):
        jwt.decode(token)
