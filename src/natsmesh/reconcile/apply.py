"""Plan and apply: read what the mesh has, decide (`natsmesh.reconcile.plan`), then make the changes.

`reconcile` is the library form of `natsmesh apply`: the policy first (so new mirrors and sources find their
imports in place), then streams in dependency order, then the hub's catalog and each leaf cluster's read copy of
what it may read.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from datetime import UTC, datetime
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from natsmesh.errors import ApplyError, PlanRefusedError, PreflightError
from natsmesh.local.files import write_files
from natsmesh.local.layout import own_operator_problems
from natsmesh.local.records import record_access_reads, recorded_access_reads, recorded_members
from natsmesh.local.secrets import load_credentials
from natsmesh.model.access import with_access
from natsmesh.model.audit import plan_detail
from natsmesh.model.identities import Credentials
from natsmesh.model.mesh import Mesh
from natsmesh.model.products import CATALOG_BUCKET, MANAGED_KEY
from natsmesh.observe.access import Gathered, gather, with_keys
from natsmesh.observe.connect import Connections
from natsmesh.observe.grants import Refusal, refusals
from natsmesh.observe.streams import list_consumers, list_streams
from natsmesh.observe.wire import ApiError
from natsmesh.reconcile.access import hold_back, record, record_expiries, relay
from natsmesh.reconcile.catalog import (
    delete_entries,
    ensure_bucket,
    read_catalog,
    visible_keys,
    with_history,
    write_entries,
)
from natsmesh.reconcile.claims import push_claims
from natsmesh.reconcile.concurrency import bounded
from natsmesh.reconcile.membership import Membership, forget, join, leave, plan_membership, strays
from natsmesh.reconcile.migration import move_detail, move_trust, trust_change
from natsmesh.reconcile.plan import NOT_STREAMS, Action, Change, Config, Facts, Plan, depths, plan_changes
from natsmesh.reconcile.policy_sync import PolicyChange, apply_policy, plan_policy
from natsmesh.render.trust import realise

STREAMS_AT_ONCE = 64  # stream requests in flight during apply
COPIES_AT_ONCE = 64  # clusters whose catalog copy is read or written at once (each holds what it may read)


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


async def _read_copy(js: JetStreamContext) -> dict[str, dict[str, Any]] | None:
    """A leaf cluster's read copy of the catalog; None if it cannot be read (it is rewritten then): what one domain
    did to its own copy never stops the platform's work for the others."""
    try:
        return await read_catalog(js)
    except Exception:  # a copy replaced by a stream of the domain's making, a bucket that does not answer, ...
        return None


async def read_facts(
    mesh: Mesh, mc: Connections, absent: frozenset[str] = frozenset(), only: frozenset[str] | None = None
) -> Facts:
    """What the plan needs to know: every domain's streams, the hub's catalog and each leaf's read copy. The
    clusters ABSENT do not run yet (a dry run of their joining): they hold nothing. ONLY: read these clusters
    alone (a plan of theirs; the others read as holding nothing)."""
    domains = [c.name for c in mesh.clusters if c.name not in absent and (only is None or c.name in only)]
    contexts = dict(zip(domains, await asyncio.gather(*(mc.jetstream(d) for d in domains)), strict=True))
    actual = await asyncio.gather(*(_actual_streams(mc, d) for d in domains))
    catalog = await read_catalog(await mc.jetstream(mesh.hub.name))
    leaves = [d for d in domains if d != mesh.hub.name]
    copies = dict(zip(leaves, await bounded([_read_copy(contexts[d]) for d in leaves], COPIES_AT_ONCE), strict=True))
    consumers = await asyncio.gather(*(_actual_consumers(mc, d, a) for d, a in zip(domains, actual, strict=True)))
    return Facts(
        streams=dict(zip(domains, actual, strict=True)),
        catalog=catalog,
        copies={leaf.name: copies.get(leaf.name) for leaf in mesh.domains},
        consumers={d: c for d, c in zip(domains, consumers, strict=True) if c},
    )


async def plan(mesh: Mesh, mc: Connections, prune: bool = False, absent: frozenset[str] = frozenset()) -> Plan:
    """Compare the spec with the running mesh (where the clusters ABSENT hold nothing yet); changes nothing."""
    facts = await read_facts(mesh, mc, absent)
    p = plan_changes(mesh, facts, prune)
    p.facts = facts
    return p


def _step(ch: Change, depth: dict[str, int]) -> tuple[int, int, int]:
    """When CH is made: upstreams before the consumers on them before the copies that read those; deletes last."""
    stream = ch.name.split("/", 1)[0]
    return (1 if ch.action == "delete" else 0, depth.get(f"{ch.domain}/{stream}", 0), 1 if ch.kind == "consumer" else 0)


async def _consumer(mc: Connections, ch: Change) -> None:
    """Make, update or delete one share's consumer in its owner's domain."""
    stream, name = ch.name.split("/", 1)
    js = await mc.jetstream(ch.domain)
    if ch.action == "delete" or ch.recreate:
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(stream, name)
        if ch.action == "delete":
            return
    assert ch.config is not None
    await put_consumer(
        mc, ch.domain, stream, ch.config, "update" if ch.action == "update" and not ch.recreate else "create"
    )


async def put_consumer(
    mc: Connections, domain: str, stream: str, config: dict[str, Any], action: str = "create"
) -> None:
    """Create (or update) consumer CONFIG of STREAM in DOMAIN through the JetStream API, as JSON: nats.py's
    consumer config does not carry every field a sourcing consumer needs."""
    name = config["name"]
    body = json.dumps({"stream_name": stream, "config": config, "action": action}).encode()
    nc = await mc.connection(domain)
    reply = await nc.request(f"$JS.API.CONSUMER.CREATE.{stream}.{name}", body, timeout=10)
    if (err := ApiError.of_reply(reply.data)) is not None:
        raise ApplyError(f"{domain}: consumer {name} of {stream}: {err.description} ({err.code})")


async def _apply_streams(mesh: Mesh, mc: Connections, changes: list[Change]) -> None:
    """Upstreams, then the consumers on them, then the copies that read those; deletes last; within one step,
    many requests at once."""
    depth = depths(mesh)
    steps: dict[tuple[int, int, int], list[Change]] = {}
    for ch in changes:
        streams = ch.kind not in NOT_STREAMS
        if streams and ch.action in ("create", "update", "delete"):
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
            entries[ch.name] = with_history(ch.config, existing.get(ch.name), now)
        await write_entries(hub_js, entries)
    await delete_entries(hub_js, [ch.name for ch in catalog if ch.name != CATALOG_BUCKET and ch.action == "delete"])
    final = await read_catalog(hub_js)
    views = visible_keys(mesh)

    failed: dict[str, str] = {}

    async def copy_to(domain: str) -> None:
        try:
            js = await mc.jetstream(domain)
            await ensure_bucket(js, replicas=min(3, len(mesh.domain(domain).nodes)))
            local = await read_catalog(js)
            visible = views[domain]
            want = {k: e for k, e in final.items() if k in visible}
            await write_entries(js, {k: e for k, e in want.items() if local.get(k) != e})
            await delete_entries(js, sorted(set(local) - set(want)))
        except Exception as exc:  # one domain's copy (its cluster, its doing) never stops the others'
            failed[domain] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    copies = [ch.domain for ch in changes if ch.kind == "catalog-copy" and ch.action in ("create", "update")]
    await bounded([copy_to(d) for d in copies], COPIES_AT_ONCE)
    if failed:
        raise ApplyError(
            "everything else was applied, but these domains' read copies of the catalog could not be written "
            "(the next `natsmesh apply` tries again):\n  - "
            + "\n  - ".join(f"{d}: {why[:300]}" for d, why in sorted(failed.items()))
        )


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


async def _settled(mesh: Mesh, creds: Credentials, wait: float = 2.0) -> list[Refusal]:
    """The hub's refusals once what was just pushed has reached it (asked again for up to WAIT seconds)."""
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        refused = await refusals(mesh, creds)
        if not refused or asyncio.get_running_loop().time() > deadline:
            return refused
        await asyncio.sleep(0.2)


def _around(mesh: Mesh, clusters: list[str]) -> frozenset[str]:
    """CLUSTERS and the clusters their copies read from or that read theirs: where their copies are made."""
    scope = set(clusters)
    for c in mesh.consumptions:
        ups = {s.domain for s in c.sources}
        if c.domain in clusters:
            scope |= ups
        if ups & set(clusters):
            scope.add(c.domain)
    return frozenset(scope)


async def _joiners_first(mesh: Mesh, mc: Connections, joining: list[str]) -> dict[tuple[str, str, str], Change]:
    """The streams, copies and owners' consumers of the clusters JOINING and of those around them, made at once:
    a join is about them, and reading every other cluster first made a joiner wait O(spokes) seconds for its
    copies. The whole mesh is planned and applied after, as every apply does. Returns what was done, by row."""
    scope = _around(mesh, joining)
    facts = await read_facts(mesh, mc, only=scope)
    changes = [
        ch
        for ch in plan_changes(mesh, facts).changes
        if ch.domain in scope and ch.kind not in NOT_STREAMS and ch.action in ("create", "update")
    ]
    await _apply_streams(mesh, mc, changes)
    return {(ch.domain, ch.kind, ch.name): ch for ch in changes}


def _membership_changes(mesh: Mesh, members: Membership, prune: bool, done: bool) -> list[Change]:
    """A row per cluster joining or leaving the running mesh (a leave deletes data: refused without PRUNE)."""
    rows = []
    for name in members.joining:
        nodes = len(mesh.domain(name).nodes)
        what = f"its account pushed to the hub's resolver, its {nodes} node{'s' * (nodes != 1)} started"
        rows.append(Change("create", name, "cluster", name, f"joins: {what}" + " (done)" * done))
    for name in members.leaving:
        if prune:
            detail = "leaves: its streams deleted, then its account at the hub, then its nodes stopped (stores kept)"
            rows.append(Change("delete", name, "cluster", name, detail))
        else:
            detail = (
                f"cluster {name} is running but no longer in the spec: leaving deletes its streams and its account "
                "at the hub; use --prune to let it leave"
            )
            rows.append(Change("refused", name, "cluster", name, detail))
    return rows


def _stray_changes(gone: dict[str, str], prune: bool) -> list[Change]:
    """A row per account the hub's resolver holds that the spec no longer names (a mesh on hosts)."""
    if prune:
        detail = "leaves: the copies of its products deleted, then its account at the hub (its links close; its "
        detail += "servers and stores are its team's to stop)"
        return [Change("delete", name, "cluster", name, detail) for name in gone.values()]
    detail = "{name} is no longer in the spec but its account is in the hub's resolver: use --prune to let it leave"
    return [Change("refused", name, "cluster", name, detail.format(name=name)) for name in gone.values()]


async def _granted(mesh: Mesh, client: Connections) -> tuple[Mesh, Gathered | None]:
    """MESH with the copies its domains granted each other and their owners' activations (operator mode), and
    what was read to know it (`natsmesh.reconcile.access`)."""
    if not realise(mesh, client.creds).pushes:
        return mesh, None
    mesh = with_keys(mesh, client)
    seen = recorded_access_reads(mesh)  # each domain's stream as last read: only what is new is read now
    got = await gather(mesh, client, seen=seen)
    with contextlib.suppress(OSError):  # (a data dir not writable: the next apply reads everything again)
        record_access_reads(mesh, seen)
    return with_access(mesh, got.ledger), got


def _access_rows(mesh: Mesh, got: Gathered | None) -> list[Change]:
    if got is None or not (got.docs or got.unread):  # nothing asked in this mesh: nothing to say
        return []
    return [Change("update" if got.new else "unchanged", mesh.hub.name, "access", "requests", got.describe())]


async def _carry_out(
    mesh: Mesh,
    client: Connections,
    p: Plan,
    policy: PolicyChange,
    members: Membership,
    gone: dict[str, str],
    got: Gathered | None,
) -> None:
    """Apply plan P: the policy first (so new mirrors and sources find their imports in place), the streams and
    the catalog, the clusters leaving, the accounts gone; then the access documents recorded and relayed, and
    the owners' side of each grant set."""
    if not p.refused:
        await apply_policy(mesh, policy)
    try:
        await apply(mesh, client, p)
        if members.leaving:
            await leave(mesh, members)
        if gone and not p.refused:
            await forget(mesh, client.creds, gone)
    finally:  # (a domain's catalog copy that could not be written does not hold up the others' access)
        if got is not None and not p.refused:
            await relay(mesh, client, got)
            await hold_back(mesh, client, got.ledger, got.unread, paused=p.paused())
            await record_expiries(mesh, client, got)
            rows = [c.to_json() for c in p.changes]
            await record(mesh, client, "apply", prune=p.prune, applied=p.applied, **plan_detail(rows, p.summary()))


async def reconcile(
    mesh: Mesh, *, dry_run: bool = False, prune: bool = False, mc: Connections | None = None, access: bool = True
) -> Plan:
    """Plan, and unless DRY_RUN apply. The library form of `natsmesh apply`.

    A cluster the spec adds to a running operator-mode mesh joins first (its streams are then planned like any
    other's); one it drops leaves last, after the copies of its products are gone (`natsmesh.reconcile.membership`).
    ACCESS (operator mode): read, record and carry out the domains' access requests and grants, and record the
    apply in the audit trail (`natsmesh.reconcile.access`); off only to measure what that costs."""
    if mc is None and (switched := own_operator_problems(mesh, running=True)):
        raise PreflightError("; ".join(switched) + " (nothing was applied)")
    moving = trust_change(mesh) if mc is None else None
    members = plan_membership(mesh) if mc is None and moving is None else Membership()
    move_row: Change | None = None
    if moving is not None:  # to the other trust mode first: the rest is planned against the mesh as it then runs
        detail = move_detail(mesh, moving[0]) if dry_run else (await move_trust(mesh)).describe()
        move_row = Change("update", mesh.hub.name, "trust", mesh.trust, detail)
    joins = bool(members.joining) and not dry_run and (prune or not members.leaving)
    rendered = await join(mesh, members) if joins else {}
    dry_keys = (members.joining and not joins) or (moving is not None and dry_run)  # keys to plan with, not kept
    creds = load_credentials(mesh, create=True, keep=False) if dry_keys else None
    if moving is not None and dry_run:  # still running in the old mode: read it as it is
        old = recorded_members(mesh)
        assert old is not None
        client = Connections(old, load_credentials(old, create=False), name="natsmesh-apply")
    else:
        client = mc or Connections(mesh, creds, name="natsmesh-apply")
    try:
        mesh, got = await _granted(mesh, client) if moving is None and access else (mesh, None)
        policy = plan_policy(mesh, creds, rendered)  # on a join, of the joining folders only
        done: dict[tuple[str, str, str], Change] = {}
        if joins:  # who may read what first (the joiners' grants), then their copies, then everyone else
            if policy.pending:
                await apply_policy(mesh, policy)
            done = await _joiners_first(mesh, client, members.joining)
            policy = plan_policy(mesh, creds)  # every folder: the others' mesh.json names the joiners
            write_files({rel: t for rel, t in policy.files.items() if not rel.endswith(".conf")}, mesh.data_dir)
        absent = frozenset(members.joining) - (frozenset(members.joining) if joins else frozenset())
        p = await plan(mesh, client, prune=prune, absent=absent)
        p.changes[0:0] = _membership_changes(mesh, members, prune, joins)
        gone = await strays(mesh, client.creds) if mesh.hosted and moving is None else {}
        p.changes[0:0] = _stray_changes(gone, prune)
        p.changes.insert(
            0,
            Change("update" if policy.pending else "unchanged", mesh.hub.name, "policy", "accounts", policy.describe()),
        )
        if move_row is not None:
            p.changes.insert(0, move_row)
        p.changes += _access_rows(mesh, got)
        creds = client.creds
        if realise(mesh, creds).pushes and not (moving and dry_run):  # operator mode: the hub's resolver
            accounts = await push_claims(mesh, creds, dry_run=dry_run or bool(p.refused))
            action: Action = "update" if accounts.pushed else "unchanged"
            settle = (accounts.pushed or joins) and not dry_run  # the hub's servers take claims a moment later
            refused = await _settled(mesh, creds) if settle else await refusals(mesh, creds)
            detail = "; ".join([accounts.describe(), *map(str, refused)]).strip("; ")
            p.changes.insert(1, Change(action, mesh.hub.name, "accounts", "claims", detail))
        if not dry_run:
            await _carry_out(mesh, client, p, policy, members, gone, got)
        p.changes = [done.get((ch.domain, ch.kind, ch.name), ch) for ch in p.changes]  # as the first pass made them
        return p
    finally:
        if mc is None:
            await client.close()
