"""Rendering: the seed's names, clusters, domains and port plan; what every config carries; pure output."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from helpers import EXAMPLES, with_keys
from natsmesh.local import binary
from natsmesh.local.files import write_files
from natsmesh.local.secrets import new_credentials
from natsmesh.local.specfile import default_mesh, parse_spec
from natsmesh.model import jwt
from natsmesh.model.identities import Credentials
from natsmesh.model.templates import init_spec_text, seed_spec_text
from natsmesh.render.servers import render_mesh
from natsmesh.render.trust import realise

CREDS: Credentials = new_credentials(default_mesh())
BRIDGED = parse_spec(with_keys(seed_spec_text(), leafnodes={"system_bridge": True}), cache=False)  # both links
SEED_FOLDERS = ["hub-cluster", *(f"leaf-cluster-{x}" for x in "abcde")]


def _field(conf: str, key: str) -> str:
    m = re.search(rf"^\s*{key}: (.+)$", conf, re.M)
    assert m, f"{key} not in config"
    return m.group(1).strip().strip('"')


def test_seed_layout_names_and_ports() -> None:
    files = render_mesh(default_mesh(), CREDS)
    assert sorted({p.split("/")[0] for p in files}) == SEED_FOLDERS
    assert len([p for p in files if p.endswith(".conf")]) == 18
    hub = files["hub-cluster/hub-server-0.conf"]
    assert _field(hub, "server_name") == "hub-server-0"
    assert _field(hub, "listen") == "127.0.0.1:4222"
    assert _field(hub, "domain") == "hub"
    assert 'listen: "127.0.0.1:7422"' in hub  # leafnode listener
    assert 'listen: "127.0.0.1:6222"' in hub  # route listener
    expected = {"a": (4111, 6322), "b": (4211, 6422), "c": (4311, 6522), "d": (4511, 6622), "e": (4611, 6722)}
    for x, (client, route) in expected.items():
        for i in range(3):
            conf = files[f"leaf-cluster-{x}/leaf-domain-{x}-{i}.conf"]
            assert _field(conf, "server_name") == f"leaf-domain-{x}-{i}"
            assert _field(conf, "listen") == f"127.0.0.1:{client + i}"
            assert _field(conf, "domain") == f"leaf-domain-{x}"
            assert _field(conf, "name") == f"leaf-domain-{x}"  # cluster name
            assert f'listen: "127.0.0.1:{route + i}"' in conf
            routes = re.findall(r"nats-route://route:[^@\"]+@127\.0\.0\.1:(\d+)", conf)
            assert sorted(map(int, routes)) == [p for p in (route, route + 1, route + 2) if p != route + i]


def test_leaf_configs_reach_every_hub_node_in_both_accounts() -> None:
    mesh = BRIDGED
    files = render_mesh(mesh, CREDS)
    conf = files["leaf-cluster-c/leaf-domain-c-1.conf"]
    remotes = re.findall(r"\{ urls: \[(.*?)\], account: (\"?[\w-]+\"?), nkey: \"(\w+)\" \}", conf)
    assert [acct for _, acct, _ in remotes] == ["SYS", '"leaf-domain-c"']
    for urls, acct, _ in remotes:
        ports = sorted(int(p) for p in re.findall(r"nats-leaf://127\.0\.0\.1:(\d+)", urls))
        assert ports == [7422, 7423, 7424], acct
    # Each link signs with the domain's own nkey; no password travels in a leaf URL.
    assert [seed for _, _, seed in remotes] == [
        CREDS.system_links["leaf-domain-c"].seed,
        CREDS.links["leaf-domain-c"].seed,
    ]
    assert "@" not in "".join(urls for urls, _, _ in remotes)
    assert "extension_hint: no_extend" in conf
    assert "extension_hint" not in files["hub-cluster/hub-server-1.conf"]


def test_every_config_bounds_jetstream_and_has_monitoring_and_short_reconnect() -> None:
    text = with_keys(init_spec_text(domains=3, nodes=3), jetstream={"max_memory": "32MiB", "max_file": "2GiB"})
    mesh = parse_spec(text)
    files = render_mesh(mesh, CREDS)
    for node in mesh.nodes():
        cluster = mesh.cluster_of(node.name)
        conf = files[f"{cluster.folder}/{node.name}.conf"]
        assert _field(conf, "max_memory_store") == str(32 * 1024**2)
        assert _field(conf, "max_file_store") == str(2 * 1024**3)
        assert _field(conf, "http") == f"127.0.0.1:{node.http_port}"
        assert _field(conf, "store_dir") == f"data/{node.name}"
        assert _field(conf, "reconnect") == "250ms"


@pytest.mark.parametrize(("nodes", "listed"), [(2, 1), (3, 2), (4, 4), (5, 4), (6, 6), (7, 6)])
def test_routes_leave_self_out_only_where_the_bootstrap_quorum_stays_a_majority(nodes: int, listed: int) -> None:
    mesh = parse_spec(init_spec_text(domains=1, nodes=nodes))
    files = render_mesh(mesh, CREDS)
    for node in mesh.domains[0].nodes:
        conf = files[f"{mesh.domains[0].folder}/{node.name}.conf"]
        routes = re.findall(r"nats-route://route:[^@\"]+@127\.0\.0\.1:(\d+)", conf)
        assert len(routes) == listed
        bootstrap = max(2, listed)
        assert bootstrap // 2 + 1 > nodes / 2  # the first election's quorum is a majority of the real cluster


def test_procfiles_run_each_node_from_its_folder() -> None:
    files = render_mesh(default_mesh(), CREDS, server_command="/opt/nats-server")
    assert files["leaf-cluster-a/Procfile"] == "".join(
        f"leaf-domain-a-{i}: /opt/nats-server -c leaf-domain-a-{i}.conf\n" for i in range(3)
    )
    assert files["hub-cluster/Procfile"].startswith("hub-server-0: /opt/nats-server -c hub-server-0.conf\n")


def test_render_is_pure_and_deterministic() -> None:
    assert render_mesh(default_mesh(), CREDS) == render_mesh(default_mesh(), CREDS)


def test_single_node_clusters_have_no_cluster_block() -> None:
    mesh = parse_spec(init_spec_text(domains=2, nodes=1, hub_nodes=1))
    files = render_mesh(mesh, CREDS)
    assert all("cluster {" not in text for path, text in files.items() if path.endswith(".conf"))


def test_rendered_configs_pass_nats_server_config_check(tmp_path: Path) -> None:
    """The real binary's `-t` (test config) accepts every rendered file."""
    server = binary.resolve()
    mesh = parse_spec(init_spec_text(domains=2, nodes=3))
    write_files(render_mesh(mesh, CREDS), tmp_path)
    for conf in sorted(tmp_path.glob("*/*.conf")):
        out = subprocess.run(
            [server.path, "-t", "-c", conf.name], cwd=conf.parent, capture_output=True, text=True, timeout=10
        )
        assert out.returncode == 0, f"{conf}: {out.stdout}{out.stderr}"


def test_written_configs_are_owner_readable_only(tmp_path: Path) -> None:
    paths = write_files(render_mesh(default_mesh(), CREDS), tmp_path)
    for p in paths:
        mode = p.stat().st_mode & 0o777
        private = p.suffix in (".conf", ".creds") or p.name == "secrets.json"  # passwords, seeds, creds files
        assert mode == (0o600 if private else 0o644), p


def test_hardened_defaults_and_durability_setting(tmp_path: Path) -> None:
    mesh = parse_spec(init_spec_text(domains=1, nodes=3))
    conf = render_mesh(mesh, CREDS)["leaf-cluster-a/leaf-domain-a-0.conf"]
    assert 'ping_interval: "4s"' in conf and "ping_max: 3" in conf  # a half-open link is dropped in 12-16 s
    assert "sync_interval" not in conf  # the server's default unless the spec chooses
    for choice, rendered in (("always", "sync_interval: always"), ("10s", 'sync_interval: "10s"')):
        m = parse_spec(with_keys(init_spec_text(domains=1, nodes=3), jetstream={"sync_interval": choice}), cache=False)
        files = render_mesh(m, CREDS)
        assert rendered in files["leaf-cluster-a/leaf-domain-a-1.conf"]
        write_files(files, tmp_path / choice)
        server = binary.resolve()
        conf_path = tmp_path / choice / "leaf-cluster-a" / "leaf-domain-a-1.conf"
        out = subprocess.run(
            [server.path, "-t", "-c", conf_path.name], cwd=conf_path.parent, capture_output=True, text=True, timeout=10
        )
        assert out.returncode == 0, out.stdout + out.stderr


def test_lame_duck_and_exact_hub_urls() -> None:
    """A host's unit stops its node in lame-duck mode; leaf nodes dial only the hub URLs their remotes name."""
    files = render_mesh(default_mesh(), CREDS)
    for path, conf in files.items():
        if path.endswith(".conf"):
            assert 'lame_duck_grace_period: "1s"' in conf and 'lame_duck_duration: "30s"' in conf
    assert "no_advertise: true" in files["hub-cluster/hub-server-1.conf"]


def test_fault_proxies_take_every_leaf_link_in_both_accounts(tmp_path: Path) -> None:
    mesh = BRIDGED
    via = {
        (d.name, h.name): 20000 + 10 * i + j for i, d in enumerate(mesh.domains) for j, h in enumerate(mesh.hub.nodes)
    }
    files = render_mesh(mesh, CREDS, via=via)
    plain = render_mesh(mesh, CREDS)
    conf = files["leaf-cluster-b/leaf-domain-b-2.conf"]
    ports = re.findall(r"nats-leaf://127\.0\.0\.1:(\d+)", conf)
    assert sorted(set(ports)) == ["20010", "20011", "20012"] and len(ports) == 6  # 3 hub nodes x 2 accounts
    assert files["hub-cluster/hub-server-0.conf"] == plain["hub-cluster/hub-server-0.conf"]  # the hub is untouched
    assert "7422" not in conf and "7422" in plain["leaf-cluster-b/leaf-domain-b-2.conf"]


def test_system_bridge_by_credentials_size_or_setting() -> None:
    """Each cluster's system account stays its own (natsmesh asks each directly) unless the spec asks for the
    bridge; `auto` keeps the seed's one-request view for the seed's own fixed, loopback-only credentials (one
    party) up to 20 domains. A bridged link may only answer the platform's pings."""

    def sys_remote(text: str) -> bool:
        mesh = parse_spec(text, cache=False)
        conf = render_mesh(mesh, new_credentials(mesh, cost=4))["leaf-cluster-a/leaf-domain-a-0.conf"]
        return re.search(r"urls: \[.*\], account: SYS", conf) is not None

    fixed = {"system": {"user": "admin", "password": "password"}}
    assert not sys_remote(init_spec_text(domains=2, nodes=1))  # generated per-party secrets: no bridge
    assert sys_remote(with_keys(init_spec_text(domains=20, nodes=1), credentials=fixed))
    assert not sys_remote(with_keys(init_spec_text(domains=21, nodes=1), credentials=fixed))
    assert sys_remote(with_keys(init_spec_text(domains=21, nodes=1), leafnodes={"system_bridge": True}))
    assert not sys_remote(
        with_keys(init_spec_text(domains=2, nodes=1), credentials=fixed, leafnodes={"system_bridge": False})
    )
    seed = parse_spec((EXAMPLES / "seed.yaml").read_text(), cache=False)
    hub = render_mesh(seed, new_credentials(seed, cost=4))["hub-cluster/hub-server-0.conf"]
    assert 'permissions: { publish: { allow: ["_INBOX.>"] }, subscribe: { allow: ["$SYS.REQ.SERVER.PING", ' in hub


def test_every_domain_is_bounded_at_the_hub_and_on_its_own_servers() -> None:
    spec = with_keys(
        init_spec_text(domains=2, nodes=3),
        domains=[
            {"name": "leaf-domain-a", "nodes": 3, "limits": {"subscriptions": 5000, "payload": "64KiB", "streams": 7}},
            {"name": "leaf-domain-b", "nodes": 1},
        ],
    )
    mesh = parse_spec(with_keys(spec, trust="config"), cache=False)
    files = render_mesh(mesh, new_credentials(mesh, cost=4))
    hub = files["hub-cluster/hub-server-0.conf"]
    # at the hub, each domain's account takes two leaf links per node of that domain (one failover each), no more
    assert "limits: { max_connections: 6, max_leafnodes: 6, max_subscriptions: 5000, max_payload: 65536 }" in hub
    assert "limits: { max_connections: 2, max_leafnodes: 2, max_subscriptions: 100000, max_payload: 1048576 }" in hub
    # the same limits in operator mode, in each domain's account claims
    op = parse_spec(with_keys(spec, trust="operator"), cache=False)
    mode = realise(op, new_credentials(op, cost=4))
    claims = {str(jwt.decode(t)["name"]): jwt.decode(t)["nats"]["limits"] for t in mode.claims(1).values()}
    assert {k: claims["leaf-domain-a"][k] for k in ("conn", "leaf", "subs", "payload")} == {
        "conn": 6,
        "leaf": 6,
        "subs": 5000,
        "payload": 65536,
    }
    assert {k: claims["leaf-domain-b"][k] for k in ("conn", "leaf", "subs", "payload")} == {
        "conn": 2,
        "leaf": 2,
        "subs": 100000,
        "payload": 1048576,
    }
    a = files["leaf-cluster-a/leaf-domain-a-0.conf"]
    assert "jetstream: { max_streams: 7 }" in a  # its own reservation, as the spec asks
    assert "jetstream: enabled" in files["leaf-cluster-b/leaf-domain-b-0.conf"]  # none asked: its servers' bounds
    assert "limits: { max_payload: 65536 }" in a


def test_a_join_changes_only_the_joiners_account_and_those_it_copies_from() -> None:
    """What a join pushes to the hub (`changed_hub_accounts`): the new domain's account and the owner whose
    product it copies (a new export), nothing of the domains it does not touch, at any size."""
    import yaml

    from natsmesh.model.trust import changed_hub_accounts

    doc = yaml.safe_load(init_spec_text(name="j", domains=30, nodes=1, hub_nodes=1, base=10000))
    for d in doc["domains"]:
        d.pop("products", None)
        d.pop("consumes", None)
    owner = doc["domains"][0]["name"]
    doc["domains"][0]["products"] = [{"name": "ORDERS", "subjects": [f"{owner}.orders.>"]}]
    before = parse_spec(yaml.safe_dump(doc), cache=False)
    doc["domains"].append({"name": "joiner", "nodes": 1, "consumes": [{"product": f"{owner}/ORDERS"}]})
    after = parse_spec(yaml.safe_dump(doc), cache=False)
    assert changed_hub_accounts(before, after) == [owner, "joiner"]
    assert changed_hub_accounts(after, after) == []
