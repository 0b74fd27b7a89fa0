"""Operator mode across machines: a domain on a new host joins the running mesh with `natsmesh apply` alone.

Test hosts are network namespaces this test makes and removes (`netns.Network`); every node runs inside its
host from its folder as the Procfile says, the platform acts from the root namespace over the network. The hub's
configs name no domain, so the joiner's folder is handed to its host and `apply` pushes its account: no hub
config changes, no hub server restarts or reloads, no other leaf link reconnects, and the joiner's copy is made.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import run_cli
from natsmesh.client import MeshClient, run
from natsmesh.local import binary
from natsmesh.local.bundle import render_bundle
from natsmesh.local.secrets import load_credentials
from natsmesh.local.specfile import load_spec
from natsmesh.model.mesh import Mesh
from natsmesh.observe.connect import connect_system
from natsmesh.observe.readiness import wait_ready
from netns import Network

pytestmark = pytest.mark.integration
PORTS = {"client": 4222, "cluster": 6222, "http": 8222}


def _doc(net: Network, data_dir: Path) -> dict[str, Any]:
    h = [host.address for host in net.hosts]
    return {
        "name": "opwide",
        "trust": "operator",
        "data_dir": str(data_dir),
        "tls": {"enabled": True},
        "hub": {"nodes": 3, "ports": PORTS | {"leafnode": 7422}, "hosts": h[0:3]},
        "domains": [
            {
                "name": "sales",
                "nodes": 1,
                "ports": PORTS,
                "hosts": [h[3]],
                "products": [{"name": "ORDERS", "subjects": ["sales.orders.>"]}],
            },
        ],
    }


async def _hub_replies(mesh: Mesh, subject: str, body: bytes) -> list[dict[str, Any]]:
    """Every hub server's answer to the system request SUBJECT (those that come within 2 s)."""
    creds = load_credentials(mesh, create=False)
    nc = await connect_system(mesh, creds, cluster=mesh.hub)
    try:
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        await nc.publish(subject, body, reply=inbox)
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + 2.0
        while len(out) < len(mesh.hub.nodes) and (left := deadline - time.monotonic()) > 0:
            try:
                out.append(json.loads((await sub.next_msg(timeout=left)).data))
            except TimeoutError:
                break
        return out
    finally:
        await nc.close()


async def _links(mesh: Mesh) -> dict[tuple[str, int], str]:
    """Every leaf link at the hub: (hub server, connection id) -> account."""
    return {
        (doc["server"]["name"], int(lf["id"])): str(lf["account"])
        for doc in await _hub_replies(mesh, "$SYS.REQ.SERVER.PING.LEAFZ", b"{}")
        for lf in (doc.get("data") or {}).get("leafs") or []
    }


async def _resolver(mesh: Mesh) -> set[str]:
    """The account keys the hub's resolver holds, as every hub server lists them."""
    held = [set(doc["data"]) for doc in await _hub_replies(mesh, "$SYS.REQ.CLAIMS.LIST", b"")]
    assert len(held) == len(mesh.hub.nodes) and all(h == held[0] for h in held), held
    return held[0]


async def _count(mesh: Mesh, domain: str, stream: str) -> int:
    async with MeshClient(mesh, name="counter") as mc:
        return int((await (await mc.jetstream(domain)).stream_info(stream)).state.messages)


def test_a_domain_on_a_new_host_joins_with_apply_alone(tmp_path: Path) -> None:
    server = binary.resolve().path
    with Network(5) as net:  # the fifth host joins later
        spec = tmp_path / "opwide.yaml"
        doc = _doc(net, tmp_path / "platform")
        spec.write_text(yaml.safe_dump(doc, sort_keys=False))
        mesh = load_spec(spec)
        deploy = tmp_path / "deploy"
        render_bundle(mesh, deploy, server_command=server)
        hosts = iter(net.hosts[:4])
        for cluster in mesh.clusters:
            for node in cluster.nodes:
                net.start(next(hosts), deploy / cluster.folder, node.name)
        try:
            wait_ready(mesh, timeout=90)  # the hub started holding sales's account: it linked at once
            res = run_cli("apply", "-f", str(spec), timeout=120)
            assert res.returncode == 0, res.stdout + res.stderr

            async def publish() -> None:
                async with MeshClient(mesh, name="producer") as mc:
                    for i in range(100):
                        await mc.publish("sales/ORDERS", json.dumps({"i": i}).encode(), subject="sales.orders.x")

            run(publish())
            hub_confs = {p: p.read_bytes() for p in (deploy / mesh.hub.folder).glob("*.conf")}
            pids = {h.name: [p.pid for p in h.procs] for h in net.hosts[:4]}
            links = run(_links(mesh))
            assert len(links) == 1, links

            doc["domains"].append(
                {
                    "name": "audit",
                    "nodes": 1,
                    "ports": PORTS,
                    "hosts": [net.hosts[4].address],
                    "consumes": [{"product": "sales/ORDERS"}],
                }
            )
            spec.write_text(yaml.safe_dump(doc, sort_keys=False))
            joined = load_spec(spec)
            render_bundle(joined, deploy, server_command=server)
            assert {p: p.read_bytes() for p in (deploy / mesh.hub.folder).glob("*.conf")} == hub_confs
            net.start(net.hosts[4], deploy / joined.domain("audit").folder, "audit-0")  # it waits for its account
            started = time.monotonic()
            res = run_cli("apply", "-f", str(spec), timeout=120)
            assert res.returncode == 0, res.stdout + res.stderr
            deadline = time.monotonic() + 30
            while run(_count(joined, "audit", "ORDERS")) < 100:
                assert time.monotonic() < deadline, (
                    "audit's copy never completed: "
                    + res.stdout[-3000:]
                    + (deploy / joined.domain("audit").folder / "audit-0.log").read_text()[-3000:]
                )
                time.sleep(0.1)
            print(f"\naudit's copy complete {time.monotonic() - started:.2f} s after apply began")
            assert {h.name: [p.pid for p in h.procs] for h in net.hosts[:4]} == pids  # nothing restarted
            assert all(p.poll() is None for h in net.hosts[:4] for p in h.procs)
            after = run(_links(joined))
            assert {k: v for k, v in after.items() if k in links} == links  # the old link: same connection
            assert len(after) == 2, after

            # and out again: dropped from the spec, it leaves only with --prune; then its account is gone from
            # the resolver, its link closed, and nothing else changed
            audit_key = next(v for k, v in after.items() if k not in links)
            doc["domains"].pop()
            spec.write_text(yaml.safe_dump(doc, sort_keys=False))
            refused = run_cli("apply", "-f", str(spec), timeout=120)
            assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused
            assert "audit is no longer in the spec" in refused.stderr + refused.stdout, refused
            assert audit_key in run(_resolver(mesh)), "a refused apply deleted nothing"
            res = run_cli("apply", "--prune", "-f", str(spec), timeout=120)
            assert res.returncode == 0 and "leaves" in res.stdout, res.stdout + res.stderr
            assert audit_key not in run(_resolver(mesh)), "nothing of it left in the resolver"
            deadline = time.monotonic() + 5
            while len(now := run(_links(mesh))) != 1:
                assert time.monotonic() < deadline, now
                time.sleep(0.1)
            assert now == links  # the other link: the same connection throughout
            assert {h.name: [p.pid for p in h.procs] for h in net.hosts[:4]} == pids
            assert {p: p.read_bytes() for p in (deploy / mesh.hub.folder).glob("*.conf")} == hub_confs
        finally:
            for host in net.hosts:
                net.stop(host)
    assert not Network.leftovers(net.hosts[0].name.rsplit("-", 1)[0]), "a test host was left behind"
