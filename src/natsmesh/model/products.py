"""Data products and consumptions: the data-mesh half of the model. Pure.

A *product* is a stream owned by one domain, on subjects inside that domain's namespace. A *consumption* is a
stream in another domain (or the hub) that takes one product as a **mirror** (an exact copy that keeps the
product's sequence numbers) or one or more streams as **sources** (optionally filtered and transformed), through
the hub, by addressing the owning domain's JetStream API (`$JS.<domain>.API`). Each copy reads through a `Share`:
a durable consumer the owner creates for that copy alone, which the copy's domain may only reset.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

MANAGED_KEY = "natsmesh.managed"
MESH_KEY = "natsmesh.mesh"
KIND_KEY = "natsmesh.kind"
MOVED_KEY = "natsmesh.moved_from_seq"  # a copy's consumer made by `natsmesh move`: the sequence it starts at
CATALOG_BUCKET = "natsmesh_catalog"
AUDIT_STREAM = "natsmesh_audit"  # the hub's audit trail (`natsmesh.observe.access`)
DELIVER_PREFIX = "_MESH.DLV"
LAG_CRITICAL = 1000  # default: a copy more than this many messages behind its upstream is critical
SEEN_CRITICAL = 30.0  # default: a copy that heard nothing (a heartbeat comes every second) this long is critical


INGRESS_PREFIX = "natsmesh.ingress"  # producers of a gated product publish to this prefix + the product's subject
DEADLETTER_STREAM = "natsmesh_deadletter"  # each gated domain's stream of refused messages, with the reason
DEADLETTER_PREFIX = "natsmesh.deadletter"  # + the product's name


def catalog_key(ref: str) -> str:
    """KV key of product `DOMAIN/NAME` in the catalog: `DOMAIN.NAME`."""
    return ref.replace("/", ".", 1)


def ingress_subject(subject: str) -> str:
    """Where a producer publishes a message for SUBJECT of a gated product (the gate writes it to SUBJECT)."""
    return f"{INGRESS_PREFIX}.{subject}"


@dataclass(frozen=True)
class Contract:
    """A product's data contract (`natsmesh.model.contracts`): its JSON Schema as canonical JSON text (so the
    product stays hashable and compares by content), version, compatibility mode, where it is enforced
    (`client`: by natsmesh's publishers; `gate`: by the domain's gate service, the only writer of the product),
    and the file it was read from, if any (relative to the spec)."""

    schema_json: str
    version: str = "1.0.0"
    compatibility: Literal["backward", "forward", "full", "none"] = "backward"
    enforce: Literal["client", "gate"] = "client"
    schema_file: str | None = None

    @property
    def gated(self) -> bool:
        return self.enforce == "gate"

    @property
    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.schema_json)
        return out

    def to_json(self) -> dict[str, Any]:
        """As the catalog keeps it: the schema natsmesh validated and, if it came from a file, that file's name
        relative to the spec (nothing else from the file's place)."""
        out = {"version": self.version, "compatibility": self.compatibility, "enforce": self.enforce}
        return out | {"schema": self.schema} | ({"file": self.schema_file} if self.schema_file else {})


Classification = Literal["public", "internal", "confidential", "pii"]
CLASSIFICATIONS: tuple[Classification, ...] = ("public", "internal", "confidential", "pii")
NOT_PUBLIC: tuple[Classification, ...] = ("confidential", "pii")  # classes no product readable by all may have


def retention_allowed(products: Iterable[Product]) -> float:
    """Seconds a copy of every one of PRODUCTS may keep a message: the shortest they allow (0 = unlimited)."""
    limits = [p.copies_keep for p in products if p.copies_keep > 0]
    return min(limits) if limits else 0.0


@dataclass(frozen=True)
class Product:
    """A stream owned by DOMAIN on SUBJECTS inside the domain's namespace."""

    domain: str
    name: str
    subjects: tuple[str, ...]
    description: str = ""
    owner: str = ""
    tags: tuple[str, ...] = ()
    max_age: float = 0.0  # seconds; 0 = unlimited
    max_bytes: int = -1
    max_msgs: int = -1
    max_consumers: int = -1
    replicas: int = 1
    storage: Literal["file", "memory"] = "file"
    public: bool = False  # readable by every domain without a declared consumption
    contract: Contract | None = None
    team: str = ""  # the domain that owns it, when it lives on another of that domain's clusters than its own
    classification: Classification = "internal"
    copy_retention: float = 0.0  # seconds a copy may keep a message; 0 = as long as MAX_AGE

    @property
    def copies_keep(self) -> float:
        """Seconds a copy may keep a message without a grant saying more (0 = unlimited)."""
        return self.copy_retention or self.max_age

    @property
    def gated(self) -> bool:
        """Whether only its domain's gate may write it (`enforce: gate`)."""
        return self.contract is not None and self.contract.gated

    @property
    def owner_domain(self) -> str:
        """The domain (team) that owns it; DOMAIN is the cluster (JetStream domain) its stream lives on."""
        return self.team or self.domain

    @property
    def ref(self) -> str:
        """`DOMAIN/NAME` by its owning domain, wherever of that domain's clusters it lives."""
        return f"{self.owner_domain}/{self.name}"


@dataclass(frozen=True)
class DomainStream:
    """Stream STREAM of domain DOMAIN, named `domain/stream` (its `ref`)."""

    domain: str
    stream: str

    @property
    def ref(self) -> str:
        return f"{self.domain}/{self.stream}"


@dataclass(frozen=True)
class SourceRef(DomainStream):
    """One upstream stream of a consumption, with an optional filter and transform."""

    filter: str | None = None
    transform: str | None = None
    team: str = ""  # the upstream's owning domain, when it lives on another of that domain's clusters

    @property
    def owner_domain(self) -> str:
        return self.team or self.domain

    @property
    def ref(self) -> str:
        """The upstream as the spec names it: `DOMAIN/NAME` by its owning domain."""
        return f"{self.owner_domain}/{self.stream}"


@dataclass(frozen=True)
class Consumption(DomainStream):
    """A stream STREAM in DOMAIN that mirrors one upstream stream or gathers several as sources."""

    mode: Literal["mirror", "source"]
    sources: tuple[SourceRef, ...]
    replicas: int = 1
    storage: Literal["file", "memory"] = "file"
    description: str = ""
    subjects: tuple[str, ...] = ()
    lag_critical: int = LAG_CRITICAL  # messages behind its upstream that make it critical
    seen_critical: float = SEEN_CRITICAL  # seconds without a word from its upstream that make it critical
    request: str = ""  # the access request whose grant made it (`natsmesh.model.access`); "": the spec declares it
    max_age: float = 0.0  # seconds it keeps a message (0 = unlimited), at most what its upstreams allow

    @property
    def ref(self) -> str:
        return f"{self.domain}/{self.stream}"

    @property
    def nudge(self) -> str | None:
        """How a stalled copy is restarted through the API: "stepdown" (more than one replica: a new leader
        starts fresh), "readd" (one replica, several sources: remove and re-add the stalled one), or None (a
        single-replica mirror or single source: nats-server offers nothing; only its own retry, or not losing
        the first request, helps)."""
        if self.replicas > 1:
            return "stepdown"
        if self.mode == "source" and len(self.sources) > 1:
            return "readd"
        return None


# ---------------------------------------------------------------------------------------------------------------
# Subjects


def subject_problem(subject: str) -> str | None:
    """Why SUBJECT is not a valid NATS subject (pattern), or None."""
    if not subject or subject != subject.strip() or any(c.isspace() for c in subject):
        return "a subject may not be empty or contain spaces"
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in subject):
        return "a subject may not contain control characters"
    tokens = subject.split(".")
    for i, tok in enumerate(tokens):
        if not tok:
            return "a subject may not have empty tokens (leading, trailing or double dots)"
        if ">" in tok and (tok != ">" or i != len(tokens) - 1):
            return "'>' may only be a whole last token"
        if "*" in tok and tok != "*":
            return "'*' may only be a whole token"
    return None


def in_namespace(subject: str, namespace: str) -> bool:
    """True if every subject SUBJECT can match starts with the token NAMESPACE."""
    head = subject.split(".", 1)[0]
    return head == namespace and "." in subject


def subjects_overlap(a: str, b: str) -> bool:
    """True if some literal subject matches both patterns A and B."""
    ta, tb = a.split("."), b.split(".")
    for i in range(max(len(ta), len(tb))):
        x = ta[i] if i < len(ta) else None
        y = tb[i] if i < len(tb) else None
        if x == ">" or y == ">":
            return x is not None and y is not None
        if x is None or y is None:
            return False
        if x != y and x != "*" and y != "*":
            return False
    return True


# ---------------------------------------------------------------------------------------------------------------
# The graph of streams


def find_cycle(edges: dict[str, list[str]]) -> list[str] | None:
    """A cycle in the directed graph EDGES (node -> the nodes it takes data from), as a path, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in edges.get(node, []):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if state.get(nxt) is None and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if state.get(node) is None and (found := visit(node)):
            return found
    return None


def deliver_subject(owner: str, consumer: str, stream: str) -> str:
    """Where OWNER's consumers for CONSUMER's copies of STREAM deliver: subjects only CONSUMER imports."""
    return f"{DELIVER_PREFIX}.{owner}.{consumer}.{stream}"


@dataclass(frozen=True)
class Share:
    """One copy's consumer on its upstream: the owner creates it, and only the copy's domain may reset it.

    A declared copy (COPY set) gets its own consumer and delivery subject; a public product keeps one slot per
    other domain (COPY None) for a copy that domain makes without a declaration."""

    owner: str  # the cluster (JetStream domain, account) the upstream lives on
    stream: str  # the upstream stream
    taker: str  # the copy's cluster
    copy: str | None  # the copy stream (None: a public product's slot)
    filter: str | None = None
    team: str = ""  # the upstream's owning domain, when the owner is another of its clusters

    @property
    def address(self) -> str:
        """The JetStream domain the copy addresses its upstream by: the owning domain's, wherever of its clusters
        the upstream lives now, so a product that moves keeps its copies (the hub maps it to the owner)."""
        return self.team or self.owner

    @property
    def consumer(self) -> str:
        """The owner's durable consumer for this copy (`~` cannot occur in a domain or stream name)."""
        return self.taker if self.copy is None else f"{self.taker}~{self.copy}"

    @property
    def deliver(self) -> str:
        """Where the consumer delivers: a subject only the copy's domain imports (the same wherever of its
        domain's clusters the upstream lives)."""
        base = deliver_subject(self.address, self.taker, self.stream)
        return base if self.copy is None else f"{base}.{self.copy}"

    @property
    def name(self) -> str:
        copy = f"{self.taker}/{self.copy}" if self.copy else f"{self.taker} (public)"
        return f"{self.owner}/{self.stream} -> {copy}"


def share_taker(name: str) -> str:
    """The taking domain of a share's NAME (`owner/stream -> taker/copy` or `-> taker (public)`)."""
    taken = name.rsplit(" -> ", 1)[-1]
    return taken.split("/", 1)[0].removesuffix(" (public)")


def copy_shares(
    products: tuple[Product, ...], consumptions: tuple[Consumption, ...], clusters: dict[str, str]
) -> list[Share]:
    """Every share of a mesh: one per (copy, upstream), and for each public product one slot per cluster of every
    other domain. CLUSTERS: cluster name -> its owning domain."""
    out = [Share(s.domain, s.stream, c.domain, c.stream, s.filter, s.team) for c in consumptions for s in c.sources]
    out += [
        Share(p.domain, p.name, d, None, None, p.team)
        for p in products
        if p.public
        for d, owner in clusters.items()
        if owner != p.owner_domain
    ]
    return out


def lineage_edges(consumptions: tuple[Consumption, ...]) -> list[tuple[str, str, str]]:
    """(upstream ref, downstream ref, how) for every consumption: how is `mirror` or `source`."""
    return [(s.ref, c.ref, c.mode) for c in consumptions for s in c.sources]
