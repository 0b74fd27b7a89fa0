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
    cert = x509.load_pem_x509_certificate(p.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {n.name for n in mesh.nodes()} | {"localhost"} <= set(san.get_values_for_type(x509.DNSName))
    assert stat.S_IMODE(p.key.stat().st_mode) == 0o600
    assert stat.S_IMODE((p.ca.parent / "ca-key.pem").stat().st_mode) == 0o600
    again = ensure_certs(mesh)  # reused, not regenerated
    assert again.cert.read_bytes() == p.cert.read_bytes()
    ctx = client_context(mesh)
    assert isinstance(ctx, ssl.SSLContext)


def test_tls_configs_cover_clients_routes_and_leafnodes(tmp_path: Path) -> None:
    mesh = parse_spec(init_spec_text(domains=1, nodes=3, tls=True) + f"data_dir: {tmp_path}\n", cache=False)
    files = render_mesh(mesh, load_credentials(mesh), certs={"ca.pem": "x", "server.pem": "y", "server-key.pem": "z"})
    assert files["tls/ca.pem"] == "x"
    hub = files["hub-cluster/hub-server-0.conf"]
    leaf = files["leaf-cluster-a/leaf-domain-a-0.conf"]
    assert hub.count('cert_file: "../tls/server.pem"') == 3  # client listener, routes, leafnode listener
    assert leaf.count('cert_file: "../tls/server.pem"') == 2  # client listener, routes
    assert leaf.count('tls: { ca_file: "../tls/ca.pem" }') == 2  # both remotes verify the hub


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
    assert len(build_leafnodes(mesh, replies["LEAFZ"]).to_json()["links"]) == 4
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
