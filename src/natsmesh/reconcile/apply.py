"""Plan and apply: read what the mesh has, decide (`natsmesh.reconcile.plan`), then make the changes.

`reconcile` is the library form of `natsmesh apply`: the policy first (so new mirrors and sources find their
imports in place), then streams in dependency order, then the hub's catalog and every domain's read copy.
"""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime
from typing import Any

from nats.js.api import StreamConfig

from natsmesh.errors import PlanRefusedError
from natsmesh.model.mesh import Mesh
from natsmesh.model.products import CATALOG_BUCKET
from natsmesh.observe.connect import Connections
from natsmesh.observe.streams import list_streams
from natsmesh.reconcile.catalog import delete_entries, ensure_bucket, read_catalog, write_entries
from natsmesh.reconcile.concurrency import bounded
from natsmesh.reconcile.plan import Change, Config, Facts, Plan, depths, plan_changes
from natsmesh.reconcile.policy_sync import apply_policy, plan_policy

STREAMS_AT_ONCE = 64  # stream requests in flight during apply
COPIES_AT_ONCE = 8  # domains whose catalog copy is read or written at once (each with many puts in flight)


async def _actual_streams(mc: Connections, domain: str) -> dict[str, Config]:
    infos = await list_streams(await mc.connection(domain))
    return {name: info.config.as_dict() for name, info in infos.items()}


async def read_facts(mesh: Mesh, mc: Connections) -> Facts:
    """What the plan needs to know: every domain's streams, the hub's catalog and each leaf's read copy."""
    domains = [c.name for c in mesh.clusters]
    contexts = await asyncio.gather(*(mc.jetstream(d) for d in domains))
    actual = await asyncio.gather(*(_actual_streams(mc, d) for d in domains))
    catalog = await read_catalog(await mc.jetstream(mesh.hub.name))
    leaves = [js for d, js in zip(domains, contexts, strict=True) if d != mesh.hub.name]
    copies = await bounded([read_catalog(js) for js in leaves], COPIES_AT_ONCE)
    return Facts(
        streams=dict(zip(domains, actual, strict=True)),
        catalog=catalog,
        copies={leaf.name: local for leaf, local in zip(mesh.domains, copies, strict=True)},
    )


async def plan(mesh: Mesh, mc: Connections, prune: bool = False) -> Plan:
    """Compare the spec with the running mesh; changes nothing."""
    return plan_changes(mesh, await read_facts(mesh, mc), prune)


async def _apply_streams(mesh: Mesh, mc: Connections, changes: list[Change]) -> None:
    """Upstreams before the streams that take them, deletes last; within one step, many requests at once."""
    depth = depths(mesh)
    steps: dict[tuple[int, int], list[Change]] = {}
    for ch in changes:
        if ch.kind not in ("catalog", "catalog-copy", "policy") and ch.action in ("create", "update", "delete"):
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
        await bounded([one(ch) for ch in steps[key]], STREAMS_AT_ONCE)


async def _apply_catalog(mesh: Mesh, mc: Connections, changes: list[Change]) -> None:
    now = datetime.now(UTC).isoformat(timespec="seconds")
    hub_js = await mc.jetstream(mesh.hub.name)
    catalog = [ch for ch in changes if ch.kind == "catalog" and ch.action not in ("unchanged", "would-delete")]
    if any(ch.name == CATALOG_BUCKET for ch in catalog):
        await ensure_bucket(hub_js, replicas=min(3, len(mesh.hub.nodes)))
    writes = [ch for ch in catalog if ch.name != CATALOG_BUCKET and ch.action in ("create", "update")]
    if writes:
        existing = await read_catalog(hub_js)
        entries: dict[str, dict[str, Any]] = {}
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

    copies = [ch.domain for ch in changes if ch.kind == "catalog-copy" and ch.action in ("create", "update")]
    await bounded([copy_to(d) for d in copies], COPIES_AT_ONCE)


async def apply(mesh: Mesh, mc: Connections, the_plan: Plan) -> Plan:
    """Carry out THE_PLAN. Refuses the whole plan if any change was refused."""
    if the_plan.refused:
        raise PlanRefusedError(
            "nothing was applied; these changes cannot be made in place:\n  - "
            + "\n  - ".join(c.detail for c in the_plan.refused),
            the_plan,
        )
    await _apply_streams(mesh, mc, the_plan.changes)
    await _apply_catalog(mesh, mc, the_plan.changes)
    the_plan.applied = True
    return the_plan


async def reconcile(mesh: Mesh, *, dry_run: bool = False, prune: bool = False, mc: Connections | None = None) -> Plan:
    """Plan, and unless DRY_RUN apply. The library form of `natsmesh apply`."""
    client = mc or Connections(mesh, name="natsmesh-apply")
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
        if mc is None:
            await client.close()
