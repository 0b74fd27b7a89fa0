"""Integration: real nats-server meshes on free ports, brought up, observed, broken and brought back."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import nats
import nats.aio.client
import nats.js.errors
import pytest
from nats.js.api import ExternalStream, StreamConfig, StreamConsumerSource, StreamSource
from nats.js.client import JetStreamContext

from helpers import MeshRunner, read_state, run_cli, servers_under, small_mesh_text, with_keys
from natsmesh.client import publish_settled
from natsmesh.errors import AlreadyRunningError, NotReadyError, NotRunningError, PreflightError
from natsmesh.local.secrets import load_credentials
from natsmesh.model import jwt
from natsmesh.model.identities import Credentials
from natsmesh.model.mesh import Mesh
from natsmesh.model.products import Share
from natsmesh.observe.info import mesh_info
from natsmesh.observe.monitor import http_json
from natsmesh.observe.readiness import wait_ready
from natsmesh.observe.reports import build_jetstream, build_leafnodes, build_servers
from natsmesh.observe.system import collect, collect_sync
from natsmesh.render.streams import share_consumer_config
from natsmesh.render.trust import realise
from natsmesh.run import lifecycle

pytestmark = pytest.mark.integration
SEED_DOMAINS = ["hub", *(f"leaf-domain-{x}" for x in "abcde")]


def _spec_file(mesh: Mesh, tmp: Path) -> Path:
    """A spec file for the CLI that describes MESH."""
    import yaml

    path = tmp / "mesh.yaml"
    path.write_text(yaml.safe_dump(mesh.document, sort_keys=False))
    return path


# ---------------------------------------------------------------------------------------------------------------
# The seed topology


def test_seed_topology_reports(seed_mesh: Mesh) -> None:
    creds = load_credentials(seed_mesh, create=False)
    replies = collect_sync(seed_mesh, creds, ["JSZ", "STATSZ", "LEAFZ"])
    js = build_jetstream(seed_mesh, replies["JSZ"]).to_json()
    assert js["missing"] == []
    assert len(js["servers"]) == 18
    assert {s["cluster"] for s in js["servers"]} == set(SEED_DOMAINS)
    assert {s["domain"] for s in js["servers"]} == set(SEED_DOMAINS)
    assert [g["domain"] for g in js["meta_groups"]] == SEED_DOMAINS
    for g in js["meta_groups"]:
        assert g["leader"] in [p["name"] for p in g["peers"]], g
        assert all(p["online"] for p in g["peers"]), g
    assert sum(s["meta_leader"] for s in js["servers"]) == 6

    servers = build_servers(seed_mesh, replies["STATSZ"]).to_json()
    assert [c["nodes"] for c in servers["clusters"]] == [3] * 6
    assert all(s["routes"] == 2 for s in servers["servers"])
    assert all(s["version"] for s in servers["servers"])

    leaf = build_leafnodes(seed_mesh, replies["LEAFZ"]).to_json()
    assert len(leaf["links"]) == 30  # 15 leaf nodes x 2 accounts, as the seed's hub showed
    assert leaf["missing_links"] == []
    assert {(x["domain"], x["account"]) for x in leaf["links"]} == {
        (d, a) for d in SEED_DOMAINS[1:] for a in ("SYS", d)
    }


def test_report_cli_json(seed_mesh: Mesh, tmp_path: Path) -> None:
    spec = _spec_file(seed_mesh, tmp_path)
    for name in ("jetstream", "servers", "leafnodes"):
        res = run_cli("report", name, "-f", str(spec), "--json")
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        assert len(doc["servers"]) == 18
        assert {"name", "cluster", "domain"} <= doc["servers"][0].keys()
        if name == "jetstream":
            assert [g["domain"] for g in doc["meta_groups"]] == SEED_DOMAINS
            assert all(g["leader"] for g in doc["meta_groups"])
            assert doc["missing"] == []
    res = run_cli("report", "jetstream", "-f", str(spec))
    assert res.returncode == 0
    assert "JetStream Summary" in res.stdout and "18 servers" in res.stdout
    assert res.stdout.count("RAFT Meta Group Information") == 6


def test_report_names_servers_that_do_not_answer(seed_mesh: Mesh) -> None:
    # Expecting one server more than the spec places: named as missing, and not waited for (a reply in a name the
    # spec does not place is never believed, so none can come).
    expected = {n.name for n in seed_mesh.nodes()} | {"ghost-0"}
    creds = load_credentials(seed_mesh, create=False)
    start = time.monotonic()
    replies = collect_sync(seed_mesh, creds, ["JSZ"], timeout=1.0, expected=expected)["JSZ"]
    assert replies.missing == ["ghost-0"]
    assert time.monotonic() - start < 1.0
    fast = collect_sync(seed_mesh, creds, ["JSZ"], timeout=5.0)["JSZ"]
    assert fast.missing == [] and fast.seconds < 1.0  # returns as soon as all answered


async def test_cross_domain_mirror_with_plain_nats_py(seed_mesh: Mesh) -> None:
    info = mesh_info(seed_mesh, load_credentials(seed_mesh, create=False))
    a = await nats.connect(info["domains"]["leaf-domain-a"]["url"])
    b = await nats.connect(info["domains"]["leaf-domain-b"]["url"])
    try:
        ja, jb = a.jetstream(), b.jetstream()
        subjects = ["leaf-domain-a.orders.>"]
        await ja.add_stream(StreamConfig(name="ORDERS", subjects=subjects, num_replicas=3))
        await _publish_retrying(ja, "leaf-domain-a.orders.0", b"order-0", msg_id="order-0")
        acks = await asyncio.gather(
            *(ja.publish(f"leaf-domain-a.orders.{i % 7}", f"order-{i}".encode()) for i in range(1, 500))
        )
        assert [x.seq for x in acks] == list(range(2, 501))
        # The spec declares this share, so the hub lets exactly the reset of its consumer, its flow control and its
        # delivery through; the owner creates that consumer (as `apply` does).
        share = next(s for s in seed_mesh.shares if s.copy == "ORDERS_FROM_A")
        await _share_consumer(a, seed_mesh, share)
        external = ExternalStream(api="$JS.leaf-domain-a.API")
        source = StreamSource(name="ORDERS", external=external, consumer=_slot(share))
        await jb.add_stream(StreamConfig(name="ORDERS_FROM_A", mirror=source))
        deadline = time.monotonic() + 20
        while (await jb.stream_info("ORDERS_FROM_A")).state.messages < 500:
            assert time.monotonic() < deadline, "mirror did not catch up"
            await asyncio.sleep(0.1)
        for seq in (1, 250, 500):
            orig = await ja.get_msg("ORDERS", seq)
            copy = await jb.get_msg("ORDERS_FROM_A", seq)
            assert (copy.subject, copy.data) == (orig.subject, orig.data)
        # Nothing else crosses: B cannot even look at A's stream through the hub.
        with pytest.raises(nats.js.errors.ServiceUnavailableError):
            await b.jetstream(domain="leaf-domain-a").stream_info("ORDERS")
    finally:
        await a.close()
        await b.close()


def test_kill_9_leaf_node_is_restarted(seed_mesh: Mesh) -> None:
    state = read_state(seed_mesh)
    assert state is not None
    victim = "leaf-domain-c-1"
    old_pid = state["nodes"][victim]["pid"]
    os.kill(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while True:
        info = (read_state(seed_mesh) or {})["nodes"][victim]
        if info["restarts"] >= 1 and info["state"] == "running" and info["pid"] != old_pid:
            break
        assert time.monotonic() < deadline, info
        time.sleep(0.05)
    wait_ready(seed_mesh, timeout=30)
    # A restarted node catching up may move its cluster's meta leader once more after the first ready round:
    # status is a snapshot, so it is asked until it agrees (the wait above already proved the mesh came back).
    deadline = time.monotonic() + 15
    while not (st := lifecycle.status(seed_mesh)).ready:
        problems = {n.name: n.problems for n in st.nodes if not n.ready}
        assert time.monotonic() < deadline, problems
        time.sleep(0.1)
    assert {n.name: n.restarts for n in st.nodes}[victim] >= 1
    assert any(victim in e and "restarted" in e for e in st.events)


# ---------------------------------------------------------------------------------------------------------------
# Other shapes, restarts, and refusals


async def test_one_hub_node_two_single_node_domains(runner: MeshRunner, tmp_path: Path) -> None:
    import yaml

    doc = yaml.safe_load(small_mesh_text(tmp_path / "d", domains=2, nodes=1, hub_nodes=1))
    doc["domains"][0]["products"] = [{"name": "S", "subjects": ["leaf-domain-a.s.>"]}]
    doc["domains"][1]["consumes"] = [{"product": "leaf-domain-a/S", "as": "M"}]
    mesh = runner.up(runner.load(yaml.safe_dump(doc)))
    replies = await collect(mesh, load_credentials(mesh, create=False), ["JSZ", "LEAFZ"])
    js = build_jetstream(mesh, replies["JSZ"]).to_json()
    assert [s["name"] for s in js["servers"]] == ["hub-server-0", "leaf-domain-a-0", "leaf-domain-b-0"]
    assert [g["leader"] for g in js["meta_groups"]] == ["hub-server-0", "leaf-domain-a-0", "leaf-domain-b-0"]
    assert len(build_leafnodes(mesh, replies["LEAFZ"]).to_json()["links"]) == 2  # data links: SYS stays local
    info = mesh_info(mesh, load_credentials(mesh, create=False))
    a = await nats.connect(info["domains"]["leaf-domain-a"]["url"])
    b = await nats.connect(info["domains"]["leaf-domain-b"]["url"])
    try:
        await a.jetstream().add_stream(StreamConfig(name="S", subjects=["leaf-domain-a.s.>"]))
        for i in range(10):
            await a.jetstream().publish("leaf-domain-a.s.x", str(i).encode())
        share = next(s for s in mesh.shares if s.copy == "M")
        await _share_consumer(a, mesh, share)
        external = ExternalStream(api="$JS.leaf-domain-a.API")
        await b.jetstream().add_stream(
            StreamConfig(name="M", mirror=StreamSource(name="S", external=external, consumer=_slot(share)))
        )
        deadline = time.monotonic() + 20
        while (await b.jetstream().stream_info("M")).state.messages < 10:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
    finally:
        await a.close()
        await b.close()


async def _share_consumer(nc: nats.aio.client.Client, mesh: Mesh, share: Share) -> None:
    """The owner's consumer for SHARE, made with plain nats-py as `natsmesh apply` makes it."""
    cfg = share_consumer_config(mesh.name, share)
    body = json.dumps({"stream_name": share.stream, "config": cfg, "action": "create"}).encode()
    reply = json.loads((await nc.request(f"$JS.API.CONSUMER.CREATE.{share.stream}.{share.consumer}", body)).data)
    assert "error" not in reply, reply


def _slot(share: Share) -> StreamConsumerSource:
    return StreamConsumerSource(name=share.consumer, deliver_subject=share.deliver)


async def _publish_retrying(js: JetStreamContext, subject: str, data: bytes, msg_id: str) -> None:
    """Publish with the same id while a just-created R3 stream's interest is still spreading."""
    await publish_settled(js, "a new stream", subject, data, {"Nats-Msg-Id": msg_id}, settle=5.0)


async def _publish_and_count(url: str, create: bool, count: int) -> int:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(timeout=10)
        if create:
            for attempt in range(3):  # a request to a meta leader that stepped down just after `up` gets no answer
                try:
                    await js.add_stream(StreamConfig(name="KEEP", subjects=["keep.>"], num_replicas=3))
                    break
                except nats.errors.TimeoutError:
                    if attempt == 2:
                        raise
            for i in range(count):
                await _publish_retrying(js, "keep.x", f"m{i}".encode(), msg_id=f"m{i}")
        deadline = time.monotonic() + 20
        while True:
            try:
                return (await js.stream_info("KEEP")).state.messages
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
    finally:
        await nc.close()


def test_down_then_up_keeps_messages(runner: MeshRunner, tmp_path: Path) -> None:
    mesh = runner.up(runner.load(small_mesh_text(tmp_path / "d", domains=1, nodes=3, hub_nodes=1)))
    url = mesh_info(mesh, load_credentials(mesh, create=False))["domains"]["leaf-domain-a"]["url"]
    assert asyncio.run(_publish_and_count(url, True, 250)) == 250
    lifecycle.down(mesh)
    assert servers_under(tmp_path) == []
    for node in mesh.nodes():  # down stops each server cleanly: JetStream closes its stores before it exits
        log = (mesh.data_dir / "logs" / f"{node.name}.log").read_text()
        assert "JetStream Shutdown" in log and log.rstrip().endswith("Server Exiting.."), node.name
    runner.up(mesh)
    assert asyncio.run(_publish_and_count(url, False, 0)) == 250


def test_readiness_poll_leaves_the_server_logs_readable(runner: MeshRunner, tmp_path: Path) -> None:
    """nats-server logs a warning for every failed health check; the poll asks for it only when the node's
    meta leader and links are in order, so `up` no longer fills the logs (the seed's nodes once logged ~120 each)."""
    mesh = runner.up(runner.load(small_mesh_text(tmp_path / "d", domains=2, nodes=3, hub_nodes=3)))
    for node in mesh.nodes():
        log = (mesh.data_dir / "logs" / f"{node.name}.log").read_text()
        assert log.count("Healthcheck failed") <= 2, node.name


def signed_by(mesh: Mesh, creds: Credentials, cluster: str) -> str:
    """The public key the platform's first system login at CLUSTER signs with: its cluster's system nkey, or
    (an operator-mode hub) its system user's JWT's subject."""
    login = realise(mesh, creds).logins("system", cluster)[0]
    if login.creds:
        return str(jwt.decode(login.creds.split("-----BEGIN NATS USER JWT-----")[1].split()[0])["sub"])
    return jwt.public_key(login.nkey_seed)


async def test_the_platforms_system_connections_sign_with_their_clusters_nkey(
    runner: MeshRunner, tmp_path: Path
) -> None:
    """What `report` and readiness open at every cluster is authorized by the cluster's system nkey."""
    from natsmesh.observe.connect import connect_system

    mesh = runner.up(runner.load(small_mesh_text(tmp_path / "d", domains=1)))
    creds = load_credentials(mesh, create=False)
    for cluster in mesh.clusters:
        nc = await connect_system(mesh, creds, cluster=cluster)
        try:
            node = cluster.nodes[0]
            connz = http_json("127.0.0.1", node.http_port, "/connz?auth=true&limit=1000")
            ours = [c for c in connz["connections"] or () if c.get("name") == "natsmesh-observe"]
            assert [c["authorized_user"] for c in ours] == [signed_by(mesh, creds, cluster.name)]
        finally:
            await nc.close()
    assert build_jetstream(mesh, (await collect(mesh, creds, ["JSZ"]))["JSZ"]).to_json()["missing"] == []

    # Keys made after the servers were started (`natsmesh info` and `render` add missing secrets to an older
    # mesh's secrets.json): the servers refuse them, and the report falls back to the password.
    from natsmesh.local.secrets import new_nkey

    stale = replace(creds, system_keys={name: new_nkey() for name in creds.system_keys})
    assert build_jetstream(mesh, (await collect(mesh, stale, ["JSZ"]))["JSZ"]).to_json()["missing"] == []


def test_up_twice_is_refused_and_leaves_the_first_alone(runner: MeshRunner, tmp_path: Path) -> None:
    mesh = runner.up(runner.load(small_mesh_text(tmp_path / "d")))
    pids = sorted(servers_under(tmp_path))
    with pytest.raises(AlreadyRunningError, match="already up"):
        lifecycle.up_detached(mesh)
    spec = _spec_file(mesh, tmp_path)
    res = run_cli("up", "--detach", "-f", str(spec))
    assert res.returncode == 1 and "already up" in res.stderr and "Traceback" not in res.stderr
    assert sorted(servers_under(tmp_path)) == pids
    assert lifecycle.status(mesh).ready


def test_port_in_use_is_refused_before_anything_starts(runner: MeshRunner, tmp_path: Path) -> None:
    mesh = runner.load(small_mesh_text(tmp_path / "d"))
    taken = mesh.domains[1].nodes[0].client_port
    with socket.socket() as s:
        s.bind(("127.0.0.1", taken))
        s.listen()
        with pytest.raises(PreflightError, match=rf"leaf-domain-b-0 client port 127.0.0.1:{taken} is already in use"):
            lifecycle.up_detached(mesh)
        res = run_cli("up", "--detach", "-f", str(_spec_file(mesh, tmp_path)))
        assert res.returncode == 1 and "already in use" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "d").exists()
    assert servers_under(tmp_path) == []


def test_supervisor_gives_up_on_a_node_that_keeps_dying(runner: MeshRunner, tmp_path: Path) -> None:
    mesh = runner.up(runner.load(small_mesh_text(tmp_path / "d")))
    node = mesh.domains[0].nodes[0]
    conf = mesh.data_dir / mesh.domains[0].folder / f"{node.name}.conf"
    conf.write_text("this is not a config {")
    os.kill(read_state(mesh)["nodes"][node.name]["pid"], signal.SIGKILL)  # type: ignore[index]
    deadline = time.monotonic() + 20
    while (info := read_state(mesh)["nodes"][node.name])["state"] != "failed":  # type: ignore[index]
        assert time.monotonic() < deadline, info
        time.sleep(0.1)
    assert "gave up after 5 restarts" in info["reason"]
    st = lifecycle.status(mesh)
    assert not st.ready
    res = run_cli("status", "-f", str(_spec_file(mesh, tmp_path)))
    assert res.returncode == 1 and "failed" in res.stdout


def test_readiness_times_out_with_named_problems(runner: MeshRunner, tmp_path: Path) -> None:
    mesh = runner.load(small_mesh_text(tmp_path / "d"))
    with pytest.raises(NotReadyError, match="not answering its health check"):
        wait_ready(mesh, timeout=0.3)


def test_foreground_up_prefixes_lines_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    runner = MeshRunner(tmp_path)
    mesh = runner.load(small_mesh_text(tmp_path / "d"))
    spec = _spec_file(mesh, tmp_path)
    exe = Path(sys.executable).parent / "natsmesh"
    proc = subprocess.Popen(
        [str(exe), "up", "-f", str(spec)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        for line in proc.stdout:
            lines.append(line)
            if "ready: 3 nodes" in line:
                break
            assert time.monotonic() < deadline
        assert len(servers_under(tmp_path)) == 3
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest
    # every node's lines carry its prefix (its start-up lines are kept out of the way until ready; its stop shows)
    everything = lines + rest.splitlines()
    assert any(line.startswith("leaf-domain-a-0 | ") and "Server Exiting" in line for line in everything)
    assert not any(line.startswith("leaf-domain-a-0 | ") and "Server is ready" in line for line in everything)
    assert "stopped 3 nodes" in rest
    assert servers_under(tmp_path) == []


def test_nodes_do_not_outlive_a_killed_supervisor(runner: MeshRunner, tmp_path: Path) -> None:
    mesh = runner.up(runner.load(small_mesh_text(tmp_path / "d")))
    state = read_state(mesh)
    assert state is not None and len(servers_under(tmp_path)) == 3
    os.kill(state["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while servers_under(tmp_path):
        assert time.monotonic() < deadline, "nodes outlived their supervisor"
        time.sleep(0.05)
    with pytest.raises(NotRunningError):
        lifecycle.status(mesh)
    runner.up(mesh)  # and the mesh comes up again on the same data
    assert lifecycle.status(mesh).ready


def test_no_secret_in_logs_state_or_reports(seed_mesh: Mesh, tmp_path: Path) -> None:
    secrets_file = seed_mesh.data_dir / "secrets.json"
    assert (secrets_file.stat().st_mode & 0o777) == 0o600
    assert (seed_mesh.data_dir.stat().st_mode & 0o777) == 0o700
    creds = load_credentials(seed_mesh, create=False)
    spec = _spec_file(seed_mesh, tmp_path)
    outputs = [
        run_cli("report", name, "-f", str(spec), *extra)
        for name in ("jetstream", "servers", "leafnodes")
        for extra in ((), ("--json",))
    ]
    outputs.append(run_cli("status", "-f", str(spec), "--json"))
    texts = [o.stdout + o.stderr for o in outputs]
    texts += [p.read_text(errors="replace") for p in (seed_mesh.data_dir / "logs").glob("*.log")]
    texts += [p.read_text(errors="replace") for p in (seed_mesh.data_dir / "run").glob("*") if p.is_file()]
    assert len(texts) > 18
    for secret in creds.secrets():
        assert len(secret) >= 20
        assert not [t for t in texts if secret in t], "a secret leaked into logs, state or report output"


def test_without_the_system_bridge_reports_still_cover_every_server(runner: MeshRunner, tmp_path: Path) -> None:
    """Past 20 domains (or when the spec says so) leaf servers do not link their system account to the hub: the
    hub sees only its own servers, and natsmesh asks every cluster directly, at once, for the same reports."""
    text = with_keys(
        small_mesh_text(tmp_path / "d", domains=3, nodes=1, hub_nodes=3), leafnodes={"system_bridge": False}
    )
    mesh = runner.up(runner.load(text))
    assert not mesh.system_bridge
    leafz = http_json(mesh.host, mesh.hub.nodes[0].http_port, "/leafz")
    named = {realise(mesh, load_credentials(mesh, create=False)).hub_account(d.name) for d in mesh.domains}
    assert {lf["account"] for lf in leafz["leafs"]} <= named  # no SYS link at the hub
    spec = tmp_path / "m.yaml"
    spec.write_text(text)
    res = run_cli("report", "jetstream", "-f", str(spec), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert sorted(s["name"] for s in doc["servers"]) == sorted(n.name for n in mesh.nodes()) and not doc["missing"]
    assert all(g["leader"] for g in doc["meta_groups"])
    for name in ("servers", "leafnodes"):
        assert run_cli("report", name, "-f", str(spec)).returncode == 0
    creds = load_credentials(mesh, create=False)  # a server that does not answer is named, as with the bridge
    expected = {n.name for n in mesh.nodes()} | {"ghost-0"}
    replies = collect_sync(mesh, creds, ["VARZ"], timeout=1.0, expected=expected)["VARZ"]
    assert replies.missing == ["ghost-0"] and len(replies.replies) == len(mesh.nodes())
