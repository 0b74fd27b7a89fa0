"""Access to private products, asked and answered by the domains themselves. Pure.

A domain asks for another domain's product (a *request*: the copy's name, mirror or source, an optional filter and
a reason, the words a spec's `consumes:` entry uses); the product's owner *grants* it (optionally until a time),
*denies* it with a reason, or later *revokes* the grant. Each is a document signed by the acting domain's account
signing key (a JWT, `natsmesh.model.jwt`), so whoever relays or stores it cannot forge or alter one unnoticed, and
anyone holding the domains' public keys can check it offline. A grant carries the activation tokens the hub's
servers check before anything crosses (`natsmesh.model.trust.share_services`): the owner's signature is what the
broker enforces, not the platform's word.

`fold` reads a pile of such documents (in any order, duplicates and forgeries included) into the state of each
request, saying why each document it could not take was refused; `with_access` turns the granted ones into
copies of the mesh with the owner's tokens. A copy declared in the spec is a request too (`spec:DOMAIN/COPY`):
where its owner keeps its own account key (`account_key:`), the owner's grant is what lets it flow.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from natsmesh.model import jwt
from natsmesh.model.mesh import Mesh
from natsmesh.model.products import (
    Consumption,
    Share,
    SourceRef,
    retention_allowed,
    subject_problem,
    subjects_overlap,
)
from natsmesh.model.trust import share_services
from natsmesh.model.units import NAME_RE, NAME_RULE, shown

Kind = Literal["request", "grant", "deny", "revoke", "user-issue", "user-revoke"]
Status = Literal["pending", "granted", "denied", "revoked", "expired"]
KINDS: tuple[Kind, ...] = ("request", "grant", "deny", "revoke", "user-issue", "user-revoke")
USER_KINDS: tuple[Kind, ...] = ("user-issue", "user-revoke")  # a domain's users per service (`natsmesh.model.users`)
MAX_STREAMS = 64  # streams one user is named for
DOC_NAME = "natsmesh-access"  # the JWT's `name`: what kind of document it is
MAX_DOC = 16 * 1024  # bytes; a document is a few KiB (a grant carries three activation tokens)
MAX_TIME = 2**33  # unix seconds (the year 2242): later issue or expiry times are refused, not formatted
MAX_OPEN = 100  # requests one domain may have pending at once
NATS_KEYS = frozenset(
    {"natsmesh", "kind", "domain", "product", "copy", "mode", "filter", "reason", "request", "expires", "retain"}
    | {"activations", "user", "key", "role", "streams"}
    | {"version", "type"}
)
TOP_KEYS = frozenset({"jti", "iat", "iss", "name", "sub", "nats", "exp"})
RESERVED_PREFIXES = ("natsmesh_", "KV_", "OBJ_")  # stream names natsmesh or JetStream itself use
MAX_REASON = 1024  # characters
SPEC_PREFIX = "spec:"  # the id of a copy the spec declares, as a request: `spec:CLUSTER/COPY`


@dataclass(frozen=True)
class AccessDoc:
    """One signed act: who (DOMAIN, by the key SIGNER) did KIND when (ISSUED, unix seconds), and about what.

    A request names PRODUCT (`DOMAIN/NAME`), the COPY's name, MODE, FILTER; a grant, denial or revocation names
    the REQUEST's id; a grant may hold until EXPIRES (0: until revoked), may let the copy keep a message RETAIN
    seconds (0: as long as the product lets every copy) and carries ACTIVATIONS (subject -> token)."""

    kind: Kind
    domain: str
    signer: str
    issued: int
    token: str = field(repr=False)
    product: str = ""
    copy: str = ""
    mode: Literal["mirror", "source"] = "mirror"
    filter: str = ""
    reason: str = ""
    request: str = ""
    expires: int = 0
    retain: int = 0
    activations: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    user: str = ""  # a user issued or revoked: its name, public key, role and streams
    key: str = ""
    role: str = ""
    streams: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        """Its id: the first 12 hex digits of the SHA-256 of its token (a request's id is what answers name)."""
        return doc_id(self.token)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "kind": self.kind, "domain": self.domain, "signer": self.signer}
        out["issued"] = self.issued
        if self.kind == "request":
            out |= {"product": self.product, "copy": self.copy, "mode": self.mode, "filter": self.filter or None}
        elif self.kind in USER_KINDS:
            out |= {"user": self.user, "key": self.key, "role": self.role, "streams": list(self.streams)}
            out |= {"expires": self.expires or None}
        else:
            out["request"] = self.request
        if self.kind == "grant":
            out |= {"expires": self.expires or None, "retain": self.retain or None}
        return out | {"reason": self.reason}


def doc_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def sign(kind: Kind, domain: str, account: str, signing_seed: str, issued: int | None = None, **what: Any) -> AccessDoc:
    """A KIND document by DOMAIN (whose account's public key is ACCOUNT), signed with its SIGNING_SEED; WHAT: the
    fields `AccessDoc` has for that kind. The document is checked by `read` before it is returned."""
    at = int(issued if issued is not None else time.time())
    data: dict[str, Any] = {"natsmesh": "access", "kind": kind, "domain": domain}
    for key in ("product", "copy", "mode", "filter", "reason", "request", "expires", "retain", "user", "key", "role"):
        if what.get(key):
            data[key] = what[key]
    if what.get("streams"):
        data["streams"] = list(what["streams"])
    if what.get("activations"):
        data["activations"] = dict(what["activations"])
    claims = jwt.GenericClaims(subject=account, name=DOC_NAME, data=data)
    return read(jwt.encode(claims, signing_seed, at))


class NotADocument(ValueError):
    """A token that is no access document (or whose signature does not match the key it names)."""


def read(token: str) -> AccessDoc:
    """The access document TOKEN; `NotADocument` saying why if it is none or its signature does not hold. Who
    the signer is (whether the key is its domain's) is `fold`'s question."""
    if len(token) > MAX_DOC:
        raise NotADocument(f"larger than {MAX_DOC} bytes")
    try:
        claims = jwt.decode(token)
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotADocument(f"not a JWT ({exc})") from None
    if not jwt.verify(token):
        raise NotADocument("its signature does not match the key it names")
    nats = claims.get("nats")
    if claims.get("name") != DOC_NAME or not isinstance(nats, dict) or nats.get("natsmesh") != "access":
        raise NotADocument("a JWT, but not a natsmesh access document")
    if set(claims) - TOP_KEYS or set(nats) - NATS_KEYS:
        raise NotADocument("an access document with claims natsmesh does not write")
    issued = claims.get("iat")
    if not isinstance(issued, int) or not 0 < issued < MAX_TIME:
        raise NotADocument("its issue time is missing or out of range")
    kind, domain = nats.get("kind"), nats.get("domain")
    if kind not in KINDS or not isinstance(domain, str) or not NAME_RE.fullmatch(domain):
        raise NotADocument(f"an access document of unknown kind {shown(kind)} or domain {shown(domain)}")
    text = _texts(nats)
    expires, retain = nats.get("expires", 0), nats.get("retain", 0)
    if not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < MAX_TIME for t in (expires, retain)):
        raise NotADocument("its expiry or retention is malformed")
    acts, streams = _lists(nats)
    return AccessDoc(
        kind=kind,
        domain=domain,
        signer=str(claims.get("iss")),
        issued=issued,
        token=token,
        product=text["product"],
        copy=text["copy"],
        mode="source" if text["mode"] == "source" else "mirror",
        filter=text["filter"],
        reason=text["reason"],
        request=text["request"],
        expires=expires,
        retain=retain,
        activations=tuple(sorted((str(k), v) for k, v in acts.items())),
        user=text["user"],
        key=text["key"],
        role=text["role"],
        streams=tuple(streams),
    )


def _texts(nats: dict[str, Any]) -> dict[str, str]:
    """The text fields NATS holds; `NotADocument` if one is not text or the reason is too long or unprintable."""
    text = {
        k: nats.get(k, "") for k in ("product", "copy", "mode", "filter", "reason", "request", "user", "key", "role")
    }
    if not all(isinstance(v, str) for v in text.values()):
        raise NotADocument("a field that should be text is not")
    if len(text["reason"]) > MAX_REASON or any(ord(c) < 32 and c != "\n" for c in text["reason"]):
        raise NotADocument(f"its reason is over {MAX_REASON} characters or holds control characters")
    return text


def _lists(nats: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The activations and the streams NATS holds; `NotADocument` if they are malformed."""
    acts, streams = nats.get("activations") or {}, nats.get("streams") or []
    if not isinstance(acts, dict) or len(acts) > 3:
        raise NotADocument("its activations are malformed")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in acts.items()):
        raise NotADocument("its activations are malformed")
    if not isinstance(streams, list) or len(streams) > MAX_STREAMS or not all(isinstance(s, str) for s in streams):
        raise NotADocument("its streams are malformed")
    return acts, streams


@dataclass(frozen=True)
class Keys:
    """A domain's account public key and the keys that may sign for it (its account key and signing key)."""

    account: str
    signing: str

    @property
    def signers(self) -> frozenset[str]:
        return frozenset({self.account, self.signing} - {""})


@dataclass
class Access:
    """The state of one request: its document (None for a copy the spec declares), who asked for what, its status
    and why, and the grant in force (or last in force)."""

    id: str
    requester: str
    product: str
    copy: str
    mode: Literal["mirror", "source"]
    filter: str
    status: Status
    reason: str = ""  # the request's own reason
    answer: str = ""  # the owner's reason for a denial or revocation
    requested: int = 0
    decided: int = 0
    expires: int = 0
    retain: int = 0  # seconds the grant lets the copy keep a message (0: what the product lets every copy)
    request: AccessDoc | None = None
    grant: AccessDoc | None = None

    cluster: str = ""  # the cluster the product lives on: its key signs the activations, its folder answers

    @property
    def owner(self) -> str:
        """Who answers: the cluster the product lives on (its owning domain's, or another of that domain's)."""
        return self.cluster or self.product.split("/", 1)[0]

    @property
    def declared(self) -> bool:
        """A copy the spec declares (not asked for with `access request`)."""
        return self.id.startswith(SPEC_PREFIX)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "requester": self.requester,
            "product": self.product,
            "copy": self.copy,
            "mode": self.mode,
            "filter": self.filter or None,
            "status": self.status,
            "reason": self.reason,
            "answer": self.answer,
            "requested": self.requested or None,
            "decided": self.decided or None,
            "expires": self.expires or None,
            "retain": self.retain or None,
        }


@dataclass(frozen=True)
class Refused:
    """A document `fold` did not take, and why (said to its author)."""

    doc: AccessDoc
    why: str

    def to_json(self) -> dict[str, Any]:
        return self.doc.to_json() | {"refused": self.why}


@dataclass
class Ledger:
    """Every request's state by id, the documents refused, and the documents taken (in the order taken)."""

    requests: dict[str, Access] = field(default_factory=dict)
    refused: list[Refused] = field(default_factory=list)
    taken: list[AccessDoc] = field(default_factory=list)

    def about(self, domain: str) -> Ledger:
        """What DOMAIN may see: requests it made or that name its products, and its own refused documents."""
        requests = {k: a for k, a in self.requests.items() if domain in (a.requester, a.owner)}
        refused = [r for r in self.refused if r.doc.domain == domain]
        taken = [
            d
            for d in self.taken
            if d.domain == domain or d.id in requests or (d.kind != "request" and d.request in requests)
        ]
        return Ledger(requests, refused, taken)

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": [a.to_json() for _, a in sorted(self.requests.items(), key=lambda x: x[1].requested)],
            "refused": [r.to_json() for r in self.refused],
        }


def share_of(mesh: Mesh, requester: str, product: str, copy: str, filter: str = "") -> Share:
    """The share a copy COPY of PRODUCT in REQUESTER's cluster reads through (KeyError: no such product)."""
    p = mesh.product(product)
    return Share(p.domain, p.name, requester, copy, filter or None, p.team)


def share_subjects(share: Share) -> list[str]:
    """The owner's subjects the copy's domain imports for SHARE: each needs the owner's activation."""
    return [s for s, _ in share_services(share)] + [share.deliver]


def activations(
    mesh: Mesh, keys: Mapping[str, Keys], access: Access, signing_seed: str, expires: int, issued: int
) -> dict[str, str]:
    """The activation tokens the owner of ACCESS's product signs for its copy (subject -> token)."""
    share = share_of(mesh, access.requester, access.product, access.copy, access.filter)
    owner = share.owner  # the cluster the product lives on: its account exports it at the hub
    out = {}
    for subject in share_subjects(share):
        claims = jwt.ActivationClaims(
            subject=keys[access.requester].account,
            import_subject=subject,
            import_kind="stream" if subject == share.deliver else "service",
            issuer_account=keys[owner].account,
            expires=expires,
        )
        out[subject] = jwt.encode(claims, signing_seed, issued)
    return out


def _request_problem(mesh: Mesh, doc: AccessDoc, open_copies: set[tuple[str, str]]) -> str | None:
    try:
        p = mesh.product(doc.product)
    except KeyError:
        return f"there is no product {shown(doc.product)} in mesh {mesh.name}"
    if p.owner_domain == doc.domain:
        return f"{doc.product} is {doc.domain}'s own product: a domain does not ask for access to its own"
    if p.public:
        return f"{doc.product} is public: every domain may take it without a grant (declare the copy in the spec)"
    if not NAME_RE.fullmatch(doc.copy) or len(doc.copy) > 255:
        return f"invalid copy name {shown(doc.copy)}: use {NAME_RULE}"
    if doc.filter:
        if (why := subject_problem(doc.filter)) is not None:
            return f"its filter {shown(doc.filter)}: {why}"
        if not any(subjects_overlap(doc.filter, s) for s in p.subjects):
            return f"its filter {doc.filter} matches none of {doc.product}'s subjects ({', '.join(p.subjects)})"
    if doc.copy.startswith(RESERVED_PREFIXES):
        return f"invalid copy name {doc.copy}: names starting with {', '.join(RESERVED_PREFIXES)} are natsmesh's"
    taken = {p.name for p in mesh.products if p.domain == doc.domain}
    taken |= {c.stream for c in mesh.consumptions if c.domain == doc.domain and c.request != doc.id}
    if doc.copy in taken or (doc.domain, doc.copy) in open_copies:
        return f"{doc.domain} already has a stream or an open request named {doc.copy}"
    return None


def _activation_problem(doc: AccessDoc, access: Access, mesh: Mesh, keys: Mapping[str, Keys]) -> str | None:
    """Why the activations of grant DOC do not let ACCESS's copy flow exactly as asked when it was issued (its
    expiry is the request's status, not the grant's fault), or None."""
    share = share_of(mesh, access.requester, access.product, access.copy, access.filter)
    wanted, given = share_subjects(share), dict(doc.activations)
    if sorted(given) != sorted(wanted):
        said = ", ".join(shown(k) for k in sorted(given)) or "nothing"
        return f"it carries activations for {said}, not for {', '.join(wanted)}"
    owner = keys.get(access.owner)
    if owner is None or access.requester not in keys:
        return f"the mesh names no account keys of {access.owner} or {access.requester}"
    exporter = {"sub": owner.account, "nats": {"signing_keys": [owner.signing]}}
    for subject in wanted:
        try:
            exp = jwt.decode(given[subject]).get("exp") or 0
        except (ValueError, UnicodeDecodeError):
            return f"its activation for {subject} is not a JWT"
        if exp != doc.expires:
            return f"its activation for {subject} expires otherwise than the grant says"
        if why := jwt.activation_problem(given[subject], keys[access.requester].account, exporter, subject, doc.issued):
            return f"its activation for {subject}: {why}"
    return None


def fold(mesh: Mesh, keys: Mapping[str, Keys], docs: Iterable[AccessDoc], now: float | None = None) -> Ledger:
    """The state of every request after DOCS, at NOW. Requests are taken in the order they were issued; an answer
    after the request it answers (one whose request comes later is taken then), answers to one request in the
    order issued; the same document twice is taken once; nothing in a document makes this raise. KEYS: each
    cluster's public keys (a document signed by any other key is refused). The copies the spec declares of
    products whose owner holds its own account key enter as pending requests (`spec:CLUSTER/COPY`, one per
    upstream: `spec:CLUSTER/COPY:DOMAIN/PRODUCT` when there are several) that the owner's grant answers."""
    at = int(now if now is not None else time.time())
    ledger = Ledger()
    for c in mesh.consumptions:
        for s in c.sources:
            if mesh.own_keys_of(s.domain) is None or s.owner_domain == c.domain:
                continue
            rid = f"{SPEC_PREFIX}{c.domain}/{c.stream}" + (f":{s.ref}" if len(c.sources) > 1 else "")
            ledger.requests[rid] = Access(
                rid, c.domain, s.ref, c.stream, c.mode, s.filter or "", "pending", cluster=s.domain
            )
    unique = {d.id: d for d in docs}
    waiting: dict[str, list[AccessDoc]] = {}  # answers whose request is not taken yet, by request id
    order = sorted(unique.values(), key=lambda d: (d.issued, KINDS.index(d.kind), d.id))
    requested = {d.id for d in order if d.kind == "request"}
    for doc in order:
        if doc.kind in ("grant", "deny", "revoke") and doc.request not in ledger.requests and doc.request in requested:
            waiting.setdefault(doc.request, []).append(doc)
            continue
        _one(mesh, keys, ledger, doc, at)
        for answer in waiting.pop(doc.id, []) if doc.kind == "request" else []:
            _one(mesh, keys, ledger, answer, at)
    for answers in waiting.values():  # their request was refused
        for doc in answers:
            _one(mesh, keys, ledger, doc, at)
    for a in ledger.requests.values():
        if a.status == "granted" and a.expires and a.expires <= at:
            a.status = "expired"
    return ledger


def _one(mesh: Mesh, keys: Mapping[str, Keys], ledger: Ledger, doc: AccessDoc, at: int) -> None:
    try:
        why = _take(mesh, keys, ledger, doc, at)
    except Exception as exc:  # a document natsmesh did not foresee: refused, never a failed apply for everyone
        why = f"malformed ({type(exc).__name__})"
    if why is not None:
        ledger.refused.append(Refused(doc, why))
    else:
        ledger.taken.append(doc)


def _take(mesh: Mesh, keys: Mapping[str, Keys], ledger: Ledger, doc: AccessDoc, at: int) -> str | None:
    """Take DOC into LEDGER; why not, if it cannot be taken."""
    own = keys.get(doc.domain)
    if own is None or doc.signer not in own.signers:
        return f"signed by {doc.signer}, which is not a key of {doc.domain}"
    if doc.kind == "request":
        return _take_request(mesh, ledger, doc)
    if doc.kind in USER_KINDS:  # the domain's own business: taken for the audit trail, nothing to fold
        return None if doc.domain in mesh.service_users else f"{doc.domain} has no users of its own"
    return _take_answer(mesh, keys, ledger, doc)


def _take_request(mesh: Mesh, ledger: Ledger, doc: AccessDoc) -> str | None:
    held = [a for a in ledger.requests.values() if a.status == "pending" or a.grant is not None]
    if sum(1 for a in held if a.requester == doc.domain and a.status == "pending") >= MAX_OPEN:
        return f"{doc.domain} has {MAX_OPEN} requests pending already"
    if (why := _request_problem(mesh, doc, {(a.requester, a.copy) for a in held})) is not None:
        return why
    cluster = mesh.product(doc.product).domain
    ledger.requests[doc.id] = Access(
        doc.id,
        doc.domain,
        doc.product,
        doc.copy,
        doc.mode,
        doc.filter,
        "pending",
        doc.reason,
        "",
        doc.issued,
        request=doc,
        cluster=cluster,
    )
    return None


def _take_answer(mesh: Mesh, keys: Mapping[str, Keys], ledger: Ledger, doc: AccessDoc) -> str | None:
    access = ledger.requests.get(doc.request)
    if access is None:
        return f"there is no request {shown(doc.request)}"
    if doc.domain != access.owner:
        who = "its requester" if doc.domain == access.requester else doc.domain
        return f"{who} cannot {doc.kind} request {access.id}: only {access.product}'s owner {access.owner} can"
    if access.status == "granted" and access.expires and access.expires <= doc.issued:
        access.status = "expired"  # as of this answer
    if doc.kind == "grant":
        if access.status not in ("pending", "revoked", "expired"):
            return f"request {access.id} is {access.status}"
        if (why := _activation_problem(doc, access, mesh, keys)) is not None:
            return why
        access.status, access.grant, access.expires, access.answer = "granted", doc, doc.expires, doc.reason
        access.retain = doc.retain
    elif doc.kind == "deny":
        if access.status != "pending":
            return f"request {access.id} is {access.status}: only a pending request is denied (a grant is revoked)"
        access.status, access.answer = "denied", doc.reason
    else:
        if access.status not in ("granted", "expired"):
            return f"request {access.id} is {access.status}: only a granted request is revoked"
        access.status, access.answer = "revoked", doc.reason
    access.decided = doc.issued
    return None


def with_access(mesh: Mesh, ledger: Ledger, now: float | None = None) -> Mesh:
    """MESH with a copy for every request ever granted (a revoked or expired one keeps its stream and data and
    carries no activation, so nothing more flows), and the owners' activations for them: what `apply` makes."""
    at = int(now if now is not None else time.time())
    copies = list(mesh.consumptions)
    tokens: dict[tuple[str, str], str] = dict(((c, s), t) for c, s, t in mesh.activations)
    made: set[tuple[str, str]] = set()
    for a in sorted(ledger.requests.values(), key=lambda x: (x.status != "granted", -x.decided, x.id)):
        flowing = a.status == "granted" and not (a.expires and a.expires <= at)
        if not a.declared and a.grant is None:
            continue  # asked, never granted: no copy
        if not a.declared and (a.requester, a.copy) in made:
            continue  # an older request for the same copy name (`fold` refuses a second one while one holds it)
        made.add((a.requester, a.copy))
        share = share_of(mesh, a.requester, a.product, a.copy, a.filter)
        for subject in share_subjects(share):  # the owner's tokens, or none (a declared copy not granted: none)
            granted = dict(a.grant.activations).get(subject, "") if a.grant is not None else ""
            tokens[(a.requester, subject)] = granted if flowing else ""
        if a.declared or any(c.request == a.id for c in copies):  # (a folder's mesh.json has it already)
            continue
        p = mesh.product(a.product)
        note = f"granted by {a.owner} (request {a.id})"
        source = SourceRef(p.domain, p.name, a.filter or None, None, p.team)
        keep = float(a.retain) or retention_allowed([p])  # the owner's grant, else what the product allows copies
        copies.append(Consumption(a.requester, a.copy, a.mode, (source,), description=note, request=a.id, max_age=keep))
    acts = tuple(sorted((c, s, t) for (c, s), t in tokens.items()))
    return replace(mesh, consumptions=tuple(copies), activations=acts)


def status_of(ledger: Ledger, cluster: str, copy: str, now: float | None = None) -> str | None:
    """What the owner said of CLUSTER's copy COPY, for reports: "granted", "granted until …", "revoked: why",
    "expired at …", "denied: why", "waiting for the owner's grant"; None if no request (nor a declared copy an
    owner with its own key must sign) is behind it."""
    at = now if now is not None else time.time()
    found = [a for a in ledger.requests.values() if a.requester == cluster and a.copy == copy]
    if not found:
        return None
    a = max(found, key=lambda x: (x.grant is not None, x.decided, x.requested))
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(a.expires)) if a.expires else ""
    if (a.status == "granted" and a.expires and a.expires <= at) or a.status == "expired":
        return f"expired at {when}"
    if a.status == "granted":
        return f"granted until {when}" if when else "granted"
    if a.status == "pending":
        return "waiting for the owner's grant"
    return f"{a.status}: {a.answer}" if a.answer else a.status
