"""Who may do what in a mesh, said once and in no particular mode. Pure.

The accounts each node holds, their limits, who belongs to each (by role, and whose key it is), what each may
publish and subscribe, and what crosses between accounts: per share, the owner's exports to the copy's domain and
that domain's imports, and whether the import needs the owner's signature. Two ways realise it: config mode
(`natsmesh.render.servers`: `accounts {}` with bcrypt users and nkeys in every config) and operator mode (the
same accounts as JWTs). Nothing else derives a permission, an export or an import.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from natsmesh.model.identities import SYSTEM_ACCOUNT, account_of
from natsmesh.model.mesh import Mesh
from natsmesh.model.products import AUDIT_STREAM, CATALOG_BUCKET, DEADLETTER_PREFIX, Share, ingress_subject
from natsmesh.model.topology import Cluster

Role = Literal["client", "gate", "platform", "link", "system", "system-link"]
Kind = Literal["service", "stream"]

LINK_HEADROOM = 2
"""Leaf links a domain's account at the hub takes per node of the domain. Links count across the hub cluster,
and a link that fails over from a stopped hub node is still counted there by the other hub nodes until that
node answers again; with one link per node every such failover was refused ("maximum account active connections
exceeded", F7 in tests/test_faults.py), so each link may fail over once while its old one still counts."""

# What a leaf's system link may carry at the hub: the platform's pings in, its servers' replies out, nothing
# else. No requests to other servers ($SYS.REQ.SERVER.<id>.*), no JetStream API, and none of the servers' own
# events: forged or even honest `$SYS.ACCOUNT.>` / `$SYS.SERVER.>` events from a leaf were seen to kick a hub
# account's clients and bypass its limits (docs/design/isolation.md has the evidence).
SYSTEM_LINK_PUBLISH = ("_INBOX.>",)
SYSTEM_LINK_SUBSCRIBE = ("$SYS.REQ.SERVER.PING", "$SYS.REQ.SERVER.PING.>")

CATALOG_STREAM = f"KV_{CATALOG_BUCKET}"
CATALOG_WRITES = (
    f"$KV.{CATALOG_BUCKET}.>",
    *(
        f"{api}.STREAM.{verb}.{CATALOG_STREAM}"
        for api in ("$JS.API", "$JS.*.API")  # the domain-prefixed API is mapped to the plain one after this check
        for verb in ("CREATE", "UPDATE", "DELETE", "PURGE", "MSG.DELETE", "RESTORE")
    ),
)
"""What a domain's app user may not publish where the platform keeps the domain's read copy of the catalog: its
writes and every change to its stream. Only the platform's own identity in the account (`platform_keys`) writes
it, so no domain can put an entry there that the platform's `apply` or the domain's own readers would trust."""

AUDIT_CHANGES = tuple(
    f"{api}.STREAM.{verb}.{AUDIT_STREAM}"
    for api in ("$JS.API", "$JS.*.API")
    for verb in ("UPDATE", "DELETE", "PURGE", "MSG.DELETE")
)
"""What no identity natsmesh makes in the hub's own account may publish: any change to the audit trail's stream
but appending (the stream itself refuses deletes, purges and rollups; these keep its config and the stream)."""


@dataclass(frozen=True)
class Rights:
    """What a member may publish and subscribe to; an empty allow-list allows everything."""

    publish_allow: tuple[str, ...] = ()
    publish_deny: tuple[str, ...] = ()
    subscribe_allow: tuple[str, ...] = ()
    subscribe_deny: tuple[str, ...] = ()

    @property
    def restricted(self) -> bool:
        return bool(self.publish_allow or self.publish_deny or self.subscribe_allow or self.subscribe_deny)


@dataclass(frozen=True)
class Member:
    """One identity of an account: its ROLE, the PARTY (cluster) whose key or password it is, its rights and the
    kinds of connection it may make (empty: any)."""

    role: Role
    party: str
    rights: Rights = Rights()
    connection_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class Export:
    """A subject ACCOUNT offers to account TO; TOKEN: only with the exporting account's signature (an activation
    the importer presents), which operator mode enforces and config mode has no way to say."""

    kind: Kind
    subject: str
    to: str
    token: bool = False


@dataclass(frozen=True)
class Import:
    """A subject taken from account ACCOUNT, seen here as LOCAL (None: as it is); TOKEN: the owner must sign it."""

    kind: Kind
    account: str
    subject: str
    local: str | None = None
    token: bool = False


@dataclass(frozen=True)
class JetStreamGrant:
    """An account's JetStream: enabled, with a reservation where the spec gives one (None: as far as the servers'
    bounds allow)."""

    max_mem: int | None = None
    max_file: int | None = None
    max_streams: int | None = None
    max_consumers: int | None = None

    @property
    def reserved(self) -> bool:
        return any(v is not None for v in (self.max_mem, self.max_file, self.max_streams, self.max_consumers))


@dataclass(frozen=True)
class Account:
    """One account as the nodes of one cluster hold it."""

    name: str
    members: tuple[Member, ...]
    jetstream: JetStreamGrant | None = None  # None: no JetStream in it (a domain's account at the hub)
    connections: int | None = None
    leafnodes: int | None = None
    subscriptions: int | None = None
    payload: int | None = None
    exports: tuple[Export, ...] = field(default=())
    imports: tuple[Import, ...] = field(default=())


def share_services(share: Share) -> list[tuple[str, str]]:
    """The owner's services one copy's domain imports, each as (the owner's subject, the copy's): resetting its
    own consumer (addressed by the owning domain's JetStream domain, `Share.address`, and mapped at the hub to
    the cluster the upstream lives on), and its flow control. (The servers also listen on a second flow-control
    form, `$JS.FC.<domain>.<hash>.…`, that no copy was seen to use; a wildcard import of it overlaps other
    shares' imports and nats-server refuses such a config as a cycle.)"""
    reset = f"API.CONSUMER.RESET.{share.stream}.{share.consumer}"
    control = f"$JS.FC.{share.stream}.{share.consumer}.>"
    return [(f"$JS.{share.owner}.{reset}", f"$JS.{share.address}.{reset}"), (control, control)]


def crossings(mesh: Mesh) -> dict[str, tuple[tuple[Export, ...], tuple[Import, ...]]]:
    """The hub-side exports and imports of each account that has any, by account: exactly what the copies need
    (`natsmesh.model.products.Share`).

    Per copy, the owner exports to the copy's domain only: resetting the consumer reserved for that copy, its
    flow-control replies and its delivery subject; the copy's domain imports those. A declared copy's crossings
    need the owner's signature; a public product's slots do not (anyone may take it). No consumer can be created,
    changed, paused or deleted across domains, and nothing else crosses between domain accounts."""
    exports: dict[str, list[Export]] = {}
    imports: dict[str, list[Import]] = {}
    for share in sorted(mesh.shares, key=lambda x: (x.owner, x.stream, x.consumer)):
        owner, taker, token = account_of(share.owner), account_of(share.taker), share.copy is not None
        out = exports.setdefault(owner, [])
        out += [Export("service", sv, taker, token) for sv, _ in share_services(share)]
        out.append(Export("stream", share.deliver, taker, token))
        into = imports.setdefault(taker, [])
        into += [
            Import("service", owner, sv, None if local == sv else local, token) for sv, local in share_services(share)
        ]
        into.append(Import("stream", owner, share.deliver, None, token))
    return {a: (tuple(exports.get(a, ())), tuple(imports.get(a, ()))) for a in exports.keys() | imports.keys()}


def domain_members(mesh: Mesh, domain: str, platform: bool) -> tuple[Member, ...]:
    """The members of DOMAIN's data account on its own servers: its app user (kept off gated products' subjects
    and, where the platform has an identity there (PLATFORM), off the catalog copy's writes), its gate if it has
    gated products, and the platform's own identity."""
    gated = [p for p in mesh.products if p.domain == domain and p.gated]
    denied = tuple(s for p in gated for s in p.subjects) + (CATALOG_WRITES if platform else ())
    audit = AUDIT_CHANGES if domain == mesh.hub.name else ()
    out = [Member("client", domain, Rights(publish_deny=denied + audit))]
    if gated:
        writes = (*(s for p in gated for s in p.subjects), f"{DEADLETTER_PREFIX}.>", "_INBOX.>")
        reads = (*(ingress_subject(s) for p in gated for s in p.subjects), "_INBOX.>")
        out.append(Member("gate", domain, Rights(publish_allow=writes, subscribe_allow=reads)))
    if platform:
        out.append(Member("platform", domain, Rights(publish_deny=audit)))
    return tuple(out)


def cluster_accounts(mesh: Mesh, cluster: Cluster, platform: frozenset[str] = frozenset()) -> list[Account]:
    """The data accounts a node of CLUSTER holds: on a leaf, only its own domain's; on the hub, the hub domain's
    and, for every leaf domain, an account without JetStream whose only member is that domain's leaf link: that is
    where the domains' accounts meet, and where the exports and imports of the declared copies live. PLATFORM: the
    clusters where the platform has an identity of its own."""
    lim = mesh.limits_of(cluster.name)
    own = Account(
        account_of(cluster.name),
        domain_members(mesh, cluster.name, cluster.name in platform),
        JetStreamGrant(lim.memory, lim.file, lim.streams, lim.consumers),
        connections=lim.connections,
        payload=lim.payload,
    )
    if not cluster.is_hub:
        return [own]
    crossing = crossings(mesh)
    exports, imports = crossing.get(own.name, ((), ()))
    out = [replace(own, exports=exports, imports=imports)]
    for domain in mesh.domains:
        name = account_of(domain.name)
        dlim, links = mesh.limits_of(domain.name), LINK_HEADROOM * len(domain.nodes)
        link = Member("link", domain.name, connection_types=("LEAFNODE",))
        exports, imports = crossing.get(name, ((), ()))
        out.append(Account(name, (link,), None, links, links, dlim.subscriptions, dlim.payload, exports, imports))
    return out


def hub_accounts(mesh: Mesh) -> list[Account]:
    """Every account the hub's servers hold: its system account, the hub domain's and each leaf domain's."""
    return [system_account(mesh, mesh.hub), *cluster_accounts(mesh, mesh.hub)]


def changed_hub_accounts(old: Mesh, new: Mesh) -> list[str]:
    """The hub's accounts (by name) that NEW adds or holds otherwise than OLD: what a change from OLD to NEW must
    tell the hub."""
    before = {a.name: a for a in hub_accounts(old)}
    return [a.name for a in hub_accounts(new) if before.get(a.name) != a]


def system_account(mesh: Mesh, cluster: Cluster) -> Account:
    """This cluster's own system account: its system user, and at the hub with the system bridge each domain's
    restricted link (the platform's pings in, its servers' replies out)."""
    members = [Member("system", cluster.name)]
    if cluster.is_hub and mesh.system_bridge:
        rights = Rights(publish_allow=SYSTEM_LINK_PUBLISH, subscribe_allow=SYSTEM_LINK_SUBSCRIBE)
        members += [Member("system-link", d.name, rights, ("LEAFNODE",)) for d in mesh.domains]
    return Account(SYSTEM_ACCOUNT, tuple(members))
