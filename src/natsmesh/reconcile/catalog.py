"""The catalog of data products.

Each product's descriptor (domain, the cluster it lives on, subjects, owner, description, tags, limits, where it
is consumed, created and updated times) lives in a JetStream KV bucket in the hub, written by `natsmesh apply`,
which also keeps a read copy in every leaf cluster of what that cluster may read (`visible_keys`: its domain's
own products, those it takes, the public ones), so its clients find those while cut off from the hub. The
whole catalog is the platform's (the hub, `natsmesh serve`). `descriptors` and `visible_keys` are pure; the
lineage graph is `natsmesh.render.lineage`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError

from natsmesh.client import when_answered
from natsmesh.errors import NatsmeshError, UnknownProductError
from natsmesh.model.mesh import Mesh
from natsmesh.model.products import CATALOG_BUCKET, Consumption, Product, catalog_key
from natsmesh.observe.connect import Connections
from natsmesh.reconcile.concurrency import bounded

ELECTION_WAIT = 30.0  # seconds a read of a bucket made a moment ago waits for its leader

TIMESTAMPS = ("created", "updated")
HISTORY = "contract_history"  # every contract a product had before its current one, oldest first


def _consumers(p: Product, consumptions: tuple[Consumption, ...]) -> list[dict[str, Any]]:
    out = []
    for c in consumptions:
        for s in c.sources:
            if s.ref == p.ref:
                entry: dict[str, Any] = {"domain": c.domain, "stream": c.stream, "mode": c.mode}
                if s.filter:
                    entry["filter"] = s.filter
                if s.transform:
                    entry["transform"] = s.transform
                out.append(entry)
    return out


def descriptors(mesh: Mesh) -> dict[str, dict[str, Any]]:
    """Catalog key -> descriptor (without timestamps) for every product of MESH."""
    out = {}
    for p in mesh.products:
        out[catalog_key(p.ref)] = {
            "ref": p.ref,
            "domain": p.owner_domain,
            "cluster": p.domain,
            "name": p.name,
            "subjects": list(p.subjects),
            "owner": p.owner,
            "description": p.description,
            "tags": list(p.tags),
            "classification": p.classification,
            "limits": {"max_age_seconds": p.max_age, "max_bytes": p.max_bytes, "max_msgs": p.max_msgs},
            "copy_retention_seconds": p.copies_keep,
            "replicas": p.replicas,
            "storage": p.storage,
            "jetstream_api": f"$JS.{p.domain}.API",
            "consumed_by": _consumers(p, mesh.consumptions),
        }
        if p.contract is not None:
            out[catalog_key(p.ref)]["contract"] = p.contract.to_json()
    return out


def visible_keys(mesh: Mesh) -> dict[str, set[str]]:
    """Leaf cluster -> the catalog keys its read copy holds: every product of its domain (on any of its
    clusters), those its copies take, and the public ones: what it may read. (A copy of the whole catalog in
    every cluster grew with clusters x products: 2.5 million writes for 5,000 products on 500 spokes.)"""
    public = {catalog_key(p.ref) for p in mesh.products if p.public}
    by_team: dict[str, set[str]] = {}
    for p in mesh.products:
        by_team.setdefault(p.owner_domain, set()).add(catalog_key(p.ref))
    out = {c.name: public | by_team.get(c.owner, set()) for c in mesh.domains}
    for c in mesh.consumptions:
        if c.domain in out:
            out[c.domain] |= {catalog_key(s.ref) for s in c.sources}
    return out


def _content(d: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in d.items() if k not in TIMESTAMPS and k != HISTORY}
    if isinstance(out.get("contract"), dict):
        out["contract"] = {k: v for k, v in out["contract"].items() if k != "since"}
    return out


def same_content(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two descriptors say the same, apart from when (timestamps) and the contract's history."""
    return _content(a) == _content(b)


def same_contract(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two contracts promise the same (where the schema was written, inline or which file, aside)."""

    def promise(c: dict[str, Any] | None) -> dict[str, Any] | None:
        return {k: v for k, v in c.items() if k not in ("since", "file")} if isinstance(c, dict) else c

    return promise(a) == promise(b)


def with_history(wanted: dict[str, Any], existing: dict[str, Any] | None, now: str) -> dict[str, Any]:
    """WANTED as it is written over EXISTING at NOW: created kept, the contract's `since` set when it changes,
    and the contract it replaces appended to its history (oldest first)."""
    old = existing or {}
    out = wanted | {"created": old.get("created", now), "updated": now}
    history = list(old.get(HISTORY) or [])
    if "contract" in out:
        if same_contract(out["contract"], old.get("contract")):
            out["contract"] = out["contract"] | {"since": old["contract"].get("since", now)}
        else:
            out["contract"] = out["contract"] | {"since": now}
            if old.get("contract"):
                history.append(old["contract"])
    elif old.get("contract"):
        history.append(old["contract"])
    if history:
        out[HISTORY] = history
    return out


UNREADABLE = "natsmesh.unreadable"  # what an entry that is no descriptor reads as: why (a domain may write its copy)


def decode_entry(raw: bytes) -> dict[str, Any]:
    """A catalog entry's descriptor; an entry that is not one (not JSON, not an object, a contract that is no
    object) reads as `{UNREADABLE: why}`, which differs from every descriptor, so `apply` rewrites it."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return {UNREADABLE: "not JSON"}
    if not isinstance(doc, dict):
        return {UNREADABLE: f"a JSON {type(doc).__name__}, not an object"}
    if "contract" in doc and not isinstance(doc["contract"], dict):
        return {UNREADABLE: "its contract is not an object"}
    return doc


def unreadable(entries: dict[str, dict[str, Any]]) -> list[str]:
    """The keys of ENTRIES that are no descriptor."""
    return sorted(k for k, v in entries.items() if UNREADABLE in v)


async def ensure_bucket(js: JetStreamContext, replicas: int) -> bool:
    """Create the catalog bucket in the domain JS points at, if missing. Returns True if it was created."""
    try:
        await js.key_value(CATALOG_BUCKET)
        return False
    except BucketNotFoundError:
        await js.create_key_value(
            KeyValueConfig(
                bucket=CATALOG_BUCKET,
                description="natsmesh data product catalog",
                history=5,
                replicas=replicas,
                storage=StorageType.FILE,
            )
        )
        return True


async def read_catalog(js: JetStreamContext) -> dict[str, dict[str, Any]]:
    """Every descriptor in the catalog, in one pass over the bucket's latest values (one watcher, not a request
    per key); through JS (a hub-domain context works from any domain)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ELECTION_WAIT
    seen = keys = 0
    for _ in range(20):
        try:
            try:
                kv = await js.key_value(CATALOG_BUCKET)
            except (BucketNotFoundError, NotFoundError):
                return {}
            info = await js.stream_info(f"KV_{CATALOG_BUCKET}", subjects_filter=f"$KV.{CATALOG_BUCKET}.>")
            keys = len(info.state.subjects or {})  # one subject per key, deleted ones keep their marker
            watcher = await kv.watchall()
        except nats.errors.TimeoutError:  # a bucket made a moment ago may still be electing its leader
            if loop.time() >= deadline:
                raise NatsmeshError(
                    f"the catalog bucket {CATALOG_BUCKET} did not answer within {ELECTION_WAIT:.0f} s"
                ) from None
            await asyncio.sleep(0.5)
            continue
        out: dict[str, dict[str, Any]] = {}
        seen = 0
        try:
            async for entry in watcher:
                if entry is None:  # every current value has been delivered
                    break
                seen += 1
                if entry.value and entry.operation is None:
                    out[entry.key] = decode_entry(entry.value)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        if seen >= keys:  # a watcher started while the bucket's leader settles can end early: read again
            return out
        await asyncio.sleep(0.1)
    raise NatsmeshError(f"the catalog in {CATALOG_BUCKET} could not be read whole ({seen} of {keys} keys)")


async def read_entry(js: JetStreamContext, key: str) -> dict[str, Any] | None:
    """Descriptor KEY of the catalog JS points at (one get, not the whole bucket); None if absent or deleted."""
    try:
        entry = await (await js.key_value(CATALOG_BUCKET)).get(key)
    except (BucketNotFoundError, NotFoundError):
        return None
    return decode_entry(entry.value) if entry.value else None


async def write_entries(js: JetStreamContext, entries: dict[str, dict[str, Any]], inflight: int = 256) -> None:
    """Put ENTRIES into the catalog with up to INFLIGHT puts awaiting their acks at once."""
    kv = await js.key_value(CATALOG_BUCKET)

    async def put(key: str, descriptor: dict[str, Any]) -> None:  # the bucket may have been created a moment ago
        await when_answered(lambda: kv.put(key, json.dumps(descriptor, sort_keys=True).encode()))

    await bounded([put(k, d) for k, d in entries.items()], inflight)


async def delete_entries(js: JetStreamContext, keys: list[str], inflight: int = 256) -> None:
    kv = await js.key_value(CATALOG_BUCKET)

    async def delete(key: str) -> None:
        await when_answered(lambda: kv.delete(key))

    await bounded([delete(k) for k in keys], inflight)


@dataclass(frozen=True)
class Catalog:
    """Every descriptor in the hub's catalog, as `natsmesh catalog list` shows them."""

    products: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"products": self.products}


async def _read(mesh: Mesh) -> dict[str, dict[str, Any]]:
    """The hub's catalog; from a party's folder, the copy in that party's own cluster (what it may read)."""
    async with Connections(mesh, name="natsmesh-catalog") as mc:
        return await read_catalog(await mc.jetstream(mc.creds.holder or mesh.hub.name))


async def catalog_entries(mesh: Mesh) -> Catalog:
    """Every descriptor in the catalog (`natsmesh catalog list`)."""
    return Catalog(list((await _read(mesh)).values()))


async def catalog_entry(mesh: Mesh, ref: str) -> dict[str, Any]:
    """Product REF's descriptor in the catalog (`natsmesh catalog show`); `UnknownProductError` if absent."""
    entry = (await _read(mesh)).get(catalog_key(ref))
    if entry is None:
        raise UnknownProductError(f"{ref!r} is not in the catalog of mesh {mesh.name!r} (run `natsmesh apply`?)")
    return entry
