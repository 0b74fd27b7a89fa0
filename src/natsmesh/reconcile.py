"""Plan and apply: make the running mesh's streams and catalog match the spec, with the fewest changes.

`plan` reads what each domain has and compares it with what the spec wants: create, update, unchanged, or
(for natsmesh-managed streams the spec no longer names) would-delete, kept unless pruning. Changes JetStream
cannot make in place are `refused`, and a plan with any refusal applies nothing. Streams natsmesh did not create
are never touched.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from nats.js.api import StreamConfig

from natsmesh.catalog import (
    delete_entries,
    descriptors,
    ensure_bucket,
    read_catalog,
    same_content,
    write_entries,
)
from natsmesh.client import MeshClient
from natsmesh.errors import NatsmeshError
from natsmesh.products import CATALOG_BUCKET, KIND_KEY, MANAGED_KEY, MESH_KEY
from natsmesh.spec import Mesh
from natsmesh.streams import list_streams

T = TypeVar("T")

COMPARED = (
    "subjects",
    "description",
    "max_age",
    "max_bytes",
    "max_msgs",
    "num_replicas",
    "storage",
    "metadata",
    "mirror",
    "sources",
)


class PlanRefusedError(NatsmeshError):
    """The plan holds changes JetStream cannot make in place; nothing was applied."""


@dataclass(frozen=True)
class Change:
    action: str  # create | update | unchanged | delete | would-delete | refused
    domain: str
    kind: str  # product | mirror | source | catalog
    name: str
    detail: str = ""
    config: dict[str, Any] | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("config")
        return out


@dataclass
class Plan:
    mesh: str
    prune: bool
    changes: list[Change] = field(default_factory=list)
    applied: bool = False

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)

    @property
    def refused(self) -> list[Change]:
        return [c for c in self.changes if c.action == "refused"]

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.action in ("create", "update", "delete")]

    def summary(self) -> dict[str, int]:
        actions = ("create", "update", "unchanged", "delete", "would-delete", "refused")
        return {a: self.count(a) for a in actions}

    def to_json(self) -> dict[str, Any]:
        return {
            "mesh": self.mesh,
            "prune": self.prune,
            "applied": self.applied,
            "summary": self.summary(),
            "changes": [c.to_json() for c in self.changes],
        }


# ---------------------------------------------------------------------------------------------------------------
# Comparing configs


def _source_view(src: dict[str, Any] | None) -> tuple[Any, ...] | None:
    if not src:
        return None
    transforms = tuple((t.get("src"), t.get("dest")) for t in src.get("subject_transforms") or [])
    return (src.get("name"), (src.get("external") or {}).get("api"), src.get("filter_subject") or "", transforms)


def _view(cfg: dict[str, Any], key: str) -> Any:
    v = cfg.get(key)
    if key == "subjects":
        return sorted(v or [])
    if key == "metadata":
        return {k: x for k, x in (v or {}).items() if k.startswith("natsmesh.")}
    if key == "mirror":
        return _source_view(v)
    if key == "sources":
        return sorted((_source_view(s) for s in v or []), key=repr)
    if key == "description":
        return v or ""
    if key in ("max_bytes", "max_msgs"):
        return -1 if v in (None, 0) else v
    if key == "max_age":
        return int(v or 0)
    return v


def diff(desired: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Fields that differ, as `field: actual -> desired`."""
    out = []
    for key in COMPARED:
        if key not in desired and key not in ("mirror", "sources", "subjects"):
            continue
        a, d = _view(actual, key), _view(desired, key)
        if a != d:
            out.append(f"{key}: {a!r} -> {d!r}")
    return out


def refusal(domain: str, name: str, desired: dict[str, Any], actual: dict[str, Any]) -> str | None:
    """Why JetStream cannot turn ACTUAL into DESIRED in place, with what to do instead; None if it can."""
    where = f"{domain}/{name}"
    fix = (
        f"give it a new name in the spec (a new stream), or remove it from the spec and run "
        f"`natsmesh apply --prune` to delete {where} first"
    )
    if MANAGED_KEY not in (actual.get("metadata") or {}):
        return f"{where} exists but was not created by natsmesh; natsmesh leaves it alone: rename the spec's stream"
    if bool(desired.get("mirror")) != bool(actual.get("mirror")):
        kinds = ("a mirror", "not a mirror")
        now, want = kinds[0 if actual.get("mirror") else 1], kinds[0 if desired.get("mirror") else 1]
        return f"{where} is {now} and the spec wants {want}; JetStream cannot change that in place: {fix}"
    if desired.get("mirror") and _source_view(desired["mirror"]) != _source_view(actual["mirror"]):
        return f"{where} mirrors {actual['mirror'].get('name')!r}; a mirror's origin cannot change in place: {fix}"
    if (desired.get("storage") or "file") != (actual.get("storage") or "file"):
        return (
            f"{where} uses {actual.get('storage')} storage and the spec wants {desired.get('storage')}; "
            f"JetStream cannot change storage in place: {fix}"
        )
    return None


# ---------------------------------------------------------------------------------------------------------------
# Planning


async def _actual_streams(mc: MeshClient, domain: str) -> dict[str, dict[str, Any]]:
    infos = await list_streams(await mc.connection(domain))
    return {name: info.config.as_dict() for name, info in infos.items()}


def _kind(cfg: dict[str, Any]) -> str:
    return str((cfg.get("metadata") or {}).get(KIND_KEY) or ("mirror" if cfg.get("mirror") else "product"))


def _depth(mesh: Mesh) -> dict[str, int]:
    """How many consumptions deep each stream sits (products 0), so upstreams are created first."""
    by_ref = {c.ref: c for c in mesh.consumptions}
    memo: dict[str, int] = {}

    def depth(ref: str) -> int:
        if ref not in by_ref:
            return 0
        if ref not in memo:
            memo[ref] = 1 + max(depth(s.ref) for s in by_ref[ref].sources)
        return memo[ref]

    return {c.ref: depth(c.ref) for c in mesh.consumptions}


async def plan(mesh: Mesh, mc: MeshClient, prune: bool = False) -> Plan:
    """Compare the spec with the running mesh; changes nothing."""
    desired = mesh.streams()
    domains = [c.name for c in mesh.clusters]
    contexts = await asyncio.gather(*(mc.jetstream(d) for d in domains))
    actual_list = await asyncio.gather(*(_actual_streams(mc, d) for d in domains))
    actual = dict(zip(domains, actual_list, strict=True))
    result = Plan(mesh=mesh.name, prune=prune)
    depth = _depth(mesh)
    order = sorted(
        ((d, n) for d, streams in desired.items() for n in streams), key=lambda dn: (depth.get(f"{dn[0]}/{dn[1]}", 0),)
    )
    for domain, name in order:
        want = desired[domain][name]
        kind = str(want["metadata"][KIND_KEY])
        have = actual[domain].get(name)
        if have is None:
            result.changes.append(Change("create", domain, kind, name, "", want))
        elif (why := refusal(domain, name, want, have)) is not None:
            result.changes.append(Change("refused", domain, kind, name, why, want))
        elif changed := diff(want, have):
            result.changes.append(Change("update", domain, kind, name, "; ".join(changed), want))
        else:
            result.changes.append(Change("unchanged", domain, kind, name))
    for domain in domains:
        for name, have in sorted(actual[domain].items()):
            meta = have.get("metadata") or {}
            if meta.get(MANAGED_KEY) != "true" or meta.get(MESH_KEY) != mesh.name or name in desired.get(domain, {}):
                continue
            action = "delete" if prune else "would-delete"
            note = "no longer in the spec" + ("" if prune else "; kept (use --prune to delete it and its data)")
            result.changes.append(Change(action, domain, _kind(have), name, note))

    # The catalog, in the hub.
    hub_js = await mc.jetstream(mesh.hub.name)
    existing = await read_catalog(hub_js)
    if f"KV_{CATALOG_BUCKET}" not in actual[mesh.hub.name]:
        result.changes.append(Change("create", mesh.hub.name, "catalog", CATALOG_BUCKET, "KV bucket"))
    for key, desc in descriptors(mesh).items():
        if key not in existing:
            result.changes.append(Change("create", mesh.hub.name, "catalog", key, "", desc))
        elif not same_content(desc, existing[key]):
            result.changes.append(Change("update", mesh.hub.name, "catalog", key, "descriptor changed", desc))
        else:
            result.changes.append(Change("unchanged", mesh.hub.name, "catalog", key))
    for key in sorted(set(existing) - set(descriptors(mesh))):
        action = "delete" if prune else "would-delete"
        result.changes.append(Change(action, mesh.hub.name, "catalog", key, "product no longer in the spec"))

    # A read copy of the catalog in every other domain, so each domain's clients read it locally (and while cut
    # off from the hub): domains do not share the hub's JetStream.
    hub_pending = any(c.kind == "catalog" and c.action in ("create", "update", "delete") for c in result.changes)
    locals_ = await _bounded(
        [read_catalog(js) for d, js in zip(domains, contexts, strict=True) if d != mesh.hub.name], COPIES_AT_ONCE
    )
    for leaf, local in zip(mesh.domains, locals_, strict=True):
        if f"KV_{CATALOG_BUCKET}" not in actual[leaf.name]:
            action, detail = "create", f"read copy of the hub's catalog ({len(existing)} entries now)"
        elif hub_pending or local != existing:
            action, detail = "update", "read copy of the hub's catalog"
        else:
            action, detail = "unchanged", ""
        result.changes.append(Change(action, leaf.name, "catalog-copy", CATALOG_BUCKET, detail))
    return result


# ---------------------------------------------------------------------------------------------------------------
# Applying

STREAMS_AT_ONCE = 64  # stream requests in flight during apply
COPIES_AT_ONCE = 8  # domains whose catalog copy is read or written at once (each with many puts in flight)


async def _bounded(coros: list[Coroutine[Any, Any, T]], limit: int) -> list[T]:
    """Run COROS with at most LIMIT at once; results in order; the first failure is raised after all end."""
    gate = asyncio.Semaphore(limit)

    async def run(c: Coroutine[Any, Any, T]) -> T:
        async with gate:
            return await c

    results = await asyncio.gather(*(run(c) for c in coros), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results  # type: ignore[return-value]


async def apply(mesh: Mesh, mc: MeshClient, the_plan: Plan) -> Plan:
    """Carry out THE_PLAN. Refuses the whole plan if any change was refused."""
    if the_plan.refused:
        raise PlanRefusedError(
            "nothing was applied; these changes cannot be made in place:\n  - "
            + "\n  - ".join(c.detail for c in the_plan.refused)
        )
    now = datetime.now(UTC).isoformat(timespec="seconds")
    hub = mesh.hub.name
    depth = _depth(mesh)
    streams = [ch for ch in the_plan.changes if ch.kind not in ("catalog", "catalog-copy", "policy")]
    # Upstreams before the streams that take them, deletes last; within one step, many requests at once.
    steps: dict[tuple[int, int], list[Change]] = {}
    for ch in streams:
        if ch.action in ("create", "update", "delete"):
            key = (1 if ch.action == "delete" else 0, depth.get(f"{ch.domain}/{ch.name}", 0))
            steps.setdefault(key, []).append(ch)

    async def one(ch: Change) -> None:
        js = await mc.jetstream(ch.domain)
        if ch.action == "delete":
            await js.delete_stream(ch.name)
            return
        assert ch.config is not None
        cfg = StreamConfig.from_response(copy.deepcopy(ch.config))
        await (js.add_stream(cfg) if ch.action == "create" else js.update_stream(cfg))

    for key in sorted(steps):
        await _bounded([one(ch) for ch in steps[key]], STREAMS_AT_ONCE)

    hub_js = await mc.jetstream(hub)
    catalog = [ch for ch in the_plan.changes if ch.kind == "catalog" and ch.action not in ("unchanged", "would-delete")]
    if any(ch.name == CATALOG_BUCKET for ch in catalog):
        await ensure_bucket(hub_js, replicas=min(3, len(mesh.hub.nodes)))
    writes = [ch for ch in catalog if ch.name != CATALOG_BUCKET and ch.action in ("create", "update")]
    if writes:
        existing = await read_catalog(hub_js)
        entries = {}
        for ch in writes:
            assert ch.config is not None
            created = (existing.get(ch.name) or {}).get("created", now)
            entries[ch.name] = ch.config | {"created": created, "updated": now}
        await write_entries(hub_js, entries)
    await delete_entries(hub_js, [ch.name for ch in catalog if ch.name != CATALOG_BUCKET and ch.action == "delete"])
    final = await read_catalog(hub_js)

    async def copy_to(domain: str) -> None:
        js = await mc.jetstream(domain)
        await ensure_bucket(js, replicas=min(3, len(mesh.domain(domain).nodes)))
        local = await read_catalog(js)
        await write_entries(js, {k: e for k, e in final.items() if local.get(k) != e})
        await delete_entries(js, sorted(set(local) - set(final)))

    copies = [ch.domain for ch in the_plan.changes if ch.kind == "catalog-copy" and ch.action in ("create", "update")]
    await _bounded([copy_to(d) for d in copies], COPIES_AT_ONCE)
    the_plan.applied = True
    return the_plan


async def reconcile(mesh: Mesh, *, dry_run: bool = False, prune: bool = False, mc: MeshClient | None = None) -> Plan:
    """Plan, and unless DRY_RUN apply. The library form of `natsmesh apply`."""
    from natsmesh.policysync import apply_policy, plan_policy

    own = mc is None
    client = mc or MeshClient(mesh, name="natsmesh-apply")
    try:
        policy = plan_policy(mesh)
        p = await plan(mesh, client, prune=prune)
        p.changes.insert(
            0,
            Change("update" if policy.pending else "unchanged", mesh.hub.name, "policy", "accounts", policy.describe()),
        )
        if not dry_run:
            if not p.refused:  # the policy first, so new mirrors and sources find their imports in place
                await apply_policy(mesh, policy)
            await apply(mesh, client, p)
        return p
    finally:
        if own:
            await client.close()
