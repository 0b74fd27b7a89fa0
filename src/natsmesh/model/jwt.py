"""NATS JWTs (v2) as nats-server reads them: claims as typed data, encoded and signed with nkeys. Pure.

A token is `base64url(header).base64url(claims).base64url(signature)`, the ed25519 signature made by the issuer's
nkey over `header.claims`. The claims are written byte for byte as the Go library nats-io/jwt v2 (nsc, nats-server)
writes them: its field order, its omitted empty fields, its sorted maps and lists, its HTML-safe JSON escapes, and
its `jti` (unpadded base32 of the SHA-512/256 of the JSON of the top-level claims other than `nats`, before `jti`
is set). Limits default to unlimited, as that library's constructors set them: an account JWT written without
limits is read by nats-server as all-zero limits and refuses every connection.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

NO_LIMIT = -1
VERSION = 2
ALGORITHM = "ed25519-nkey"
HEADER = {"typ": "JWT", "alg": ALGORITHM}
ExportKind = Literal["stream", "service"]
Json = dict[str, Any]
# nkey prefix bytes of public keys, by the letter they encode to
_PUBLIC_PREFIXES = {"O": 14 << 3, "A": 0, "U": 20 << 3, "N": 13 << 3, "C": 2 << 3}
_GO_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


@dataclass(frozen=True, kw_only=True)
class Permission:
    """Subjects allowed and denied for publish or subscribe (empty: no rule)."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ResponsePermission:
    """Replies allowed to requests received: `max` messages within `ttl` (Go `time.Duration`, nanoseconds)."""

    max_msgs: int = 1
    ttl_ns: int = 0


@dataclass(frozen=True, kw_only=True)
class Permissions:
    pub: Permission = field(default_factory=Permission)
    sub: Permission = field(default_factory=Permission)
    resp: ResponsePermission | None = None


@dataclass(frozen=True, kw_only=True)
class JetStreamLimits:
    """An account's JetStream limits (0 storage: JetStream off; -1: unlimited)."""

    mem_storage: int = 0
    disk_storage: int = 0
    streams: int = 0
    consumer: int = 0
    max_ack_pending: int = 0
    mem_max_stream_bytes: int = 0
    disk_max_stream_bytes: int = 0
    max_bytes_required: bool = False


JETSTREAM_UNLIMITED = JetStreamLimits(mem_storage=NO_LIMIT, disk_storage=NO_LIMIT, streams=NO_LIMIT, consumer=NO_LIMIT)


@dataclass(frozen=True, kw_only=True)
class AccountLimits:
    """An account's limits, unlimited by default; `jetstream` and `tiered_limits` (by tier such as R1, R3)
    exclude each other."""

    subs: int = NO_LIMIT
    data: int = NO_LIMIT
    payload: int = NO_LIMIT
    imports: int = NO_LIMIT
    exports: int = NO_LIMIT
    wildcards: bool = True
    disallow_bearer: bool = False
    conn: int = NO_LIMIT
    leaf: int = NO_LIMIT
    jetstream: JetStreamLimits = field(default_factory=JetStreamLimits)
    tiered_limits: Mapping[str, JetStreamLimits] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Export:
    subject: str
    kind: ExportKind
    name: str = ""
    token_req: bool = False
    revocations: Mapping[str, int] = field(default_factory=dict)  # importing account -> unix seconds
    response_type: str = ""  # services: Singleton (default), Stream or Chunked
    account_token_position: int = 0


@dataclass(frozen=True, kw_only=True)
class Import:
    """An import of ACCOUNT's export SUBJECT, seen here as `local_subject` (or, for streams, under prefix `to`,
    the older form); `token` is the exporter's activation JWT when the export requires one."""

    account: str
    subject: str
    kind: ExportKind
    name: str = ""
    token: str = ""
    to: str = ""
    local_subject: str = ""
    share: bool = False


@dataclass(frozen=True, kw_only=True)
class _Claims:
    """What every JWT has: its subject's public key, a name, an expiry (unix seconds, 0: never)."""

    TYPE: ClassVar[str]
    SUBJECTS: ClassVar[str]  # letters the subject's public key may start with ("": any)
    SIGNERS: ClassVar[str]  # likewise, the signer's

    subject: str
    name: str = ""
    expires: int = 0

    def nats(self) -> Json:
        """The `nats` object, without `type` and `version`."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class OperatorClaims(_Claims):
    TYPE = "operator"
    SUBJECTS = "O"
    SIGNERS = "O"

    signing_keys: tuple[str, ...] = ()
    account_server_url: str = ""
    operator_service_urls: tuple[str, ...] = ()
    system_account: str = ""
    strict_signing_key_usage: bool = False

    def nats(self) -> Json:
        return _kept(
            signing_keys=list(self.signing_keys),
            account_server_url=self.account_server_url,
            operator_service_urls=list(self.operator_service_urls),
            system_account=self.system_account,
            strict_signing_key_usage=self.strict_signing_key_usage,
        )


@dataclass(frozen=True, kw_only=True)
class UserTemplate:
    """What every user a scoped signing key signs may do, whatever the user's own JWT says (it must say nothing):
    its permissions, limits and connection types (empty: any)."""

    permissions: Permissions = field(default_factory=Permissions)
    src: tuple[str, ...] = ()
    subs: int = NO_LIMIT
    data: int = NO_LIMIT
    payload: int = NO_LIMIT
    bearer_token: bool = False
    allowed_connection_types: tuple[str, ...] = ()

    def nats(self) -> Json:
        return _user_limits(self)


@dataclass(frozen=True, kw_only=True)
class UserScope:
    """An account signing KEY whose users get TEMPLATE and nothing else (`role` names what they are for); the server
    refuses a user it signed that says any permission or limit of its own."""

    key: str
    role: str = ""
    template: UserTemplate = field(default_factory=UserTemplate)
    description: str = ""

    def nats(self) -> Json:
        return {
            "kind": "user_scope",
            "key": self.key,
            "role": self.role,
            "template": self.template.nats(),
            "description": self.description,
        }


@dataclass(frozen=True, kw_only=True)
class AccountClaims(_Claims):
    """An account, signed by the operator (or one of its signing keys); `revocations` maps user public keys (or
    `*`) to the unix time before which their JWTs are revoked."""

    TYPE = "account"
    SUBJECTS = "A"
    SIGNERS = "OA"

    imports: tuple[Import, ...] = ()
    exports: tuple[Export, ...] = ()
    limits: AccountLimits = field(default_factory=AccountLimits)
    signing_keys: tuple[str | UserScope, ...] = ()
    revocations: Mapping[str, int] = field(default_factory=dict)
    default_permissions: Permissions = field(default_factory=Permissions)

    def nats(self) -> Json:
        listed = _kept(
            imports=[_import(i) for i in sorted(self.imports, key=lambda i: i.subject)],
            exports=[_export(e) for e in sorted(self.exports, key=lambda e: e.subject)],
        )
        # Go keeps signing keys in a map by key: one entry each, sorted, a scoped one written as its scope
        by_key = {k if isinstance(k, str) else k.key: k for k in self.signing_keys}
        signing = [k if isinstance(k, str) else k.nats() for _, k in sorted(by_key.items())]
        keys = _kept(signing_keys=signing, revocations=_sorted(self.revocations))
        # Go writes struct-valued fields even when empty: limits, default_permissions, authorization
        perms = {"default_permissions": _permissions(self.default_permissions), "authorization": {}}
        return listed | {"limits": _limits(self.limits)} | keys | perms


@dataclass(frozen=True, kw_only=True)
class UserClaims(_Claims):
    """A user, signed by its account or by one of the account's signing keys (then `issuer_account` names the
    account); `allowed_connection_types` such as STANDARD, WEBSOCKET, LEAFNODE (empty: any)."""

    TYPE = "user"
    SUBJECTS = "U"
    SIGNERS = "A"

    permissions: Permissions = field(default_factory=Permissions)
    src: tuple[str, ...] = ()  # CIDRs the user may connect from
    subs: int = NO_LIMIT
    data: int = NO_LIMIT
    payload: int = NO_LIMIT
    bearer_token: bool = False
    allowed_connection_types: tuple[str, ...] = ()
    issuer_account: str = ""
    tags: tuple[str, ...] = ()  # what the user is for, as its signer wrote it (the server reads nothing of them)

    def nats(self) -> Json:
        return _user_limits(self) | _kept(issuer_account=self.issuer_account, tags=list(self.tags))


@dataclass(frozen=True, kw_only=True)
class ActivationClaims(_Claims):
    """An exporter's grant of IMPORT_SUBJECT to the importing account, the SUBJECT; signed by the exporting
    account or one of its signing keys (then `issuer_account` names the exporter)."""

    TYPE = "activation"
    SUBJECTS = "A"
    SIGNERS = "AO"

    import_subject: str
    import_kind: ExportKind
    issuer_account: str = ""

    def nats(self) -> Json:
        return _kept(subject=self.import_subject, kind=self.import_kind, issuer_account=self.issuer_account)


@dataclass(frozen=True, kw_only=True)
class GenericClaims(_Claims):
    """Claims of no fixed kind; `data` is the `nats` object (written with sorted keys, as Go writes a map)."""

    TYPE = ""
    SUBJECTS = ""
    SIGNERS = ""

    data: Mapping[str, Any] = field(default_factory=dict)

    def nats(self) -> Json:
        return dict(self.data)


Claims = OperatorClaims | AccountClaims | UserClaims | ActivationClaims | GenericClaims


def delete_accounts_request(operator: str, accounts: Sequence[str]) -> GenericClaims:
    """The request nats-server's full resolver takes on `$SYS.REQ.CLAIMS.DELETE`, as nsc writes it: generic claims
    with `nats.accounts` and no type, about the key that signs them: the OPERATOR's own key, or under strict
    signing keys one of its signing keys (nats-server 2.15: "not trusted" / "not self signed" otherwise)."""
    return GenericClaims(subject=operator, data={"accounts": list(accounts)})


def public_key(seed: str) -> str:
    """The public nkey of SEED."""
    return str(_keypair(seed).public_key.decode())


def encode(claims: Claims, signer_seed: str, issued_at: int) -> str:
    """CLAIMS as a JWT issued at ISSUED_AT (unix seconds) by the nkey of SIGNER_SEED, as nats-io/jwt writes it."""
    keypair = _keypair(signer_seed)
    issuer = str(keypair.public_key.decode())
    _check_key(claims.subject, claims.SUBJECTS, "subject")
    _check_key(issuer, claims.SIGNERS, "signer")
    if issued_at <= 0:
        raise ValueError(f"issued_at must be a positive unix time, got {issued_at}")
    nats = claims.nats() | _kept(type=claims.TYPE, version=VERSION)
    if isinstance(claims, GenericClaims):
        nats = _sorted(nats)
    jti = _base32(hashlib.new("sha512_256", _json(_top(claims, issuer, issued_at))).digest())
    body = _top(claims, issuer, issued_at, jti) | {"nats": nats}
    signed = f"{_b64(_json(HEADER))}.{_b64(_json(body))}"
    return f"{signed}.{_b64(bytes(keypair.sign(signed.encode())))}"


def decode(token: str) -> Json:
    """The claims of TOKEN, a NATS v2 JWT; raises ValueError if it is not one. The signature is not checked here:
    `verify` does that."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError(f"a JWT has 3 parts separated by dots, this one has {len(parts)}")
    header = json.loads(_unb64(parts[0]))
    if not isinstance(header, dict) or str(header.get("typ", "")).upper() != "JWT":
        raise ValueError("not a JWT: its header's typ is not JWT")
    if str(header.get("alg", "")).lower() != ALGORITHM:
        raise ValueError(f"not a NATS v2 JWT: its algorithm is {header.get('alg')!r}, not {ALGORITHM}")
    claims = json.loads(_unb64(parts[1]))
    if not isinstance(claims, dict):
        raise ValueError("not a JWT: its claims are not a JSON object")
    return claims


def says(token: str) -> Json:
    """What TOKEN says, its issue time and id aside (two JWTs of the same claims issued at different times say
    the same); raises ValueError if it is not a JWT."""
    return {k: v for k, v in decode(token).items() if k not in ("iat", "jti")}


def verify(token: str) -> bool:
    """Whether TOKEN is a NATS v2 JWT signed by the key its `iss` names (nothing about who that key is)."""
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    try:
        issuer = decode(token)["iss"]
        signed, _, signature = token.rpartition(".")
        VerifyKey(_raw_public(str(issuer))).verify(signed.encode(), _unb64(signature))
    except (ValueError, KeyError, TypeError, BadSignatureError):
        return False
    return True


def activation_problem(token: str, importer: str, exporter: Json, subject: str, now: int) -> str:
    """Why an import of SUBJECT by account IMPORTER, carrying activation TOKEN, does not hold against the
    exporting account's claims EXPORTER (as its JWT says them) at NOW (unix seconds); "" if nothing is seen wrong.
    The checks nats-server makes, said in words (it logs them only at debug level)."""
    owner = str(exporter.get("sub") or "")
    if not token:
        return "it carries no activation from the exporting account"
    try:
        claims = decode(token)
    except ValueError as exc:
        return f"its activation is not a JWT ({exc})"
    if not verify(token):
        return "its activation's signature does not match the key it names"
    nats: Json = claims["nats"] if isinstance(claims.get("nats"), dict) else {}
    listed = (exporter.get("nats") or {}).get("signing_keys") or []
    keys = {owner, *(str(k.get("key")) if isinstance(k, dict) else str(k) for k in listed)}
    if str(claims.get("iss")) not in keys:
        return f"its activation is signed by {claims.get('iss')}, which is not a key of the exporting account"
    if str(claims.get("sub")) != importer:
        return f"its activation is for another account ({claims.get('sub')})"
    if (exp := int(claims.get("exp") or 0)) and exp <= now:
        return f"its activation expired at {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(exp))}"
    if str(nats.get("subject")) != subject:
        return f"its activation grants {nats.get('subject')}, not {subject}"
    for export in (exporter.get("nats") or {}).get("exports") or []:
        revoked = (export.get("revocations") or {}) if isinstance(export, dict) else {}
        if (at := revoked.get(importer) or revoked.get("*")) and int(claims.get("iat") or 0) <= int(at):
            return "the exporting account revoked it"
    return ""


def creds_file(user_jwt: str, user_seed: str) -> str:
    """The `.creds` text of a user, as nsc and nats-io/jwt write it; the seed must be that of the JWT's subject."""
    claims = decode(user_jwt)
    nats = claims.get("nats")
    if not isinstance(nats, dict) or nats.get("type") != UserClaims.TYPE:
        raise ValueError("a creds file holds a user JWT, this one is not")
    seed = user_seed.strip()
    if not seed.startswith("SU") or public_key(seed) != claims.get("sub"):
        raise ValueError("the seed is not that of the JWT's user")
    return (
        f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )


def _top(claims: _Claims, issuer: str, issued_at: int, jti: str = "") -> Json:
    """The top-level claims but `nats`, in Go's order (aud exp jti iat iss name nbf sub), empty ones left out."""
    return _kept(exp=claims.expires, jti=jti, iat=issued_at, iss=issuer, name=claims.name, sub=claims.subject)


def _kept(**fields: Any) -> Json:
    """FIELDS in order, without those Go's `omitempty` leaves out: zero, false, empty."""
    return {k: v for k, v in fields.items() if v is not None and v != 0 and v != "" and v != [] and v != {}}


def _sorted(value: Any) -> Any:
    """VALUE with every mapping's keys sorted, as Go writes its maps."""
    if isinstance(value, Mapping):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [_sorted(v) for v in value]
    return value


def _user_limits(u: UserTemplate | UserClaims) -> Json:
    """What a user may do as Go writes it (its embedded `UserPermissionLimits`): a user's own, or a scope's template."""
    return _permissions(u.permissions) | _kept(
        src=list(u.src),
        subs=u.subs,
        data=u.data,
        payload=u.payload,
        bearer_token=u.bearer_token,
        allowed_connection_types=list(u.allowed_connection_types),
    )


def _permissions(p: Permissions) -> Json:
    rules = {"pub": _kept(allow=list(p.pub.allow), deny=list(p.pub.deny))}
    rules["sub"] = _kept(allow=list(p.sub.allow), deny=list(p.sub.deny))
    return rules if p.resp is None else rules | {"resp": {"max": p.resp.max_msgs, "ttl": p.resp.ttl_ns}}


def _jetstream(j: JetStreamLimits) -> Json:
    return _kept(
        mem_storage=j.mem_storage,
        disk_storage=j.disk_storage,
        streams=j.streams,
        consumer=j.consumer,
        max_ack_pending=j.max_ack_pending,
        mem_max_stream_bytes=j.mem_max_stream_bytes,
        disk_max_stream_bytes=j.disk_max_stream_bytes,
        max_bytes_required=j.max_bytes_required,
    )


def _limits(lim: AccountLimits) -> Json:
    plain = _kept(
        subs=lim.subs,
        data=lim.data,
        payload=lim.payload,
        imports=lim.imports,
        exports=lim.exports,
        wildcards=lim.wildcards,
        disallow_bearer=lim.disallow_bearer,
        conn=lim.conn,
        leaf=lim.leaf,
    )
    tiers = {tier: _jetstream(lim.tiered_limits[tier]) for tier in sorted(lim.tiered_limits)}
    return plain | _jetstream(lim.jetstream) | _kept(tiered_limits=tiers)


def _export(e: Export) -> Json:
    return _kept(
        name=e.name,
        subject=e.subject,
        type=e.kind,
        token_req=e.token_req,
        revocations=_sorted(e.revocations),
        response_type=e.response_type,
        account_token_position=e.account_token_position,
    )


def _import(i: Import) -> Json:
    return _kept(
        name=i.name,
        subject=i.subject,
        account=i.account,
        token=i.token,
        to=i.to,
        local_subject=i.local_subject,
        type=i.kind,
        share=i.share,
    )


def _json(value: Any) -> bytes:
    """VALUE as Go's encoding/json writes it: compact, UTF-8, with <, >, &, U+2028 and U+2029 escaped."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.translate(_GO_ESCAPES).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _base32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=")


def _keypair(seed: str) -> Any:
    import nkeys  # loads libsodium: only when a key is used

    try:
        return nkeys.from_seed(bytearray(seed.strip().encode()))
    except nkeys.NkeysError:
        raise ValueError("not an nkey seed") from None


def _raw_public(key: str) -> bytes:
    """The 32 ed25519 bytes of public nkey KEY; raises ValueError if KEY is not one (prefix, length, checksum)."""
    import nkeys

    raw = base64.b32decode(key.encode()) if len(key) == 56 else b""
    if len(raw) != 35 or _PUBLIC_PREFIXES.get(key[0]) != raw[0]:
        raise ValueError(f"not a public nkey: {key[:60]!r}")
    if int(nkeys.crc16(bytearray(raw[:-2]))) != int.from_bytes(raw[-2:], "little"):
        raise ValueError(f"public nkey {key!r} fails its checksum")
    return raw[1:-2]


def public_problem(key: object, letter: str) -> str | None:
    """What is wrong with KEY as a public nkey whose first letter is LETTER (A: account, U: user, O: operator), or
    None."""
    if not isinstance(key, str):
        return f"a public nkey is a string starting with {letter}"
    try:
        _raw_public(key)
    except ValueError as exc:
        return str(exc)
    if key[0] != letter:
        return f"a public nkey starting with {letter} is wanted, this one starts with {key[0]}"
    return None


def _check_key(key: str, letters: str, role: str) -> None:
    _raw_public(key)
    if letters and key[0] not in letters:
        raise ValueError(f"the {role} of this JWT must be a public nkey starting with one of {letters}, got {key}")
