"""How a mesh's trust is realised: the one place that asks which mode it is in. Pure.

`natsmesh.model.trust` says who may do what; `realise` turns it into what the servers read and how natsmesh signs
in, in one of two ways:

- **config mode**: every account, user and key is in the configs (`accounts {}`, bcrypt users, nkeys); a change
  of who may read what is a new config and a reload;
- **operator mode** (the hub only; each leaf cluster keeps its own accounts in config mode): the hub trusts an
  operator; its accounts are JWTs signed by the operator's signing key and pushed to the hub's `full` resolver
  (`claims`), so a domain joins, and a copy is granted or revoked, without touching a hub config; the users are
  JWTs signed by their account's signing key (strict signing keys), a domain's leaf link signs in with a creds
  file its own account's key signed, and an import across domains carries an activation token signed by the
  owning domain's account key, without which the servers refuse it.

Render, run, observe and reconcile ask a `Realisation` for lines, files, claims and logins; none branches on the
mode itself.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Protocol

from natsmesh.model import jwt
from natsmesh.model.identities import SYSTEM_ACCOUNT, Credentials, NKey, account_of, trust_key_name
from natsmesh.model.mesh import Mesh
from natsmesh.model.topology import Cluster, Node
from natsmesh.model.trust import Account, Export, Import, Member, Rights, cluster_accounts, hub_accounts, system_account

OPERATOR_FILE = "operator.jwt"  # in the hub's folder
OWN_OPERATOR_FILE = "own-operator.jwt"  # in the folder of a domain with users of its own (`service_users`)
LINK_CREDS = "link.creds"  # in a leaf domain's folder: its leaf link's user, signed by its own account's key
RESOLVER_DIR = "jwt"  # in the hub's folder, one directory per node: the accounts the resolver holds
LINK_TEMPLATE = jwt.UserTemplate(allowed_connection_types=("LEAFNODE",))  # all a domain's account key may sign


@dataclass(frozen=True)
class HubImport:
    """One import of a hub account as its claims carry it: TAKER (name and key) takes OWNER's SUBJECT."""

    taker: str
    taker_key: str
    owner: str
    owner_key: str
    subject: str


@dataclass(frozen=True)
class Login:
    """One way natsmesh signs in as an identity: a user and password, an nkey seed, or a creds file's text."""

    user: str = ""
    password: str = ""
    nkey_seed: str = ""
    creds: str = ""
    file: str = ""  # the file of the party's folder that holds CREDS (`Realisation.files`), if one does


class Realisation(Protocol):
    """What the servers read and how natsmesh signs in, in one trust mode."""

    def accounts(self, cluster: Cluster, node: Node) -> list[str]:
        """The lines of NODE's config that say who is who (accounts and the system account)."""
        ...

    def leaf_auth(self, cluster: Cluster, seed: str) -> str:
        """How leaf CLUSTER's remote signs in at the hub (SEED: its link's nkey), as a remote's fields."""
        ...

    def files(self, cluster: Cluster) -> dict[str, str]:
        """Files CLUSTER's folder holds besides configs (by name in the folder)."""
        ...

    def claims(self, issued_at: int, only: Collection[str] | None = None) -> dict[str, str]:
        """The account JWTs the hub's resolver must hold, by account public key (none in config mode); ONLY: of
        these accounts (by name)."""
        ...

    @property
    def pushes(self) -> bool:
        """Whether the hub learns its accounts from pushed claims (operator mode) rather than its configs."""
        ...

    def imports(self) -> list[HubImport]:
        """Every import the hub's pushed claims carry (none in config mode)."""
        ...

    def hub_account(self, domain: str) -> str:
        """The name the hub's servers report DOMAIN's account by (in `/leafz`, `/accountz`, metrics); "" if these
        credentials do not say (a domain's folder knows only its own account's key)."""
        ...

    def forget(self, accounts: list[str], issued_at: int) -> str:
        """The request that deletes ACCOUNTS (as the hub names them, `hub_account`) from the hub's resolver ("" in
        config mode, where accounts leave with the configs)."""
        ...

    def logins(self, role: str, party: str) -> list[Login]:
        """How natsmesh signs in as ROLE (system, client, gate, platform) of PARTY, best first."""
        ...

    def local_account(self, cluster: Cluster) -> str:
        """What leaf CLUSTER's own servers call its data account (its leaf link's local end)."""
        ...


def realise(mesh: Mesh, creds: Credentials) -> Realisation:
    """The realisation of MESH's trust with CREDS: the only place that asks `mesh.trust`."""
    if mesh.trust == "operator":
        return OperatorMode(mesh, creds)
    return ConfigMode(mesh, creds)


def link_creds(domain: str, account: str, signing_seed: str, link: NKey, issued_at: int) -> str:
    """The creds file of DOMAIN's leaf-link user LINK, signed by the domain's account signing key (SIGNING_SEED,
    of ACCOUNT): a scoped key, whose template says what the link may do; the user itself says nothing."""
    claims = jwt.UserClaims(
        subject=link.public, name=f"{domain}-link", issuer_account=account, subs=0, data=0, payload=0
    )
    return jwt.creds_file(jwt.encode(claims, signing_seed, issued_at), link.seed)


def account_keys(mesh: Mesh, creds: Credentials) -> tuple[tuple[str, str, str], ...]:
    """(cluster, account, signing) public keys of every cluster whose keys CREDS knows (operator mode; none in
    config mode): who may sign for whom, which every folder's mesh.json says (`Mesh.account_keys`)."""
    if mesh.trust != "operator":
        return ()
    keys = creds.trust_keys
    out = []
    for c in mesh.clusters:
        account, signing = (
            keys.get(trust_key_name("account", c.name)),
            keys.get(trust_key_name("account-signing", c.name)),
        )
        if account is not None and signing is not None:
            out.append((c.name, account.public, signing.public))
    return tuple(out)


def joins_live(mesh: Mesh) -> bool:
    """Whether a domain joins or leaves MESH while it runs (its account a pushed claim, no hub config naming it)."""
    return mesh.trust == "operator"


def _q(value: str) -> str:
    return json.dumps(value)


def _list(items: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(_q(x) for x in items) + "]"


# ---------------------------------------------------------------------------------------------------------------
# Config mode


def system_account_lines(mesh: Mesh, cluster: Cluster, creds: Credentials) -> list[str]:
    """This cluster's own system account (`natsmesh.model.trust.system_account`) as config-mode users."""
    users = [u for m in system_account(mesh, cluster).members for u in _users(m, creds)]
    body = users[0] if len(users) == 1 else "\n" + "".join(f"      {u}\n" for u in users) + "    "
    return [f"  {SYSTEM_ACCOUNT}: {{", f"    users: [{body}]", "  }"]


def _config_permissions(rights: Rights) -> str:
    parts = []
    for verb, allow, deny in (
        ("publish", rights.publish_allow, rights.publish_deny),
        ("subscribe", rights.subscribe_allow, rights.subscribe_deny),
    ):
        said = [f"allow: {_list(list(allow))}"] * bool(allow) + [f"deny: {_list(list(deny))}"] * bool(deny)
        if said:
            parts.append(f"{verb}: {{ {', '.join(said)} }}")
    return ", ".join(parts)


def _users(member: Member, creds: Credentials) -> list[str]:
    """MEMBER as config-mode users: a password user (servers get its bcrypt hash) or an nkey, with its rights and
    connection types. The system user also signs in with an nkey of its own (checked without bcrypt)."""
    rights = f", permissions: {{ {_config_permissions(member.rights)} }}" if member.rights.restricted else ""
    kinds = f", allowed_connection_types: {_list(list(member.connection_types))}" if member.connection_types else ""
    if member.role in ("client", "gate", "system"):
        if member.role == "client":
            user, password = creds.client(member.party)
        elif member.role == "gate":
            user, password = creds.gate(member.party)
        else:
            user, password = creds.system(member.party)
        out = [f"{{ user: {_q(user)}, password: {_q(creds.hash(password))}{kinds}{rights} }}"]
        if member.role == "system" and (key := creds.system_keys.get(member.party)) is not None:
            out.append(f"{{ nkey: {_q(key.public)} }}")
        return out
    keys = {"platform": creds.platform_keys, "link": creds.links, "system-link": creds.system_links}[member.role]
    return [f"{{ nkey: {_q(keys[member.party].public)}{kinds}{rights} }}"]


def _crossing(item: Export | Import) -> str:
    if isinstance(item, Export):
        return f"{{ {item.kind}: {_q(item.subject)}, accounts: [{_q(item.to)}] }}"
    mapped = f", to: {_q(item.local)}" if item.local else ""
    return f"{{ {item.kind}: {{ account: {_q(item.account)}, subject: {_q(item.subject)} }}{mapped} }}"


def _limits(account: Account) -> list[str]:
    """An account's JetStream and limits lines, as config mode writes them."""
    out: list[str] = []
    js = account.jetstream
    if js is not None:
        # Without a reservation in the spec the account uses its servers' JetStream as far as their bounds allow
        # (an account reservation counts every replica of every stream's max_bytes against it).
        reservation = {
            "max_mem": js.max_mem,
            "max_file": js.max_file,
            "max_streams": js.max_streams,
            "max_consumers": js.max_consumers,
        }
        out.append(_block("jetstream", reservation) if js.reserved else "jetstream: enabled")
        out.append(_block("limits", {"max_payload": account.payload, "max_connections": account.connections}))
        return out
    values = {
        "max_connections": account.connections,
        "max_leafnodes": account.leafnodes,
        "max_subscriptions": account.subscriptions,
        "max_payload": account.payload,
    }
    return [_block("limits", values)]


def render_accounts(mesh: Mesh, cluster: Cluster, creds: Credentials) -> list[str]:
    """The data accounts of a node (`natsmesh.model.trust.cluster_accounts`) as config mode writes them."""
    lines: list[str] = []
    for account in cluster_accounts(mesh, cluster, frozenset(creds.platform_keys)):
        lines.append(f"  {_q(account.name)}: {{")
        lines.extend(f"    {line}" for line in _limits(account))
        lines.append(f"    users: [{', '.join(u for m in account.members for u in _users(m, creds))}]")
        for key, items in (("exports", account.exports), ("imports", account.imports)):
            if items:
                lines.append(f"    {key}: [")
                lines.extend(f"      {_crossing(item)}" for item in items)
                lines.append("    ]")
        lines.append("  }")
    return lines


def _block(key: str, values: Mapping[str, int | None]) -> str:
    return f"{key}: {{ " + ", ".join(f"{k}: {v}" for k, v in values.items() if v is not None) + " }"


class ConfigMode:
    """Every account and user in every config (`accounts {}`), bcrypt hashes of passwords, nkeys' public keys."""

    def __init__(self, mesh: Mesh, creds: Credentials) -> None:
        self.mesh, self.creds = mesh, creds

    def accounts(self, cluster: Cluster, node: Node) -> list[str]:
        return [
            "",
            "accounts {",
            *system_account_lines(self.mesh, cluster, self.creds),
            *render_accounts(self.mesh, cluster, self.creds),
            "}",
            f"system_account: {SYSTEM_ACCOUNT}",
        ]

    def leaf_auth(self, cluster: Cluster, seed: str) -> str:
        return f"nkey: {_q(seed)}"

    def local_account(self, cluster: Cluster) -> str:
        return account_of(cluster.name)

    def files(self, cluster: Cluster) -> dict[str, str]:
        return {}

    def claims(self, issued_at: int, only: Collection[str] | None = None) -> dict[str, str]:
        return {}

    @property
    def pushes(self) -> bool:
        return False

    def imports(self) -> list[HubImport]:
        return []

    def hub_account(self, domain: str) -> str:
        return domain

    def forget(self, accounts: list[str], issued_at: int) -> str:
        return ""

    def logins(self, role: str, party: str) -> list[Login]:
        c = self.creds
        if role == "system":
            key = c.system_key(party)
            password = Login(*c.system(party))
            return [Login(nkey_seed=key.seed), password] if key is not None else [password]
        if role == "platform":
            key = c.platform_key(party)
            return [Login(nkey_seed=key.seed)] if key is not None else []
        if role == "gate":
            return [Login(*c.gate(party))]
        return [Login(*c.client(party))]


# ---------------------------------------------------------------------------------------------------------------
# Operator mode


def account_limits(account: Account) -> jwt.AccountLimits:
    """ACCOUNT's limits as its JWT says them (an account JWT without limits takes no connection at all)."""
    js = account.jetstream
    # (`conn: 0` for an account of leaf links only was tried: nats-server 2.15.1 then closes every leaf link
    # of the account at each claims update, counting them against it)
    return jwt.AccountLimits(
        conn=account.connections if account.connections is not None else jwt.NO_LIMIT,
        leaf=account.leafnodes if account.leafnodes is not None else jwt.NO_LIMIT,
        subs=account.subscriptions if account.subscriptions is not None else jwt.NO_LIMIT,
        payload=account.payload if account.payload is not None else jwt.NO_LIMIT,
        jetstream=jwt.JetStreamLimits(
            mem_storage=js.max_mem or jwt.NO_LIMIT,
            disk_storage=js.max_file or jwt.NO_LIMIT,
            streams=js.max_streams or jwt.NO_LIMIT,
            consumer=js.max_consumers or jwt.NO_LIMIT,
        )
        if js is not None
        else jwt.JetStreamLimits(),
    )


def _permissions(rights: Rights) -> jwt.Permissions:
    return jwt.Permissions(
        pub=jwt.Permission(allow=rights.publish_allow, deny=rights.publish_deny),
        sub=jwt.Permission(allow=rights.subscribe_allow, deny=rights.subscribe_deny),
    )


class OperatorMode(ConfigMode):
    """The hub in operator mode; leaf clusters as in config mode (their own accounts), linking with creds."""

    def __init__(self, mesh: Mesh, creds: Credentials) -> None:
        super().__init__(mesh, creds)
        self.issued = 1_700_000_000  # what the files hold: the same on every render (the servers check no age)
        self.granted = {(c, subject): token for c, subject, token in mesh.activations}

    def key(self, kind: str, owner: str = "") -> NKey:
        return self.creds.trust_keys[trust_key_name(kind, owner)]

    def account_key(self, account: str) -> str:
        return self.key("account", account).public

    def _account_jwt(self, account: Account, issued_at: int) -> str:
        signing = self.key("operator-signing").seed
        limits = account_limits(account)
        # Every export across domains wants the owner's activation (a public product's slots too: each taker's
        # slot has subjects of its own, and an export without a token would let any account take it).
        exports = tuple(jwt.Export(subject=e.subject, kind=e.kind, token_req=True) for e in account.exports)
        imports = tuple(self._import(account.name, i, issued_at) for i in account.imports)
        claims = jwt.AccountClaims(
            subject=self.account_key(account.name),
            name=account.name,
            signing_keys=(self._signing_key(account.name),),
            limits=limits,
            exports=exports,
            imports=imports,
            revocations=self.creds.revoked_links.get(account.name, {}),
        )
        return jwt.encode(claims, signing, issued_at)

    def _signing_key(self, account: str) -> str | jwt.UserScope:
        """ACCOUNT's signing key as its claims list it. A leaf domain's is scoped: every user it signs is a leaf
        link and nothing else, so the key its folder holds mints no client, gate or system user at the hub."""
        public = self.key("account-signing", account).public
        if account in {d.name for d in self.mesh.domains}:
            return jwt.UserScope(key=public, role="leaf-link", template=LINK_TEMPLATE)
        return public

    def _import(self, importer: str, item: Import, issued_at: int) -> jwt.Import:
        owner = self.account_key(item.account)
        activation = jwt.ActivationClaims(
            subject=self.account_key(importer),
            import_subject=item.subject,
            import_kind=item.kind,
            issuer_account=owner,
        )
        # what the owner signed for this copy (`natsmesh access grant`), or that nothing may be given; else the
        # same token on every push (its issue time is the files'), so an unchanged grant reads as unchanged; an
        # owner that brought its own account key signs its grants itself: none from the platform
        granted = self.granted.get((importer, item.subject))
        signer = self.key("account-signing", item.account).seed
        token = granted if granted is not None else jwt.encode(activation, signer, self.issued) if signer else ""
        return jwt.Import(
            account=owner, subject=item.subject, kind=item.kind, local_subject=item.local or "", token=token
        )

    def hub_accounts(self) -> list[Account]:
        return hub_accounts(self.mesh)

    def own(self, cluster: Cluster) -> OwnOperator | None:
        """CLUSTER's own operator if its domain has users of its own (`Mesh.service_users`), else None."""
        if cluster.is_hub or cluster.name not in self.mesh.service_users:
            return None
        return OwnOperator(self.mesh, cluster, self.creds, self.issued)

    def local_account(self, cluster: Cluster) -> str:
        own = self.own(cluster)
        return own.data.public if own is not None else account_of(cluster.name)

    def accounts(self, cluster: Cluster, node: Node) -> list[str]:
        if (own := self.own(cluster)) is not None:
            return own.config_lines(node)
        if not cluster.is_hub:
            return super().accounts(cluster, node)
        sys_pub = self.account_key(SYSTEM_ACCOUNT)
        preload = self._account_jwt(system_account(self.mesh, cluster), self.issued)
        return [
            "",
            "# Operator mode: accounts are JWTs the operator's signing key signed, pushed to this resolver by",
            "# natsmesh (a domain joins, a copy is granted or revoked, without touching this file).",
            f"operator: {_q(OPERATOR_FILE)}",
            f"system_account: {_q(sys_pub)}",
            f"resolver: {{ type: full, dir: {_q(f'{RESOLVER_DIR}/{node.name}')}, allow_delete: true, "
            'hard_delete: true, interval: "2m", limit: 100000 }',
            f"resolver_preload: {{ {_q(sys_pub)}: {_q(preload)} }}",
        ]

    def leaf_auth(self, cluster: Cluster, seed: str) -> str:
        return f"credentials: {_q(LINK_CREDS)}"

    def _link_creds(self, domain: str) -> str:
        return link_creds(
            domain,
            self.account_key(domain),
            self.key("account-signing", domain).seed,
            self.creds.links[domain],
            self.issued,
        )

    def files(self, cluster: Cluster) -> dict[str, str]:
        if cluster.is_hub:
            operator = jwt.OperatorClaims(
                subject=self.key("operator").public,
                name=self.mesh.name,
                signing_keys=(self.key("operator-signing").public,),
                system_account=self.account_key(SYSTEM_ACCOUNT),
                strict_signing_key_usage=True,
            )
            files = {OPERATOR_FILE: jwt.encode(operator, self.key("operator").seed, self.issued)}
            # the hub's own users as creds files, for tools (`natsmesh info`, natscli contexts)
            for role in ("system", "client"):
                files |= {login.file: login.creds for login in self.logins(role, cluster.name) if login.file}
            return files
        if not self.key("account-signing", cluster.name).seed:
            return {}  # its team brought its own account key and signs its link itself (`natsmesh keys link`)
        own = self.own(cluster)
        return {LINK_CREDS: self._link_creds(cluster.name)} | ({OWN_OPERATOR_FILE: own.operator_jwt()} if own else {})

    def claims(self, issued_at: int, only: Collection[str] | None = None) -> dict[str, str]:
        return {
            self.account_key(a.name): self._account_jwt(a, issued_at)
            for a in self.hub_accounts()
            if only is None or a.name in only
        }

    @property
    def pushes(self) -> bool:
        return True

    def imports(self) -> list[HubImport]:
        key = self.account_key
        return [
            HubImport(a.name, key(a.name), i.account, key(i.account), i.subject)
            for a in self.hub_accounts()
            for i in a.imports
        ]

    def hub_account(self, domain: str) -> str:
        key = self.creds.trust_keys.get(trust_key_name("account", domain))
        return key.public if key is not None else ""

    def forget(self, accounts: list[str], issued_at: int) -> str:
        # self-signed by the operator's signing key (strict signing keys: the resolver trusts no other, and takes
        # a delete only from a key whose claims are about itself)
        signing = self.key("operator-signing")
        request = jwt.delete_accounts_request(signing.public, accounts)
        return jwt.encode(request, signing.seed, issued_at)

    def _hub_user(self, member: Member) -> Login:
        account = SYSTEM_ACCOUNT if member.role == "system" else member.party
        user = self.key("user", f"{member.role}:{member.party}")
        claims = jwt.UserClaims(
            subject=user.public,
            name=f"{member.role}@{member.party}",
            permissions=_permissions(member.rights),
            allowed_connection_types=member.connection_types,
            issuer_account=self.account_key(account),
        )
        token = jwt.encode(claims, self.key("account-signing", account).seed, self.issued)
        return Login(creds=jwt.creds_file(token, user.seed), file=f"{member.role}.creds")

    def logins(self, role: str, party: str) -> list[Login]:
        if party in self.mesh.service_users and (own := self.own(self.mesh.domain(party))) is not None:
            return own.logins(role)
        if party != self.mesh.hub.name:
            return super().logins(role, party)
        if role == "system":
            return [self._hub_user(Member("system", party))]
        members = {m.role: m for a in cluster_accounts(self.mesh, self.mesh.hub) for m in a.members}
        member = members.get(role)  # type: ignore[call-overload]
        return [self._hub_user(member)] if member is not None else []


# ---------------------------------------------------------------------------------------------------------------
# A domain's own cluster under an operator of the domain's own (`Mesh.service_users`)


@dataclass(frozen=True)
class OwnOperator:
    """Leaf CLUSTER under an operator of its domain's own: a data account (JetStream, the domain's users) and a
    system account, both JWTs its operator's signing key signs, preloaded into each node's `full` resolver; every
    user a JWT its account's signing key signs. The domain's folder holds all of these keys but the platform's
    own user, so it issues users from its folder with nothing sent to any server, and revokes one by pushing its
    account anew (`natsmesh.model.users`); the platform signs only its own identity there."""

    mesh: Mesh
    cluster: Cluster
    creds: Credentials
    issued: int

    def key(self, kind: str) -> NKey:
        return self.creds.trust_keys[trust_key_name(kind, self.cluster.name)]

    @property
    def data(self) -> NKey:
        return self.key("leaf-account")

    @property
    def system(self) -> NKey:
        return self.key("leaf-system")

    def operator_jwt(self) -> str:
        claims = jwt.OperatorClaims(
            subject=self.key("leaf-operator").public,
            name=self.cluster.name,
            signing_keys=(self.key("leaf-operator-signing").public,),
            system_account=self.system.public,
            strict_signing_key_usage=True,
        )
        return jwt.encode(claims, self.key("leaf-operator").seed, self.issued)

    def data_account(self) -> Account:
        return cluster_accounts(self.mesh, self.cluster, frozenset(self.creds.platform_keys))[0]

    def account_jwt(self, system: bool, revocations: Mapping[str, int], issued_at: int) -> str:
        """The system (SYSTEM) or data account's JWT, with REVOCATIONS (user public key -> unix time)."""
        account = Account(SYSTEM_ACCOUNT, ()) if system else self.data_account()
        identity, signing = (
            ("leaf-system", "leaf-system-signing") if system else ("leaf-account", "leaf-account-signing")
        )
        claims = jwt.AccountClaims(
            subject=self.key(identity).public,
            name=SYSTEM_ACCOUNT if system else self.cluster.name,
            signing_keys=(self.key(signing).public,),
            limits=account_limits(account),
            revocations=dict(revocations),
        )
        return jwt.encode(claims, self.key("leaf-operator-signing").seed, issued_at)

    def config_lines(self, node: Node) -> list[str]:
        sys_pub, data_pub = self.system.public, self.data.public
        preload = {sys_pub: self.account_jwt(True, {}, self.issued), data_pub: self.account_jwt(False, {}, self.issued)}
        return [
            "",
            "# Its domain's own operator: the data and system accounts are JWTs it signed, its users JWTs the",
            "# domain signs from its folder (`natsmesh user add`); a revocation is the account pushed anew, which",
            "# this resolver keeps over the older copy preloaded here.",
            f"operator: {_q(OWN_OPERATOR_FILE)}",
            f"system_account: {_q(sys_pub)}",
            f"resolver: {{ type: full, dir: {_q(f'{RESOLVER_DIR}/{node.name}')}, allow_delete: false, "
            'interval: "2m", limit: 1000 }',
            "resolver_preload: {",
            *(f"  {_q(k)}: {_q(v)}" for k, v in preload.items()),
            "}",
        ]

    def user_creds(
        self,
        user: NKey,
        name: str,
        rights: Rights,
        system: bool = False,
        expires: int = 0,
        issued_at: int = 0,
        tags: tuple[str, ...] = (),
    ) -> str:
        """The creds file of USER (named NAME) in the data account (or the SYSTEM account) with RIGHTS."""
        account, signing = (
            (self.system, self.key("leaf-system-signing"))
            if system
            else (
                self.data,
                self.key("leaf-account-signing"),
            )
        )
        claims = jwt.UserClaims(
            subject=user.public,
            name=name,
            permissions=_permissions(rights),
            issuer_account=account.public,
            expires=expires,
            tags=tags,
        )
        return jwt.creds_file(jwt.encode(claims, signing.seed, issued_at or self.issued), user.seed)

    def logins(self, role: str) -> list[Login]:
        domain = self.cluster.name
        user = self.creds.trust_keys.get(trust_key_name("user", f"{role}:{domain}"))
        if user is None or not user.seed:  # (a domain's folder holds no seed of the platform's user there)
            return []
        if role == "system":
            return [Login(creds=self.user_creds(user, f"system@{domain}", Rights(), system=True), file="system.creds")]
        member = next((m for m in self.data_account().members if m.role == role), None)
        if member is None:
            return []
        return [Login(creds=self.user_creds(user, f"{role}@{domain}", member.rights), file=f"{role}.creds")]
