"""A domain's users per service (`natsmesh user add`), in its own cluster under its own operator (`Mesh.service_users`).
Pure.

Each user is a creds file the domain's data account signing key signs, with the least a role needs:

- **producer** of named products of the domain: publish on their subjects (a gated product's ingress subjects), read
  each product's stream info; replies (the acks) only on its own inbox prefix `_INBOX_<name>`;
- **reader** of named streams of the domain's cluster (its products or its copies): each stream's info and messages
  (direct and API gets), and consumers named after the user only (`<name>`, created, read, acknowledged, deleted);
  deliveries and replies on its own inbox prefix;
- **admin**: what the domain's `app` user may do (every stream of the domain's own account).

No role reaches the system account, another domain or another user's inbox. Users connect with their inbox prefix
set (`inbox_prefix`); `MeshClient` reads it from the creds file.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from natsmesh.errors import UserRefusedError
from natsmesh.model import jwt
from natsmesh.model.access import KINDS, USER_KINDS, AccessDoc
from natsmesh.model.mesh import Mesh
from natsmesh.model.products import ingress_subject
from natsmesh.model.trust import Rights, domain_members
from natsmesh.model.units import NAME_RE, NAME_RULE, shown

Role = Literal["producer", "reader", "admin"]
ROLES: tuple[Role, ...] = ("producer", "reader", "admin")
MAX_NAME = 64  # characters: it is a subject token (the inbox prefix) and a consumer name
RESERVED = frozenset({"app", "admin", "gate", "route", "system", "platform"})  # natsmesh's own identities


def inbox_prefix(name: str) -> str:
    """The inbox prefix user NAME's replies and deliveries come to (its only subscriptions)."""
    return f"_INBOX_{name}"


def _apis(cluster: str) -> tuple[str, ...]:
    return ("$JS.API", f"$JS.{cluster}.API")  # the plain API and its domain-prefixed form


def streams_of(mesh: Mesh, cluster: str) -> dict[str, str]:
    """Every stream of CLUSTER a user may be named for, with what it is (product, mirror, source)."""
    out = {p.name: "product" for p in mesh.products if p.domain == cluster}
    out |= {c.stream: c.mode for c in mesh.consumptions if c.domain == cluster}
    return out


def check(mesh: Mesh, cluster: str, name: str, role: str, streams: tuple[str, ...]) -> None:
    """`UserRefusedError` if user NAME of CLUSTER cannot have ROLE over STREAMS."""
    if cluster not in mesh.service_users:
        raise UserRefusedError(
            f"{cluster}'s cluster keeps its users in its configs: the platform turns on `service_users: true` for "
            "it in the spec (its nodes restart once) before it issues users of its own"
        )
    if not NAME_RE.fullmatch(name) or len(name) > MAX_NAME:
        raise UserRefusedError(f"invalid user name {shown(name)}: use {NAME_RULE}, at most {MAX_NAME} characters")
    if name.lower() in RESERVED:
        raise UserRefusedError(
            f"{name!r} is one of natsmesh's own identities ({', '.join(sorted(RESERVED))}): pick another"
        )
    if role not in ROLES:
        raise UserRefusedError(f"unknown role {shown(role)}: one of {', '.join(ROLES)}")
    if role == "admin":
        if streams:
            raise UserRefusedError("an admin holds every stream of its domain: name no stream")
        return
    if not streams:
        raise UserRefusedError(f"a {role} is named for the streams it may use: give at least one (--stream)")
    known = streams_of(mesh, cluster)
    for s in streams:
        if s not in known:
            raise UserRefusedError(
                f"{cluster} has no stream {shown(s)} (its streams: {', '.join(sorted(known)) or 'none'})"
            )
        if role == "producer" and known[s] != "product":
            raise UserRefusedError(f"{cluster}/{s} is a {known[s]}: only a product is published to")


def rights_of(mesh: Mesh, cluster: str, name: str, role: Role, streams: tuple[str, ...]) -> Rights:
    """What user NAME of CLUSTER with ROLE over STREAMS may publish and subscribe (see the module's docstring)."""
    check(mesh, cluster, name, role, streams)
    inbox = (f"{inbox_prefix(name)}.>",)
    if role == "admin":
        return next(m.rights for m in domain_members(mesh, cluster, True) if m.role == "client")
    pub: list[str] = []
    if role == "producer":
        for p in (p for p in mesh.products if p.domain == cluster and p.name in streams):
            pub += [ingress_subject(s) if p.gated else s for s in p.subjects]
            pub += [f"{api}.STREAM.INFO.{p.name}" for api in _apis(cluster)]
        return Rights(publish_allow=tuple(pub), subscribe_allow=inbox)
    for s in streams:
        for api in _apis(cluster):
            pub += [f"{api}.STREAM.INFO.{s}", f"{api}.STREAM.MSG.GET.{s}", f"{api}.DIRECT.GET.{s}"]
            pub += [f"{api}.DIRECT.GET.{s}.>"]
            pub += [f"{api}.CONSUMER.{verb}.{s}.{name}" for verb in ("CREATE", "INFO", "DELETE", "MSG.NEXT")]
            pub += [f"{api}.CONSUMER.CREATE.{s}.{name}.>", f"{api}.CONSUMER.DURABLE.CREATE.{s}.{name}"]
        pub += [f"$JS.ACK.{s}.{name}.>", f"$JS.ACK.*.*.{s}.{name}.>", f"$JS.FC.{s}.{name}.>"]
    return Rights(publish_allow=tuple(pub), subscribe_allow=inbox)


@dataclass(frozen=True)
class ServiceUser:
    """A user as its creds file's JWT says it: its name, public key, role and streams, when issued and until."""

    cluster: str
    name: str
    key: str
    role: str
    streams: tuple[str, ...]
    issued: int
    expires: int = 0
    revoked: int = 0  # when the domain revoked it (unix seconds), 0: not

    def status(self, now: float | None = None) -> str:
        at = now if now is not None else time.time()
        if self.revoked:
            return "revoked"
        return "expired" if self.expires and self.expires <= at else "active"

    def to_json(self, now: float | None = None) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "name": self.name,
            "key": self.key,
            "role": self.role,
            "streams": list(self.streams),
            "issued": self.issued,
            "expires": self.expires or None,
            "revoked": self.revoked or None,
            "status": self.status(now),
        }


ROLE_TAG = "natsmesh-role:"  # the JWT's tags say the cluster, role and streams: a creds file says what it is
STREAM_TAG = "natsmesh-stream:"
CLUSTER_TAG = "natsmesh-cluster:"


def tags(cluster: str, role: Role, streams: tuple[str, ...]) -> tuple[str, ...]:
    return (f"{CLUSTER_TAG}{cluster}", f"{ROLE_TAG}{role}", *(f"{STREAM_TAG}{s}" for s in streams))


def described(token: str) -> ServiceUser:
    """The user a creds file's JWT TOKEN describes; ValueError if it is no user JWT of natsmesh's."""
    claims = jwt.decode(token)
    nats = claims.get("nats") if isinstance(claims.get("nats"), dict) else None
    if nats is None or nats.get("type") != "user":
        raise ValueError("not a user JWT")
    found = [t for t in nats.get("tags") or [] if isinstance(t, str)]
    role = next((t[len(ROLE_TAG) :] for t in found if t.startswith(ROLE_TAG)), "")
    streams = tuple(t[len(STREAM_TAG) :] for t in found if t.startswith(STREAM_TAG))
    cluster = next((t[len(CLUSTER_TAG) :] for t in found if t.startswith(CLUSTER_TAG)), "")
    if not cluster or not NAME_RE.fullmatch(cluster):
        raise ValueError("not a user natsmesh issued (its JWT names no cluster)")
    return ServiceUser(
        cluster,
        str(claims.get("name") or ""),
        str(claims.get("sub") or ""),
        role,
        streams,
        int(claims.get("iat") or 0),
        int(claims.get("exp") or 0),
    )


def users_of(cluster: str, docs: Iterable[AccessDoc], signers: Collection[str]) -> list[ServiceUser]:
    """Every user CLUSTER issued, as its signed records (DOCS, by one of SIGNERS) say, newest first; a record
    of the same second as another is taken in the order issue, revocation."""
    users: dict[str, ServiceUser] = {}
    for d in sorted(docs, key=lambda d: (d.issued, KINDS.index(d.kind), d.id)):
        if d.kind not in USER_KINDS or d.domain != cluster or d.signer not in signers:
            continue
        if d.kind == "user-issue":
            users[d.key] = ServiceUser(cluster, d.user, d.key, d.role, d.streams, d.issued, d.expires)
        elif d.key in users:
            users[d.key] = replace(users[d.key], revoked=d.issued)
    return sorted(users.values(), key=lambda u: -u.issued)
