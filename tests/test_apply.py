"""Integration: data products declared in the spec, applied to a real mesh, shared across domains, observed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import nats.js.errors
import pytest
import yaml
from nats.js.api import StreamConfig

from helpers import MeshRunner, example_on_free_ports, read_state, run_cli, small_mesh_text
from natsmesh.client import MeshClient
from natsmesh.errors import (
    ConfigRejectedError,
    PlanRefusedError,
    PublishError,
    StreamListError,
    UnknownProductError,
)
from natsmesh.local.secrets import load_credentials
from natsmesh.local.specfile import parse_spec
from natsmesh.model import checks, document
from natsmesh.model.mesh import Mesh
from natsmesh.model.topology import monitor_host
from natsmesh.observe.info import mesh_info
from natsmesh.observe.lag import measure
from natsmesh.observe.monitor import config_load_time
from natsmesh.observe.readiness import wait_ready
from natsmesh.observe.streams import list_streams
from natsmesh.reconcile.apply import reconcile
from natsmesh.reconcile.catalog import read_catalog

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def data_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """examples/data-mesh.yaml (the seed topology with products) running on free ports, not yet applied."""
    tmp = tmp_path_factory.mktemp("data-mesh")
    r = MeshRunner(tmp)
    text = example_on_free_ports("data-mesh.yaml", tmp / "data")
    (tmp / "mesh.yaml").write_text(text)
    mesh = parse_spec(text, source=str(tmp / "mesh.yaml"), base_dir=tmp)
    r.up(mesh)
    try:
        yield mesh
    finally:
        r.close()


def variant(mesh: Mesh, path: Path, change: object) -> Path:
    """A copy of MESH's spec with CHANGE(doc) applied, written to PATH (same ports, same data dir)."""
    doc = json.loads(json.dumps(mesh.document))
    change(doc)  # type: ignore[operator]
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


async def streams_of(mc: MeshClient, mesh: Mesh) -> dict[str, dict[str, int]]:
    out = {}
    for c in mesh.clusters:
        infos = await list_streams(await mc.connection(c.name))
        out[c.name] = {name: i.state.messages for name, i in infos.items()}
    return out


async def wait_count(mc: MeshClient, domain: str, stream: str, count: int, timeout: float = 30.0) -> None:
    js = await mc.jetstream(domain)
    deadline = time.monotonic() + timeout
    while (n := (await js.stream_info(stream)).state.messages) < count:
        assert time.monotonic() < deadline, f"{domain}/{stream} has {n} of {count} messages"
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.3)  # let any duplicate arrive before counting exactly
    assert (await js.stream_info(stream)).state.messages == count


async def all_messages(mc: MeshClient, domain: str, stream: str) -> list[tuple[int, str, bytes]]:
    js = await mc.jetstream(domain)
    info = await js.stream_info(stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        for attempt in range(3):  # a read is safe to repeat; one can be lost while a new stream's leader settles
            try:
                msg = await js.get_msg(stream, seq)
                break
            except nats.errors.TimeoutError:
                if attempt == 2:
                    raise
        out.append((msg.seq or seq, msg.subject or "", msg.data or b""))
    return out


ACCOUNTS_ROW = 1  # operator mode: the plan says whether the hub's resolver holds the spec's accounts


# ---------------------------------------------------------------------------------------------------------------


async def test_dry_run_changes_nothing(data_mesh: Mesh) -> None:
    async with MeshClient(data_mesh) as mc:
        before = await streams_of(mc, data_mesh)
        plan = await reconcile(data_mesh, dry_run=True, mc=mc)
        assert not plan.applied
        # catalog bucket, 5 products, 5 consumptions, 9 owner consumers (one per copy's upstream), 5 catalog
        # entries, a read copy of the catalog in 5 domains
        assert plan.summary()["create"] == 1 + 5 + 5 + 9 + 5 + 5
        assert await streams_of(mc, data_mesh) == before == {c.name: {} for c in data_mesh.clusters}


async def test_apply_creates_everything_then_is_idempotent(data_mesh: Mesh) -> None:
    async with MeshClient(data_mesh) as mc:
        first = await reconcile(data_mesh, mc=mc)
        assert first.applied and first.summary()["create"] == 30
        second = await reconcile(data_mesh, mc=mc)
        assert second.summary() == {
            "create": 0,
            "update": 0,
            "unchanged": 30 + ACCOUNTS_ROW * (data_mesh.trust == "operator"),
            "delete": 0,
            "would-delete": 0,
            "refused": 0,
        }
        streams = await streams_of(mc, data_mesh)
        assert set(streams["leaf-domain-a"]) == {"ORDERS", "CUSTOMERS", "KV_natsmesh_catalog"}
        assert set(streams["leaf-domain-c"]) == {"INVOICES", "ORDERS", "EU_SHIPMENTS", "KV_natsmesh_catalog"}
        audit = {"natsmesh_audit"} if data_mesh.trust == "operator" else set()  # every apply, recorded and signed
        assert set(streams["hub"]) == {"ALL_ACTIVITY", "KV_natsmesh_catalog"} | audit


async def test_product_mirrored_in_two_domains_identically(data_mesh: Mesh) -> None:
    async with MeshClient(data_mesh) as mc:
        async with mc.publisher("leaf-domain-a/ORDERS", max_inflight=200) as pub:
            for i in range(500):
                await pub.publish(f'{{"order": {i}}}'.encode(), subject=f"sales.orders.{('eu', 'us')[i % 2]}.{i}")
        assert pub.acked == 500
        for domain in ("leaf-domain-b", "leaf-domain-c"):
            await wait_count(mc, domain, "ORDERS", 500)
        origin = await all_messages(mc, "leaf-domain-a", "ORDERS")
        assert [seq for seq, _, _ in origin] == list(range(1, 501))
        for domain in ("leaf-domain-b", "leaf-domain-c"):
            assert await all_messages(mc, domain, "ORDERS") == origin  # same content, same sequence numbers


async def test_hub_aggregate_sources_three_domains_exactly(data_mesh: Mesh) -> None:
    async with MeshClient(data_mesh) as mc:
        for i in range(40):
            await mc.publish(
                "leaf-domain-b/SHIPMENTS", f"ship-{i}".encode(), subject=f"shipping.shipments.{('eu', 'us')[i % 2]}.{i}"
            )
        async with mc.publisher("leaf-domain-d/STOCK", subject="inventory.stock.w1") as pub:
            for i in range(60):
                await pub.publish(f"stock-{i}".encode())
        await wait_count(mc, "hub", "ALL_ACTIVITY", 500 + 40 + 60)
        msgs = await all_messages(mc, "hub", "ALL_ACTIVITY")
        payloads = [(subj, data) for _, subj, data in msgs]
        assert len(set(payloads)) == len(payloads) == 600  # no duplicates
        assert sum(1 for s, _ in payloads if s.startswith("sales.orders.")) == 500
        assert sum(1 for s, _ in payloads if s.startswith("shipping.shipments.")) == 40
        assert sum(1 for s, _ in payloads if s.startswith("inventory.stock.")) == 60
        await wait_count(mc, "leaf-domain-e", "ACTIVITY", 600)  # another aggregate of the same three products
        copy = await all_messages(mc, "leaf-domain-e", "ACTIVITY")
        assert sorted((subj, data) for _, subj, data in copy) == sorted(payloads)


async def test_filtered_source_takes_only_its_subjects(data_mesh: Mesh) -> None:
    async with MeshClient(data_mesh) as mc:
        await wait_count(mc, "leaf-domain-c", "EU_SHIPMENTS", 20)
        msgs = await all_messages(mc, "leaf-domain-c", "EU_SHIPMENTS")
        assert all(subj.startswith("shipping.shipments.eu.") for _, subj, _ in msgs)
        assert sorted(int(subj.rsplit(".", 1)[1]) for _, subj, _ in msgs) == list(range(0, 40, 2))


async def test_catalog_is_read_from_a_leaf_domain_client(data_mesh: Mesh) -> None:
    url = mesh_info(data_mesh, load_credentials(data_mesh, create=False))["domains"]["leaf-domain-e"]["url"]
    nc = await nats.connect(url)  # a plain client on leaf-domain-e's own server
    try:
        entries = await read_catalog(nc.jetstream())  # the cluster's read copy of what it may read, by `apply`
        # and the hub's JetStream is not theirs to use (the hub drops it: a timeout, see docs/design/isolation.md)
        with pytest.raises((nats.js.errors.ServiceUnavailableError, nats.errors.TimeoutError)):
            await nc.jetstream(domain="hub", timeout=1).stream_info("KV_natsmesh_catalog")
    finally:
        await nc.close()
    # the three products its ACTIVITY sources; not a/CUSTOMERS or c/INVOICES, which are not shared with it
    assert set(entries) == {"leaf-domain-a.ORDERS", "leaf-domain-b.SHIPMENTS", "leaf-domain-d.STOCK"}
    orders = entries["leaf-domain-a.ORDERS"]
    assert orders["owner"] == "sales-team@example.com" and orders["subjects"] == ["sales.orders.>"]
    assert {(c["domain"], c["stream"], c["mode"]) for c in orders["consumed_by"]} == {
        ("leaf-domain-b", "ORDERS", "mirror"),
        ("leaf-domain-c", "ORDERS", "mirror"),
        ("hub", "ALL_ACTIVITY", "source"),
        ("leaf-domain-e", "ACTIVITY", "source"),
    }
    assert orders["created"] and orders["updated"]


def test_cli_apply_pub_tail_catalog_lineage_lag(data_mesh: Mesh) -> None:
    spec = data_mesh.source
    res = run_cli("apply", "-f", spec, "--json")
    assert res.returncode == 0, res.stderr
    plan = json.loads(res.stdout)
    unchanged = 30 + ACCOUNTS_ROW * (data_mesh.trust == "operator")
    assert plan["summary"]["unchanged"] == unchanged, [c for c in plan["changes"] if c["action"] != "unchanged"]
    res = run_cli("pub", "leaf-domain-c/INVOICES", '{"invoice": 1}', "--subject", "billing.invoices.1", "-f", spec)
    assert res.returncode == 0 and "stream last sequence 1" in res.stdout, res.stderr
    res = run_cli("tail", "leaf-domain-c/INVOICES", "-f", spec, "--json")
    assert json.loads(res.stdout.splitlines()[-1]) == {
        "seq": 1,
        "subject": "billing.invoices.1",
        "data": '{"invoice": 1}',
    }
    res = run_cli("catalog", "show", "leaf-domain-d/STOCK", "-f", spec, "--json")
    assert json.loads(res.stdout)["consumed_by"] == [
        {"domain": "hub", "stream": "ALL_ACTIVITY", "mode": "source"},
        {"domain": "leaf-domain-e", "stream": "ACTIVITY", "mode": "source"},
    ]
    res = run_cli("catalog", "list", "-f", spec)
    assert "leaf-domain-b/SHIPMENTS" in res.stdout and "logistics@example.com" in res.stdout
    res = run_cli("report", "lag", "-f", spec, "--json", "--max-lag", "0")
    assert res.returncode == 0, res.stdout
    assert len(json.loads(res.stdout)["rows"]) == 9
    res = run_cli("catalog", "show", "leaf-domain-a/NOPE", "-f", spec)
    assert res.returncode == 1 and "not in the catalog" in res.stderr and "Traceback" not in res.stderr


async def test_durable_consumer_resumes_after_the_last_ack(data_mesh: Mesh) -> None:
    async with MeshClient(data_mesh) as mc:
        seen = []
        async for msg in mc.consume("leaf-domain-b/ORDERS", durable="audit", batch=1, idle_timeout=5):
            seen.append(msg.metadata.sequence.stream)
            await msg.ack()
            if len(seen) == 10:
                break
        assert seen == list(range(1, 11))
        async for msg in mc.consume("leaf-domain-b/ORDERS", durable="audit", batch=1, idle_timeout=5):
            assert msg.metadata.sequence.stream == 11
            break
        ordered = [m.metadata.sequence.stream async for m in mc.consume("leaf-domain-c/ORDERS", idle_timeout=3)]
        assert ordered == list(range(1, 501))


def test_bad_spec_is_rejected_before_anything_changes(data_mesh: Mesh, tmp_path: Path) -> None:
    def bad(doc: dict) -> None:  # type: ignore[type-arg]
        doc["domains"][3]["products"].append({"name": "NEW", "subjects": ["inventory.new.>"]})
        doc["domains"][4]["consumes"].append({"product": "leaf-domain-d/MISSING"})

    path = variant(data_mesh, tmp_path / "bad.yaml", bad)
    before = asyncio.run(_streams(data_mesh))
    res = run_cli("apply", "-f", str(path))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "domain 'leaf-domain-d' has no product 'MISSING'" in res.stderr
    assert asyncio.run(_streams(data_mesh)) == before


async def test_a_config_nats_server_refuses_changes_no_file_and_reloads_no_node(
    runner: MeshRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The safety net behind validation (config mode: an operator-mode hub's configs name no product, its accounts
    are claims). With validation made as lax as it was (a name's final newline let by), one domain's public
    product `STOCK2\\n` renders hub configs nats-server refuses ("invalid subject"): before, apply wrote them, the
    reload timed out and a killed hub node could not restart. Now apply asks nats-server (`-t`) about every config
    it would change first: refused, nothing written, no node reloaded, and a hub node killed afterwards restarts."""
    doc = yaml.safe_load(small_mesh_text(tmp_path / "d", domains=2, nodes=1, hub_nodes=3))
    doc["trust"] = "config"
    doc["domains"][1]["products"] = [{"name": "STOCK", "subjects": ["leaf-domain-b.stock.>"], "public": True}]
    spec = runner.write(yaml.safe_dump(doc, sort_keys=False), "net.yaml")
    running = runner.up(runner.load(spec.read_text()))
    await reconcile(running)
    monkeypatch.setattr(document, "NAME_RE", re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*\n?"))
    monkeypatch.setattr(checks, "string_problems", lambda value, lines: [])
    doc["domains"][1]["products"].append({"name": "STOCK2\n", "subjects": ["leaf-domain-b.stock2.>"], "public": True})
    mesh = parse_spec(yaml.safe_dump(doc, sort_keys=False), base_dir=tmp_path, cache=False)
    assert "STOCK2\n" in {p.name for p in mesh.products}  # the lax validation let it by
    confs = {p: p.read_bytes() for p in running.data_dir.glob("*/*.conf")}
    loaded = {n.name: config_load_time(monitor_host(n), n.http_port) for n in running.nodes()}
    before = await _streams(running)
    for dry_run in (True, False):
        with pytest.raises(ConfigRejectedError) as err:
            await reconcile(mesh, dry_run=dry_run)
        assert "hub-cluster/hub-server-0.conf" in str(err.value) and "invalid subject" in str(err.value), err.value
        assert "nothing was written and no node reloaded" in str(err.value)
    assert {p: p.read_bytes() for p in running.data_dir.glob("*/*.conf")} == confs
    assert {n.name: config_load_time(monitor_host(n), n.http_port) for n in running.nodes()} == loaded
    assert await _streams(running) == before
    victim = running.hub.nodes[2]
    os.kill(read_state(running)["nodes"][victim.name]["pid"], signal.SIGKILL)  # type: ignore[index]
    await asyncio.to_thread(wait_ready, running, 60.0)
    assert config_load_time(monitor_host(victim), victim.http_port) != loaded[victim.name]  # a new process
    deadline = time.monotonic() + 60
    while True:  # and the hub's streams answer again, as they were
        with contextlib.suppress(StreamListError):
            if await _streams(running) == before:
                break
        assert time.monotonic() < deadline, "the hub's streams did not come back within 60 s of the restart"
        await asyncio.sleep(0.5)


async def _streams(mesh: Mesh) -> dict[str, dict[str, int]]:
    async with MeshClient(mesh) as mc:
        return await streams_of(mc, mesh)


async def test_in_place_impossible_change_is_refused_and_nothing_applied(data_mesh: Mesh, tmp_path: Path) -> None:
    def change(doc: dict) -> None:  # type: ignore[type-arg]
        doc["domains"][0]["products"][0]["storage"] = "memory"
        doc["domains"][3]["products"].append({"name": "NEW", "subjects": ["inventory.new.>"]})

    mesh = parse_spec(variant(data_mesh, tmp_path / "v.yaml", change).read_text(), base_dir=data_mesh.base_dir)
    async with MeshClient(mesh) as mc:
        with pytest.raises(PlanRefusedError, match=r"leaf-domain-a/ORDERS uses file storage and the spec wants memory"):
            await reconcile(mesh, mc=mc)
        assert "NEW" not in (await streams_of(mc, mesh))["leaf-domain-d"]


async def test_changed_product_is_updated_in_place_and_in_the_catalog(data_mesh: Mesh, tmp_path: Path) -> None:
    def change(doc: dict) -> None:  # type: ignore[type-arg]
        stock = doc["domains"][3]["products"][0]
        stock["description"] = "Stock levels, now with limits."
        stock["limits"] = {"max_msgs": 5000}
        stock["subjects"] = ["inventory.stock.>", "inventory.audit.>"]

    mesh = parse_spec(variant(data_mesh, tmp_path / "v.yaml", change).read_text(), base_dir=data_mesh.base_dir)
    async with MeshClient(mesh) as mc:
        before = (await read_catalog(await mc.jetstream("hub")))["leaf-domain-d.STOCK"]
        plan = await reconcile(mesh, mc=mc)
        updates = {
            (c.kind, c.name): c.detail for c in plan.changes if c.action == "update" and c.kind != "catalog-copy"
        }
        assert set(updates) == {("product", "STOCK"), ("catalog", "leaf-domain-d.STOCK")}
        assert "max_msgs: -1 -> 5000" in updates[("product", "STOCK")]
        assert "subjects:" in updates[("product", "STOCK")]
        info = await (await mc.jetstream("leaf-domain-d")).stream_info("STOCK")
        assert info.config.max_msgs == 5000 and info.state.messages == 60  # updated in place, data kept
        assert sorted(info.config.subjects or []) == ["inventory.audit.>", "inventory.stock.>"]
        after = (await read_catalog(await mc.jetstream("hub")))["leaf-domain-d.STOCK"]
        assert after["description"] == "Stock levels, now with limits."
        assert after["created"] == before["created"]
        assert (await reconcile(mesh, mc=mc)).summary()["update"] == 0
        restored = await reconcile(data_mesh, mc=mc)  # back to the module's spec for the tests after this one
        assert [(c.kind, c.name) for c in restored.changes if c.action == "update" and c.kind != "catalog-copy"] == [
            ("product", "STOCK"),
            ("catalog", "leaf-domain-d.STOCK"),
        ]


async def test_publish_failures_surface(data_mesh: Mesh) -> None:
    async with MeshClient(data_mesh) as mc:
        with pytest.raises(UnknownProductError, match="is not one of leaf-domain-a/CUSTOMERS's"):
            async with mc.publisher("leaf-domain-a/CUSTOMERS") as pub:
                await pub.publish(b"x", subject="sales.orders.1")
        with pytest.raises(PublishError, match="3 of 5 messages were not acknowledged"):
            async with mc.publisher("leaf-domain-a/CUSTOMERS", check_subjects=False) as pub:
                for i in range(5):  # sales.nowhere.* is captured by no stream: no ack can come
                    await pub.publish(b"x", subject="sales.customers.1" if i < 2 else f"sales.nowhere.{i}")


async def test_publish_waits_briefly_for_a_new_stream_then_names_the_unapplied_product(
    data_mesh: Mesh, tmp_path: Path
) -> None:
    def change(doc: dict) -> None:  # type: ignore[type-arg]
        doc["domains"][3]["products"].append({"name": "NEWP", "subjects": ["inventory.newp.>"]})

    spec = Path(data_mesh.source)  # the mesh's own spec, changed for a moment (another file is another mesh)
    original = spec.read_text()
    variant(data_mesh, spec, change)
    try:
        why = "no stream of domain 'leaf-domain-d' took 'inventory.newp.1': is leaf-domain-d/NEWP applied?"
        for stdin in (None, "a\nb\n"):  # one message (`MeshClient.publish`), several (`Publisher`)
            args = ["pub", "leaf-domain-d/NEWP", *([] if stdin else ["x"]), "--subject", "inventory.newp.1"]
            res = run_cli(*args, "-f", str(spec), input=stdin)
            assert res.returncode == 1 and "Traceback" not in res.stderr and why in res.stderr, res.stderr
        mesh = parse_spec(spec.read_text(), base_dir=data_mesh.base_dir)
    finally:
        spec.write_text(original)

    async def many() -> None:
        async with mc.publisher("leaf-domain-d/NEWP", subject="inventory.newp.2") as pub:
            for i in range(100):
                await pub.publish(str(i).encode())

    async with MeshClient(mesh) as mc:
        js = await mc.jetstream("leaf-domain-d")
        for start, count in (
            (lambda: mc.publish("leaf-domain-d/NEWP", b"1", subject="inventory.newp.1", settle=10), 1),
            (many, 100),
        ):
            publishing = asyncio.create_task(start())  # type: ignore[operator]
            await asyncio.sleep(0.5)  # the stream appears while the first publish is being asked again
            assert not publishing.done()
            await js.add_stream(StreamConfig(name="NEWP", subjects=["inventory.newp.>"], num_replicas=3))
            try:
                await publishing
                assert (await js.stream_info("NEWP")).state.messages == count  # each stored once
            finally:
                await js.delete_stream("NEWP")


async def test_removed_product_is_kept_without_prune_and_deleted_with_it(data_mesh: Mesh, tmp_path: Path) -> None:
    def drop(doc: dict) -> None:  # type: ignore[type-arg]
        doc["domains"][0]["products"] = [p for p in doc["domains"][0]["products"] if p["name"] != "CUSTOMERS"]

    mesh = parse_spec(variant(data_mesh, tmp_path / "v.yaml", drop).read_text(), base_dir=data_mesh.base_dir)
    async with MeshClient(mesh) as mc:
        await mc.publish("leaf-domain-a/ORDERS", b"still here", subject="sales.orders.x")
        plan = await reconcile(mesh, mc=mc)
        kept = [(c.domain, c.kind, c.name) for c in plan.changes if c.action == "would-delete"]
        assert kept == [("leaf-domain-a", "product", "CUSTOMERS"), ("hub", "catalog", "leaf-domain-a.CUSTOMERS")]
        assert "CUSTOMERS" in (await streams_of(mc, mesh))["leaf-domain-a"]
        assert "leaf-domain-a.CUSTOMERS" in await read_catalog(await mc.jetstream("hub"))
        pruned = await reconcile(mesh, mc=mc, prune=True)
        assert pruned.summary()["delete"] == 2
        streams = await streams_of(mc, mesh)
        assert "CUSTOMERS" not in streams["leaf-domain-a"]
        assert streams["leaf-domain-a"]["ORDERS"] == 501  # nothing else touched
        assert "leaf-domain-a.CUSTOMERS" not in await read_catalog(await mc.jetstream("hub"))
        again = await reconcile(mesh, mc=mc, prune=True)
        assert again.summary()["delete"] == 0 and again.summary()["create"] == 0


# ---------------------------------------------------------------------------------------------------------------
# Lag while cut off


async def test_lag_grows_while_cut_off_and_is_zero_after(runner: MeshRunner, tmp_path: Path) -> None:
    text = (
        small_mesh_text(tmp_path / "d", domains=2, nodes=1, hub_nodes=1)
        + """
# products for this test
"""
    )
    doc = yaml.safe_load(text)
    doc["domains"][0]["products"] = [{"name": "EVENTS", "subjects": ["leaf-domain-a.events.>"]}]
    doc["domains"][1]["consumes"] = [{"product": "leaf-domain-a/EVENTS"}]
    mesh = runner.up(runner.load(yaml.safe_dump(doc)))
    hub_pid = read_state(mesh)["nodes"]["hub-server-0"]["pid"]  # type: ignore[index]
    async with MeshClient(mesh) as mc:
        await reconcile(mesh, mc=mc)
        for i in range(10):
            await mc.publish("leaf-domain-a/EVENTS", str(i).encode(), subject="leaf-domain-a.events.x")
        await wait_count(mc, "leaf-domain-b", "EVENTS", 10)
        assert [r.lag for r in await measure(mesh, mc)] == [0]
        os.kill(hub_pid, signal.SIGSTOP)  # the hub freezes: domain b is cut off from domain a
        try:
            lags = []
            for _ in range(3):
                for _i in range(20):  # domain a keeps accepting writes on its own
                    await mc.publish("leaf-domain-a/EVENTS", b"during", subject="leaf-domain-a.events.y")
                lags.append((await measure(mesh, mc))[0].lag)
            assert lags == [20, 40, 60]
            res = await asyncio.to_thread(run_cli, "report", "lag", "-f", str(_write(mesh, tmp_path)), "--max-lag", "0")
            assert res.returncode == 1 and "lag 60 > 0" in res.stderr
        finally:
            os.kill(hub_pid, signal.SIGCONT)
        deadline = time.monotonic() + 30
        while (lag := (await measure(mesh, mc))[0].lag) != 0:
            assert time.monotonic() < deadline, f"mirror still {lag} behind 30 s after the hub came back"
            await asyncio.sleep(0.2)
        res = await asyncio.to_thread(run_cli, "report", "lag", "-f", str(_write(mesh, tmp_path)), "--max-lag", "0")
        assert res.returncode == 0, res.stdout + res.stderr


def _write(mesh: Mesh, tmp: Path) -> Path:
    path = tmp / "lag.yaml"
    path.write_text(yaml.safe_dump(mesh.document, sort_keys=False))
    return path
