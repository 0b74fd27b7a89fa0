"""TLS on every link: a mesh-local CA, a TLS mesh that comes up and reports, plaintext refused."""

from __future__ import annotations

import asyncio
import json
import ssl
import stat
from pathlib import Path

import nats
import pytest
import yaml

from helpers import MeshRunner, run_cli, small_mesh_text
from natsmesh.client import MeshClient
from natsmesh.local.certs import client_context, ensure_certs, paths
from natsmesh.local.secrets import load_credentials
from natsmesh.local.specfile import parse_spec
from natsmesh.model.templates import init_spec_text
from natsmesh.observe.info import mesh_info
from natsmesh.observe.reports import build_jetstream, build_leafnodes
from natsmesh.observe.system import collect
from natsmesh.reconcile.apply import reconcile
from natsmesh.render.servers import render_mesh


def test_certificates_cover_every_name_and_keys_are_private(tmp_path: Path) -> None:
    from cryptography import x509

    mesh = parse_spec(init_spec_text(domains=2, nodes=3, tls=True) + f"data_dir: {tmp_path}\n", cache=False)
    p = ensure_certs(mesh)
    for node in mesh.nodes():  # a key and certificate per node, naming that node only
        cert_path, key_path = p.node(node.name)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(san.get_values_for_type(x509.DNSName)) == {node.name, "localhost"}
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    for domain in mesh.domains:  # and a client certificate for each leaf domain's links
        cert = x509.load_pem_x509_certificate(p.link(domain.name)[0].read_bytes())
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert [u._name for u in usage] == ["clientAuth"]
    assert stat.S_IMODE((p.ca.parent / "ca-key.pem").stat().st_mode) == 0o600
    first = p.node(mesh.hub.nodes[0].name)[0].read_bytes()
    again = ensure_certs(mesh)  # reused, not regenerated
    assert again.node(mesh.hub.nodes[0].name)[0].read_bytes() == first
    ctx = client_context(mesh)
    assert isinstance(ctx, ssl.SSLContext)


def test_tls_configs_cover_clients_routes_and_leafnodes(tmp_path: Path) -> None:
    mesh = parse_spec(init_spec_text(domains=1, nodes=3, tls=True) + f"data_dir: {tmp_path}\n", cache=False)
    certs = {n.name + ext: n.name + ext for n in mesh.nodes() for ext in (".pem", "-key.pem")} | {"ca.pem": "x"}
    certs |= {f"leaf-domain-a-link{ext}": "link" + ext for ext in (".pem", "-key.pem")}
    files = render_mesh(mesh, load_credentials(mesh), certs=certs)
    assert files["hub-cluster/tls/ca.pem"] == files["leaf-cluster-a/tls/ca.pem"] == "x"
    assert sorted(p for p in files if p.startswith("leaf-cluster-a/tls/")) == sorted(
        f"leaf-cluster-a/tls/{f}"
        for f in ["ca.pem", "leaf-domain-a-link.pem", "leaf-domain-a-link-key.pem"]
        + [n.name + ext for n in mesh.domain("leaf-domain-a").nodes for ext in (".pem", "-key.pem")]
    )  # its own keys only: no other node's, no CA key
    hub = files["hub-cluster/hub-server-0.conf"]
    leaf = files["leaf-cluster-a/leaf-domain-a-0.conf"]
    assert hub.count('cert_file: "tls/hub-server-0.pem"') == 3  # client listener, routes, leafnode listener
    assert hub.count("verify: true") == 2  # routes and leaf links must show a certificate of the mesh CA
    assert leaf.count('cert_file: "tls/leaf-domain-a-0.pem"') == 2  # client listener, routes
    link = 'tls: { cert_file: "tls/leaf-domain-a-link.pem", key_file: "tls/leaf-domain-a-link-key.pem", ca_file:'
    assert leaf.count(link) == 1  # the remote shows the domain's link certificate and verifies the hub


@pytest.mark.integration
async def test_tls_mesh_comes_up_reports_and_refuses_plaintext(runner: MeshRunner, tmp_path: Path) -> None:
    doc = yaml.safe_load(small_mesh_text(tmp_path / "d", domains=2, nodes=1, hub_nodes=1))
    doc["tls"] = {"enabled": True}
    doc["domains"][0]["products"] = [{"name": "EVENTS", "subjects": ["leaf-domain-a.events.>"]}]
    doc["domains"][1]["consumes"] = [{"product": "leaf-domain-a/EVENTS"}]
    mesh = runner.up(runner.load(yaml.safe_dump(doc)))
    assert paths(mesh).ca.exists()
    creds = load_credentials(mesh, create=False)
    replies = await collect(mesh, creds, ["JSZ", "LEAFZ"])
    assert len(build_jetstream(mesh, replies["JSZ"]).to_json()["servers"]) == 3
    assert len(build_leafnodes(mesh, replies["LEAFZ"]).to_json()["links"]) == 2  # data links: SYS stays local
    info = mesh_info(mesh, creds)
    url = info["domains"]["leaf-domain-a"]["url"]
    assert url.startswith("tls://")
    port = mesh.domain("leaf-domain-a").nodes[0].client_port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)  # a client that speaks plaintext
    info = json.loads((await reader.readline()).decode().removeprefix("INFO "))
    assert info["tls_required"] is True
    user, password = creds.client("leaf-domain-a")
    writer.write(f'CONNECT {{"user":"{user}","pass":"{password}"}}\r\nPING\r\n'.encode())
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(4096), 5)
    writer.close()
    assert b"PONG" not in answer  # refused: the server never serves a plaintext client
    nc = await nats.connect(url, tls=client_context(mesh), connect_timeout=2)
    await nc.close()
    async with MeshClient(mesh) as mc:
        await reconcile(mesh, mc=mc)
        for i in range(5):
            await mc.publish("leaf-domain-a/EVENTS", str(i).encode(), subject="leaf-domain-a.events.x")
        js = await mc.jetstream("leaf-domain-b")
        for _ in range(100):
            if (await js.stream_info("EVENTS")).state.messages == 5:
                break
            await asyncio.sleep(0.1)
        assert (await js.stream_info("EVENTS")).state.messages == 5  # the mirror crossed TLS leaf links
    spec = tmp_path / "tls.yaml"
    spec.write_text(yaml.safe_dump(mesh.document))
    res = run_cli("report", "servers", "-f", str(spec), "--json")
    assert res.returncode == 0, res.stderr
