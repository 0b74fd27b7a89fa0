"""The mesh as typed data: the resolved topology and products every other module takes. Pure.

`parse_mesh` turns a spec's text into a `Mesh`: `natsmesh.model.checks` validates it (pydantic, with messages
that name the file, the path into the document, its line and what was expected), `natsmesh.model.topology`
gives every node its name and ports. The result is plain frozen dataclasses, which `to_json`/`from_json` keep
for the validated-spec cache (`natsmesh.local.specfile`), so that commands acting on a mesh start without
loading pydantic at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from natsmesh.model.contracts import canonical
from natsmesh.model.products import (
    LAG_CRITICAL,
    SEEN_CRITICAL,
    Consumption,
    Contract,
    Product,
    Share,
    SourceRef,
    copy_shares,
    retention_allowed,
)
from natsmesh.model.record import Record
from natsmesh.model.topology import Cluster, Limits, Node, resolve_clusters
from natsmesh.model.units import parse_duration, parse_size

if TYPE_CHECKING:
    from natsmesh.model.document import ClusterLimitsSpec, MeshSpec

BRIDGE_AUTO_MAX = 20  # leaf domains up to which `leafnodes.system_bridge: auto` bridges the system account


@dataclass(frozen=True)
class Mesh(Record):
    """The resolved mesh: what render, run and observe take. Its JSON (the validated-spec cache's entry) is
    everything but where it was read from."""

    JSON_OMIT = ("source", "base_dir")

    name: str
    host: str
    hub: Cluster
    domains: tuple[Cluster, ...]
    source: str
    base_dir: Path
    data_dir_setting: str | None = None
    max_memory: int = 64 * 1024**2
    max_file: int = 1024**3
    leafnode_reconnect: str = "250ms"
    sync_interval: str | None = None
    ping_interval: str = "4s"
    ping_max: int = 3
    system_bridge: bool = True  # leaf servers link their system account to the hub too
    trust: Literal["config", "operator"] = "config"  # how the hub knows who is who (`natsmesh.model.trust`)
    fixed_system: tuple[str, str] | None = None
    fixed_data: tuple[str, str] | None = None
    warnings: tuple[str, ...] = ()
    tls: bool = False
    tls_dir_setting: str | None = None
    namespaces: tuple[tuple[str, str], ...] = ()  # (domain, subject namespace)
    products: tuple[Product, ...] = ()
    consumptions: tuple[Consumption, ...] = ()
    limits: tuple[tuple[str, Limits], ...] = ()  # (cluster, its limits); a cluster not listed has the defaults
    # (cluster, account public key, signing public key) of each cluster whose team brought its own account keys
    own_keys: tuple[tuple[str, str, str], ...] = ()
    # (cluster, account public key, signing public key) of every cluster: who may sign for whom (operator mode;
    # in every folder's mesh.json, so a domain checks the others' access documents offline)
    account_keys: tuple[tuple[str, str, str], ...] = ()
    # (importing cluster, the owner's subject, token): activations the owners signed (`natsmesh.model.access`);
    # an empty token: none may be given (a grant revoked, expired or not given)
    activations: tuple[tuple[str, str, str], ...] = ()
    # the leaf domains whose own cluster trusts an operator of the domain's own: its users are creds files the
    # domain signs (`natsmesh.model.users`), issued and revoked without the platform
    service_users: tuple[str, ...] = ()
    document: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def data_dir(self) -> Path:
        raw = self.data_dir_setting or f".natsmesh/{self.name}"
        p = Path(raw).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def tls_dir(self) -> Path:
        """Where the mesh's CA and certificates live (default `<data_dir>/tls`)."""
        if not self.tls_dir_setting:
            return self.data_dir / "tls"
        p = Path(self.tls_dir_setting).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def scheme(self) -> str:
        """URL scheme clients use: `tls` when the mesh requires TLS, else `nats`."""
        return "tls" if self.tls else "nats"

    @property
    def clusters(self) -> tuple[Cluster, ...]:
        return (self.hub, *self.domains)

    @property
    def hosted(self) -> bool:
        """Whether its nodes are placed on hosts of their own (`hosts`): the hosts' service manager runs them,
        not natsmesh's supervisor."""
        return any(n.host != self.host or n.bind != self.host for n in self.nodes())

    def nodes(self) -> list[Node]:
        return [n for c in self.clusters for n in c.nodes]

    @cached_property
    def _index(self) -> tuple[dict[str, Cluster], dict[str, Cluster], dict[str, Product]]:
        """Clusters by node name and by their own name, products by ref: what the lookups below ask."""
        by_node = {n.name: c for c in self.clusters for n in c.nodes}
        return by_node, {c.name: c for c in self.clusters}, {p.ref: p for p in self.products}

    def cluster_of(self, node: str) -> Cluster:
        """The cluster node NODE belongs to; raises KeyError."""
        return self._index[0][node]

    def domain(self, name: str) -> Cluster:
        """The cluster of domain NAME; raises KeyError."""
        return self._index[1][name]

    @cached_property
    def gated_domains(self) -> list[str]:
        """The domains with a product only their gate may write (`enforce: gate`), in cluster order."""
        gated = {p.domain for p in self.products if p.gated}
        return [c.name for c in self.clusters if c.name in gated]

    @cached_property
    def shares(self) -> tuple[Share, ...]:
        """Every copy's consumer on its upstream (`natsmesh.model.products.copy_shares`)."""
        return tuple(copy_shares(self.products, self.consumptions, {c.name: c.owner for c in self.clusters}))

    def describe(self) -> dict[str, Any]:
        """The topology as `natsmesh validate --json` prints it."""
        return {
            "mesh": self.name,
            "source": self.source,
            "data_dir": str(self.data_dir),
            "warnings": list(self.warnings),
            "clusters": [
                {
                    "name": c.name,
                    "domain": c.domain,
                    "hub": c.is_hub,
                    "folder": c.folder,
                    "nodes": [
                        {"name": n.name, "host": n.host, "bind": n.bind, "http_bind": n.http_bind, **n.ports()}
                        for n in c.nodes
                    ],
                }
                for c in self.clusters
            ],
        }

    def namespace(self, domain: str) -> str:
        """The first subject token every subject of DOMAIN's products starts with."""
        return dict(self.namespaces).get(domain, domain)

    def limits_of(self, cluster: str) -> Limits:
        """What domain CLUSTER may use (`natsmesh.model.topology.Limits`)."""
        return dict(self.limits).get(cluster) or Limits()

    def own_keys_of(self, cluster: str) -> tuple[str, str] | None:
        """The (account, signing) public keys CLUSTER's team brought, None if natsmesh makes them."""
        return next(((a, s) for name, a, s in self.own_keys if name == cluster), None)

    def product(self, ref: str) -> Product:
        """The product `DOMAIN/NAME`; raises KeyError."""
        return self._index[2][ref]

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str, base_dir: Path) -> Mesh:
        def cluster(c: dict[str, Any]) -> Cluster:
            return Cluster(c["name"], c["folder"], c["is_hub"], tuple(Node(**n) for n in c["nodes"]), c.get("team", ""))

        d = dict(data)
        d["hub"] = cluster(d["hub"])
        d["domains"] = tuple(cluster(c) for c in d["domains"])
        d["warnings"] = tuple(d["warnings"])
        d["namespaces"] = tuple(tuple(x) for x in d["namespaces"])
        d["products"] = tuple(
            Product(
                **(
                    p
                    | {
                        "subjects": tuple(p["subjects"]),
                        "tags": tuple(p["tags"]),
                        "contract": Contract(**p["contract"]) if p.get("contract") else None,
                    }
                )
            )
            for p in d["products"]
        )
        d["consumptions"] = tuple(
            Consumption(
                **(
                    c
                    | {
                        "sources": tuple(SourceRef(**x) for x in c["sources"]),
                        "subjects": tuple(c["subjects"]),
                    }
                )
            )
            for c in d["consumptions"]
        )
        d["service_users"] = tuple(d.get("service_users") or ())
        for key in ("fixed_system", "fixed_data"):
            d[key] = tuple(d[key]) if d[key] else None
        d["limits"] = tuple((name, Limits(**lim)) for name, lim in d.get("limits") or ())
        for key in ("own_keys", "account_keys", "activations"):
            d[key] = tuple((str(x), str(y), str(z)) for x, y, z in d.get(key) or ())
        return cls(source=source, base_dir=base_dir, **d)


def _from_spec(spec: MeshSpec, source: str, base_dir: Path, warnings: list[str]) -> Mesh:
    leaves = spec.leaf_clusters()
    resolved = resolve_clusters(spec.hub, [c for _, _, c in leaves], spec.ports.base, spec.ports.block, spec.host)
    teams = [team for _, team, _ in leaves]
    clusters = (
        resolved[0],
        *(replace(c, team="" if t == c.name else t) for c, t in zip(resolved[1:], teams, strict=True)),
    )
    namespace = {c.name: c.namespace or c.name for c in (spec.hub, *spec.domains)}
    products, consumptions = resolve_products(spec)
    creds = spec.credentials
    return Mesh(
        name=spec.name,
        host=spec.host,
        hub=clusters[0],
        domains=clusters[1:],
        source=source,
        base_dir=base_dir,
        data_dir_setting=spec.data_dir,
        max_memory=parse_size(spec.jetstream.max_memory),
        max_file=parse_size(spec.jetstream.max_file),
        leafnode_reconnect=spec.leafnodes.reconnect,
        sync_interval=spec.jetstream.sync_interval,
        ping_interval=spec.pings.interval,
        ping_max=spec.pings.max_out,
        system_bridge=spec.leafnodes.system_bridge is True
        or (spec.leafnodes.system_bridge == "auto" and creds.system is not None and len(leaves) <= BRIDGE_AUTO_MAX),
        trust=spec.trust or "config",  # `validate` chose one
        fixed_system=(creds.system.user, creds.system.password) if creds.system else None,
        fixed_data=(creds.data.user, creds.data.password) if creds.data else None,
        warnings=tuple(warnings),
        tls=spec.tls.enabled,
        namespaces=tuple((c.name, namespace[c.owner]) for c in clusters),
        tls_dir_setting=spec.tls.dir,
        products=products,
        consumptions=consumptions,
        limits=tuple((c.name, _limits(c.limits)) for c in (spec.hub, *(c for _, _, c in leaves))),
        own_keys=tuple(
            (c.name, c.account_key.account, c.account_key.signing) for _, _, c in leaves if c.account_key is not None
        ),
        service_users=tuple(d.name for d in spec.domains if d.service_users),
        document=spec.model_dump(mode="json", exclude_none=True, by_alias=True),
    )


def _limits(spec: ClusterLimitsSpec) -> Limits:
    """The limits SPEC gives, with the sizes in bytes (each field named, so the types are checked)."""

    def size(v: str | int | None) -> int | None:
        return parse_size(v) if v is not None else None

    return Limits(
        connections=spec.connections,
        subscriptions=spec.subscriptions,
        payload=parse_size(spec.payload),
        streams=spec.streams,
        consumers=spec.consumers,
        memory=size(spec.memory),
        file=size(spec.file),
    )


def _seconds(text: str | None, default: float) -> float:
    return parse_duration(text) if text else default


def resolve_products(spec: MeshSpec) -> tuple[tuple[Product, ...], tuple[Consumption, ...]]:
    """The products and consumptions of a validated document."""
    products: list[Product] = []
    consumptions: list[Consumption] = []
    nodes = {c.name: c.nodes for _, _, c in spec.leaf_clusters()} | {spec.hub.name: spec.hub.nodes}
    lives = {f"{c.name}/{p.name}": p.cluster or c.name for c in (spec.hub, *spec.domains) for p in c.products}
    for c in (spec.hub, *spec.domains):
        for p in c.products:
            cluster = p.cluster or c.name
            products.append(
                Product(
                    domain=cluster,
                    team="" if cluster == c.name else c.name,
                    name=p.name,
                    subjects=tuple(p.subjects),
                    description=p.description,
                    owner=p.owner,
                    tags=tuple(p.tags),
                    max_age=parse_duration(p.limits.max_age) if p.limits.max_age is not None else 0.0,
                    max_bytes=parse_size(p.limits.max_bytes) if p.limits.max_bytes is not None else -1,
                    max_msgs=p.limits.max_msgs or -1,
                    max_consumers=p.limits.max_consumers or -1,
                    replicas=p.replicas or min(nodes[cluster], 3),
                    storage=p.storage,
                    public=p.public,
                    classification=p.classification or ("public" if p.public else "internal"),
                    copy_retention=parse_duration(p.copy_retention) if p.copy_retention is not None else 0.0,
                    contract=Contract(
                        canonical(p.contract.document),
                        p.contract.version,
                        p.contract.compatibility,
                        p.contract.enforce,
                        p.contract.schema_file,
                    )
                    if p.contract
                    else None,
                )
            )
    by_ref = {p.ref: p for p in products}
    for c in (spec.hub, *spec.domains):
        for cons in c.consumes:
            sources = tuple(
                SourceRef(
                    domain=lives[r.ref],
                    stream=r.ref.split("/", 1)[1],
                    filter=r.filter,
                    transform=r.transform,
                    team="" if lives[r.ref] == r.ref.split("/", 1)[0] else r.ref.split("/", 1)[0],
                )
                for r in cons.refs()
            )
            cluster = cons.cluster or c.name
            allowed = retention_allowed(by_ref[f"{s.owner_domain}/{s.stream}"] for s in sources)
            consumptions.append(
                Consumption(
                    domain=cluster,
                    stream=cons.stream_name() or "",
                    mode=cons.mode,
                    sources=sources,
                    replicas=cons.replicas or min(nodes[cluster], 3),
                    storage=cons.storage,
                    description=cons.description,
                    subjects=tuple(cons.subjects or ()),
                    lag_critical=cons.alerts.lag_critical or spec.alerts.lag_critical or LAG_CRITICAL,
                    seen_critical=_seconds(cons.alerts.seen_critical or spec.alerts.seen_critical, SEEN_CRITICAL),
                    max_age=parse_duration(cons.max_age) if cons.max_age is not None else allowed,
                )
            )
    return tuple(products), tuple(consumptions)


def parse_mesh(
    text: str,
    source: str,
    base_dir: Path,
    read: Callable[[str, tuple[str, ...]], str] | None = None,
    default_trust: Literal["config", "operator"] = "operator",
) -> Mesh:
    """Validate a YAML document into a `Mesh`; raise `SpecError` listing every problem. READ gives the text of a
    contract's schema file by its name in the spec and the folders the mesh keeps private (None: schemas must be
    inline). DEFAULT_TRUST is the trust mode of a spec that names none and fixes no credentials."""
    from natsmesh.model.checks import validate  # loads pydantic

    spec, warnings = validate(text, source, read, default_trust)
    return _from_spec(spec, source, base_dir, warnings)
