"""Who the mesh's servers and clients are, which party holds each secret, and the URLs that carry them. Pure.

Every secret belongs to exactly one party: the platform (the hub cluster) or one domain. Each cluster has its own
system user and, with more than one node, its own route secret; each domain has a client user valid only on its
own servers; each leaf domain has an nkey for its leaf link at the hub (accepted there for leafnode connections
only) and, where the system account is bridged, a second nkey for a restricted system link. Servers are given
bcrypt hashes of passwords and public keys of nkeys, never a plaintext secret of another party. Where the
secrets come from (fixed in the spec, or generated and stored) is `natsmesh.local.secrets`.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from urllib.parse import quote

SYSTEM_ACCOUNT = "SYS"
SYSTEM_USER = "admin"
CLIENT_USER = "app"
GATE_USER = "gate"  # a domain's contract gate: the only writer of its gated products (`natsmesh.serve.gate`)
ROUTE_USER = "route"


def account_of(domain: str) -> str:
    """The NATS account that holds DOMAIN's data: one account per domain, named after it."""
    return domain


OWN_ACCOUNT = "*"  # how `local_account` names a data account under its domain's own operator: some public key


def local_account(domain: str, service_users: Collection[str]) -> str:
    """What DOMAIN's own servers call its data account: its name, or (users of its own, `Mesh.service_users`)
    `OWN_ACCOUNT`, for the public key only its credentials know."""
    return OWN_ACCOUNT if domain in service_users else account_of(domain)


def holds_account(accounts: Collection[str], wanted: str) -> bool:
    """Whether ACCOUNTS (as a server reports them) hold WANTED (`local_account`'s answer)."""
    if wanted == OWN_ACCOUNT:
        return any(len(a) == 56 and a.startswith("A") for a in accounts)
    return wanted in accounts


def trust_key_name(kind: str, owner: str = "") -> str:
    """The name of an operator-mode key: `operator`, `operator-signing`, `account:<name>`, `account-signing:<name>`
    or `user:<role>:<party>` (the hub's own users: the platform's system user, the hub domain's app user)."""
    return f"{kind}:{owner}" if owner else kind


LEAF_KINDS = (  # a domain's own cluster in operator mode (`service_users`): its operator and two accounts
    "leaf-operator",
    "leaf-operator-signing",
    "leaf-account",
    "leaf-account-signing",
    "leaf-system",
    "leaf-system-signing",
)
LEAF_USER_ROLES = ("client", "system", "gate", "platform")  # its users natsmesh signs (`user:ROLE:DOMAIN`)


def leaf_key_party(name: str) -> str:
    """The domain a key named NAME belongs to if it is one of a domain's own cluster's keys or users (its leaf
    operator's, its accounts', `user:ROLE:DOMAIN`), else "" (the platform's, or a hub account's)."""
    kind, _, owner = name.partition(":")
    if kind in LEAF_KINDS:
        return owner
    if kind == "user":
        role, _, party = owner.partition(":")
        return party if role in LEAF_USER_ROLES else ""
    return ""


def platform_user(domain: str) -> str:
    """The key name of the platform's own user in DOMAIN's cluster (operator mode of its own): not in its folder."""
    return trust_key_name("user", f"platform:{domain}")


def user_url(scheme: str, user: str, password: str, host: str, port: int) -> str:
    """`scheme://user:password@host:port` with both credentials quoted for a URL."""
    return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}"


def fingerprint(secret: str) -> str:
    """What a secret's stored hash is filed under: a digest of it (the file holding it holds the secret too)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class NKey:
    """An nkey: the seed (private; only its party holds it) and the public key servers are given."""

    public: str
    seed: str = ""  # empty where the holder is not the key's party

    def public_only(self) -> NKey:
        return NKey(self.public)


@dataclass(frozen=True)
class Credentials:
    """The secrets of some parties: the platform holds every party's, a domain's folder only its own.

    Maps are keyed by cluster (= party) name. `hashes` holds the bcrypt hash of each password by its
    `fingerprint`, computed once, so that rendering the same mesh twice gives the same bytes."""

    system_passwords: dict[str, str] = field(hash=False)  # cluster -> its own system user's password
    client_passwords: dict[str, str] = field(hash=False)  # domain -> its client user's password
    route_passwords: dict[str, str] = field(hash=False)  # cluster with routes -> the route secret
    links: dict[str, NKey] = field(hash=False)  # leaf domain -> its data link at the hub
    system_links: dict[str, NKey] = field(hash=False)  # leaf domain -> its restricted system link at the hub
    hashes: dict[str, str] = field(hash=False, default_factory=dict)
    gate_passwords: dict[str, str] = field(hash=False, default_factory=dict)  # gated domain -> its gate's password
    # cluster -> an nkey of its own system user: what the platform's reports connect with (an nkey is checked
    # in microseconds, a bcrypt hash in ~5 ms of server CPU: 500 clusters' reports paid 2.7 s for that)
    system_keys: dict[str, NKey] = field(hash=False, default_factory=dict)
    # leaf cluster -> the platform's own nkey in that cluster's data account: the only writer of its read copy of the
    # catalog (the domain's app user may only read it). Its seed is the platform's alone: no folder holds it.
    platform_keys: dict[str, NKey] = field(hash=False, default_factory=dict)
    # operator mode (`natsmesh.render.trust`): the operator's keys and each hub account's identity and signing
    # keys, by `trust_key_name`; a domain's folder holds its own account's signing key only (it signs its link user)
    trust_keys: dict[str, NKey] = field(hash=False, default_factory=dict)
    # operator mode: leaf domain -> the public keys of its revoked link users, with when each was revoked (unix s)
    revoked_links: dict[str, dict[str, int]] = field(hash=False, default_factory=dict)
    system_user: str = SYSTEM_USER
    client_user: str = CLIENT_USER
    holder: str | None = None  # the one party these are (a folder's); None: the platform's, every party's
    hub: str = ""  # the platform's own party (its folder holds the operator's and the system account's keys)

    def system(self, cluster: str | None = None) -> tuple[str, str]:
        """The system identity of CLUSTER's own servers; without CLUSTER, the holder's own (the hub's for the
        platform, whose credentials list the hub first)."""
        return self.system_user, self.system_passwords[cluster or next(iter(self.system_passwords))]

    def system_key(self, cluster: str) -> NKey | None:
        """The nkey of CLUSTER's own system user, if these credentials hold its seed (else use `system`)."""
        key = self.system_keys.get(cluster)
        return key if key is not None and key.seed else None

    def platform_key(self, cluster: str) -> NKey | None:
        """The platform's own nkey in leaf CLUSTER's data account, if these credentials hold its seed."""
        key = self.platform_keys.get(cluster)
        return key if key is not None and key.seed else None

    def client(self, domain: str) -> tuple[str, str]:
        """DOMAIN's client identity (data account of that domain, valid only on its own servers)."""
        return self.client_user, self.client_passwords[domain]

    def gate(self, domain: str) -> tuple[str, str]:
        """DOMAIN's gate identity (its data account, on its own servers): the only writer of gated products."""
        return GATE_USER, self.gate_passwords[domain]

    def route(self, cluster: str) -> tuple[str, str]:
        """The identity CLUSTER's nodes present to each other on routes."""
        return ROUTE_USER, self.route_passwords[cluster]

    def link(self, domain: str) -> tuple[str, str]:
        """DOMAIN's leaf link identity at the hub, as (public key, seed): for leafnode connections only."""
        key = self.links[domain]
        return key.public, key.seed

    def hash(self, password: str) -> str:
        """The stored bcrypt hash of PASSWORD (`natsmesh.local.secrets` made one for every password)."""
        return self.hashes[fingerprint(password)]

    @functools.cached_property
    def _public(self) -> tuple[dict[str, NKey], dict[str, NKey], dict[str, NKey], dict[str, NKey]]:
        """Links, system links, platform keys and trust keys without their seeds: what every party may see of
        them. Made once (a party's own keys are put back per party), so rendering N folders is not N x N."""

        def strip(keys: dict[str, NKey]) -> dict[str, NKey]:
            return {k: v.public_only() for k, v in keys.items()}

        return strip(self.links), strip(self.system_links), strip(self.platform_keys), strip(self.trust_keys)

    def party(self, name: str) -> Credentials:
        """Only what party NAME holds: its own passwords and seeds, and the public keys of the other parties'
        links (which a hub config names). Raises KeyError for a party these credentials do not hold."""
        if name not in self.system_passwords:
            raise KeyError(name)
        if self.holder == name:  # a folder's own credentials are already only its own
            return self
        links, system_links, platform_keys, trust_keys = (dict(m) for m in self._public)
        for own, keys in ((links, self.links), (system_links, self.system_links)):
            if name in keys:
                own[name] = keys[name]
        # a domain signs its own link user with its account's signing key; the platform holds the rest (the
        # operator's, the system account's and the hub domain's keys, and the hub's users)
        if name == self.hub:
            trust_keys |= {
                k: v
                for k, v in self.trust_keys.items()
                if (
                    not k.startswith("account-signing:")
                    or k in (trust_key_name("account-signing", name), trust_key_name("account-signing", SYSTEM_ACCOUNT))
                )
                and leaf_key_party(k) in ("", name)
            }
        else:
            if (own_signing := trust_key_name("account-signing", name)) in self.trust_keys:
                trust_keys[own_signing] = self.trust_keys[own_signing]
            # a domain with users of its own holds its cluster's operator, accounts and users (not the platform's)
            trust_keys |= {
                k: v for k, v in self.trust_keys.items() if leaf_key_party(k) == name and k != platform_user(name)
            }

        def only(table: dict[str, str]) -> dict[str, str]:
            return {name: table[name]} if name in table else {}

        mine = [
            *only(self.system_passwords).values(),
            *only(self.client_passwords).values(),
            *only(self.route_passwords).values(),
            *only(self.gate_passwords).values(),
        ]
        return replace(
            self,
            system_passwords=only(self.system_passwords),
            client_passwords=only(self.client_passwords),
            route_passwords=only(self.route_passwords),
            gate_passwords=only(self.gate_passwords),
            links=links,
            system_links=system_links,
            system_keys={name: self.system_keys[name]} if name in self.system_keys else {},
            platform_keys=platform_keys,
            trust_keys=trust_keys,
            hashes={f: self.hashes[f] for f in {fingerprint(p) for p in mine if p} if f in self.hashes},
            holder=name,
        )

    def secrets(self) -> list[str]:
        """Every secret held here: passwords and nkey seeds."""
        keys = (
            *self.links.values(),
            *self.system_links.values(),
            *self.system_keys.values(),
            *self.platform_keys.values(),
            *self.trust_keys.values(),
        )
        seeds = [k.seed for k in keys if k.seed]
        passwords = (self.system_passwords, self.client_passwords, self.route_passwords, self.gate_passwords)
        return [*(p for m in passwords for p in m.values()), *seeds]
