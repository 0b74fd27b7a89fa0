"""F1-F8: the mesh under faults, under continuous publishing, on a real seed-sized mesh (18 servers).

The mesh runs with fault proxies on every leaf link (`up --chaos`) and these products: leaf-domain-a/ORDERS
(mirrored into leaf-domain-b and leaf-domain-d), leaf-domain-b/PAYMENTS, leaf-domain-c/SHIPMENTS, and the hub's
ACTIVITY aggregate sourcing all three; every stream has three replicas. Each test publishes identified messages
with acks and message ids into all three products while it injects its fault, then accounts for every acked
id in the origin and every copy (the loss checker), and prints its figures (also appended as JSON lines to
$NATSMESH_FAULTS_JSON, from which docs/reliability.md is written).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from nats.js.errors import NoKeysError

from helpers import MeshRunner, seed_on_free_ports, servers_under, small_mesh_text
from natsmesh.client import MeshClient, run
from natsmesh.faults import chaos
from natsmesh.faults.losscheck import PublishRun, catch_up, held, publish_steady, verify
from natsmesh.model.mesh import Mesh
from natsmesh.observe.monitor import http_json
from natsmesh.observe.readiness import targets, wait_ready
from natsmesh.observe.streams import list_streams
from natsmesh.reconcile.apply import reconcile
from natsmesh.reconcile.heal import heal

pytestmark = pytest.mark.integration

A, B, C = "leaf-domain-a", "leaf-domain-b", "leaf-domain-c"
PRODUCTS = {
    f"{A}/ORDERS": f"{A}.orders.lc",
    f"{B}/PAYMENTS": f"{B}.payments.lc",
    f"{C}/SHIPMENTS": f"{C}.shipments.lc",
}
LEAF_COPIES = {f"{B}/ORDERS_FROM_A", "leaf-domain-d/ORDERS_D"}
RATE = 40.0  # messages per second into each product
Seconds = float | None  # None: never within the time allowed


def fault_spec(data_dir: Path) -> str:
    doc = yaml.safe_load(seed_on_free_ports(data_dir))  # a/ORDERS, mirrored by b as ORDERS_FROM_A
    domains = {d["name"]: d for d in doc["domains"]}
    domains[B]["products"] = [{"name": "PAYMENTS", "subjects": [f"{B}.payments.>"]}]
    domains[C]["products"] = [{"name": "SHIPMENTS", "subjects": [f"{C}.shipments.>"]}]
    domains["leaf-domain-d"]["consumes"] = [{"product": f"{A}/ORDERS", "as": "ORDERS_D"}]
    doc["hub"]["consumes"] = [{"as": "ACTIVITY", "mode": "source", "products": list(PRODUCTS)}]
    return yaml.safe_dump(doc, sort_keys=False)


@pytest.fixture(scope="module")
def fault_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("faults")
    r = MeshRunner(tmp)
    mesh = r.load(fault_spec(tmp / "data"))
    r.up(mesh, chaos=True)
    try:
        run(reconcile(mesh))
        yield mesh
    finally:
        r.close()
        assert not servers_under(tmp)


@pytest.fixture
def figures(capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A dict the test fills; printed (past pytest's capture) and recorded when the test ends."""
    doc: dict[str, Any] = {"test": request.node.name}
    yield doc
    with capsys.disabled():
        print(f"\n  {json.dumps(doc)}")
    if out := os.environ.get("NATSMESH_FAULTS_JSON"):
        with open(out, "a") as f:
            f.write(json.dumps(doc) + "\n")


class Traffic:
    """Identified messages into every product at RATE each, with retries and message ids, until `finish`."""

    def __init__(self, mc: MeshClient) -> None:
        self.mc = mc
        self.stop = asyncio.Event()
        self.tasks = {
            ref: asyncio.create_task(
                publish_steady(mc, ref, count=None, rate=RATE, subject=subj, retries=60, timeout=1.0, stop=self.stop)
            )
            for ref, subj in PRODUCTS.items()
        }

    async def finish(self) -> dict[str, PublishRun]:
        self.stop.set()
        return {ref: await t for ref, t in self.tasks.items()}

    async def recovered(self, mesh: Mesh, figures: dict[str, Any], ref: str = f"{A}/ORDERS") -> dict[str, Seconds]:
        """The fault over: the seconds until every copy of product REF holds all of it; then the traffic finished
        and every acked id accounted for (`accounted`, into FIGURES)."""
        times = await catch_up(mesh, self.mc, ref, PRODUCTS[ref], timeout=60)
        await accounted(mesh, self.mc, await self.finish(), figures)
        return times


def rounded(seconds: Seconds) -> Seconds:
    """SECONDS for the figures: to the hundredth, None (never) as it is."""
    return round(seconds, 2) if seconds is not None else None


def rounded_all(times: dict[str, Seconds]) -> dict[str, Seconds]:
    return {k: rounded(v) for k, v in times.items()}


async def settled(mesh: Mesh, mc: MeshClient) -> None:
    """The mesh is whole: every node ready, no copy stalled, every copy holding all of its product."""
    await asyncio.to_thread(wait_ready, mesh, 60)
    report = await heal(mesh, mc, timeout=60)
    assert report.healed, report.waiting
    for ref, subj in PRODUCTS.items():
        times = await catch_up(mesh, mc, ref, subj, timeout=60)
        assert None not in times.values(), times


async def accounted(mesh: Mesh, mc: MeshClient, runs: dict[str, PublishRun], figures: dict[str, Any]) -> None:
    """Every acked id in the origin and every copy, exactly once; the counts go into FIGURES."""
    acked = lost = duplicated = failed = 0
    problems = []
    for pub in runs.values():
        acked += len(pub.acked)
        failed += len(pub.failed)
        for check in await verify(mesh, mc, pub, settle=30):
            lost += len(check.lost)
            duplicated += check.duplicated
            if not check.ok:
                problems.append(check.to_json())
    longest = {ref.split("/")[0][-1]: round(pub.longest_wait, 2) for ref, pub in runs.items()}
    figures.update(acked=acked, publish_failed=failed, lost=lost, duplicated=duplicated, longest_ack_wait=longest)
    if problems:
        figures["copies"] = await _copy_states(mesh, mc, {p["stream"] for p in problems})
    assert not problems, problems
    assert failed == 0, "publishes that were never acknowledged even after retries"


async def _copy_states(mesh: Mesh, mc: MeshClient, refs: set[str]) -> dict[str, Any]:
    """For a failed check: each stream's state, what it reads from upstream, and the owner's consumer for it."""
    out: dict[str, Any] = {}
    for ref in sorted(refs):
        domain, stream = ref.split("/", 1)
        try:
            info = await (await mc.jetstream(domain)).stream_info(stream)
        except Exception as exc:
            out[ref] = f"stream info: {exc!r}"
            continue
        st = info.state
        doc: dict[str, Any] = {"first": st.first_seq, "last": st.last_seq, "messages": st.messages}
        doc["deleted"] = st.num_deleted
        upstream = [info.mirror] if info.mirror else list(info.sources or [])
        doc["upstream"] = [{"name": u.name, "lag": u.lag, "active": u.active, "error": u.error} for u in upstream]
        for share in mesh.shares:
            if share.taker == domain and share.copy == stream:
                try:
                    ci = await (await mc.jetstream(share.owner)).consumer_info(share.stream, share.consumer)
                    doc[share.consumer] = {
                        "delivered": [ci.delivered.consumer_seq, ci.delivered.stream_seq],
                        "ack_floor": [ci.ack_floor.consumer_seq, ci.ack_floor.stream_seq],
                        "pending": ci.num_pending,
                        "ack_pending": ci.num_ack_pending,
                        "redelivered": ci.num_redelivered,
                    }
                except Exception as exc:
                    doc[share.consumer] = f"consumer info: {exc!r}"
        out[ref] = doc
    return out


def links_at_hub(mesh: Mesh, skip: set[str] = frozenset()) -> dict[str, list[str]]:  # type: ignore[assignment]
    """Hub node -> names of the leaf servers linked to it (one entry per link), for hub nodes not in SKIP."""
    out: dict[str, list[str]] = {}
    for h in mesh.hub.nodes:
        if h.name in skip:
            continue
        try:
            leafz = http_json(mesh.host, h.http_port, "/leafz", timeout=0.5)
        except (OSError, ValueError):
            continue
        out[h.name] = [lf.get("name", "") for lf in leafz.get("leafs") or []]
    return out


def count_links(by_hub: dict[str, list[str]], domain: str | None = None) -> int:
    return sum(1 for names in by_hub.values() for n in names if domain is None or n.startswith(domain + "-"))


async def until_relinked(
    mesh: Mesh,
    start: float,
    total: int,
    seconds: float,
    every: float,
    domain: str | None = None,
    skip: set[str] = frozenset(),  # type: ignore[assignment]
    after: float = 0.0,
) -> tuple[Seconds, dict[str, list[str]]]:
    """Every EVERY seconds, until SECONDS after START: are TOTAL links (of DOMAIN's servers, or all) at the hub
    nodes not in SKIP again, later than AFTER seconds after START? How long after START (None: not in time), and
    the links last seen (`links_at_hub`)."""
    links: dict[str, list[str]] = {}
    while time.monotonic() - start < seconds:
        links = await asyncio.to_thread(links_at_hub, mesh, skip)
        if count_links(links, domain) == total and time.monotonic() - start > after:
            return time.monotonic() - start, links
        await asyncio.sleep(every)
    return None, links


async def test_f1_partition_one_domain(fault_mesh: Mesh, figures: dict[str, Any]) -> None:
    """Partition a for 20 s: its producers keep succeeding; b's and c's data keeps reaching the hub; a's copies
    elsewhere are complete within 3 s of healing; exact id sets."""
    mesh = fault_mesh
    async with MeshClient(mesh, name="f1") as mc:
        await settled(mesh, mc)
        traffic = Traffic(mc)
        await asyncio.sleep(2)
        acked_before = {ref: await held(mc, ref) for ref in PRODUCTS}
        chaos.partition(mesh, A, 20)
        hub_b0 = await held(mc, "hub/ACTIVITY", PRODUCTS[f"{B}/PAYMENTS"])
        mirror0 = await held(mc, f"{B}/ORDERS_FROM_A")
        await asyncio.sleep(19.5)
        hub_b1 = await held(mc, "hub/ACTIVITY", PRODUCTS[f"{B}/PAYMENTS"])
        a_during = await held(mc, f"{A}/ORDERS") - acked_before[f"{A}/ORDERS"]
        mirror_during = await held(mc, f"{B}/ORDERS_FROM_A") - mirror0
        await asyncio.sleep(0.5)  # the supervisor lifts the partition at 20 s
        times = await traffic.recovered(mesh, figures)
    figures.update(
        partition_seconds=20,
        a_stored_during_partition=a_during,
        b_reached_hub_during_partition=hub_b1 - hub_b0,
        a_reached_b_during_partition=mirror_during,
        catch_up_seconds=rounded_all(times),
    )
    assert a_during >= 0.8 * RATE * 19, "a's producers must keep succeeding locally while cut off"
    assert mirror_during <= RATE, "the partition must cut a's data off (at most what was in flight)"
    assert hub_b1 - hub_b0 >= 0.8 * RATE * 19, "other domains must be unaffected"
    assert all(v is not None and v <= 3.0 for v in times.values()), times


async def _longest_stall(mc: MeshClient, ref: str, subject: str, seconds: float) -> float:
    """Sample how many messages on SUBJECT REF holds for SECONDS; the longest time it did not grow."""
    last, since, worst = -1, time.monotonic(), 0.0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            n = await held(mc, ref, subject)
        except Exception:
            n = last
        now = time.monotonic()
        if n != last:
            last, since = n, now
        worst = max(worst, now - since)
        await asyncio.sleep(0.1)
    return worst


async def test_f2_bounce_one_source_of_the_hub_aggregate(fault_mesh: Mesh, figures: dict[str, Any]) -> None:
    """Restart every server of c (one of the three domains ACTIVITY sources): a's and b's sources show no gap
    and no duplicate; c's resumes."""
    mesh = fault_mesh
    async with MeshClient(mesh, name="f2") as mc:
        await settled(mesh, mc)
        traffic = Traffic(mc)
        await asyncio.sleep(2)
        chaos.restart(mesh, C)
        stall_a, stall_b = await asyncio.gather(
            _longest_stall(mc, "hub/ACTIVITY", PRODUCTS[f"{A}/ORDERS"], 12),
            _longest_stall(mc, "hub/ACTIVITY", PRODUCTS[f"{B}/PAYMENTS"], 12),
        )
        await asyncio.to_thread(wait_ready, mesh, 60)
        times = await traffic.recovered(mesh, figures, f"{C}/SHIPMENTS")
    figures.update(
        longest_gap_seconds={"a": round(stall_a, 2), "b": round(stall_b, 2)},
        c_catch_up_after_ready_seconds=rounded_all(times),
    )
    # 40 messages a second arrive about every 25 ms; a gap of a second would be a stall of the source
    assert stall_a < 1.0 and stall_b < 1.0, (stall_a, stall_b)
    assert all(v is not None and v <= 20 for v in times.values()), times


async def test_f3_flapping_links(fault_mesh: Mesh, figures: dict[str, Any]) -> None:
    """Cut a's links for 2 s every 4 s for 60 s: the hub aggregate ends equal to the sum of its origins."""
    mesh = fault_mesh
    flaps = 0
    async with MeshClient(mesh, name="f3") as mc:
        await settled(mesh, mc)
        traffic = Traffic(mc)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            chaos.partition(mesh, A, 2)
            flaps += 1
            await asyncio.sleep(4)
        times = await traffic.recovered(mesh, figures)
        await settled(mesh, mc)
        origins = {ref: await held(mc, ref, subj) for ref, subj in PRODUCTS.items()}
        aggregate = {ref: await held(mc, "hub/ACTIVITY", subj) for ref, subj in PRODUCTS.items()}
    figures.update(
        flaps=flaps,
        catch_up_after_last_flap_seconds=rounded_all(times),
        origins=sum(origins.values()),
        aggregate=sum(aggregate.values()),
    )
    assert aggregate == origins


async def test_f4_kill_the_hub_node_holding_a_domains_links(fault_mesh: Mesh, figures: dict[str, Any]) -> None:
    """SIGKILL the hub node most of a's links are on: they are back, on the other hub nodes, within 2 s."""
    mesh = fault_mesh
    async with MeshClient(mesh, name="f4") as mc:
        await settled(mesh, mc)
        total = 2 * len(mesh.domain(A).nodes)  # system and data account per server
        by_hub = links_at_hub(mesh)
        victim = max(by_hub, key=lambda h: count_links({h: by_hub[h]}, A))
        moved = count_links({victim: by_hub[victim]}, A)
        traffic = Traffic(mc)
        await asyncio.sleep(2)
        start = time.monotonic()
        chaos.kill(mesh, victim)
        relinked, now_links = await until_relinked(mesh, start, total, 30, every=0.05, domain=A, after=0.05)
        where = {h: count_links({h: names}, A) for h, names in now_links.items()}
        times = await traffic.recovered(mesh, figures)
    figures.update(
        killed=victim,
        links_on_it=moved,
        relinked_seconds=rounded(relinked),
        links_after=where,
        catch_up_seconds=rounded_all(times),
    )
    assert relinked is not None and relinked <= 2.0, figures


async def test_f5_kill_the_stream_leader(fault_mesh: Mesh, figures: dict[str, Any]) -> None:
    """SIGKILL ORDERS' leader while publishing with retries and message ids: nothing acked lost, no duplicate."""
    mesh = fault_mesh
    async with MeshClient(mesh, name="f5") as mc:
        await settled(mesh, mc)
        traffic = Traffic(mc)
        await asyncio.sleep(2)
        js = await mc.jetstream(A)
        leader = (await js.stream_info("ORDERS")).cluster.leader  # type: ignore[union-attr]
        assert leader
        chaos.kill(mesh, leader)
        await asyncio.sleep(5)
        runs = await traffic.finish()
        retries = runs[f"{A}/ORDERS"].retries
        await accounted(mesh, mc, runs, figures)
        new_leader = (await js.stream_info("ORDERS")).cluster.leader  # type: ignore[union-attr]
    figures.update(killed_leader=leader, leader_after=new_leader, publish_retries=retries)
    assert retries > 0, "the kill must have interrupted publishing (else this proves nothing)"


async def test_f6_kill_every_server_of_a_domain(fault_mesh: Mesh, figures: dict[str, Any]) -> None:
    """SIGKILL all of a's servers at once: after the supervisor restarts them nothing acked is lost and a's
    copies in other domains are complete again within 20 s."""
    mesh = fault_mesh
    async with MeshClient(mesh, name="f6") as mc:
        await settled(mesh, mc)
        traffic = Traffic(mc)
        await asyncio.sleep(2)
        start = time.monotonic()
        for n in mesh.domain(A).nodes:
            chaos.kill(mesh, n.name)
        a_targets = [t for t in targets(mesh) if t.cluster == A]
        await asyncio.sleep(0.5)
        await asyncio.to_thread(wait_ready, a_targets, 60)
        back = time.monotonic() - start
        times = await traffic.recovered(mesh, figures)
    figures.update(
        domain_ready_seconds=round(back, 2),
        catch_up_after_ready_seconds=rounded_all(times),
    )
    assert all(v is not None and v <= 20 for v in times.values()), times


async def test_f7_pause_a_hub_node(fault_mesh: Mesh, figures: dict[str, Any]) -> None:
    """SIGSTOP the hub node with the most links for 30 s: every link is on the other hub nodes within the
    ping bound (ping_interval x (ping_max + 1), a relink, and one try at the stopped node, which its failover
    list may pick again: the kernel takes the connection, nats-server's 2 s leaf handshake wait ends it),
    copies flow again, and all recover after."""
    mesh = fault_mesh
    bound = 4.0 * (3 + 1) + 2.0 + 2.0  # noticed, relinked, and one handshake wait at the stopped node
    async with MeshClient(mesh, name="f7") as mc:
        await settled(mesh, mc)
        total = count_links(links_at_hub(mesh))
        by_hub = links_at_hub(mesh)
        victim = max(by_hub, key=lambda h: len(by_hub[h]))
        on_victim = len(by_hub[victim])
        traffic = Traffic(mc)
        await asyncio.sleep(2)
        start = time.monotonic()
        pauser = asyncio.create_task(asyncio.to_thread(chaos.pause, mesh, victim, 30.0))
        rerouted, _ = await until_relinked(mesh, start, total, 29, every=0.2, skip={victim})
        flowing = None
        if rerouted is not None:  # a's copies in other leaf domains move again while the node is still stopped
            flow = await catch_up(
                mesh, mc, f"{A}/ORDERS", PRODUCTS[f"{A}/ORDERS"], timeout=max(1, 29 - rerouted), among=LEAF_COPIES
            )
            flowing = (
                max((v for v in flow.values() if v is not None), default=None) if None not in flow.values() else None
            )
        await pauser
        await asyncio.to_thread(wait_ready, mesh, 60)
        times = await traffic.recovered(mesh, figures)
    figures.update(
        paused=victim,
        links_on_it=on_victim,
        rerouted_seconds=rounded(rerouted),
        bound_seconds=bound,
        copies_complete_after_reroute_seconds=rounded(flowing),
        catch_up_after_continue_seconds=rounded_all(times),
    )
    assert rerouted is not None and rerouted <= bound, figures
    assert flowing is not None, "copies must flow again while the hub node is still stopped"


async def _snapshot(mesh: Mesh, mc: MeshClient) -> dict[str, Any]:
    """Every stream of every domain (state and config) and every catalog entry."""
    out: dict[str, Any] = {}
    for cluster in mesh.clusters:
        js = await mc.jetstream(cluster.name)
        for info in (await list_streams(await mc.connection(cluster.name))).values():  # all, none "missing"
            st = info.state
            cfg = info.config
            out[f"{cluster.name}/{cfg.name}"] = {
                "messages": st.messages,
                "bytes": st.bytes,
                "first_seq": st.first_seq,
                "last_seq": st.last_seq,
                "subjects": sorted(cfg.subjects or []),
                "mirror": cfg.mirror.name if cfg.mirror else None,
                "sources": sorted(s.name for s in cfg.sources or []),
                "replicas": cfg.num_replicas,
            }
            if cfg.name.startswith("KV_"):
                kv = await js.key_value(cfg.name[3:])
                keys: list[str] = []
                for _ in range(40):  # a listing right after a restart can come back empty: ask until it agrees
                    try:
                        keys = await kv.keys()
                    except NoKeysError:
                        keys = []
                    if keys or not st.messages:
                        break
                    await asyncio.sleep(0.25)
                for key in keys:
                    entry = await kv.get(key)
                    out[f"{cluster.name}/{cfg.name}/{key}"] = (entry.revision, (entry.value or b"").decode())
    return out


async def test_f8_down_and_up_keeps_everything(fault_mesh: Mesh, figures: dict[str, Any], tmp_path: Path) -> None:
    """`down` then `up` of the whole mesh: every product, consumption, catalog entry and message intact, and
    copies flowing again right after (ordered start)."""
    from natsmesh.run import lifecycle

    mesh = fault_mesh
    async with MeshClient(mesh, name="f8") as mc:
        await settled(mesh, mc)
        before = await _snapshot(mesh, mc)
    start = time.monotonic()
    await asyncio.to_thread(lifecycle.down, mesh)
    down_s = time.monotonic() - start
    start = time.monotonic()
    res = await asyncio.to_thread(lifecycle.up_detached, mesh, timeout=90, owner_pid=os.getpid(), chaos=True)
    async with MeshClient(mesh, name="f8") as mc:
        await settled(mesh, mc)  # ready means meta leaders; stream leaders follow a moment later
        after = await _snapshot(mesh, mc)
        traffic = Traffic(mc)
        await asyncio.sleep(3)
        times = await traffic.recovered(mesh, figures)
    figures.update(
        down_seconds=round(down_s, 2),
        up_seconds=round(res.seconds, 2),
        streams_and_entries=len(before),
        catch_up_after_up_seconds=rounded_all(times),
    )
    assert after == before
    assert all(v is not None and v <= 5 for v in times.values()), times


async def test_f8_single_replica_mirror_resumes_after_a_full_restart(
    runner: MeshRunner, tmp_path: Path, figures: dict[str, Any]
) -> None:
    """Single-node domains hold R1 mirrors, which no API call can restart: the ordered start (hub, owners,
    consumers) keeps their first request from being lost, so they resume at once instead of after 30 s."""
    from helpers import read_state
    from natsmesh.run import lifecycle

    doc = yaml.safe_load(small_mesh_text(tmp_path / "d", domains=2, nodes=1))
    doc["domains"][0]["products"] = [{"name": "ORDERS", "subjects": ["leaf-domain-a.orders.>"]}]
    doc["domains"][1]["consumes"] = [{"product": "leaf-domain-a/ORDERS", "as": "ORDERS_FROM_A"}]
    mesh = runner.load(yaml.safe_dump(doc))
    await asyncio.to_thread(runner.up, mesh)
    ref, subject = "leaf-domain-a/ORDERS", "leaf-domain-a.orders.lc"
    async with MeshClient(mesh, name="f8b") as mc:
        await reconcile(mesh, mc=mc)
        first = await publish_steady(mc, ref, count=200, rate=1000, subject=subject)
        assert None not in (await catch_up(mesh, mc, ref, subject, timeout=30)).values()
    await asyncio.to_thread(lifecycle.down, mesh)
    await asyncio.to_thread(runner.up, mesh)
    stages = [e for e in (read_state(mesh) or {}).get("events", []) if "ordered start" in e]
    async with MeshClient(mesh, name="f8b") as mc:
        second = await publish_steady(mc, ref, count=200, rate=1000, subject=subject)
        times = await catch_up(mesh, mc, ref, subject, timeout=60)
        await accounted(mesh, mc, {ref: first, f"{ref}#2": second}, figures)
    figures.update(ordered_start=stages, catch_up_after_up_seconds=times)
    assert len(stages) == 2  # hub, then the owner, then the consumer
    assert all(v is not None and v <= 5 for v in times.values()), times
