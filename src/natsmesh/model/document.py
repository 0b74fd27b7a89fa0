"""The spec document: pydantic models of what a mesh file may say. Pure.

Only `natsmesh.model.checks` loads this module (and with it pydantic), and only for a spec that is not in the
validated-spec cache (`natsmesh.local.specfile`), so most commands never load pydantic at all.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal, NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from natsmesh.model.units import NAME_RE, NAME_RULE, check_duration, parse_duration, parse_size, shown

Loc = tuple[Any, ...]  # a path into the document: keys and list indices


def check_name(value: str, what: str = "name") -> str:
    if not NAME_RE.fullmatch(value) or len(value) > 255:
        raise ValueError(f"invalid {what} {shown(value)}: use {NAME_RULE}")
    return value


def check_path(value: str | None) -> str | None:
    """VALUE if it can name a file: not empty, no control characters (a NUL cannot be in a path)."""
    if value is not None and (not value or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value)):
        raise ValueError(f"expected a file or directory path, got {shown(value)}")
    return value


def check_inside(value: str) -> str:
    """VALUE if it names a file inside the spec's own folder tree: relative, no `..`, no `~` (what a file named
    by a spec may be; `natsmesh.local.specfile` also refuses a symlink that leads out)."""
    check_path(value)
    parts = value.replace("\\", "/").split("/")
    if value.startswith(("/", "~", "\\")) or re.match(r"[A-Za-z]:", value) or ".." in parts:
        raise ValueError(
            f"{shown(value)} is outside the spec's folder; a file a spec names is relative to the spec and inside its "
            "folder (like `orders.schema.json` or `schemas/orders.json`), never absolute and never through `..`"
        )
    if any(p.startswith(".") and p != "." for p in parts):
        raise ValueError(
            f"{shown(value)} is in a hidden folder or file, where natsmesh keeps a mesh's secrets (`.natsmesh/`); a "
            "file a spec names is one of the spec's own, like `schemas/orders.json`"
        )
    return value


_Size = TypeVar("_Size", str | int, str | int | None)


def check_size(value: _Size) -> _Size:
    """VALUE if it is a positive size (or None)."""
    if value is not None and not parse_size(value) > 0:
        raise ValueError("expected a positive size")
    return value


HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")  # matched whole


def check_host(value: str) -> str:
    """VALUE if it is an IP address or a host name."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not HOST_RE.fullmatch(value) or len(value) > 253:
            raise ValueError(f"expected an IP address or host name, got {shown(value)}") from None
    return value


MAX_DESCRIPTION_BYTES = 4096  # nats-server refuses a longer stream description (JSMaxDescriptionLen, in bytes)
MAX_OWNER = 256  # characters of a product's owner (a contact); it travels in the stream's metadata
MAX_TAG = 64  # characters of one tag
MAX_TAGS = 32  # tags of one product (with the owner, far below the 128 KiB nats-server allows for metadata)


def check_description(value: str) -> str:
    """VALUE if nats-server will take it as a stream description (at most 4,096 bytes of UTF-8)."""
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_DESCRIPTION_BYTES:
        raise ValueError(
            f"a description is at most {MAX_DESCRIPTION_BYTES:,} bytes (nats-server refuses a longer stream "
            f"description); this one is {size:,}"
        )
    return value


def check_owner(value: str) -> str:
    if len(value) > MAX_OWNER:
        raise ValueError(f"an owner is at most {MAX_OWNER} characters (a contact, like team@example.com)")
    return value


def check_tags(value: list[str]) -> list[str]:
    """VALUE if every tag fits the stream metadata they travel in (joined by commas)."""
    if len(value) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    for tag in value:
        if not tag.strip() or len(tag) > MAX_TAG or "," in tag:
            raise ValueError(
                f"invalid tag {shown(tag)}: a tag is 1 to {MAX_TAG} characters, not only spaces, without ',' "
                "(tags travel joined by commas in the stream's metadata)"
            )
    return value


def positive_duration(value: str | int | float | None) -> str | int | float | None:
    """VALUE if it is None or a positive duration (`7d`, `36h`, seconds)."""
    if value is not None and not parse_duration(value) > 0:
        raise ValueError("expected a positive duration, like 7d or 36h")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Port = Annotated[int, Field(ge=1, le=65535)]


class PortsSpec(_Strict):
    """Base ports of one cluster; node i listens on base + i."""

    client: Port
    cluster: Port | None = None
    http: Port | None = None
    leafnode: Port | None = None


class PortPlanSpec(_Strict):
    """Where clusters without explicit `ports` get theirs: cluster k (hub = 0) starts at base + k * block."""

    base: Port = 20000
    block: Annotated[int, Field(ge=4, le=1000)] | None = None


def check_stream_name(value: str) -> str:
    return check_name(value, "stream name")


class LimitsSpec(_Strict):
    """Retention limits of a product; anything left out is unlimited."""

    max_age: str | int | float | None = None
    max_bytes: str | int | None = None
    max_msgs: Annotated[int, Field(ge=1)] | None = None
    max_consumers: Annotated[int, Field(ge=1)] | None = None  # the owner's own and one per copy taking it

    @field_validator("max_age")
    @classmethod
    def _age(cls, v: str | int | float | None) -> str | int | float | None:
        return positive_duration(v)

    @field_validator("max_bytes")
    @classmethod
    def _bytes(cls, v: str | int | None) -> str | int | None:
        return check_size(v)


class ContractSpec(_Strict):
    """A product's data contract: the JSON Schema every message must satisfy (inline, or a JSON or YAML file named
    relative to the spec), its version, how later versions may change it (`natsmesh.model.contracts`), where it
    is enforced, and examples that must satisfy it."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: dict[str, Any] | Annotated[str, Field(min_length=1, max_length=4096)] = Field(alias="schema")
    version: str = "1.0.0"
    compatibility: Literal["backward", "forward", "full", "none"] = "backward"
    enforce: Literal["client", "gate"] = "client"
    examples: list[Any] = []
    _loaded: dict[str, Any] | None = PrivateAttr(default=None)  # a schema file's document, read by the checks

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not re.fullmatch(r"\d+\.\d+\.\d+", v):
            raise ValueError(f"a version is MAJOR.MINOR.PATCH, like 1.2.0 (got {shown(v)})")
        return v

    @field_validator("schema_")
    @classmethod
    def _schema(cls, v: dict[str, Any] | str) -> dict[str, Any] | str:
        return v if isinstance(v, dict) else check_inside(v)

    @property
    def schema_file(self) -> str | None:
        return self.schema_ if isinstance(self.schema_, str) else None

    @property
    def document(self) -> dict[str, Any]:
        """The schema itself: inline, or as read from its file."""
        if isinstance(self.schema_, dict):
            return self.schema_
        assert self._loaded is not None, "the checks read a contract's schema file first"
        return self._loaded


class ProductSpec(_Strict):
    """A data product: a stream this domain owns, on subjects inside its namespace."""

    name: str
    subjects: Annotated[list[str], Field(min_length=1)]
    description: str = ""
    owner: str = ""
    tags: list[str] = []
    limits: LimitsSpec = LimitsSpec()
    replicas: Annotated[int, Field(ge=1, le=5)] | None = None
    storage: Literal["file", "memory"] = "file"
    public: bool = False
    # What the data is (computational governance, `checks._governance_rules`): left out, `public` for a public
    # product and `internal` otherwise; a `confidential` or `pii` product cannot be public
    classification: Literal["public", "internal", "confidential", "pii"] | None = None
    # How long a copy may keep a message: the owner's standing word for every copy (left out: as long as the
    # product itself keeps it, `limits.max_age`); a grant may allow one copy longer (`access grant --retain`)
    copy_retention: str | int | float | None = None
    contract: ContractSpec | None = None
    cluster: str | None = None  # which of its domain's clusters holds it (left out: the domain's own)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_stream_name(v)

    @field_validator("description")
    @classmethod
    def _description(cls, v: str) -> str:
        return check_description(v)

    @field_validator("owner")
    @classmethod
    def _owner(cls, v: str) -> str:
        return check_owner(v)

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        return check_tags(v)

    @field_validator("copy_retention")
    @classmethod
    def _retention(cls, v: str | int | float | None) -> str | int | float | None:
        return positive_duration(v)


class UpstreamRef(NamedTuple):
    """One upstream a consumption names: `DOMAIN/STREAM` as written, its filter and transform, where it is."""

    ref: str
    filter: str | None
    transform: str | None
    loc: Loc


class SourceRefSpec(_Strict):
    """One upstream of a source stream: `product: DOMAIN/STREAM`, an optional filter and transform."""

    product: str
    filter: str | None = None
    transform: str | None = None


class AlertsSpec(_Strict):
    """When a copy counts as critical (stamped on it as natscli's `io.nats.monitor.*` stream metadata, and used
    by natsmesh's metrics and alert rules): more than LAG_CRITICAL messages behind, or nothing heard from its
    upstream (not even a heartbeat) for SEEN_CRITICAL."""

    lag_critical: Annotated[int, Field(ge=1)] | None = None
    seen_critical: str | None = None

    @field_validator("seen_critical")
    @classmethod
    def _seen(cls, v: str | None) -> str | None:
        return None if v is None else check_duration(v, "30s")


class ConsumptionSpec(_Strict):
    """What a domain takes from another: one product as a mirror (default), or several as sources."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    product: str | None = None
    products: list[str | SourceRefSpec] | None = None
    as_: str | None = Field(default=None, alias="as")
    mode: Literal["mirror", "source"] = "mirror"
    filter: str | None = None
    transform: str | None = None
    subjects: list[str] | None = None
    description: str = ""
    replicas: Annotated[int, Field(ge=1, le=5)] | None = None
    storage: Literal["file", "memory"] = "file"
    alerts: AlertsSpec = AlertsSpec()
    cluster: str | None = None  # which of its domain's clusters holds the copy (left out: the domain's own)
    # How long the copy keeps a message: left out, as long as its upstreams let their copies keep one (the
    # shortest of their `copy_retention`); longer than that is refused (`checks._governance_rules`)
    max_age: str | int | float | None = None

    @field_validator("max_age")
    @classmethod
    def _age(cls, v: str | int | float | None) -> str | int | float | None:
        return positive_duration(v)

    @field_validator("as_")
    @classmethod
    def _as(cls, v: str | None) -> str | None:
        return None if v is None else check_stream_name(v)

    @field_validator("description")
    @classmethod
    def _description(cls, v: str) -> str:
        return check_description(v)

    def refs(self, loc: Loc = ()) -> list[UpstreamRef]:
        """Every upstream this consumption names, with the path of each under LOC."""
        if self.product is not None:
            return [UpstreamRef(self.product, self.filter, self.transform, (*loc, "product"))]
        out: list[UpstreamRef] = []
        for k, item in enumerate(self.products or []):
            if isinstance(item, str):
                out.append(UpstreamRef(item, None, None, (*loc, "products", k)))
            else:
                out.append(UpstreamRef(item.product, item.filter, item.transform, (*loc, "products", k)))
        return out

    def stream_name(self) -> str | None:
        """The name of the stream this consumption makes: `as`, else the one product's name."""
        if self.as_:
            return self.as_
        refs = self.refs()
        if len(refs) == 1 and "/" in refs[0].ref:
            return refs[0].ref.split("/", 1)[1]
        return None


class ClusterLimitsSpec(_Strict):
    """What one domain may use of its servers and of the hub (so no domain can exhaust another's)."""

    connections: Annotated[int, Field(ge=1)] | None = None  # clients of its own account (unlimited if left out)
    subscriptions: Annotated[int, Field(ge=1)] = 100_000  # per account; also what its leaf links carry to the hub
    payload: str | int = "1MiB"  # the largest message its clients may publish
    streams: Annotated[int, Field(ge=1)] | None = None  # JetStream reservation of its own account
    consumers: Annotated[int, Field(ge=1)] | None = None
    memory: str | int | None = None  # JetStream reservation; left out: as far as its servers' bounds allow
    file: str | int | None = None

    @field_validator("payload", "memory", "file")
    @classmethod
    def _size(cls, v: str | int | None) -> str | int | None:
        return check_size(v)


class HostSpec(_Strict):
    """One node's addresses: the one the other nodes (and the platform) dial, and the one it binds if not that."""

    address: str
    bind: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _plain(cls, v: Any) -> Any:
        return {"address": v} if isinstance(v, str) else v  # `- 10.0.0.1` is short for `- {address: 10.0.0.1}`

    @field_validator("address", "bind")
    @classmethod
    def _host(cls, v: str | None) -> str | None:
        return None if v is None else check_host(v)


CLUSTER_NAMES = {  # what a message calls each name of a cluster
    "name": "cluster/domain name",
    "server_prefix": "server prefix",
    "folder": "folder name",
    "namespace": "namespace (one subject token)",
}


class AccountKeySpec(_Strict):
    """A domain's own account keys (operator mode), by their public keys: the domain made them in its own folder
    (`natsmesh keys init`) and holds their seeds, so the platform never does. The hub's operator signs the account
    with these keys named; the domain signs its own leaf link and its products' grants."""

    account: str  # the account's identity key (A...)
    signing: str  # the account's signing key (A...), what the domain signs with

    @field_validator("account", "signing")
    @classmethod
    def _key(cls, v: str) -> str:
        from natsmesh.model.jwt import public_problem

        if (why := public_problem(v, "A")) is not None:
            raise ValueError(f"an account's public nkey (56 characters starting with A) is wanted: {why}")
        return v

    @model_validator(mode="after")
    def _two(self) -> AccountKeySpec:
        if self.account == self.signing:
            raise ValueError("the account key and its signing key must be two keys")
        return self


class LeafClusterSpec(_Strict):
    """One cluster of nodes: its own JetStream domain, account and folder."""

    name: str
    nodes: Annotated[int, Field(ge=1, le=15)] = 3
    server_prefix: str | None = None
    folder: str | None = None
    ports: PortsSpec | None = None
    limits: ClusterLimitsSpec = ClusterLimitsSpec()
    # One address per node, in node order (a string, or {address, bind}); left out, every node is on the mesh's
    # `host`. Nodes on different hosts may use the same ports.
    hosts: list[HostSpec] | None = None
    # Where monitoring HTTP binds: loopback, or the node's bind address. Left out: the node's bind address when
    # the cluster names no hosts (one machine), else loopback.
    monitoring: Literal["loopback", "node"] | None = None
    # Operator mode: the public keys of the account this cluster's team made itself (its seeds stay in its
    # folder); left out, natsmesh makes the account's keys and holds them for the domain.
    account_key: AccountKeySpec | None = None

    @field_validator("name", "server_prefix", "folder")
    @classmethod
    def _names(cls, v: str | None, info: ValidationInfo) -> str | None:
        return None if v is None else check_name(v, CLUSTER_NAMES[str(info.field_name)])


class ClusterSpec(LeafClusterSpec):
    """A domain (or the hub): its own cluster, its products and copies, and any more clusters of the same team
    (`clusters`), each its own JetStream domain, that its products and copies may live on (`cluster:`)."""

    namespace: str | None = None
    products: list[ProductSpec] = []
    consumes: list[ConsumptionSpec] = []
    clusters: list[LeafClusterSpec] = []
    # Operator mode: the domain issues its own users for its own cluster from its folder (`natsmesh user add`),
    # each a creds file its key signs; its cluster then trusts an operator of the domain's own (its nodes restart
    # once to take it: nats-server cannot reload into operator mode)
    service_users: bool = False

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str | None) -> str | None:
        return None if v is None else check_name(v, CLUSTER_NAMES["namespace"])


class HubSpec(ClusterSpec):
    name: str = "hub"


class UserSpec(_Strict):
    user: str
    password: Annotated[str, Field(min_length=1)]

    @field_validator("user")
    @classmethod
    def _user(cls, v: str) -> str:
        return check_name(v, "user name")


class CredentialsSpec(_Strict):
    """Fixed credentials. Anything left out is generated per mesh and stored owner-readable only."""

    system: UserSpec | None = None
    data: UserSpec | None = None


class JetStreamSpec(_Strict):
    max_memory: str | int = "64MiB"
    max_file: str | int = "1GiB"
    # How often stores are fsynced: None keeps the server's default (2 min: acknowledged writes can be lost on
    # power loss, not on a process crash); "always" fsyncs every write (safe, far slower); or a duration.
    sync_interval: str | None = None

    @field_validator("sync_interval")
    @classmethod
    def _sync(cls, v: str | None) -> str | None:
        return v if v is None or v == "always" else check_duration(v, "10s or 2m (or 'always')")

    @field_validator("max_memory", "max_file")
    @classmethod
    def _size(cls, v: str | int) -> str | int:
        return check_size(v)


class LeafnodeSpec(_Strict):
    reconnect: str = "250ms"
    # Whether leaf servers also link their system account to the hub (each through a link that may only answer
    # the platform's pings), so one system request at the hub reaches every server (the seed's way). Its cost
    # grows with the square of the mesh, and a domain could answer a ping in another server's name; without it
    # natsmesh asks each cluster's servers directly with that cluster's own system identity. auto: bridged only
    # for the seed's fixed (one-party, loopback) credentials, up to BRIDGE_AUTO_MAX leaf domains.
    system_bridge: Literal["auto"] | bool = "auto"  # YAML reads on/off as true/false

    @field_validator("reconnect")
    @classmethod
    def _dur(cls, v: str) -> str:
        return check_duration(v, "250ms or 1s", "ms|s")


class PingSpec(_Strict):
    """Liveness of every connection: a peer silent for interval x max_out is dropped (half-open links too)."""

    interval: str = "4s"
    max_out: Annotated[int, Field(ge=1, le=10)] = 3

    @field_validator("interval")
    @classmethod
    def _interval(cls, v: str) -> str:
        return check_duration(v, "5s")


TrustMode = Literal["config", "operator"]  # how the hub knows who is who (`natsmesh.render.trust`)


class TLSSpec(_Strict):
    """TLS on every link (clients, routes, leafnodes) with a mesh-local CA that natsmesh generates."""

    enabled: bool = False
    dir: str | None = None

    @field_validator("dir")
    @classmethod
    def _dir(cls, v: str | None) -> str | None:
        return check_path(v)


class GovernanceSpec(_Strict):
    """The platform's rules every domain's products are checked against at `validate`, `up` and `apply` (the
    rules always on are in `checks._governance_rules`). REQUIRE_OWNER: every product names an owner contact; off
    by default so that a spec written before it keeps working (`natsmesh init` writes it on)."""

    require_owner: bool = False


class MeshSpec(_Strict):
    """The document as written: everything optional has the seed's or a safe default."""

    name: str = "natsmesh"
    server: str | None = None  # refused (`checks._platform_rules`): the binary is the platform's choice
    host: str = "127.0.0.1"
    data_dir: str | None = None
    ports: PortPlanSpec = PortPlanSpec()
    hub: HubSpec = HubSpec()
    domains: list[ClusterSpec] = []
    credentials: CredentialsSpec = CredentialsSpec()
    jetstream: JetStreamSpec = JetStreamSpec()
    leafnodes: LeafnodeSpec = LeafnodeSpec()
    tls: TLSSpec = TLSSpec()
    pings: PingSpec = PingSpec()
    alerts: AlertsSpec = AlertsSpec()  # every copy's thresholds unless its consumption names its own
    governance: GovernanceSpec = GovernanceSpec()
    # How the hub knows who is who: `config` (every account, user and key in its configs; a change is a reload) or
    # `operator` (NATS operator mode: accounts and users as JWTs the platform pushes to a resolver, no reload)
    trust: TrustMode | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "mesh name")

    def leaf_clusters(self) -> list[tuple[Loc, str, LeafClusterSpec]]:
        """Every leaf cluster with its path and its domain: each domain's own, in order, then the domains' more
        `clusters` in order (so adding one leaves every earlier cluster's port block where it was)."""
        own: list[tuple[Loc, str, LeafClusterSpec]] = [(("domains", i), d.name, d) for i, d in enumerate(self.domains)]
        more = [
            (("domains", i, "clusters", k), d.name, c)
            for i, d in enumerate(self.domains)
            for k, c in enumerate(d.clusters)
        ]
        return own + more

    @field_validator("server", "data_dir")
    @classmethod
    def _paths(cls, v: str | None) -> str | None:
        return check_path(v)

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        return check_host(v)
