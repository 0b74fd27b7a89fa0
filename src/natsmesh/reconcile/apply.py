"""Plan and apply: read what the mesh has, decide (`natsmesh.reconcile.plan`), then make the changes.

`reconcile` is the library form of `natsmesh apply`: the policy first (so new mirrors and sources find their
imports in place), then every domain's read copy of the catalog (so it takes the hub's writes from the first),
then streams in dependency order, then the hub's catalog, and each copy checked by its stream's sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from natsmesh.errors import ApplyError, PlanRefusedError
from natsmesh.model.mesh import Mesh
from natsmesh.model.products import CATALOG_BUCKET, MANAGED_KEY
from natsmesh.observe.connect import Connections
from natsmesh.observe.streams import list_consumers, list_streams
from natsmesh.observe.wire import ApiError
from natsmesh.reconcile.catalog import (
    CATALOG_STREAM,
    CHECKED_AT,
    delete_entries,
    ensure_bucket,
    last_seq,
    mark_copy,
    read_catalog,
    with_history,
    write_entries,
)
from natsmesh.reconcile.concurrency import bounded
from natsmesh.reconcile.plan import Change, Config, Facts, Plan, depths, plan_changes
from natsmesh.reconcile.policy_sync import apply_policy, plan_policy

STREAMS_AT_ONCE = 64  # stream requests in flight during apply
COPIES_AT_ONCE = 8  # domains whose catalog copy is compared and completed at once (each with many puts in flight)
CHECKS_AT_ONCE = 64  # read copies whose sequence is asked at once
COPY_QUIET = 5.0  # seconds a read copy may take no new write before it is compared with the hub and completed


async def _actual_streams(mc: Connections, domain: str) -> dict[str, Config]:
    infos = await list_streams(await mc.connection(domain))
    return {name: info.config.as_dict() for name, info in infos.items()}


async def _actual_consumers(mc: Connections, domain: str, streams: dict[str, Config]) -> dict[str, dict[str, Config]]:
    """The natsmesh consumers of DOMAIN's natsmesh streams (the consumers of copies)."""
    nc = await mc.connection(domain)
    managed = [n for n, cfg in streams.items() if (cfg.get("metadata") or {}).get(MANAGED_KEY) == "true"]
    listed = await bounded([list_consumers(nc, n) for n in managed], STREAMS_AT_ONCE)
    out: dict[str, dict[str, Config]] = {}
    for stream, infos in zip(managed, listed, strict=True):
        mine = {k: i.config.as_dict() for k, i in infos.items() if (i.config.metadata or {}).get(MANAGED_KEY) == "true"}
        if mine:
            out[stream] = mine
    return out


async def read_facts(mesh: Mesh, mc: Connections) -> Facts:
    """What the plan needs to know: every domain's streams (each read copy's with the sequence it was checked
    at) and the hub's catalog with its last sequence."""
    domains = [c.name for c in mesh.clusters]
    actual = await asyncio.gather(*(_actual_streams(mc, d) for d in domains))
    hub_js = await mc.jetstream(mesh.hub.name)
    catalog = await read_catalog(hub_js)
    consumers = await asyncio.gather(*(_actual_consumers(mc, d, a) for d, a in zip(domains, actual, strict=True)))
    return Facts(
        streams=dict(zip(domains, actual, strict=True)),
        catalog=catalog,
        catalog_seq=await last_seq(hub_js),
        consumers={d: c for d, c in zip(domains, consumers, strict=True) if c},
    )


async def plan(mesh: Mesh, mc: Connections, prune: bool = False) -> Plan:
    """Compare the spec with the running mesh; changes nothing."""
    return plan_changes(mesh, await read_facts(mesh, mc), prune)


def _step(ch: Change, depth: dict[str, int]) -> tuple[int, int, int]:
    """When CH is made: upstreams before the consumers on them before the copies that read those; deletes last."""
    stream = ch.name.split("/", 1)[0]
    return (1 if ch.action == "delete" else 0, depth.get(f"{ch.domain}/{stream}", 0), 1 if ch.kind == "consumer" else 0)


async def _consumer(mc: Connections, ch: Change) -> None:
    """Make, update or delete one share's consumer in its owner's domain (the JetStream API, as JSON: nats.py's
    consumer config does not carry every field a sourcing consumer needs)."""
    stream, name = ch.name.split("/", 1)
    js = await mc.jetstream(ch.domain)
    if ch.action == "delete" or ch.recreate:
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(stream, name)
        if ch.action == "delete":
            return
    action = "update" if ch.action == "update" and not ch.recreate else "create"
    body = json.dumps({"stream_name": stream, "config": ch.config, "action": action}).encode()
    nc = await mc.connection(ch.domain)
    reply = await nc.request(f"$JS.API.CONSUMER.CREATE.{stream}.{name}", body, timeout=10)
    if (err := ApiError.of_reply(reply.data)) is not None:
        raise ApplyError(f"{ch.domain}: consumer {name} of {stream}: {err.description} ({err.code})")


async def _apply_streams(mesh: Mesh, mc: Connections, changes: list[Change]) -> None:
    """Upstreams, then the consumers on them, then the copies that read those; deletes last; within one step,
    many requests at once."""
    depth = depths(mesh)
    steps: dict[tuple[int, int, int], list[Change]] = {}
    for ch in changes:
        if ch.kind not in ("catalog", "catalog-copy", "policy") and ch.action in ("create", "update", "delete"):
            steps.setdefault(_step(ch, depth), []).append(ch)

    async def one(ch: Change) -> None:
        if ch.kind == "consumer":
            await _consumer(mc, ch)
            return
        js = await mc.jetstream(ch.domain)
        if ch.action == "delete":
            await js.delete_stream(ch.name)
            return
        assert ch.config is not None
        cfg = StreamConfig.from_response(copy.deepcopy(ch.config))
        await (js.add_stream(cfg) if ch.action == "create" else js.update_stream(cfg))

    for key in sorted(steps):
        await bounded([one(ch) for ch in steps[key]], STREAMS_AT_ONCE)


@dataclass(frozen=True)
class _Copy:
    """One read copy of the catalog as it was before the hub's writes."""

    domain: str
    start: int  # its stream's last sequence
    in_step: bool  # found equal to the hub's catalog at the hub's last sequence


async def _prepare_copies(mesh: Mesh, mc: Connections, changes: list[Change]) -> tuple[int, list[_Copy]]:
    """Before the hub's catalog is written: the bucket at the hub and every read copy the plan keeps in step
    exist (a copy takes the hub's writes only once its interest has reached the hub), and their sequences."""
    hub_js = await mc.jetstream(mesh.hub.name)
    if any(ch.kind == "catalog" and ch.name == CATALOG_BUCKET and ch.action == "create" for ch in changes):
        await ensure_bucket(hub_js, replicas=min(3, len(mesh.hub.nodes)))
    info = await hub_js.stream_info(CATALOG_STREAM)
    before, empty = int(info.state.last_seq or 0), not info.state.messages

    async def prepare(domain: str) -> _Copy:
        js = await mc.jetstream(domain)
        made = await ensure_bucket(js, replicas=min(3, len(mesh.domain(domain).nodes)))
        copy = await js.stream_info(CATALOG_STREAM)
        checked = (copy.config.metadata or {}).get(CHECKED_AT)
        return _Copy(domain, int(copy.state.last_seq or 0), checked == str(before) or (made and empty))

    wanted = [ch.domain for ch in changes if ch.kind == "catalog-copy" and ch.action in ("create", "update")]
    return before, await bounded([prepare(d) for d in wanted], CHECKS_AT_ONCE)


async def _reaches(js: JetStreamContext, target: int) -> bool:
    """Whether the catalog copy JS points at comes to sequence TARGET exactly (False once it passes it, or takes
    nothing new for `COPY_QUIET` seconds)."""
    loop = asyncio.get_running_loop()
    seen, since = -1, loop.time()
    while True:
        seq = await last_seq(js)
        if seq >= target:
            return seq == target
        if seq != seen:
            seen, since = seq, loop.time()
        elif loop.time() - since >= COPY_QUIET:
            return False
        await asyncio.sleep(0.2)


async def _apply_catalog(mesh: Mesh, mc: Connections, changes: list[Change], before: int, copies: list[_Copy]) -> None:
    """Write the hub's catalog; then each read copy that was in step and took exactly as many writes as the hub
    is in step again, and any other is compared with the hub and completed (it missed writes while cut off)."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    hub_js = await mc.jetstream(mesh.hub.name)
    catalog = [ch for ch in changes if ch.kind == "catalog" and ch.action not in ("unchanged", "would-delete")]
    writes = [ch for ch in catalog if ch.name != CATALOG_BUCKET and ch.action in ("create", "update")]
    if writes:
        existing = await read_catalog(hub_js)
        entries: dict[str, dict[str, Any]] = {}
        for ch in writes:
            assert ch.config is not None
            entries[ch.name] = with_history(ch.config, existing.get(ch.name), now)
        await write_entries(hub_js, entries)
    await delete_entries(hub_js, [ch.name for ch in catalog if ch.name != CATALOG_BUCKET and ch.action == "delete"])
    after = await last_seq(hub_js)
    final: list[dict[str, dict[str, Any]]] = []
    lock = asyncio.Lock()

    async def hub_catalog() -> dict[str, dict[str, Any]]:
        async with lock:
            if not final:
                final.append(await read_catalog(hub_js))
        return final[0]

    async def settle(c: _Copy) -> None:
        js = await mc.jetstream(c.domain)
        if not (c.in_step and await _reaches(js, c.start + after - before)):
            want, local = await hub_catalog(), await read_catalog(js)
            await write_entries(js, {k: e for k, e in want.items() if local.get(k) != e})
            await delete_entries(js, sorted(set(local) - set(want)))
        await mark_copy(js, {CHECKED_AT: str(after)})

    await bounded([settle(c) for c in copies], COPIES_AT_ONCE)


async def apply(mesh: Mesh, mc: Connections, the_plan: Plan) -> Plan:
    """Carry out THE_PLAN. Refuses the whole plan if any change was refused."""
    if the_plan.refused:
        raise PlanRefusedError(
            "nothing was applied; these changes cannot be made in place:\n  - "
            + "\n  - ".join(c.detail for c in the_plan.refused),
            the_plan,
        )
    before, copies = await _prepare_copies(mesh, mc, the_plan.changes)
    await _apply_streams(mesh, mc, the_plan.changes)
    await _apply_catalog(mesh, mc, the_plan.changes, before, copies)
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
