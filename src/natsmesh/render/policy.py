"""Who may do what, derived from the spec: ownership and declared consumption decide it. Pure.

A domain manages only its own JetStream, publishes only into its own subject namespace, and reads another
domain's product only where it declared a consumption of it or the product is public. The accounts, exports
and imports of `natsmesh.render.servers` make the servers enforce it; `natsmesh.client.MeshClient` refuses
what it denies before sending; this module only says what must hold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from natsmesh.errors import UnknownDomainError
from natsmesh.model.mesh import Mesh


@dataclass(frozen=True)
class Rule:
    effect: Literal["allow", "deny"]
    action: Literal["manage", "publish", "read"]
    target: str  # a JetStream domain, a subject pattern or DOMAIN/PRODUCT
    why: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def policy_for(mesh: Mesh, domain: str) -> list[Rule]:
    """Every rule that applies to DOMAIN's identities."""
    mesh.domain(domain)  # KeyError for an unknown domain
    ns = mesh.namespace(domain)
    rules = [
        Rule("allow", "manage", f"JetStream domain {domain}", "its own streams, consumers and messages"),
        Rule("allow", "publish", f"{ns}.>", "its own subject namespace"),
    ]
    rules += [Rule("allow", "read", p.ref, "its own product") for p in mesh.products if p.domain == domain]
    consumed: dict[str, str] = {}
    for c in mesh.consumptions:
        if c.domain == domain:
            for s in c.sources:
                consumed.setdefault(s.ref, f"declared {c.mode} as {c.ref}")
    rules += [Rule("allow", "read", ref, why) for ref, why in sorted(consumed.items())]
    rules += [
        Rule("allow", "read", p.ref, "public product")
        for p in mesh.products
        if p.public and p.domain != domain and p.ref not in consumed
    ]
    for other in mesh.clusters:
        if other.name == domain:
            continue
        rules.append(Rule("deny", "manage", f"JetStream domain {other.name}", f"owned by {other.name}"))
        if mesh.namespace(other.name) != ns:  # another cluster of its own domain shares its namespace
            rules.append(Rule("deny", "publish", f"{mesh.namespace(other.name)}.>", f"namespace of {other.name}"))
    rules += [
        Rule("deny", "read", p.ref, "not shared with it")
        for p in mesh.products
        if p.domain != domain and p.ref not in consumed and not p.public
    ]
    return rules


@dataclass(frozen=True)
class Policy:
    """The rules of some domains, by domain."""

    rules: dict[str, list[Rule]]

    def to_json(self) -> dict[str, Any]:
        return {d: [r.to_json() for r in rs] for d, rs in self.rules.items()}


def policy(mesh: Mesh, domain: str | None = None) -> Policy:
    """The rules of DOMAIN (default: of every domain); `UnknownDomainError` for a domain the mesh lacks."""
    if domain is None:
        return Policy({c.name: policy_for(mesh, c.name) for c in mesh.clusters})
    try:
        return Policy({domain: policy_for(mesh, domain)})
    except KeyError:
        known = ", ".join(c.name for c in mesh.clusters)
        raise UnknownDomainError(f"mesh {mesh.name!r} has no domain {domain!r} (domains: {known})") from None


def may_read(mesh: Mesh, domain: str, ref: str) -> bool:
    return any(r.effect == "allow" and r.action == "read" and r.target == ref for r in policy_for(mesh, domain))


def party_view(mesh: Mesh, party: str) -> Mesh:
    """MESH as party PARTY (a cluster) may see it from its folder: every cluster (its servers dial them), the
    products it may read (its domain's, what it takes, the public ones), its domain's copies and the copies of
    its domain's products. Other domains' private products and who takes them stay out (`natsmesh serve` from a
    folder shows this view)."""
    team = mesh.domain(party).owner
    readable = {r.target for r in policy_for(mesh, party) if r.effect == "allow" and r.action == "read"}
    readable |= {p.ref for p in mesh.products if p.owner_domain == team}
    products = tuple(p for p in mesh.products if p.ref in readable)
    mine = {p.ref for p in products if p.owner_domain == team}
    consumptions = tuple(
        c for c in mesh.consumptions if mesh.domain(c.domain).owner == team or any(s.ref in mine for s in c.sources)
    )
    return replace(mesh, products=products, consumptions=consumptions)
