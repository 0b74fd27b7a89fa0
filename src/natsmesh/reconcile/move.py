"""Moving a product between the clusters of its domain on a running mesh (`natsmesh move`).

The product's new cluster mirrors it (sequence numbers kept) through a share of its own, catches up while the
producers go on, then the old stream stops taking the product's subjects (the write pause: producers are
answered "no stream" and ask again), the new one takes the last message and is promoted (its mirror removed,
the subjects taken), and the catalog says where it lives, so `MeshClient` producers find it there. Then every
copy's consumer is made on the new cluster from the next sequence and the hub maps the copies' requests to it:
a copy addresses its upstream by the owning domain's JetStream domain (`Share.address`), so its own config never
changes and it goes on from where it was. The old stream goes last.

A step that fails before the promotion is rolled back (the product as it was); after it, the product lives
and takes writes on its new cluster, and the error says what is left. `move_problem` and the meshes of each
phase (`bridged_mesh`, `moved_mesh`) are pure.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from natsmesh.errors import MoveError, MoveRefusedError, UnknownProductError
from natsmesh.local.secrets import load_credentials
from natsmesh.model.mesh import Mesh
from natsmesh.model.products import MOVED_KEY, Consumption, Product, Share, SourceRef, catalog_key
from natsmesh.observe.connect import Connections
from natsmesh.reconcile.access import record
from natsmesh.reconcile.apply import put_consumer
from natsmesh.reconcile.catalog import descriptors, read_entry, visible_keys, with_history, write_entries
from natsmesh.reconcile.claims import push_claims
from natsmesh.reconcile.policy_sync import apply_policy, plan_policy
from natsmesh.render.streams import product_config, share_consumer_config, source_config

PAUSE_SUBJECT = "_MESH.MOVING"  # + the product: what the old stream listens on once it stops taking writes
CATCH_UP = 60.0  # seconds the new cluster's mirror may take to hold every message before the pause
LAST_MESSAGE = 20.0  # seconds, once writes are paused, for the last message to arrive (else: roll back)
COPIES_SETTLE = 30.0  # seconds for every copy to take the old stream's last message before they are re-pointed

Progress = Callable[[str], None]


# ---------------------------------------------------------------------------------------------------------------
# Pure: what may move, and the mesh in each phase


def _placed(p: Product, cluster: str) -> Product:
    owner = p.owner_domain
    return replace(p, domain=cluster, team="" if cluster == owner else owner)


def moved_mesh(mesh: Mesh, ref: str, target: str) -> Mesh:
    """MESH with product REF on cluster TARGET, and every copy of it reading it there."""
    p = mesh.product(ref)
    team = "" if target == p.owner_domain else p.owner_domain

    def source(s: SourceRef) -> SourceRef:
        return replace(s, domain=target, team=team) if s.ref == ref else s

    consumptions = tuple(replace(c, sources=tuple(source(s) for s in c.sources)) for c in mesh.consumptions)
    products = tuple(_placed(x, target) if x.ref == ref else x for x in mesh.products)
    return replace(mesh, products=products, consumptions=consumptions)


def move_copy(mesh: Mesh, ref: str, target: str) -> Consumption:
    """The new cluster's temporary mirror of the product, addressing the cluster it lives on now."""
    p = mesh.product(ref)
    return Consumption(target, p.name, "mirror", (SourceRef(p.domain, p.name),), p.replicas, p.storage)


def bridged_mesh(mesh: Mesh, ref: str, target: str) -> Mesh:
    """MESH while REF moves to TARGET: TARGET may mirror it from where it lives (one share more)."""
    return replace(mesh, consumptions=(*mesh.consumptions, move_copy(mesh, ref, target)))


def move_problem(mesh: Mesh, ref: str, target: str) -> str | None:
    """Why product REF cannot move to cluster TARGET safely, or None."""
    p = mesh.product(ref)
    owner = p.owner_domain
    clusters = [c for c in mesh.domains if c.owner == owner]
    if target not in {c.name for c in mesh.clusters}:
        return f"the mesh has no cluster {target!r} (clusters of domain {owner}: {', '.join(c.name for c in clusters)})"
    cluster = mesh.domain(target)
    if cluster.owner != owner:
        names = ", ".join(c.name for c in clusters)
        return f"cluster {target} belongs to domain {cluster.owner}, not to {owner} (its clusters: {names})"
    if target == p.domain:
        return f"{ref} already lives on cluster {target}"
    if len(cluster.nodes) < p.replicas:
        return (
            f"cluster {target} has {len(cluster.nodes)} node(s) and {ref} keeps {p.replicas} replicas; give the "
            "cluster more nodes or the product fewer replicas first"
        )
    if p.gated:
        return (
            f"{ref} is written by its domain's contract gate, which runs with its cluster; moving gated products "
            "is not supported yet"
        )
    taken = {c.stream for c in mesh.consumptions if c.domain == target} | {
        x.name for x in mesh.products if x.domain == target
    }
    if p.name in taken:
        return f"cluster {target} already has a stream named {p.name}"
    return None


# ---------------------------------------------------------------------------------------------------------------
# The move


@dataclass
class MoveResult:
    """What a move did (or, with `dry_run`, would do), step by step, with its figures."""

    ref: str
    source: str
    target: str
    steps: list[str]
    applied: bool = False
    last_seq: int = 0  # the old stream's last sequence when writes paused
    catch_up_seconds: float = 0.0  # the new mirror, from made to holding every message before the pause
    pause_seconds: float = 0.0  # from the old stream's last write taken to the new one taking writes
    copies: list[str] = field(default_factory=list)  # the copies re-pointed

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def plan_steps(mesh: Mesh, ref: str, target: str) -> list[str]:
    p = mesh.product(ref)
    src = f"{p.domain}/{p.name}"
    copies = [c.ref for c in mesh.consumptions if any(s.ref == ref for s in c.sources)]
    return [
        f"let cluster {target} mirror {src} (a share at the hub: its configs reloaded, or its claims pushed)",
        f"make {target}/{p.name}: a mirror of {src} ({p.replicas} replica(s)), and wait until it holds every message",
        f"pause writes: {src} stops taking {', '.join(p.subjects)} (producers are told 'no stream' and ask again)",
        f"wait for the last message in {target}/{p.name}, then promote it: it takes the subjects, its sequence "
        "numbers kept",
        f"the catalog says {ref} lives on {target} (MeshClient producers find it there)",
        f"re-point {len(copies)} copy(ies) ({', '.join(copies) or 'none'}): their consumers on {target} from the next "
        "message, and the hub maps their requests to it",
        f"delete the old stream {src}",
    ]


async def _info(mc: Connections, domain: str, stream: str) -> Any:
    js = await mc.jetstream(domain)
    return await js.stream_info(stream)


async def _last_seq(mc: Connections, domain: str, stream: str) -> int:
    return int((await _info(mc, domain, stream)).state.last_seq or 0)


async def _until(check: Callable[[], Any], timeout: float, what: str) -> float:
    """Seconds until CHECK (async, truthy) holds; `MoveError` naming WHAT after TIMEOUT."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > timeout:
            raise MoveError(f"{what} did not happen within {timeout:g} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def _put_stream(mc: Connections, domain: str, config: dict[str, Any], create: bool) -> None:
    js = await mc.jetstream(domain)
    cfg = StreamConfig.from_response(dict(config))
    await (js.add_stream(cfg) if create else js.update_stream(cfg))


async def _write_placement(mesh: Mesh, moved: Mesh, mc: Connections, ref: str) -> None:
    """The moved product's descriptor into the hub's catalog and every read copy that holds it."""
    key = catalog_key(ref)
    hub = await mc.jetstream(mesh.hub.name)
    existing = await read_entry(hub, key)
    entry = with_history(descriptors(moved)[key], existing, datetime.now(UTC).isoformat(timespec="seconds"))
    await write_entries(hub, {key: entry})
    holders = [d for d, keys in visible_keys(moved).items() if key in keys]

    async def write(domain: str) -> None:
        await write_entries(await mc.jetstream(domain), {key: entry})

    await asyncio.gather(*(write(d) for d in holders))


async def _copies_took(mc: Connections, mesh: Mesh, ref: str, last: int) -> bool:
    """Whether every copy of REF has taken everything up to LAST from the old stream (lag 0 on that source)."""
    name = mesh.product(ref).name
    for c in mesh.consumptions:
        if not any(s.ref == ref for s in c.sources):
            continue
        info = await _info(mc, c.domain, c.stream)
        states = [info.mirror] if info.mirror else list(info.sources or [])
        if c.mode == "mirror" and int(info.state.last_seq or 0) < last:
            return False
        if any(int(s.lag or 0) > 0 for s in states if s is not None and s.name == name):
            return False
    return True


async def move(
    mesh: Mesh,
    ref: str,
    target: str,
    *,
    dry_run: bool = False,
    mc: Connections | None = None,
    progress: Progress | None = None,
) -> MoveResult:
    """Move product REF to cluster TARGET of its domain on the running mesh (see the module's docstring).
    `MoveRefusedError` (nothing changed) when it cannot be done safely; `MoveError` if a step fails."""
    say = progress or (lambda _: None)
    try:
        p = mesh.product(ref)
    except KeyError:
        raise UnknownProductError(f"{ref!r} is not a product of mesh {mesh.name!r}") from None
    if (why := move_problem(mesh, ref, target)) is not None:
        raise MoveRefusedError(f"{ref} cannot move to {target}: {why}; nothing was changed")
    result = MoveResult(ref, p.domain, target, plan_steps(mesh, ref, target))
    client = mc or Connections(mesh, name="natsmesh-move")
    try:
        await _live_checks(mesh, client, p, target)
        if dry_run:
            return result
        try:
            await _run(mesh, client, p, target, result, say)
            result.applied = True
        finally:  # the audit trail says what happened, done or not (operator mode)
            with contextlib.suppress(Exception):
                await record(mesh, client, "move", about=ref, source=p.domain, target=target, moved=result.applied)
        return result
    finally:
        if mc is None:
            await client.close()


async def _live_checks(mesh: Mesh, mc: Connections, p: Product, target: str) -> None:
    try:
        await _info(mc, p.domain, p.name)
    except NotFoundError:
        raise MoveRefusedError(
            f"{p.ref} has no stream on cluster {p.domain} (is it applied? `natsmesh apply`); nothing was changed"
        ) from None
    with contextlib.suppress(NotFoundError):
        await _info(mc, target, p.name)
        raise MoveRefusedError(f"cluster {target} already has a stream {p.name}; nothing was changed")


async def _run(mesh: Mesh, mc: Connections, p: Product, target: str, result: MoveResult, say: Progress) -> None:
    ref, source = p.ref, p.domain
    bridged, moved = bridged_mesh(mesh, ref, target), moved_mesh(mesh, ref, target)
    bridge = move_copy(mesh, ref, target)
    share = Share(source, p.name, target, p.name)
    wanted = product_config(mesh.name, _placed(p, target))
    mirror = {k: v for k, v in wanted.items() if k != "subjects"} | {
        "mirror": source_config(bridge.sources[0], target, p.name)
    }
    paused = made = False
    try:
        say(result.steps[0])
        await _enforce(bridged)
        await put_consumer(mc, source, p.name, share_consumer_config(mesh.name, share))
        say(result.steps[1])
        await _put_stream(mc, target, mirror, create=True)
        made = True
        start = time.monotonic()

        async def caught_up() -> bool:
            return await _last_seq(mc, target, p.name) >= await _last_seq(mc, source, p.name)

        await _until(caught_up, CATCH_UP, f"the mirror in {target} catching up with {source}/{p.name}")
        result.catch_up_seconds = round(time.monotonic() - start, 3)
        say(result.steps[2])
        old = (await _info(mc, source, p.name)).config.as_dict()
        await _put_stream(mc, source, old | {"subjects": [f"{PAUSE_SUBJECT}.{p.name}"]}, create=False)
        paused, pause_start = True, time.monotonic()
        result.last_seq = last = await _last_seq(mc, source, p.name)

        async def arrived() -> bool:
            return await _last_seq(mc, target, p.name) >= last

        say(result.steps[3])
        await _until(arrived, LAST_MESSAGE, f"message {last} arriving in {target}/{p.name}")
        await _put_stream(mc, target, wanted, create=False)  # promoted: no mirror, the product's subjects
    except Exception as exc:
        await _roll_back(mesh, mc, p, target, share, made, paused)
        raise MoveError(
            f"moving {ref} to {target} failed ({exc}); rolled back: {ref} lives on {source} as before"
        ) from exc
    result.pause_seconds = round(time.monotonic() - pause_start, 3)
    try:
        say(result.steps[4])
        await _write_placement(mesh, moved, mc, ref)
        say(result.steps[5])

        async def copies_took() -> bool:
            return await _copies_took(mc, mesh, ref, last)

        await _until(copies_took, COPIES_SETTLE, f"every copy taking message {last} of {source}/{p.name}")
        for s in moved.shares:
            if s.owner == target and s.stream == p.name:
                cfg = share_consumer_config(mesh.name, s)
                if s.copy is not None:  # a declared copy goes on from the next message (a public slot: from the first)
                    cfg |= {"deliver_policy": "by_start_sequence", "opt_start_seq": last + 1}
                    cfg["metadata"] = cfg["metadata"] | {MOVED_KEY: str(last + 1)}  # `apply` keeps it as it is
                await put_consumer(mc, target, p.name, cfg)
                result.copies.append(s.name)
        await _enforce(moved)
        say(result.steps[6])
        await (await mc.jetstream(source)).delete_stream(p.name)
    except Exception as exc:
        raise MoveError(
            f"{ref} lives on {target} and takes writes there, but the move stopped at re-pointing its copies: "
            f"{exc}; set `cluster: {target}` for it in the spec and run `natsmesh apply`"
        ) from exc


async def _enforce(mesh: Mesh) -> None:
    """Who may read what as MESH says, at the servers: the configs that change reloaded and (operator mode) the
    hub's accounts that change pushed."""
    await apply_policy(mesh, plan_policy(mesh))
    await push_claims(mesh, load_credentials(mesh, create=False))


async def _roll_back(
    mesh: Mesh, mc: Connections, p: Product, target: str, share: Share, made: bool, paused: bool
) -> None:
    """Put everything back as it was before the move began; what cannot be undone is left for `apply`."""
    with contextlib.suppress(Exception):
        if paused:
            await _put_stream(mc, p.domain, product_config(mesh.name, p), create=False)
    with contextlib.suppress(Exception):
        if made:
            await (await mc.jetstream(target)).delete_stream(p.name)
    with contextlib.suppress(Exception):
        await (await mc.jetstream(p.domain)).delete_consumer(p.name, share.consumer)
    with contextlib.suppress(Exception):
        await _enforce(mesh)
