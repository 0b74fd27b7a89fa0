"""The mesh's secrets: fixed where the spec says so, otherwise generated once per party and kept in the data dir.

The platform's copy of every party's secrets lives in `<data_dir>/secrets.json`, mode 0600 in a 0700 directory,
and is reused on every later command so that configs, URLs and running servers agree. Passwords are random
192-bit tokens; servers get their bcrypt hashes (made once, stored beside them, so a re-render is byte-identical)
and leaf links authenticate with nkeys, whose seeds only their domain's folder holds.
"""

from __future__ import annotations

import json
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from natsmesh.errors import NotRunningError, PreflightError
from natsmesh.local.files import write_private
from natsmesh.local.layout import MeshDirs
from natsmesh.model.identities import (
    LEAF_KINDS,
    LEAF_USER_ROLES,
    SYSTEM_ACCOUNT,
    Credentials,
    NKey,
    fingerprint,
    trust_key_name,
)
from natsmesh.model.mesh import Mesh

# The secrets are random 192-bit tokens, so no guessing is slowed by a costlier hash; the hash keeps the
# plaintext out of configs. Every connection a server accepts pays for one check (cost 6: ~4 ms here).
BCRYPT_COST = 6
Stored = dict[str, Any]


def _token() -> str:
    return secrets.token_urlsafe(24)


def new_nkey(kind: str = "user") -> NKey:
    """A fresh nkey (seed and public key) of KIND: user, account or operator."""
    import nkeys  # loads libsodium: only when a key is made

    prefix = {"user": nkeys.PREFIX_BYTE_USER, "account": nkeys.PREFIX_BYTE_ACCOUNT}.get(
        kind, nkeys.PREFIX_BYTE_OPERATOR
    )
    seed = nkeys.encode_seed(secrets.token_bytes(32), prefix)
    return NKey(public=nkeys.from_seed(bytearray(seed)).public_key.decode(), seed=seed.decode())


def bcrypt_hash(password: str, cost: int = BCRYPT_COST) -> str:
    import bcrypt

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost, prefix=b"2a")).decode()


def _fill(stored: Stored, mesh: Mesh) -> None:
    """Generate every secret MESH needs that STORED lacks (the spec's fixed ones are not stored)."""
    leaves = [c.name for c in mesh.domains]
    own = [c.name for c in mesh.domains if mesh.own_keys_of(c.name)]
    for name in own:  # a team that brought its own account keys: the platform keeps none of that account's seeds
        (stored.get("links") or {}).pop(name, None)
        for kind in ("account", "account-signing"):
            (stored.get("trust_keys") or {}).pop(trust_key_name(kind, name), None)
    for key, names in (
        ("system_passwords", [] if mesh.fixed_system else [c.name for c in mesh.clusters]),
        ("client_passwords", [] if mesh.fixed_data else [c.name for c in mesh.clusters]),
        ("route_passwords", [c.name for c in mesh.clusters if len(c.nodes) > 1]),
        ("gate_passwords", mesh.gated_domains),
    ):
        table = stored.setdefault(key, {})
        for name in names:
            table.setdefault(name, _token())
    for key, names in (
        ("links", [name for name in leaves if name not in own]),  # a team with its own keys signs its own link
        ("system_links", leaves),
        ("system_keys", [] if mesh.fixed_system else [c.name for c in mesh.clusters]),
        ("platform_keys", leaves),
    ):
        table = stored.setdefault(key, {})
        for name in names:
            if name not in table:
                k = new_nkey()
                table[name] = {"public": k.public, "seed": k.seed}
    if kinds := trust_key_kinds(mesh):
        table = stored.setdefault("trust_keys", {})
        for name, kind in kinds.items():
            if name not in table:
                k = new_nkey(kind)
                table[name] = {"public": k.public, "seed": k.seed}


def trust_key_kinds(mesh: Mesh) -> dict[str, str]:
    """Every operator-mode key MESH needs, by name (`trust_key_name`), with its nkey kind: the operator's and its
    signing key, each hub account's (the system account, the hub domain's, one per leaf domain) and its signing
    key, and the hub's own users."""
    if mesh.trust != "operator":
        return {}
    out = {trust_key_name("operator"): "operator", trust_key_name("operator-signing"): "operator"}
    for account in (SYSTEM_ACCOUNT, *(c.name for c in mesh.clusters if not mesh.own_keys_of(c.name))):
        out[trust_key_name("account", account)] = "account"
        out[trust_key_name("account-signing", account)] = "account"
    for role in ("system", "client", "gate"):
        out[trust_key_name("user", f"{role}:{mesh.hub.name}")] = "user"
    for domain in mesh.service_users:  # a domain's own cluster under an operator of its own
        for kind in LEAF_KINDS:
            out[trust_key_name(kind, domain)] = "operator" if kind.startswith("leaf-operator") else "account"
        for role in LEAF_USER_ROLES:
            out[trust_key_name("user", f"{role}:{domain}")] = "user"
    return out


def _credentials(stored: Stored, mesh: Mesh) -> Credentials:
    """The credentials of MESH from STORED (with the spec's fixed identities); KeyError if any is missing."""
    names = [c.name for c in mesh.clusters]
    system = {n: mesh.fixed_system[1] for n in names} if mesh.fixed_system else stored["system_passwords"]
    client = {n: mesh.fixed_data[1] for n in names} if mesh.fixed_data else stored["client_passwords"]
    routes = stored["route_passwords"]

    def keys(table: dict[str, Any]) -> dict[str, NKey]:
        return {d.name: NKey(table[d.name]["public"], table[d.name]["seed"]) for d in mesh.domains}

    def links() -> dict[str, NKey]:  # a team that brought its own keys makes its own link user: none here
        table = stored["links"]
        return {
            d.name: NKey(table[d.name]["public"], table[d.name]["seed"]) if d.name in table else NKey("")
            for d in mesh.domains
        }

    own = {  # the public keys a team brought for its account (`account_key` in the spec)
        trust_key_name(kind, c): NKey(key)
        for c, account, signing in mesh.own_keys
        for kind, key in (("account", account), ("account-signing", signing))
    }

    return Credentials(
        system_passwords={n: system[n] for n in names},
        client_passwords={n: client[n] for n in names},
        route_passwords={c.name: routes[c.name] for c in mesh.clusters if len(c.nodes) > 1},
        gate_passwords={d: stored["gate_passwords"][d] for d in mesh.gated_domains},
        links=links(),
        system_links=keys(stored["system_links"]),
        system_keys={}
        if mesh.fixed_system  # the spec names the system identity: no other one
        else {n: NKey(k["public"], k["seed"]) for n in names if (k := (stored.get("system_keys") or {}).get(n))},
        # made after a mesh started (by `info`, `render` or `apply`), known to its servers from the next reload
        platform_keys={
            d.name: NKey(k["public"], k["seed"])
            for d in mesh.domains
            if (k := (stored.get("platform_keys") or {}).get(d.name))
        },
        trust_keys={
            name: NKey(k["public"], k["seed"])
            for name in trust_key_kinds(mesh)
            if (k := (stored.get("trust_keys") or {}).get(name))
        }
        | own,
        hashes=dict(stored.get("hashes") or {}),
        revoked_links={
            d.name: {str(k): int(v) for k, v in revoked.items()}
            for d in mesh.domains
            if (revoked := (stored.get("revoked_links") or {}).get(d.name))
        },
        system_user=mesh.fixed_system[0] if mesh.fixed_system else "admin",
        hub=mesh.hub.name,
        client_user=mesh.fixed_data[0] if mesh.fixed_data else "app",
    )


def _hash_all(stored: Stored, creds: Credentials, cost: int = BCRYPT_COST) -> None:
    """Keep in STORED one bcrypt hash per password CREDS holds, and only those."""
    old: dict[str, str] = stored.get("hashes") or {}
    passwords = [
        *creds.system_passwords.values(),
        *creds.client_passwords.values(),
        *creds.route_passwords.values(),
        *creds.gate_passwords.values(),
    ]
    unique = {fingerprint(p): p for p in passwords}
    todo = [k for k in unique if not old.get(k)]
    # bcrypt releases the GIL: new hashes (a fresh mesh has one per password) are made on every core at once
    made: dict[str, str] = {}
    if todo:
        with ThreadPoolExecutor(max_workers=min(len(todo), os.cpu_count() or 1)) as pool:
            made = dict(zip(todo, pool.map(lambda k: bcrypt_hash(unique[k], cost), todo), strict=True))
    stored["hashes"] = {k: old.get(k) or made[k] for k in unique}


def new_credentials(mesh: Mesh, cost: int = BCRYPT_COST) -> Credentials:
    """Fresh credentials for MESH, stored nowhere (for rendering a mesh without a data dir, and tests)."""
    stored: Stored = {}
    _fill(stored, mesh)
    creds = _credentials(stored, mesh)
    _hash_all(stored, creds, cost)
    return replace(creds, hashes=dict(stored["hashes"]))


def _party_credentials(stored: Stored) -> Credentials:
    """One party's own credentials, from the `secrets.json` of its folder
    (`natsmesh.render.servers.party_secrets`); KeyError if one is missing."""
    party: str = stored["party"]

    def key(name: str) -> dict[str, NKey]:
        return {party: NKey(stored[name]["public"], stored[name]["seed"])} if name in stored else {}

    return Credentials(
        system_passwords={party: stored["system"]["password"]},
        client_passwords={party: stored["client"]["password"]},
        route_passwords={party: stored["route"]["password"]} if "route" in stored else {},
        gate_passwords={party: stored["gate"]["password"]} if "gate" in stored else {},
        links=key("link"),
        system_links=key("system_link"),
        system_keys=key("system_key"),
        trust_keys={n: NKey(k["public"], k["seed"]) for n, k in (stored.get("trust_keys") or {}).items()},
        system_user=stored["system"]["user"],
        client_user=stored["client"]["user"],
        holder=party,
    )


def _no_credentials(mesh: Mesh, stored: Stored) -> str:
    """Why MESH's credentials are not all there: never started, or started before the spec named more clusters."""
    known = {name for key in ("client_passwords", "system_passwords", "links") for name in stored.get(key) or {}}
    known |= {mesh.hub.name} if known else set()  # the hub has no link
    new = [c.name for c in mesh.clusters if known and c.name not in known]
    if not new:
        return f"mesh {mesh.name!r} has no credentials yet in {mesh.data_dir}: it has never been started"
    return (
        f"mesh {mesh.name!r} was started without {'cluster' if len(new) == 1 else 'clusters'} {', '.join(new)}, "
        "which its spec now names: no secrets or servers exist for them yet. Start them: `natsmesh down` and "
        "`natsmesh up -d` again (every store is kept), then `natsmesh apply`"
    )


def load_credentials(mesh: Mesh, *, create: bool = True, keep: bool = True) -> Credentials:
    """Every party's credentials for MESH: the spec's fixed ones, else the stored ones; missing ones are
    generated and stored (owner-readable only) if CREATE (only generated, for a dry run, unless KEEP), else
    `NotRunningError`. A mesh loaded from a party's
    folder (`natsmesh.local.folder`) has that party's own credentials only, and never makes any."""
    path = MeshDirs.of(mesh).secrets
    stored: Stored = json.loads(path.read_text()) if path.is_file() else {}
    if "party" in stored:
        try:
            return _party_credentials(stored)
        except (KeyError, TypeError):
            raise NotRunningError(f"{path} is not a party's secrets file as `natsmesh render` writes it") from None
    before = json.dumps(stored, sort_keys=True)
    if create:
        _fill(stored, mesh)
    try:
        creds = _credentials(stored, mesh)
    except KeyError:
        raise NotRunningError(_no_credentials(mesh, stored)) from None
    _hash_all(stored, creds)  # kept only if CREATE; otherwise made for this command alone
    if json.dumps(stored, sort_keys=True) != before and create and keep:
        try:
            write_private(path, json.dumps(stored, indent=2) + "\n")
        except OSError as exc:
            raise PreflightError(f"cannot write secrets to {path}: {exc.strerror}") from None
    return replace(creds, hashes=dict(stored["hashes"]))


def replace_link(mesh: Mesh, domain: str, *, revoke: bool, issue: bool, now: int) -> tuple[str, str]:
    """Revoke DOMAIN's current link user (as of NOW, unix seconds) and/or give it a new key; returns the public
    keys (before, after). The platform's secrets file is rewritten; nothing else."""
    path = MeshDirs.of(mesh).secrets
    stored: Stored = json.loads(path.read_text()) if path.is_file() else {}
    if "party" in stored or domain not in (stored.get("links") or {}):
        raise NotRunningError(f"{path} holds no link of domain {domain!r}")
    before = str(stored["links"][domain]["public"])
    if revoke:
        stored.setdefault("revoked_links", {}).setdefault(domain, {})[before] = now
    if issue:
        k = new_nkey()
        stored["links"][domain] = {"public": k.public, "seed": k.seed}
    write_private(path, json.dumps(stored, indent=2) + "\n")
    return before, str(stored["links"][domain]["public"])
