"""The folder-holder matrix: each party of examples/data-mesh.yaml (with TLS, and a second cluster of
leaf-domain-a with a product leaf-domain-b mirrors) holds only its own folder, and tries everything in it — every
user and password, nkey seed and TLS key — against every listener of every other party: client, route, leafnode
and monitoring HTTP. Then, from its own servers, system requests, system JetStream calls and consumer changes
aimed at other parties. Nothing gets through; every other party's streams and consumers are unchanged to the
byte; the declared copies stay complete and the platform still sees all 19 servers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
import yaml

from helpers import MeshRunner, example_on_free_ports, servers_under, stream_contents
from natsmesh.client import MeshClient
from natsmesh.local import binary
from natsmesh.local.bundle import render_bundle
from natsmesh.local.secrets import load_credentials
from natsmesh.model.mesh import Mesh
from natsmesh.model.topology import Cluster, block_size, plan_ports
from natsmesh.model.trust import LINK_HEADROOM
from natsmesh.observe.monitor import http_json
from natsmesh.observe.readiness import wait_ready
from natsmesh.observe.reports import report
from natsmesh.observe.streams import list_consumers
from natsmesh.run.ports import free_port_base
from probes import (
    CONSUMER_VERBS,
    Folder,
    answers,
    attempt,
    client_probe,
    is_breach,
    leaf_probes,
    matrix,
    own_connection,
    route_probe,
)

pytestmark = pytest.mark.integration


class Holder:
    """The mesh running, and each party's folder as rendered by the platform."""

    def __init__(self, mesh: Mesh, out: Path) -> None:
        self.mesh = mesh
        self.folders = {}
        for c in mesh.clusters:
            path = out / c.folder
            self.folders[c.name] = Folder.read(path)

    def others(self, party: str) -> list[Cluster]:
        return [c for c in self.mesh.clusters if c.name != party]


async def snapshot(mc: MeshClient, domain: str) -> dict[str, Any]:
    """Every stream of DOMAIN (count, sequences, a hash of every message) and every consumer's delivery config."""
    nc = await mc.connection(domain)
    out: dict[str, Any] = {}
    for name, contents in (await stream_contents(nc)).items():
        consumers = {
            n: (c.config.deliver_subject, c.config.filter_subject, c.config.description, bool(c.paused))
            for n, c in (await list_consumers(nc, name)).items()
        }
        out[name] = (*contents, consumers)
    return out


@pytest.fixture(scope="module")
def holder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Holder]:
    tmp = tmp_path_factory.mktemp("holder")
    doc = yaml.safe_load(example_on_free_ports("data-mesh.yaml", tmp / "data"))
    doc["tls"] = {"enabled": True}
    doc["domains"][3]["products"][0]["public"] = True  # leaf-domain-d/STOCK: a slot per domain too
    # a second cluster of leaf-domain-a (its own folder), with a product leaf-domain-b mirrors through the hub's
    # mapping of `$JS.leaf-domain-a.API` to that cluster
    big = {"name": "leaf-domain-a-big", "nodes": 1}
    taken = {p for c in [doc["hub"], *doc["domains"]] for base in c["ports"].values() for p in range(base, base + 3)}
    base = free_port_base(block_size(1))
    while taken & set(range(base, base + block_size(1))):  # free now, and not the example's (not started yet)
        base = free_port_base(block_size(1))
    big["ports"] = plan_ports(base, block_size(1), 0, 1, False).as_spec()
    doc["domains"][0]["clusters"] = [big]
    doc["domains"][0]["products"].append({"name": "BIG", "subjects": ["sales.big.>"], "cluster": big["name"]})
    doc["domains"][1].setdefault("consumes", []).append({"product": "leaf-domain-a/BIG"})
    runner = MeshRunner(tmp)
    mesh = runner.load(yaml.safe_dump(doc))
    runner.up(mesh)
    try:
        render_bundle(mesh, tmp / "out")  # what the platform hands each party
        yield Holder(mesh, tmp / "out")
    finally:
        runner.close()
        assert not servers_under(tmp)


@pytest.fixture(scope="module")
def world(holder: Holder) -> tuple[Holder, dict[str, Any]]:
    """The mesh applied, with data in every product and copy, and a snapshot of every stream and consumer."""
    from natsmesh.reconcile.apply import reconcile

    mesh = holder.mesh

    async def setup() -> dict[str, Any]:
        async with MeshClient(mesh, name="platform") as mc:
            await reconcile(mesh, mc=mc)
            for ref, subject in PRODUCTS.items():
                for i in range(5):
                    await mc.publish(ref, f"{ref}-{i}".encode(), subject=subject)
            await settled(mc, mesh)
            js = await mc.jetstream("leaf-domain-a")
            await js.add_consumer("ORDERS", durable_name="audit", filter_subject="sales.orders.>")  # a's own
            return {c.name: await snapshot(mc, c.name) for c in mesh.clusters}

    return holder, asyncio.run(setup())


PRODUCTS = {
    "leaf-domain-a/ORDERS": "sales.orders.eu.1",
    "leaf-domain-a/BIG": "sales.big.1",
    "leaf-domain-b/SHIPMENTS": "shipping.shipments.eu.1",
    "leaf-domain-d/STOCK": "inventory.stock.w1",
}


async def settled(mc: MeshClient, mesh: Mesh, timeout: float = 30.0) -> None:
    """Wait until every declared copy holds what its upstreams hold (for a source: on its filter)."""
    deadline = time.monotonic() + timeout
    for c in mesh.consumptions:
        js = await mc.jetstream(c.domain)
        want = 0
        for s in c.sources:
            up = await (await mc.jetstream(s.domain)).stream_info(s.stream, subjects_filter=s.filter or ">")
            want += sum((up.state.subjects or {}).values()) if s.filter else up.state.messages
        while (await js.stream_info(c.stream)).state.messages < want:
            assert time.monotonic() < deadline, f"{c.ref} did not catch up"
            await asyncio.sleep(0.1)


async def test_every_identity_in_a_folder_is_refused_by_every_other_partys_client_listeners(
    world: tuple[Holder, dict[str, Any]],
) -> None:
    holder, _ = world
    outcomes: dict[tuple[str, str, str], str] = {}
    for party, folder in holder.folders.items():
        ctx = folder.context()
        for other in holder.others(party):
            url = f"tls://127.0.0.1:{other.nodes[0].client_port}"
            for what, user, password in folder.passwords:
                outcomes[(party, other.name, what)] = await client_probe(url, ctx, user=user, password=password)
            for what, seed in folder.seeds:
                outcomes[(party, other.name, what)] = await client_probe(url, ctx, nkeys_seed_str=seed)
    breaches = {k: v for k, v in outcomes.items() if v == "connected"}
    assert not breaches, breaches
    assert len(outcomes) >= 6 * 5 * 3  # 6 parties x 5 others x (system, client, route, link seeds)
    # ... while each party's own identities work on its own servers.
    for folder in holder.folders.values():  # (at an operator-mode hub, a user JWT its own keys sign)
        nc = await own_connection(holder.mesh, folder, "client")
        assert nc.is_connected
        await nc.close()


async def test_route_secrets_and_keys_join_no_other_cluster(world: tuple[Holder, dict[str, Any]]) -> None:
    """Each refusal is the server's own `Authorization Violation` after the TLS handshake (routes want it first),
    and the probe does join with the right secret: the hub's own route secret joins the hub."""
    holder, _ = world
    hub = holder.folders[holder.mesh.hub.name]
    own = hub.secrets["route"]
    port = holder.mesh.hub.nodes[1].cluster_port
    assert port is not None
    ctx = hub.context(cert=holder.mesh.hub.nodes[0].name)
    joined = await asyncio.to_thread(route_probe, "127.0.0.1", port, ctx, own["user"], own["password"], "hub")
    assert joined == "joined"
    outcomes = {}
    for party, folder in holder.folders.items():
        node = holder.mesh.domain(party).nodes[0].name
        ctx = folder.context(cert=node)  # its own node's certificate, which routes require
        for other in holder.others(party):
            port = other.nodes[0].cluster_port
            if port is None:  # a one-node cluster has no route listener to join
                continue
            for what, user, password in folder.passwords:
                outcomes[(party, other.name, what)] = await asyncio.to_thread(
                    route_probe, "127.0.0.1", port, ctx, user, password, other.name
                )
    breaches = {k: v for k, v in outcomes.items() if "Authorization Violation" not in v}
    assert not breaches, breaches


def test_a_rogue_server_with_a_folders_keys_does_not_join_the_hub(holder: Holder, tmp_path: Path) -> None:
    """A real nats-server, configured with leaf-domain-a's route secret and node certificate, dialling the hub's
    routes as a member of cluster `hub`: refused; hub-server-0's /routez never lists it."""
    folder = holder.folders["leaf-domain-a"]
    hub = holder.mesh.hub.nodes[0]
    route = folder.secrets["route"]
    cert, key, ca = (folder.tls(f) for f in ("leaf-domain-a-0.pem", "leaf-domain-a-0-key.pem", "ca.pem"))
    tls = f'tls {{ cert_file: "{cert}", key_file: "{key}", ca_file: "{ca}" }}'
    from natsmesh.run.ports import free_port_base

    base = free_port_base(3)
    conf = tmp_path / "rogue.conf"
    conf.write_text(
        f'server_name: rogue\nlisten: "127.0.0.1:{base}"\nhttp: "127.0.0.1:{base + 2}"\n'
        f'cluster {{ name: hub, listen: "127.0.0.1:{base + 1}", '
        f'routes: ["nats-route://{route["user"]}:{route["password"]}@127.0.0.1:{hub.cluster_port}"], {tls} }}\n'
    )
    proc = subprocess.Popen([binary.resolve().path, "-c", str(conf)], cwd=tmp_path, stderr=subprocess.PIPE)
    try:
        time.sleep(3)
        routes = http_json("127.0.0.1", hub.http_port, "/routez")["routes"] or []
        assert all(r.get("remote_name") != "rogue" and r.get("remote_id") != "rogue" for r in routes), routes
        assert http_json("127.0.0.1", base + 2, "/routez")["num_routes"] == 0
    finally:
        proc.terminate()
        proc.wait(10)


async def test_leaf_links_beyond_a_domains_own_are_refused(world: tuple[Holder, dict[str, Any]]) -> None:
    """At the hub's leafnode listener: a domain's own link seed (with its link certificate) is taken only up to
    `LINK_HEADROOM` links per node of the domain (each of its servers' links may fail over once while its old one
    still counts); beyond that it is refused, and the other seeds of a folder link nothing."""
    holder, _ = world
    hub_port = holder.mesh.hub.nodes[0].leafnode_port
    assert hub_port is not None
    outcomes = {}
    spare = {}
    for party, folder in holder.folders.items():
        if party == holder.mesh.hub.name:
            continue
        nodes = len(holder.mesh.domain(party).nodes)
        spare[party] = (LINK_HEADROOM - 1) * nodes  # its own servers hold one link per node already
        ctx = folder.context(cert=f"{party}-link")
        for what, seed in folder.seeds:
            for _ in range(3):  # the hub's servers share an account's connection count every few seconds: a
                tried = await asyncio.to_thread(  # server that just took links may count the others' late
                    leaf_probes, "127.0.0.1", hub_port, ctx, seed, spare[party] + 1
                )
                if what != "link" or tried[-1] != "linked":
                    break
                await asyncio.sleep(2)
            outcomes[(party, what)] = tried
    for (party, what), tried in outcomes.items():
        if what == "link" and holder.mesh.trust == "operator":  # its seed alone is nothing: its JWT signs it in
            assert tried[0].startswith("refused"), (party, what, tried)
        elif what == "link":
            assert tried[:-1] == ["linked"] * spare[party], (party, tried)
            assert "maximum account active connections exceeded" in tried[-1], (party, tried)
        else:
            assert tried[0].startswith("refused"), (party, what, tried)
    wait_ready(holder.mesh, timeout=30)  # the domains' own links were not disturbed


def test_no_monitoring_endpoint_shows_a_secret(holder: Holder) -> None:
    secrets = set(load_credentials(holder.mesh, create=False).secrets())
    for node in holder.mesh.nodes():
        for path in ("/varz", "/connz?auth=true&subs=1", "/routez", "/leafz?subs=1", "/accountz", "/jsz?accounts=1"):
            text = json.dumps(http_json("127.0.0.1", node.http_port, path, timeout=3))
            assert not [s for s in secrets if s in text], f"{node.name} {path} shows a secret"


async def test_system_and_jetstream_calls_from_a_folder_reach_no_other_party(
    world: tuple[Holder, dict[str, Any]],
) -> None:
    holder, before = world
    mesh = holder.mesh
    ids = {n.name: http_json("127.0.0.1", n.http_port, "/varz")["server_id"] for n in mesh.nodes()}
    outcomes: dict[tuple[str, str, str], str] = {}
    for party, folder in holder.folders.items():
        own = mesh.domain(party)
        nc = await own_connection(mesh, folder, "system")  # as its folder's keys sign in, in either trust mode
        try:
            assert await answers(nc, "$SYS.REQ.SERVER.PING.CONNZ") == {n.name for n in own.nodes}  # its own only
            app = await own_connection(mesh, folder, "client")
            for other in holder.others(party):
                q = other.name
                server = ids[other.nodes[0].name]
                tries = {
                    "kick": (nc, f"$SYS.REQ.SERVER.{server}.KICK", {"cid": 1}),
                    "lame duck": (nc, f"$SYS.REQ.SERVER.{server}.LDM", None),
                    "reload": (nc, f"$SYS.REQ.SERVER.{server}.RELOAD", None),
                    "connz": (nc, f"$SYS.REQ.SERVER.{server}.CONNZ", None),
                    "account purge": (nc, f"$JS.{q}.API.ACCOUNT.PURGE.{q}", None),
                    "server remove": (nc, f"$JS.{q}.API.SERVER.REMOVE", {"peer": other.nodes[0].name}),
                    "meta stepdown": (nc, f"$JS.{q}.API.META.LEADER.STEPDOWN", None),
                    "stream move": (nc, f"$JS.{q}.API.ACCOUNT.STREAM.MOVE.{q}.X", {"server": "x"}),
                }
                if party != mesh.hub.name:  # the platform's own JetStream holds the domains' link accounts
                    tries["account purge (system API)"] = (nc, f"$JS.API.ACCOUNT.PURGE.{q}", None)
                for stream, consumers in before[q].items():
                    for consumer in consumers[4]:
                        verbs = CONSUMER_VERBS
                        if consumer == party or consumer.startswith(f"{party}~"):
                            # its own copy's consumer it may reset (that only replays its own copy), no more
                            verbs = {v: b for v, b in CONSUMER_VERBS.items() if v != "RESET"}
                        for verb, body in verbs.items():
                            config = {"stream_name": stream, "config": {"name": consumer, **(body or {})}}
                            tries[f"{stream}/{consumer} {verb}"] = (
                                app,
                                f"$JS.{q}.API.CONSUMER.{verb}.{stream}.{consumer}",
                                config if verb == "CREATE" else body,
                            )
                    stolen = {"deliver_subject": f"{party}.stolen", "ack_policy": "none"}
                    tries |= {
                        f"{stream} new consumer": (
                            app,
                            f"$JS.{q}.API.CONSUMER.CREATE.{stream}",
                            {"stream_name": stream, "config": stolen},
                        ),
                        f"{stream} new named consumer": (
                            app,
                            f"$JS.{q}.API.CONSUMER.CREATE.{stream}.{party}-extra",
                            {"stream_name": stream, "config": {"name": f"{party}-extra", **stolen}},
                        ),
                        f"{stream} new durable (old API)": (
                            app,
                            f"$JS.{q}.API.CONSUMER.DURABLE.CREATE.{stream}.{party}-durable",
                            {"stream_name": stream, "config": {"durable_name": f"{party}-durable", **stolen}},
                        ),
                    }
                for action, (conn, subject, body) in tries.items():
                    outcomes[(party, q, action)] = await attempt(conn, subject, body)
            await app.close()
        finally:
            await nc.close()
    # The unprefixed system JetStream API is served by the sender's own cluster: "initiated" there purges an
    # account that cluster does not hold. What it did to the other party is judged by the snapshot below.
    breaches = {k: v for k, v in outcomes.items() if v.startswith("ok") and k[2] != "account purge (system API)"}
    assert not breaches, breaches
    assert len(outcomes) > 6 * 5 * 9
    async with MeshClient(mesh, name="platform") as mc:
        await asyncio.sleep(0.5)
        await settled(mc, mesh)
        after = {c.name: await snapshot(mc, c.name) for c in mesh.clusters}
        assert after == before, [d for d in before if after[d] != before[d]]
        # The copies still flow, and the platform still sees every server.
        for ref, subject in PRODUCTS.items():
            await mc.publish(ref, b"after", subject=subject)
        await settled(mc, mesh)
    rep = await asyncio.to_thread(report, mesh, "jetstream")
    assert len(rep.to_json()["servers"]) == len(holder.mesh.nodes()) == 19 and not rep.missing


async def test_the_matrix_a_domain_host_runs_finds_no_breach(world: tuple[Holder, dict[str, Any]]) -> None:
    """tests/probes.py's whole matrix (what tests/test_multihost.py runs on a domain's own host), here from one
    domain's folder on this machine: every probe of another party's listener or data is refused."""
    holder, _ = world
    doc = await matrix(holder.folders["leaf-domain-b"].path)
    print(json.dumps({"probes": len(doc["outcomes"]), "seconds": doc["seconds"]}))
    breaches = {k: v for k, v in doc["outcomes"].items() if is_breach(v)}
    assert not breaches, breaches
    kinds = {k.split(" ", 1)[0] for k in doc["outcomes"]}
    assert kinds == {"client", "route", "leaf", "monitor", "request"}, kinds
    routes = [v for k, v in doc["outcomes"].items() if k.startswith("route ")]
    assert all("Authorization Violation" in v for v in routes), routes  # refused for its secret, not a timeout
    assert doc["own_pings"] == [n.name for n in holder.mesh.domain("leaf-domain-b").nodes]


async def _folder_connect(folder: Folder, cluster: Cluster, who: str, node: int = 0) -> Any:
    creds = folder.secrets[who]
    return await nats.connect(
        f"tls://127.0.0.1:{cluster.nodes[node].client_port}",
        tls=folder.context(),
        user=creds["user"],
        password=creds["password"],
    )


async def test_no_folder_can_write_a_catalog_copy(world: tuple[Holder, dict[str, Any]]) -> None:
    """Issue 17: each domain, with its folder's app user, tries to write its own cluster's read copy of the catalog
    (a put, a purge, a delete of the bucket) and another cluster's (through the hub): none is accepted, and every
    copy holds what the platform wrote."""
    from natsmesh.model.products import CATALOG_BUCKET
    from natsmesh.reconcile.catalog import read_catalog

    holder, _ = world
    mesh = holder.mesh
    stream = f"KV_{CATALOG_BUCKET}"

    async def copies() -> dict[str, Any]:
        async with MeshClient(mesh, name="platform") as mc:
            return {c.name: await read_catalog(await mc.jetstream(c.name)) for c in mesh.domains}

    before = await copies()
    outcomes = {}
    for party, folder in holder.folders.items():
        if party == mesh.hub.name:
            continue
        app = await _folder_connect(folder, mesh.domain(party), "client")
        try:
            for other in (c.name for c in mesh.domains):
                js = app.jetstream() if other == party else app.jetstream(domain=other, timeout=0.5)
                for verb, attempt_ in {
                    "put": lambda js=js: js.publish(f"$KV.{CATALOG_BUCKET}.leaf-domain-a.ORDERS", b"{not json"),
                    "purge": lambda js=js: js.purge_stream(stream),
                    "delete": lambda js=js: js.delete_stream(stream),
                }.items():
                    if other != party and verb == "purge":
                        continue
                    try:
                        await asyncio.wait_for(attempt_(), 0.5)
                        outcomes[(party, other, verb)] = "ok"
                    except Exception as exc:
                        outcomes[(party, other, verb)] = type(exc).__name__
        finally:
            await app.close()
    assert not {k: v for k, v in outcomes.items() if v == "ok"}, outcomes
    assert len(outcomes) >= 6 * 6 * 2
    assert await copies() == before


def _forged(kind: str, name: str, cluster: str) -> bytes:
    """A system reply in the name of server NAME of CLUSTER, with figures no real server has."""
    server = {"name": name, "cluster": cluster, "domain": cluster, "id": "NFORGED", "ver": "9.9.9", "jetstream": True}
    data: dict[str, Any] = {"streams": 424242, "messages": 424242, "bytes": 424242, "config": {}, "account_details": []}
    if kind == "HEALTHZ":
        data = {"status": "ok"}
    if kind == "LEAFZ":
        data = {"leafs": []}
    return json.dumps({"server": server, "data": data, "statsz": {"connections": 424242}}).encode()


async def test_a_domain_answering_pings_in_other_servers_names_is_not_believed(
    world: tuple[Holder, dict[str, Any]],
) -> None:
    """Issue 17: with its folder's system user, each domain answers every system ping on its own servers in the
    names of every other server of the mesh, while one of its own nodes is paused (so the ping waits out its
    timeout). The platform's report, its snapshot (what /metrics and the portal read) and `status` show the truth:
    the paused node missing, no forged figure, and the forgeries listed as conflicts naming the cluster."""
    from natsmesh.local.state import node_process
    from natsmesh.observe.snapshot import take
    from natsmesh.run import lifecycle

    holder, _ = world
    mesh = holder.mesh
    creds = load_credentials(mesh, create=False)
    placed = {n.name: c.name for c in mesh.clusters for n in c.nodes}
    for party, folder in holder.folders.items():
        own = mesh.domain(party)
        if party == mesh.hub.name or len(own.nodes) < 2:  # a paused single node could not answer for anyone
            continue
        victim = own.nodes[-1]
        nc = await _folder_connect(folder, own, "system")

        async def forge(msg: Any, nc: Any = nc, party: str = party) -> None:
            kind = msg.subject.rsplit(".", 1)[-1] if msg.subject != "$SYS.REQ.SERVER.PING" else "STATSZ"
            for name, cluster in placed.items():
                if cluster != party:
                    await nc.publish(msg.reply, _forged(kind, name, cluster))

        subs = [await nc.subscribe(s, cb=forge) for s in ("$SYS.REQ.SERVER.PING", "$SYS.REQ.SERVER.PING.>")]
        await nc.flush()
        pid = node_process(mesh, victim.name)
        os.kill(pid, signal.SIGSTOP)
        try:
            rep = await asyncio.to_thread(report, mesh, "jetstream", 1.5)
            doc = rep.to_json()
            assert victim.name in rep.missing, (party, rep.missing)
            assert "424242" not in json.dumps(doc["servers"]), party
            assert len(doc["servers"]) == len(mesh.nodes()) - 1, (party, rep.missing, rep.conflicts)
            assert any(f"system account of {party}" in c for c in rep.conflicts), (party, rep.conflicts)
            snap = await take(mesh, creds, timeout=1.5)
            assert victim.name in snap.missing and snap.up(own.nodes[0].name) and not snap.up(victim.name)
            assert all(j.streams != 424242 for j in snap.jsz.values()), party
            status = await asyncio.to_thread(lifecycle.status, mesh)
            assert {n.name: n.ready for n in status.nodes}[victim.name] is False
        finally:
            os.kill(pid, signal.SIGCONT)
            for sub in subs:
                await sub.unsubscribe()
            await nc.close()
        await asyncio.to_thread(wait_ready, mesh, 60.0)
    rep = await asyncio.to_thread(report, mesh, "jetstream")
    assert not rep.missing and not rep.conflicts and len(rep.to_json()["servers"]) == len(mesh.nodes())
