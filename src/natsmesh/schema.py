"""The spec document: pydantic models of what a mesh file may say, and validation with friendly errors.

Every problem names the file, the path into the document, its line and what was expected. Only `spec` uses this
module, and only when a spec is not already in its validated cache, so most commands never load pydantic.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from natsmesh.errors import SpecError
from natsmesh.products import (
    Consumption,
    Product,
    SourceRef,
    find_cycle,
    in_namespace,
    subject_problem,
    subjects_overlap,
)
from natsmesh.topology import resolve_clusters

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
NAME_RULE = "letters, digits, '-' and '_' only (no spaces, dots, '*' or '>'), starting with a letter or digit"
SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Bytes from `64MiB`, `1GB`, `512K` or a plain integer (binary units either way, as nats-server does)."""
    if isinstance(text, int):
        return text
    m = SIZE_RE.match(text)
    if not m:
        raise ValueError(f"expected a size such as 64MiB or 1GiB, got {text!r}")
    unit = (m.group(2) or "B").upper()[0]
    scale = {"B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}[unit]
    return int(m.group(1)) * scale


def check_duration(value: str, example: str, units: str = "ms|s|m") -> str:
    """VALUE if it is a whole number of UNITS (`250ms`, `5s`, `2m`), else a ValueError naming EXAMPLE."""
    if not re.match(rf"^\d+({units})$", value):
        raise ValueError(f"expected a duration such as {example}, got {value!r}")
    return value


def check_name(value: str, what: str = "name") -> str:
    if not NAME_RE.match(value):
        raise ValueError(f"invalid {what} {value!r}: use {NAME_RULE}")
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


DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str | int | float) -> float:
    """Seconds from `7d`, `24h`, `30m`, `90s`, `500ms` or a number of seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    m = DURATION_RE.match(text)
    if not m:
        raise ValueError(f"expected a duration such as 7d, 24h, 30m or 90s, got {text!r}")
    return float(m.group(1)) * DURATION_UNITS[m.group(2) or "s"]


def check_stream_name(value: str) -> str:
    if not NAME_RE.match(value) or len(value) > 255:
        raise ValueError(f"invalid stream name {value!r}: use {NAME_RULE}")
    return value


class LimitsSpec(_Strict):
    """Retention limits of a product; anything left out is unlimited."""

    max_age: str | int | float | None = None
    max_bytes: str | int | None = None
    max_msgs: Annotated[int, Field(ge=1)] | None = None

    @field_validator("max_age")
    @classmethod
    def _age(cls, v: str | int | float | None) -> str | int | float | None:
        if v is not None and parse_duration(v) <= 0:
            raise ValueError("expected a positive duration")
        return v

    @field_validator("max_bytes")
    @classmethod
    def _bytes(cls, v: str | int | None) -> str | int | None:
        if v is not None and parse_size(v) <= 0:
            raise ValueError("expected a positive size")
        return v


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

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_stream_name(v)


class SourceRefSpec(_Strict):
    """One upstream of a source stream: `product: DOMAIN/STREAM`, an optional filter and transform."""

    product: str
    filter: str | None = None
    transform: str | None = None


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

    @field_validator("as_")
    @classmethod
    def _as(cls, v: str | None) -> str | None:
        return None if v is None else check_stream_name(v)


class ClusterSpec(_Strict):
    name: str
    nodes: Annotated[int, Field(ge=1, le=15)] = 3
    server_prefix: str | None = None
    folder: str | None = None
    ports: PortsSpec | None = None
    namespace: str | None = None
    products: list[ProductSpec] = []
    consumes: list[ConsumptionSpec] = []

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str | None) -> str | None:
        return None if v is None else check_name(v, "namespace (one subject token)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "cluster/domain name")

    @field_validator("server_prefix")
    @classmethod
    def _prefix(cls, v: str | None) -> str | None:
        return None if v is None else check_name(v, "server prefix")

    @field_validator("folder")
    @classmethod
    def _folder(cls, v: str | None) -> str | None:
        return None if v is None else check_name(v, "folder name")


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
        if parse_size(v) <= 0:
            raise ValueError("expected a positive size")
        return v


class LeafnodeSpec(_Strict):
    reconnect: str = "250ms"
    # Whether leaf servers also link their system account to the hub, so one system request at the hub reaches
    # every server (the seed's way). That bridge's cost grows with the square of the mesh; without it natsmesh
    # asks each cluster's servers directly. auto: bridged up to BRIDGE_AUTO_MAX leaf domains.
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


class TLSSpec(_Strict):
    """TLS on every link (clients, routes, leafnodes) with a mesh-local CA that natsmesh generates."""

    enabled: bool = False
    dir: str | None = None


class MeshSpec(_Strict):
    """The document as written: everything optional has the seed's or a safe default."""

    name: str = "natsmesh"
    server: str | None = None
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

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "mesh name")

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        try:
            ipaddress.ip_address(v)
        except ValueError:
            if not re.match(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$", v):
                raise ValueError(f"expected an IP address or host name, got {v!r}") from None
        return v


def _line_map(text: str) -> dict[tuple[Any, ...], int]:
    """Path into the document -> 1-based line, from the YAML node tree."""
    lines: dict[tuple[Any, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = (*path, k.value)
                lines[key] = k.start_mark.line + 1
                walk(v, key)
                lines[key] = k.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, (*path, i))

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, ())
    return lines


def format_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _where(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> str:
    probe = tuple(loc)
    while probe and probe not in lines:
        probe = probe[:-1]
    line = lines.get(probe)
    return f"{format_path(loc)}" + (f" (line {line})" if line else "")


def _pydantic_problems(err: ValidationError, lines: dict[tuple[Any, ...], int]) -> list[str]:
    out = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-after")))
        kind = e["type"]
        if kind == "extra_forbidden":
            parent = loc[:-1]
            allowed = _allowed_keys(parent)
            msg = f"unknown key {loc[-1]!r}" + (f"; expected one of: {', '.join(allowed)}" if allowed else "")
        elif kind == "missing":
            msg = "required key is missing"
        else:
            msg = str(e["msg"]).removeprefix("Value error, ")
            if "input" in e and kind not in ("value_error",) and not isinstance(e["input"], (dict, list)):
                msg += f" (got {e['input']!r})"
        out.append(f"{_where(loc, lines)}: {msg}")
    return out


def _allowed_keys(parent: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = MeshSpec
    for part in parent:
        if isinstance(part, int):
            continue
        f = model.model_fields.get(str(part))
        if f is None:
            return []
        ann = f.annotation
        found: type[BaseModel] | None = None
        for cand in (ann, *getattr(ann, "__args__", ())):
            for inner in (cand, *getattr(cand, "__args__", ())):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    found = inner
        if found is None:
            return []
        model = found
    return list(model.model_fields)


def _cross_checks(spec: MeshSpec, lines: dict[tuple[Any, ...], int]) -> tuple[list[str], list[str]]:
    """Rules across fields: unique names, hub/domain ports, collisions. Returns (problems, warnings)."""
    problems: list[str] = []
    warnings: list[str] = []
    cspecs: list[tuple[tuple[Any, ...], ClusterSpec, bool]] = [(("hub",), spec.hub, True)]
    cspecs += [(("domains", i), d, False) for i, d in enumerate(spec.domains)]

    seen: dict[str, tuple[Any, ...]] = {}
    for loc, c, _ in cspecs:
        if c.name in seen:
            problems.append(
                f"{_where((*loc, 'name'), lines)}: duplicate cluster/domain name {c.name!r} "
                f"(also at {format_path((*seen[c.name], 'name'))}); every domain needs a unique name"
            )
        seen.setdefault(c.name, loc)
        if c.name.upper() == "SYS":
            problems.append(f"{_where((*loc, 'name'), lines)}: 'SYS' is the system account's name; choose another")
        if c.nodes == 2:
            warnings.append(
                f"{_where((*loc, 'nodes'), lines)}: a 2-node cluster tolerates no failure "
                "(JetStream needs a majority); use 1 or 3"
            )
        if not is_hub_loc(loc) and c.ports is not None and c.ports.leafnode is not None:
            problems.append(
                f"{_where((*loc, 'ports', 'leafnode'), lines)}: only the hub listens for leafnodes; remove it"
            )

    try:
        clusters = resolve_clusters(spec)
    except Exception as exc:  # resolution depends on fields validated above
        return [*problems, f"(top level): cannot resolve topology: {exc}"], warnings

    servers: dict[str, str] = {}
    folders: dict[str, str] = {}
    ports: dict[int, str] = {}
    for (loc, _, _), cl in zip(cspecs, clusters, strict=True):
        if cl.folder in folders:
            problems.append(
                f"{_where((*loc, 'folder'), lines)}: folder {cl.folder!r} is also used by "
                f"{folders[cl.folder]}; set a unique `folder`"
            )
        folders.setdefault(cl.folder, cl.name)
        for n in cl.nodes:
            if n.name in servers:
                problems.append(
                    f"{_where((*loc, 'server_prefix'), lines)}: server name {n.name!r} is also used in "
                    f"{servers[n.name]}; server names must be unique across the mesh"
                )
            servers.setdefault(n.name, cl.name)
            for kind, port in n.ports().items():
                owner = f"{n.name} {kind}"
                if port > 65535:
                    problems.append(
                        f"{_where((*loc, 'ports'), lines)}: {owner} port {port} is above 65535; choose lower base ports"
                    )
                elif port in ports:
                    problems.append(
                        f"{_where((*loc, 'ports'), lines)}: port {port} ({owner}) collides with "
                        f"{ports[port]}; every listener needs its own port"
                    )
                ports.setdefault(port, owner)
    problems += _product_checks(spec, lines)
    return problems, warnings


def is_hub_loc(loc: tuple[Any, ...]) -> bool:
    return loc == ("hub",)


def validate(text: str, source: str) -> tuple[MeshSpec, list[str]]:
    """The validated document and its warnings; raise `SpecError` listing every problem."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(source, [f"not valid YAML at {where}: {problem}"]) from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise SpecError(source, [f"(top level): expected a mapping of keys, got {type(doc).__name__}"])
    lines = _line_map(text)
    try:
        spec = MeshSpec.model_validate(doc)
    except ValidationError as exc:
        raise SpecError(source, _pydantic_problems(exc, lines)) from None
    problems, warnings = _cross_checks(spec, lines)
    if problems:
        raise SpecError(source, problems)
    return spec, warnings


# ---------------------------------------------------------------------------------------------------------------
# Data products and consumptions


def _clusters(spec: MeshSpec) -> list[tuple[tuple[Any, ...], ClusterSpec]]:
    return [(("hub",), spec.hub), *((("domains", i), d) for i, d in enumerate(spec.domains))]


Ref = tuple[str, str | None, str | None, tuple[Any, ...]]


def _refs(cons: ConsumptionSpec, cloc: tuple[Any, ...]) -> list[Ref]:
    """(DOMAIN/STREAM, filter, transform, path) for every upstream a consumption names."""
    if cons.product is not None:
        return [(cons.product, cons.filter, cons.transform, (*cloc, "product"))]
    out: list[Ref] = []
    for k, item in enumerate(cons.products or []):
        if isinstance(item, str):
            out.append((item, None, None, (*cloc, "products", k)))
        else:
            out.append((item.product, item.filter, item.transform, (*cloc, "products", k)))
    return out


def _stream_name(cons: ConsumptionSpec, refs: list[Ref]) -> str | None:
    if cons.as_:
        return cons.as_
    if len(refs) == 1 and "/" in refs[0][0]:
        return refs[0][0].split("/", 1)[1]
    return None


def _product_checks(spec: MeshSpec, lines: dict[tuple[Any, ...], int]) -> list[str]:
    """Ownership and sharing rules: namespaces, unique stream names, references, no cycles."""
    problems: list[str] = []
    clusters = _clusters(spec)
    owners: dict[str, str] = {}
    streams: dict[str, dict[str, tuple[Any, ...]]] = {}
    for loc, c in clusters:
        ns = c.namespace or c.name
        if ns in owners:
            problems.append(
                f"{_where((*loc, 'namespace'), lines)}: subject namespace {ns!r} is also domain "
                f"{owners[ns]!r}'s; every domain needs its own (set `namespace`)"
            )
        owners.setdefault(ns, c.name)
        names = streams.setdefault(c.name, {})
        patterns: list[tuple[str, str]] = []
        for j, p in enumerate(c.products):
            ploc = (*loc, "products", j)
            if p.name in names:
                problems.append(
                    f"{_where((*ploc, 'name'), lines)}: two streams named {p.name!r} in domain {c.name!r} "
                    f"(also at {format_path(names[p.name])}); stream names are unique within a domain"
                )
            names.setdefault(p.name, ploc)
            if p.replicas and p.replicas > c.nodes:
                problems.append(
                    f"{_where((*ploc, 'replicas'), lines)}: {p.replicas} replicas, but domain {c.name!r} has "
                    f"{c.nodes} node(s)"
                )
            for k, subj in enumerate(p.subjects):
                sloc = (*ploc, "subjects", k)
                if (why := subject_problem(subj)) is not None:
                    problems.append(f"{_where(sloc, lines)}: invalid subject {subj!r}: {why}")
                    continue
                if not in_namespace(subj, ns):
                    problems.append(
                        f"{_where(sloc, lines)}: subject {subj!r} is outside domain {c.name!r}'s namespace; "
                        f"its products' subjects must start with '{ns}.'"
                    )
                for other, subj2 in patterns:
                    if subjects_overlap(subj, subj2):
                        problems.append(
                            f"{_where(sloc, lines)}: subject {subj!r} overlaps {subj2!r} of product {other!r}; "
                            "two products of a domain cannot capture the same messages"
                        )
                patterns.append((p.name, subj))
        for j, cons in enumerate(c.consumes):
            cloc = (*loc, "consumes", j)
            if (cons.product is None) == (cons.products is None):
                problems.append(f"{_where(cloc, lines)}: give either `product: DOMAIN/PRODUCT` or a `products` list")
                continue
            refs = _refs(cons, cloc)
            if cons.mode == "mirror":
                if len(refs) != 1:
                    problems.append(
                        f"{_where(cloc, lines)}: a mirror copies exactly one product; use `mode: source` to "
                        "gather several"
                    )
                if any(f or t for _, f, t, _ in refs):
                    problems.append(
                        f"{_where(cloc, lines)}: a mirror is an exact copy, so it takes no filter or transform; "
                        "use `mode: source`"
                    )
                if cons.subjects:
                    problems.append(
                        f"{_where((*cloc, 'subjects'), lines)}: a mirror cannot declare subjects (it is a "
                        "read-only copy of its product); remove `subjects` or use `mode: source`"
                    )
            for k, subj in enumerate(cons.subjects or []):
                if (why := subject_problem(subj)) is not None or not in_namespace(subj, ns):
                    problems.append(
                        f"{_where((*cloc, 'subjects', k), lines)}: subject {subj!r} "
                        + (f"is invalid: {why}" if why else f"is outside the namespace '{ns}.'")
                    )
            name = _stream_name(cons, refs)
            if name is None:
                problems.append(f"{_where(cloc, lines)}: a stream gathering several products needs a name (`as`)")
                continue
            if name in names:
                problems.append(
                    f"{_where(cloc, lines)}: two streams named {name!r} in domain {c.name!r} (also at "
                    f"{format_path(names[name])}); name this one with `as`"
                )
            names.setdefault(name, cloc)

    # References, now that every domain's streams are known.
    edges: dict[str, list[str]] = {}
    edge_locs: dict[str, tuple[Any, ...]] = {}
    for loc, c in clusters:
        for j, cons in enumerate(c.consumes):
            cloc = (*loc, "consumes", j)
            if (cons.product is None) == (cons.products is None):
                continue
            refs = _refs(cons, cloc)
            name = _stream_name(cons, refs)
            for ref, filt, transform, rloc in refs:
                where = _where(rloc, lines)
                dom, _, stream = ref.partition("/")
                if not stream or "/" in stream:
                    problems.append(f"{where}: expected DOMAIN/PRODUCT, got {ref!r}")
                    continue
                if dom == c.name:
                    problems.append(
                        f"{where}: domain {c.name!r} cannot consume its own product {ref!r}; it already has it"
                    )
                    continue
                if dom == spec.hub.name:
                    problems.append(
                        f"{where}: {ref!r} lives in the hub domain; with one account per domain, streams in the hub "
                        "cannot be shared with other domains yet (see docs/design/isolation.md): take the products "
                        "it gathers directly"
                    )
                    continue
                if dom not in streams:
                    problems.append(
                        f"{where}: {ref!r} names no domain of this mesh (domains: {', '.join(sorted(streams))})"
                    )
                    continue
                if stream not in streams[dom]:
                    known = ", ".join(sorted(streams[dom])) or "none"
                    problems.append(f"{where}: domain {dom!r} has no product {stream!r} (its streams: {known})")
                    continue
                for what, value in (("filter", filt), ("transform", transform)):
                    if value is not None and (why := subject_problem(value)):
                        problems.append(f"{where}: invalid {what} {value!r}: {why}")
                if name:
                    edges.setdefault(f"{c.name}/{name}", []).append(ref)
                    edge_locs.setdefault(f"{c.name}/{name}", cloc)
    # Cross-account flow control is keyed by the upstream stream's name alone ($JS.FC.<stream>.>), so two
    # shared streams of one name in different domains would collide at the hub.
    shared: dict[str, tuple[str, tuple[Any, ...]]] = {}
    for loc, c in clusters:
        for j, p in enumerate(c.products):
            if not p.public:
                continue
            ploc = (*loc, "products", j)
            if c.name == spec.hub.name:
                problems.append(
                    f"{_where((*ploc, 'public'), lines)}: products of the hub domain cannot be shared with other "
                    "domains yet (see docs/design/isolation.md)"
                )
            elif p.name in shared and shared[p.name][0] != c.name:
                problems.append(
                    f"{_where((*ploc, 'name'), lines)}: public product {p.name!r} has the name of another shared "
                    "stream; shared streams need names unique across the mesh"
                )
            shared.setdefault(p.name, (c.name, ploc))
    for consumer, ups in edges.items():
        for up in ups:
            dom, _, stream = up.partition("/")
            first = shared.setdefault(stream, (dom, edge_locs[consumer]))
            if first[0] != dom:
                problems.append(
                    f"{_where(edge_locs[consumer], lines)}: {up!r} and '{first[0]}/{stream}' are both shared; "
                    "shared streams need names unique across the mesh (NATS keys cross-account flow control "
                    f"by stream name): rename one, or its consumer copy with `as`"
                )
    cycle = find_cycle(edges)
    if cycle:
        problems.append(
            f"{_where(edge_locs[cycle[0]], lines)}: mirrors and sources form a cycle: {' <- '.join(cycle)}; "
            "data would flow in a circle"
        )
    return problems


def resolve_products(spec: MeshSpec) -> tuple[tuple[Product, ...], tuple[Consumption, ...]]:
    """The products and consumptions of a validated document."""
    products: list[Product] = []
    consumptions: list[Consumption] = []
    for _, c in _clusters(spec):
        default_replicas = min(c.nodes, 3)
        for p in c.products:
            products.append(
                Product(
                    domain=c.name,
                    name=p.name,
                    subjects=tuple(p.subjects),
                    description=p.description,
                    owner=p.owner,
                    tags=tuple(p.tags),
                    max_age=parse_duration(p.limits.max_age) if p.limits.max_age is not None else 0.0,
                    max_bytes=parse_size(p.limits.max_bytes) if p.limits.max_bytes is not None else -1,
                    max_msgs=p.limits.max_msgs or -1,
                    replicas=p.replicas or default_replicas,
                    storage=p.storage,
                    public=p.public,
                )
            )
        for cons in c.consumes:
            refs = _refs(cons, ())
            sources = tuple(
                SourceRef(domain=r.split("/", 1)[0], stream=r.split("/", 1)[1], filter=f, transform=t)
                for r, f, t, _ in refs
            )
            consumptions.append(
                Consumption(
                    domain=c.name,
                    stream=_stream_name(cons, refs) or "",
                    mode=cons.mode,
                    sources=sources,
                    replicas=cons.replicas or default_replicas,
                    storage=cons.storage,
                    description=cons.description,
                    subjects=tuple(cons.subjects or ()),
                )
            )
    return tuple(products), tuple(consumptions)
