"""The audit trail's entries: who did what, when and why, each signed by the key that acted. Pure.

A domain's acts are its access documents (`natsmesh.model.access`), signed by its account's key. The platform's
own acts (an `apply` and its plan, a link revoked or issued) are events signed by the operator's signing key,
which the hub's operator JWT names. `verify` says of any entry whether its signature holds and whose key made it,
offline, from public keys alone; a changed byte fails it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from natsmesh.model import jwt
from natsmesh.model.access import USER_KINDS, AccessDoc, Keys, NotADocument, doc_id, read

EVENT_NAME = "natsmesh-event"
MAX_CHANGES = 200  # rows of a plan kept in an apply's event (the rest counted)
MAX_TEXT = 300  # characters of each field of a row kept


def sign_event(event: str, signer: str, seed: str, issued: int | None = None, **detail: Any) -> str:
    """A platform EVENT (`apply`, `link-revoke`, ...) with DETAIL, signed by SEED (the operator's signing key,
    whose public key is SIGNER)."""
    at = int(issued if issued is not None else time.time())
    data = {"natsmesh": "event", "event": event, "detail": dict(detail)}
    return jwt.encode(jwt.GenericClaims(subject=signer, name=EVENT_NAME, data=data), seed, at)


def plan_detail(rows: list[dict[str, Any]], summary: Mapping[str, int]) -> dict[str, Any]:
    """What an apply's event says of its plan: the counts, and every row that changed something (at most
    MAX_CHANGES, the rest counted)."""
    changed = [r for r in rows if r.get("action") not in ("unchanged", None)]
    kept = [
        {k: str(r.get(k) or "")[:MAX_TEXT] for k in ("action", "domain", "kind", "name", "detail")}
        for r in changed[:MAX_CHANGES]
    ]
    return {"summary": dict(summary), "changes": kept, "more": max(0, len(changed) - MAX_CHANGES)}


def iso_time(t: int) -> str:
    """T (unix seconds) as ISO 8601 UTC; what it is, if no calendar holds it."""
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    except (OverflowError, OSError, ValueError):
        return str(t)


@dataclass(frozen=True)
class Entry:
    """One entry of the audit trail as read and checked: when, who (a domain, or "platform"), what, about what,
    why, whether its signature holds for that actor (VALID) and, for a refused document, why it was refused."""

    id: str
    issued: int
    actor: str
    signer: str
    what: str
    about: str
    reason: str
    valid: bool
    refused: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "time": iso_time(self.issued),
            "actor": self.actor,
            "signer": self.signer,
            "what": self.what,
            "about": self.about,
            "reason": self.reason,
            "valid": self.valid,
        }
        return (
            out | ({"refused": self.refused} if self.refused else {}) | ({"detail": self.detail} if self.detail else {})
        )


def _doc_entry(doc: AccessDoc, keys: Mapping[str, Keys], refused: str, about: str) -> Entry:
    own = keys.get(doc.domain)
    valid = own is not None and doc.signer in own.signers
    what = doc.kind + (f" until {iso_time(doc.expires)}" if doc.expires else "")
    return Entry(doc.id, doc.issued, doc.domain, doc.signer, what, about, doc.reason, valid, refused)


def verify(
    token: str,
    keys: Mapping[str, Keys],
    platform: str,
    requests: Mapping[str, str] | None = None,
    refused: str = "",
) -> Entry:
    """The entry TOKEN, checked: an access document against its domain's KEYS, a platform event against PLATFORM
    (the operator's signing public key). REQUESTS: request id -> product, to say what an answer is about. An
    entry whose signature fails (a tampered one) is returned with `valid` False and says what it could read."""
    try:
        doc = read(token)
    except NotADocument as exc:
        return _event(token, platform, str(exc))
    if doc.kind in USER_KINDS:
        return _doc_entry(doc, keys, refused, f"user {doc.user} ({doc.role}, {doc.key})")
    about = doc.product or (requests or {}).get(doc.request, "") or doc.request
    if doc.kind != "request" and doc.request:
        about = f"{about} (request {doc.request})" if about != doc.request else f"request {doc.request}"
    return _doc_entry(doc, keys, refused, about)


def _event(token: str, platform: str, why_not_doc: str) -> Entry:
    ident = doc_id(token)
    try:
        claims = jwt.decode(token)
    except (ValueError, UnicodeDecodeError):
        return Entry(ident, 0, "?", "", "unreadable", "", why_not_doc, False)
    nats = claims.get("nats") if isinstance(claims.get("nats"), dict) else {}
    assert isinstance(nats, dict)
    signer = str(claims.get("iss") or "")
    if claims.get("name") != EVENT_NAME or nats.get("natsmesh") != "event":
        return Entry(ident, int(claims.get("iat") or 0), "?", signer, "unknown", "", why_not_doc, False)
    detail = nats.get("detail") if isinstance(nats.get("detail"), dict) else {}
    assert isinstance(detail, dict)
    valid = jwt.verify(token) and signer == platform
    event = str(nats.get("event") or "")
    about = str(detail.get("about") or "")
    summary = detail.get("summary")
    if isinstance(summary, dict) and not about:
        about = ", ".join(f"{n} {a}" for a, n in summary.items() if n) or "no change"
    return Entry(ident, int(claims.get("iat") or 0), "platform", signer, event[:40], about, "", valid, "", detail)
