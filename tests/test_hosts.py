"""A mesh across machines, without servers: node addresses in the spec, configs that bind and dial them,
certificates that name them, each folder's units and README, and the errors a bad address plan gets."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from natsmesh.errors import SpecError
from natsmesh.local.certs import ensure_certs
from natsmesh.local.secrets import new_credentials
from natsmesh.local.specfile import parse_spec
from natsmesh.model.mesh import Mesh
from natsmesh.render.hosts import host_files, unit_name
from natsmesh.render.servers import render_mesh

PORTS = {"client": 4222, "cluster": 6222, "http": 8222}


def doc(**changes: Any) -> dict[str, Any]:
    """Hub on three hosts, domain a on three (one listening on every interface), b on one; all on one port plan."""
    d: dict[str, Any] = {
        "name": "wide",
        "hub": {"nodes": 3, "ports": PORTS | {"leafnode": 7422}, "hosts": ["10.9.0.1", "10.9.0.2", "10.9.0.3"]},
        "domains": [
            {
                "name": "a",
                "nodes": 3,
                "ports": PORTS,
                "hosts": ["10.9.1.1", "10.9.1.2", {"address": "10.9.1.3", "bind": "0.0.0.0"}],
            },
            {"name": "b", "nodes": 1, "ports": PORTS, "hosts": ["b.example.internal"]},
        ],
    }
    d.update(changes)
    return d


def mesh_of(d: dict[str, Any], tmp: Path | None = None) -> Mesh:
    if tmp is not None:
        d = d | {"data_dir": str(tmp / "data")}
    return parse_spec(yaml.safe_dump(d, sort_keys=False), source="wide.yaml", cache=False)


def problems(d: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as err:
        mesh_of(d)
    return str(err.value)


def test_every_node_gets_its_address_and_nodes_on_different_hosts_share_port_numbers() -> None:
    mesh = mesh_of(doc())
    a = mesh.domain("a")
    assert [(n.host, n.bind, n.client_port) for n in a.nodes] == [
        ("10.9.1.1", "10.9.1.1", 4222),
        ("10.9.1.2", "10.9.1.2", 4222),
        ("10.9.1.3", "0.0.0.0", 4222),
    ]
    assert {n.http_bind for n in mesh.nodes()} == {"127.0.0.1"}  # monitoring stays on each host's loopback
    seen = mesh_of(doc(domains=[dict(doc()["domains"][0], monitoring="node"), doc()["domains"][1]]))
    assert [n.http_bind for n in seen.domain("a").nodes] == ["10.9.1.1", "10.9.1.2", "0.0.0.0"]


def test_configs_bind_their_own_address_and_dial_the_others() -> None:
    mesh = mesh_of(doc())
    files = render_mesh(mesh, new_credentials(mesh, cost=4))
    hub1 = files["hub-cluster/hub-server-1.conf"]
    assert 'listen: "10.9.0.2:4222"' in hub1 and 'http: "127.0.0.1:8222"' in hub1
    assert '  listen: "10.9.0.2:6222"' in hub1 and '  listen: "10.9.0.2:7422"' in hub1
    routes = next(line for line in hub1.splitlines() if line.strip().startswith("routes:"))
    assert "@10.9.0.1:6222" in routes and "@10.9.0.3:6222" in routes and "10.9.0.2" not in routes
    a3 = files["a/a-2.conf"]
    assert 'listen: "0.0.0.0:4222"' in a3 and '  listen: "0.0.0.0:6222"' in a3  # its wildcard bind
    routes = next(line for line in files["a/a-0.conf"].splitlines() if line.strip().startswith("routes:"))
    assert "@10.9.1.3:6222" in routes  # others dial its address, not its bind
    for path in ("a/a-0.conf", "b/b-0.conf"):
        assert all(f'"nats-leaf://10.9.0.{i}:7422"' in files[path] for i in (1, 2, 3)), path  # every hub node
    assert "127.0.0.1" not in "".join(
        line for text in files.values() for line in text.splitlines() if "nats-leaf://" in line or "routes:" in line
    )


def test_one_machine_specs_render_as_before() -> None:
    single = doc(host="127.0.0.1")
    for c in [single["hub"], *single["domains"]]:
        del c["hosts"]
    single["domains"][1]["ports"] = {"client": 4311, "cluster": 6311, "http": 8311}
    single["domains"][0]["ports"] = {"client": 4300, "cluster": 6300, "http": 8300}
    mesh = mesh_of(single)
    conf = render_mesh(mesh, new_credentials(mesh, cost=4))["a/a-1.conf"]
    assert 'listen: "127.0.0.1:4301"' in conf and 'http: "127.0.0.1:8301"' in conf  # monitoring on the bind, as ever
    assert {(n.host, n.bind, n.http_bind) for n in mesh.nodes()} == {("127.0.0.1",) * 3}


def test_certificates_name_each_nodes_addresses(tmp_path: Path) -> None:
    from cryptography import x509

    mesh = mesh_of(doc(tls={"enabled": True}), tmp_path)
    certs = ensure_certs(mesh)

    def names(node: str) -> tuple[set[str], set[str]]:
        cert = x509.load_pem_x509_certificate(certs.node(node)[0].read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return set(san.get_values_for_type(x509.DNSName)), {str(i) for i in san.get_values_for_type(x509.IPAddress)}

    assert names("hub-server-2")[1] >= {"10.9.0.3"} and "10.9.0.1" not in names("hub-server-2")[1]
    assert "10.9.1.3" in names("a-2")[1] and "0.0.0.0" not in names("a-2")[1]  # its address, not its wildcard bind
    assert "b.example.internal" in names("b-0")[0]
    moved = mesh_of(
        doc(tls={"enabled": True}, hub=dict(doc()["hub"], hosts=["10.9.0.1", "10.9.0.2", "10.9.0.9"])), tmp_path
    )
    ensure_certs(moved)  # a node that moved gets a certificate naming its new address
    assert "10.9.0.9" in names("hub-server-2")[1]
    assert all(ipaddress.ip_address(i) for i in names("hub-server-2")[1])


def test_each_folder_has_a_unit_per_node_and_a_readme_naming_its_hosts() -> None:
    mesh = mesh_of(doc())
    a = mesh.domain("a")
    files = host_files(mesh, a, "/usr/local/bin/nats-server", "/opt/mesh")
    unit = files[f"systemd/{unit_name(mesh, a.nodes[1])}"]
    assert unit_name(mesh, a.nodes[1]) == "natsmesh-wide-a-1.service"
    for line in (
        "User=natsmesh",
        "WorkingDirectory=/opt/mesh/a",
        "ExecStart=/usr/local/bin/nats-server -c a-1.conf",
        "Restart=on-failure",
        "LimitNOFILE=65536",
        "KillSignal=SIGUSR2",
        "ExecStartPre=+/usr/bin/install -d -o natsmesh -g natsmesh -m 0700 /opt/mesh/a/data/a-1",
        "ReadWritePaths=-/opt/mesh/a/data",
    ):
        assert line in unit.splitlines(), line
    readme = files["README.md"]
    assert "| a-2 | 10.9.1.3 | client 0.0.0.0:4222, route 0.0.0.0:6222, monitoring 127.0.0.1:8222 |" in readme
    assert "/opt/mesh/a" in readme and "secrets.json" in readme
    every = render_mesh(mesh, new_credentials(mesh, cost=4))
    assert {p for p in every if p.startswith("hub-cluster/systemd/")} == {
        f"hub-cluster/systemd/natsmesh-wide-hub-server-{i}.service" for i in range(3)
    }
    assert "/srv/natsmesh/wide/hub-cluster" in every["hub-cluster/README.md"]  # the default install dir


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["domains"][0].update(hosts=["10.9.1.1", "10.9.1.2"]),
            "domains[0].hosts (line 20): 2 address(es) for 3 node(s); give one per node",
        ),
        (
            lambda d: d["domains"][0]["hosts"].__setitem__(1, "not an address!"),
            "domains[0].hosts[1].address (line 22): expected an IP address or host name, got 'not an address!'",
        ),
        (
            lambda d: d["domains"][1].update(hosts=["0.0.0.0"]),
            "domains[1].hosts[0].address (line 29): '0.0.0.0' cannot be dialled",
        ),
        (
            lambda d: d["domains"][1].update(hosts=[{"address": "10.9.2.1", "bind": "127.0.0.1"}]),
            "domains[1].hosts[0].bind (line 30): binding loopback ('127.0.0.1') leaves '10.9.2.1' unreachable",
        ),
        (
            lambda d: d["domains"][1].update(hosts=["10.9.1.2"]),  # b's node on a's second host, same ports
            "domains[1].ports (line 27): port 4222 (b-0 client) collides with a-1 client on 10.9.1.2",
        ),
        (
            lambda d: d["domains"][1].update(hosts=[{"address": "10.9.2.1", "bnd": "0.0.0.0"}]),
            "domains[1].hosts[0].bnd (line 30): unknown key 'bnd'; expected one of: address, bind",
        ),
        (
            lambda d: d["domains"][0].update(monitoring="everywhere"),
            "domains[0].monitoring (line 25): Input should be 'loopback' or 'node'",
        ),
        (
            lambda d: d.update(credentials={"data": {"user": "app", "password": "pw"}}),
            "credentials.data (line 31): fixed credentials are shared by every party, so they are allowed only when "
            "every listener is on loopback (host '10.9.0.1' is not)",
        ),
    ],
)
def test_a_bad_address_plan_names_the_file_the_path_and_the_line(change: Any, expected: str) -> None:
    d = doc()
    change(d)
    msg = problems(d)
    assert msg.startswith("invalid mesh spec wide.yaml")
    assert expected in msg, msg


def test_a_domain_with_a_gated_product_gets_a_unit_for_its_gate_and_its_clients_lose_the_products_subjects() -> None:
    d = doc()
    schema = {"type": "object", "properties": {"id": {"type": "integer"}}}
    d["domains"][0]["products"] = [
        {"name": "P", "subjects": ["a.p.>"], "contract": {"schema": schema, "enforce": "gate"}}
    ]
    mesh = mesh_of(d)
    files = host_files(mesh, mesh.domain("a"), "/usr/local/bin/nats-server", "/opt/mesh")
    unit = files["systemd/natsmesh-wide-gate-a.service"].splitlines()
    assert "ExecStart=natsmesh --bundle /opt/mesh/a gate a" in unit and "Restart=always" in unit
    assert "natsmesh-wide-gate-a.service" in files["README.md"]
    assert not any("gate" in p for p in host_files(mesh, mesh.domain("b"), "nats-server", "/opt/mesh"))
    every = render_mesh(mesh, new_credentials(mesh, cost=4))
    conf = every["a/a-0.conf"]
    assert 'user: "app"' in conf and 'publish: { deny: ["a.p.>", ' in conf  # and the catalog copy's writes
    assert 'user: "gate"' in conf and 'subscribe: { allow: ["natsmesh.ingress.a.p.>", "_INBOX.>"] }' in conf
    assert "gate" not in every["b/b-0.conf"] and '"password"' in every["a/secrets.json"]
    assert json.loads(every["a/secrets.json"])["gate"]["user"] == "gate"
    assert "gate" not in json.loads(every["b/secrets.json"])
