"""A mesh across machines on test hosts: network namespaces on a bridge this test creates and removes, each node
started inside its own host's namespace exactly as its folder's Procfile says, the platform in the root namespace
with nothing but network access and its own secrets.

The hub's three nodes on three hosts, domain `sales` on three more, `billing` and `analytics` on one each; every
node on the same port numbers; TLS on, so every certificate must name its node's address; monitoring on each
host's loopback, so readiness is asked through each cluster's system account.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import run_cli
from natsmesh.client import MeshClient
from natsmesh.faults.losscheck import catch_up, publish_steady, verify
from natsmesh.local import binary
from natsmesh.local.bundle import render_bundle
from natsmesh.local.specfile import load_spec
from natsmesh.model.mesh import Mesh
from natsmesh.observe.readiness import check_mesh, targets, wait_ready
from natsmesh.observe.streams import list_consumers
from netns import Host, Network
from probes import is_breach

pytestmark = pytest.mark.integration  # real servers in network namespaces
PORTS = {"client": 4222, "cluster": 6222, "http": 8222}
RESET_TIMEOUT = 5.0  # nats-server 2.15: a durable-sourced copy waits this long for an unanswered reset


def wide_spec(net: Network, data_dir: Path) -> dict[str, Any]:
    h = [host.address for host in net.hosts]
    return {
        "name": "wide",
        # config mode: this module's join is config mode's procedure (two renders, each a reload of the hub);
        # operator mode's (apply alone) is tests/test_hosts_operator.py
        "trust": "config",
        "data_dir": str(data_dir),
        "tls": {"enabled": True},
        "hub": {"nodes": 3, "ports": PORTS | {"leafnode": 7422}, "hosts": h[0:3]},
        "domains": [
            {
                "name": "sales",
                "nodes": 3,
                "ports": PORTS,
                "hosts": h[3:6],
                "products": [{"name": "ORDERS", "subjects": ["sales.orders.>"]}],
            },
            {"name": "billing", "nodes": 1, "ports": PORTS, "hosts": [h[6]], "consumes": [{"product": "sales/ORDERS"}]},
            {
                "name": "analytics",
                "nodes": 1,
                "ports": PORTS,
                "hosts": [h[7]],
                "consumes": [{"as": "ALL_ORDERS", "mode": "source", "products": ["sales/ORDERS"]}],
            },
        ],
    }


@dataclass
class Wide:
    net: Network
    mesh: Mesh
    spec: Path
    deploy: Path
    host_of: dict[str, Host]  # node -> its host

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "-f", str(self.spec), timeout=120)


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wide]:
    tmp = tmp_path_factory.mktemp("multihost")
    server = binary.resolve().path
    with Network(9) as net:  # the ninth host joins later
        spec = tmp / "wide.yaml"
        spec.write_text(yaml.safe_dump(wide_spec(net, tmp / "platform"), sort_keys=False))
        mesh = load_spec(spec)
        deploy = tmp / "deploy"
        render_bundle(mesh, deploy, server_command=server)
        host_of = {}
        hosts = iter(net.hosts[:8])
        for cluster in mesh.clusters:
            for node in cluster.nodes:
                host = next(hosts)
                assert host.address == node.host
                host_of[node.name] = host
                net.start(host, deploy / cluster.folder, node.name)
        try:
            wait_ready(mesh, timeout=90)
            yield Wide(net, mesh, spec, deploy, host_of)
        finally:
            for host in net.hosts:
                net.stop(host)
    assert not Network.leftovers(net.hosts[0].name.rsplit("-", 1)[0]), "a test host was left behind"


def test_every_node_is_ready_when_asked_over_the_network(wide: Wide) -> None:
    assert all(t.by_system for t in targets(wide.mesh))  # monitoring answers only on each host's loopback
    states = check_mesh(wide.mesh)
    assert [s.node for s in states if not s.ready] == [], states
    res = wide.cli("status", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["ready"] and {n["name"] for n in doc["nodes"]} == {n.name for n in wide.mesh.nodes()}
    assert {n["client_url"] for n in doc["nodes"]} == {f"nats://{n.host}:4222" for n in wide.mesh.nodes()}


def test_reports_list_every_server_on_its_host(wide: Wide) -> None:
    res = wide.cli("report", "jetstream", "--json")
    assert res.returncode == 0, res.stderr
    servers = {s["name"] for s in json.loads(res.stdout)["servers"]}
    assert servers == {n.name for n in wide.mesh.nodes()}
    res = wide.cli("report", "leafnodes", "--json")
    assert res.returncode == 0, res.stderr
    links = json.loads(res.stdout)["links"]
    assert {lf["account"] for lf in links} >= {"sales", "billing", "analytics"}, links


async def test_apply_creates_products_and_copies_and_data_crosses_hosts(wide: Wide) -> None:
    res = wide.cli("apply")
    assert res.returncode == 0, res.stdout + res.stderr
    async with MeshClient(wide.mesh, name="multihost") as mc:
        async with mc.publisher("sales/ORDERS") as pub:
            for i in range(200):
                await pub.publish(f"order {i}".encode(), subject=f"sales.orders.{i % 5}")
        for domain, stream in (("billing", "ORDERS"), ("analytics", "ALL_ORDERS"), ("sales", "ORDERS")):
            js = await mc.jetstream(domain)
            for _ in range(200):
                if (await js.stream_info(stream)).state.messages >= 200:
                    break
                await asyncio.sleep(0.05)
            assert (await js.stream_info(stream)).state.messages == 200, (domain, stream)
        info = await (await mc.jetstream("sales")).stream_info("ORDERS")
        assert info.cluster is not None and {info.cluster.leader, *(r.name for r in info.cluster.replicas or [])} == {
            "sales-0",
            "sales-1",
            "sales-2",
        }  # its three replicas on three hosts
    res = wide.cli("apply")
    assert res.returncode == 0 and "create" not in res.stdout, res.stdout


def test_the_platforms_other_commands_work_over_the_network(wide: Wide) -> None:
    """What the platform runs against a mesh elsewhere, with its spec and secrets only: info, the catalog,
    lineage, copy lag, heal and the loss checker."""
    info = wide.cli("info", "--json")
    assert info.returncode == 0, info.stderr
    urls = json.loads(info.stdout)["domains"]["sales"]["servers"]
    assert [u.rsplit("@", 1)[1] for u in urls] == [f"{n.host}:4222" for n in wide.mesh.domain("sales").nodes]
    catalog = wide.cli("catalog", "list", "--json")
    assert catalog.returncode == 0, catalog.stderr
    assert "sales/ORDERS" in catalog.stdout or "sales.ORDERS" in catalog.stdout, catalog.stdout
    lineage = wide.cli("lineage")
    assert lineage.returncode == 0 and "billing/ORDERS" in lineage.stdout, lineage.stdout + lineage.stderr
    lag = wide.cli("report", "lag", "--json")
    assert lag.returncode == 0, lag.stderr
    rows = json.loads(lag.stdout)["rows"]
    assert {f"{r['domain']}/{r['stream']}" for r in rows} == {"billing/ORDERS", "analytics/ALL_ORDERS"}, rows
    heal = wide.cli("heal", "--timeout", "10")
    assert heal.returncode == 0, heal.stdout + heal.stderr
    verify = wide.cli("chaos", "verify", "sales/ORDERS", "--count", "200", "--subject", "sales.orders.verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_domain_team_acts_from_its_folder_on_its_own_host(wide: Wide) -> None:
    """Inside a domain's host, with nothing but its folder (`--bundle`): it publishes to and tails its own
    product, reads its own catalog copy and its own copies' lag; anything else is refused, saying why."""
    exe = shutil.which("natsmesh", path=str(Path(sys.executable).parent))
    assert exe is not None

    def as_team(domain: str, *args: str) -> subprocess.CompletedProcess[str]:
        host = wide.host_of[wide.mesh.domain(domain).nodes[0].name]
        folder = wide.deploy / wide.mesh.domain(domain).folder
        return host.run(exe, "--bundle", str(folder), *args, check=False)

    res = as_team("sales", "pub", "sales/ORDERS", "from the sales host", "--subject", "sales.orders.team", "--json")
    assert res.returncode == 0, res.stderr
    res = as_team("sales", "tail", "sales/ORDERS", "-n", "1", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["data"] == "from the sales host", res.stdout + res.stderr
    res = as_team("billing", "catalog", "list", "--json")
    assert res.returncode == 0 and ("sales/ORDERS" in res.stdout or "sales.ORDERS" in res.stdout), res.stderr
    res = as_team("billing", "report", "lag", "--json", "--max-lag", "100")
    assert res.returncode == 0, res.stdout + res.stderr
    rows = json.loads(res.stdout)["rows"]
    assert [(r["domain"], r["stream"], r["error"]) for r in rows] == [("billing", "ORDERS", None)], rows
    for _ in range(50):  # the copy takes a moment
        res = as_team("billing", "tail", "billing/ORDERS", "-n", "1", "--json")
        assert res.returncode == 0, res.stderr
        if json.loads(res.stdout)["data"] == "from the sales host":
            break
        time.sleep(0.1)
    assert json.loads(res.stdout)["data"] == "from the sales host", res.stdout
    refused = {
        ("billing", "pub", "sales/ORDERS", "x"): "billing may not publish on sales/ORDERS",
        ("billing", "tail", "sales/ORDERS"): "billing may not read sales/ORDERS",
        ("billing", "tail", "analytics/ALL_ORDERS"): "billing may not read analytics/ALL_ORDERS",
        ("billing", "report", "servers"): "needs the platform's spec and secrets",
        ("sales", "apply"): "needs the platform's spec and secrets",
    }
    for (domain, *args), why in refused.items():
        res = as_team(domain, *args)
        assert res.returncode == 1 and why in res.stderr and "Traceback" not in res.stderr, (args, res.stderr)


@pytest.mark.parametrize("domain", ["billing", "sales"])
async def test_the_folder_holder_matrix_from_a_domains_own_host(wide: Wide, domain: str) -> None:
    """On the domain's own host, with everything in its folder (tests/probes.py): every other party's client,
    route, leafnode and monitoring listener on every host refuses it, and no system or JetStream request through
    its own servers reaches another party; the owner's consumers are as they were and the copy is complete."""

    async def owners_consumers(mc: MeshClient) -> dict[str, Any]:  # one per copy (ephemeral readers come and go)
        found = await list_consumers(await mc.connection("sales"), "ORDERS")
        shares = {s.consumer for s in wide.mesh.shares if s.owner == "sales"}
        assert shares <= set(found), found
        return {
            n: (c.config.deliver_subject, c.config.filter_subject, bool(c.paused))
            for n, c in found.items()
            if n in shares
        }

    async with MeshClient(wide.mesh, name="multihost-matrix") as mc:
        before = await owners_consumers(mc)
    host = wide.host_of[wide.mesh.domain(domain).nodes[0].name]
    folder = wide.deploy / wide.mesh.domain(domain).folder
    res = await asyncio.to_thread(host.run, sys.executable, str(Path(__file__).with_name("probes.py")), str(folder))
    doc = json.loads(res.stdout)
    print(json.dumps({"matrix_from": domain, "probes": len(doc["outcomes"]), "seconds": doc["seconds"]}))
    breaches = {k: v for k, v in doc["outcomes"].items() if is_breach(v)}
    assert not breaches, breaches
    others = [n for c in wide.mesh.clusters if c.name != domain for n in c.nodes]
    assert sum(k.startswith("client ") for k in doc["outcomes"]) >= 3 * len(others)  # 3+ identities at each
    routes = [v for k, v in doc["outcomes"].items() if k.startswith("route ")]
    assert routes and all("Authorization Violation" in v for v in routes), routes  # refused for its secret
    monitors = [doc["outcomes"][f"monitor {wide.mesh.cluster_of(n.name).name}/{n.name}"] for n in others]
    assert all(m.startswith("unreachable") for m in monitors), monitors  # each on its own host's loopback
    assert doc["own_pings"] == [n.name for n in wide.mesh.domain(domain).nodes]
    async with MeshClient(wide.mesh, name="multihost-matrix") as mc:
        assert await owners_consumers(mc) == before
        total = (await (await mc.jetstream("sales")).stream_info("ORDERS")).state.messages
        assert (await (await mc.jetstream("billing")).stream_info("ORDERS")).state.messages == total


def test_up_refuses_a_mesh_on_other_hosts(wide: Wide) -> None:
    res = wide.cli("up", "--detach")
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert "not an address of this machine" in res.stderr and "README.md" in res.stderr, res.stderr


@pytest.mark.parametrize("outbound", [True, False], ids=["both-directions", "inbound-only"])
async def test_a_domain_hosts_link_cut_for_20_s_loses_nothing_and_its_copy_completes_after(
    wide: Wide, outbound: bool
) -> None:
    """billing's only host is cut off for 20 s (both directions, or only what comes in) while sales' product
    takes steady writes: nothing acknowledged is lost or stored twice in the product or any copy, and billing's
    single-replica copy holds everything soon after the link heals: its link is back at once, but a reset the
    copy sent while cut off is answered only by nats-server's 5 s reset timeout (2.15) and the retry after it,
    so the bound is that, not the 3 s issue 12 asks for (measured 4.3 s; still open)."""
    mesh, subject = wide.mesh, f"sales.orders.cut-{'both' if outbound else 'in'}"
    host = wide.host_of["billing-0"]
    async with MeshClient(mesh, name="multihost-cut") as mc:
        stop = asyncio.Event()
        steady = publish_steady(mc, "sales/ORDERS", count=None, rate=50, subject=subject, retries=60, stop=stop)
        task = asyncio.create_task(steady)
        await asyncio.sleep(2)
        host.cut(inbound=True, outbound=outbound)
        try:
            await asyncio.sleep(20)
        finally:
            host.heal()
        healed = time.monotonic()
        stop.set()
        run = await task
        called = time.monotonic() - healed
        times = await catch_up(mesh, mc, "sales/ORDERS", subject, timeout=60)
        since_heal = {c: None if t is None else round(called + t, 2) for c, t in times.items()}
        checks = await verify(mesh, mc, run, settle=30)
    lost = sum(len(c.lost) for c in checks)
    duplicated = sum(c.duplicated for c in checks)
    figures = {"acked": len(run.acked), "failed": len(run.failed), "lost": lost, "duplicated": duplicated}
    print(json.dumps({"outbound_cut": outbound, **figures, "complete_after_heal_s": since_heal}))
    assert run.acked and not run.failed, "the product's own hosts were not cut: every write is acknowledged"
    assert lost == 0 and duplicated == 0, [c.to_json() for c in checks if not c.ok]
    assert all(t is not None and t <= RESET_TIMEOUT + 2.0 for t in since_heal.values()), since_heal


async def test_a_domain_on_a_new_host_joins_the_running_mesh_and_leaves_it(wide: Wide) -> None:
    """A fourth domain on a ninth host joins in two steps, each a render and a reload of the hub's nodes (their
    unit's `ExecReload`): first the domain alone (its account at the hub; its host starts its node), then what
    it takes. Nothing else restarts and no other party's config changes; `apply` gives it its copy. Removed the
    same way, the rest stays ready.

    Two steps because of nats-server #8560 (open): interest a hub node hears for an account that another hub
    node's reload introduced before its own reload did is lost for good, so a take rendered together with a new
    domain's account was never answered (its reset timed out; a rolling restart of the hub made it work)."""
    net, host = wide.net, wide.net.hosts[8]
    server = binary.resolve().path
    hub_hosts = list({wide.host_of[n.name].name: wide.host_of[n.name] for n in wide.mesh.hub.nodes}.values())
    before = {p: p.read_bytes() for p in wide.deploy.rglob("*.conf")}
    pids = {n: h.procs[-1].pid for n, h in wide.host_of.items()}

    async def step(doc: dict[str, Any], name: str) -> Mesh:
        path = wide.spec.with_name(name)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        mesh = load_spec(path)
        render_bundle(mesh, wide.deploy, server_command=server)
        for h in hub_hosts:
            net.reload(h)
        return mesh

    doc = yaml.safe_load(wide.spec.read_text())
    doc["domains"].append({"name": "audit", "nodes": 1, "ports": PORTS, "hosts": [host.address]})
    joined = await step(doc, "joined.yaml")
    changed = {p.relative_to(wide.deploy).parts[0] for p, old in before.items() if p.read_bytes() != old}
    assert changed == {"hub-cluster"}, changed  # only the hub's configs name the new domain
    net.start(host, wide.deploy / joined.domain("audit").folder, "audit-0")
    await asyncio.to_thread(wait_ready, joined, 60)
    doc["domains"][-1]["consumes"] = [{"product": "sales/ORDERS"}]
    grown = await step(doc, "grown.yaml")
    await asyncio.sleep(1)  # the reloads done
    res = run_cli("apply", "-f", str(wide.spec.with_name("grown.yaml")), timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    async with MeshClient(grown, name="multihost-grown") as mc:
        total = int((await (await mc.jetstream("sales")).stream_info("ORDERS")).state.messages)
        js = await mc.jetstream("audit")
        t0 = time.monotonic()
        while (await js.stream_info("ORDERS")).state.messages < total and time.monotonic() - t0 < 30:
            await asyncio.sleep(0.05)
        print(f"audit's copy complete {time.monotonic() - t0:.2f} s after apply")
        assert (await js.stream_info("ORDERS")).state.messages == total
    assert {n: h.procs[-1].pid for n, h in wide.host_of.items()} == pids
    assert all(h.procs[-1].poll() is None for h in wide.host_of.values()), "nothing else restarted"

    # and out again: render without it, reload the hub, stop its host's node
    render_bundle(wide.mesh, wide.deploy, server_command=server)
    for h in hub_hosts:
        net.reload(h)
    net.stop(host)
    await asyncio.to_thread(wait_ready, wide.mesh, 60)
    res = wide.cli("report", "jetstream", "--json")
    assert res.returncode == 0, res.stderr
    assert {s["name"] for s in json.loads(res.stdout)["servers"]} == {n.name for n in wide.mesh.nodes()}
