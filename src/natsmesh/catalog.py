"""The catalog of data products and their lineage.

Each product's descriptor (domain, subjects, owner, description, tags, limits, where it is consumed, created and
updated times) lives in a JetStream KV bucket in the hub, written by `natsmesh apply` and readable from any
domain through the hub (`jetstream(domain="hub")`). `descriptors` and `lineage` are pure.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError

from natsmesh.client import when_answered
from natsmesh.errors import NatsmeshError
from natsmesh.products import CATALOG_BUCKET, Consumption, Product, lineage_edges
from natsmesh.spec import Mesh

TIMESTAMPS = ("created", "updated")


def catalog_key(ref: str) -> str:
    """KV key of product `DOMAIN/NAME`: `DOMAIN.NAME`."""
    return ref.replace("/", ".", 1)


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
            "domain": p.domain,
            "name": p.name,
            "subjects": list(p.subjects),
            "owner": p.owner,
            "description": p.description,
            "tags": list(p.tags),
            "limits": {"max_age_seconds": p.max_age, "max_bytes": p.max_bytes, "max_msgs": p.max_msgs},
            "replicas": p.replicas,
            "storage": p.storage,
            "jetstream_api": f"$JS.{p.domain}.API",
            "consumed_by": _consumers(p, mesh.consumptions),
        }
    return out


def same_content(a: dict[str, Any], b: dict[str, Any]) -> bool:
    strip = {k: v for k, v in a.items() if k not in TIMESTAMPS}
    return strip == {k: v for k, v in b.items() if k not in TIMESTAMPS}


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
    try:
        kv = await js.key_value(CATALOG_BUCKET)
    except (BucketNotFoundError, NotFoundError):
        return {}
    for _ in range(20):
        info = await js.stream_info(f"KV_{CATALOG_BUCKET}", subjects_filter=f"$KV.{CATALOG_BUCKET}.>")
        keys = len(info.state.subjects or {})  # one subject per key, deleted ones keep their marker
        out: dict[str, dict[str, Any]] = {}
        seen = 0
        watcher = await kv.watchall()
        try:
            async for entry in watcher:
                if entry is None:  # every current value has been delivered
                    break
                seen += 1
                if entry.value and entry.operation is None:
                    out[entry.key] = json.loads(entry.value)
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        if seen >= keys:  # a watcher started while the bucket's leader settles can end early: read again
            return out
        await asyncio.sleep(0.1)
    raise NatsmeshError(f"the catalog in {CATALOG_BUCKET} could not be read whole ({seen} of {keys} keys)")


async def write_entries(js: JetStreamContext, entries: dict[str, dict[str, Any]], inflight: int = 256) -> None:
    """Put ENTRIES into the catalog with up to INFLIGHT puts awaiting their acks at once."""
    kv = await js.key_value(CATALOG_BUCKET)
    gate = asyncio.Semaphore(inflight)

    async def put(key: str, descriptor: dict[str, Any]) -> None:
        async with gate:  # the bucket may have been created a moment ago
            await when_answered(lambda: kv.put(key, json.dumps(descriptor, sort_keys=True).encode()))

    await asyncio.gather(*(put(k, d) for k, d in entries.items()))


async def delete_entries(js: JetStreamContext, keys: list[str]) -> None:
    kv = await js.key_value(CATALOG_BUCKET)

    async def delete(key: str) -> None:
        await when_answered(lambda: kv.delete(key))

    await asyncio.gather(*(delete(k) for k in keys))


# ---------------------------------------------------------------------------------------------------------------
# Lineage


def lineage(mesh: Mesh, fmt: str = "text") -> str:
    """The graph of products and consumptions as `text`, `mermaid` or `dot`."""
    edges = lineage_edges(mesh.consumptions)
    products = [p.ref for p in mesh.products]
    derived = [c.ref for c in mesh.consumptions]
    if fmt == "text":
        lines = []
        for ref in products + derived:
            outs = [(dst, how) for src, dst, how in edges if src == ref]
            kind = "product" if ref in products else "stream"
            lines.append(f"{ref} ({kind})")
            lines += [f"  -> {dst} ({how})" for dst, how in outs]
        return "\n".join(lines) + "\n"
    ids = {ref: f"n{i}" for i, ref in enumerate(products + derived)}
    if fmt == "mermaid":
        lines = ["flowchart LR"]
        lines += [f'  {ids[r]}["{r}"]' for r in products]
        lines += [f'  {ids[r]}(["{r}"])' for r in derived]
        lines += [f"  {ids[s]} -->|{how}| {ids[d]}" for s, d, how in edges]
        return "\n".join(lines) + "\n"
    if fmt == "dot":
        lines = ["digraph lineage {", "  rankdir=LR;"]
        lines += [f'  {ids[r]} [label="{r}", shape=box];' for r in products]
        lines += [f'  {ids[r]} [label="{r}", shape=ellipse];' for r in derived]
        lines += [f'  {ids[s]} -> {ids[d]} [label="{how}"];' for s, d, how in edges]
        lines.append("}")
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown lineage format {fmt!r}: use text, mermaid or dot")
