"""A domain's own users per service, on real servers (issue 20): `sales` (its cluster under its own operator,
`service_users: true`) issues a producer, readers and an admin from its folder; each tries every verb against its
cluster's servers with a bare nats-py connection (what the servers enforce, not what natsmesh checks first); a
revocation closes a connection at once and an expiry on time; nothing outside the domain restarts or reloads; `pub`,
`tail` and the loss checker work with a creds file and the folder's mesh.json only; each act is in the audit trail.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from helpers import MeshRunner, run_cli
from natsmesh.client import MeshClient, run
from natsmesh.faults.losscheck import check_product
from natsmesh.model.mesh import Mesh
from natsmesh.model.topology import block_size, plan_ports
from natsmesh.observe.monitor import config_load_time
from natsmesh.reconcile.users import service_login
from natsmesh.run.ports import free_port_base

pytestmark = pytest.mark.integration

OWNER, OTHER = "sales", "billing"
VERBS = (
    "publish ORDERS",
    "publish PRICES",
    "info ORDERS",
    "info PRICES",
    "read ORDERS",
    "read PRICES",
    "read INVOICES",
    "own consumer",
    "other consumer",
    "ephemeral consumer",
    "delete a consumer",
    "update a stream",
    "create a stream",
    "system ping",
    "write the catalog copy",
    "listen on another's inbox",
)


def _doc(data_dir: Path) -> dict[str, Any]:
    block = block_size(1)
    base = free_port_base(block * 3)
    clusters: list[dict[str, Any]] = [
        {"name": "hub", "nodes": 1},
        {
            "name": OWNER,
            "nodes": 1,
            "service_users": True,
            "products": [
                {"name": "ORDERS", "subjects": [f"{OWNER}.orders.>"]},
                {"name": "PRICES", "subjects": [f"{OWNER}.prices.>"]},
            ],
            "consumes": [{"product": f"{OTHER}/INVOICES"}],
        },
        {"name": OTHER, "nodes": 1, "products": [{"name": "INVOICES", "subjects": [f"{OTHER}.inv.>"], "public": True}]},
    ]
    clusters[2]["consumes"] = [{"product": f"{OWNER}/ORDERS"}]
    for k, c in enumerate(clusters):
        c["ports"] = plan_ports(base, block, k, 1, k == 0).as_spec()
    return {"name": "su", "trust": "operator", "data_dir": str(data_dir), "hub": clusters[0], "domains": clusters[1:]}


class World:
    def __init__(self, tmp: Path, mesh: Mesh, spec: Path) -> None:
        self.tmp, self.mesh, self.spec = tmp, mesh, spec
        self.folder = mesh.data_dir / mesh.domain(OWNER).folder

    def user(self, name: str, *args: str) -> Path:
        out = self.tmp / f"{name}.creds"
        res = run_cli("--bundle", str(self.folder), "user", "add", name, *args, "--out", str(out), "--json")
        assert res.returncode == 0, res.stderr
        return out

    def url(self) -> str:
        n = self.mesh.domain(OWNER).nodes[0]
        return f"nats://{n.host}:{n.client_port}"

    async def connect(self, creds: Path, **kw: Any) -> nats.NATS:
        login = service_login(creds)
        kw.setdefault("error_cb", _quiet)
        return await nats.connect(self.url(), user_credentials=str(creds), inbox_prefix=f"_INBOX_{login.name}", **kw)


async def _quiet(_: Exception) -> None:
    pass


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("users")
    runner = MeshRunner(tmp)
    try:
        mesh, spec = runner.up_file(_doc(tmp / "data"), "su.yaml")
        res = run_cli("apply", "-f", str(spec), "--json")
        assert res.returncode == 0, res.stdout + res.stderr
        w = World(tmp, mesh, spec)

        async def seed() -> None:
            async with MeshClient(mesh) as mc:
                for ref, subject in ((f"{OWNER}/ORDERS", "orders"), (f"{OWNER}/PRICES", "prices")):
                    await mc.publish(ref, b'{"seed": 1}', subject=f"{OWNER}.{subject}.x")
                await mc.publish(f"{OTHER}/INVOICES", b'{"seed": 1}', subject=f"{OTHER}.inv.x")

        run(seed())
        yield w
    finally:
        runner.close()


async def _ok(nc: nats.NATS, subject: str, body: dict[str, Any] | None = None) -> bool:
    """Whether a JetStream API request on SUBJECT is answered without an error (a denied one gets no answer)."""
    try:
        reply = await nc.request(subject, json.dumps(body or {}).encode(), timeout=0.7)
    except Exception:
        return False
    return "error" not in json.loads(reply.data or b"{}")


async def _published(nc: nats.NATS, subject: str) -> bool:
    try:
        reply = await nc.request(subject, b'{"probe": 1}', timeout=0.7)
    except Exception:
        return False
    return b'"seq"' in reply.data


async def _tries(w: World, nc: nats.NATS, name: str, app: nats.NATS) -> dict[str, bool]:
    """Every verb of VERBS as NAME, each against the servers; what succeeded."""
    api = "$JS.API"

    async def consumer(cname: str, nameless: bool = False) -> bool:
        subject = f"{api}.CONSUMER.CREATE.ORDERS" + ("" if nameless else f".{cname}")
        config = {"ack_policy": "none", "inactive_threshold": 5_000_000_000} | ({} if nameless else {"name": cname})
        done = await _ok(nc, subject, {"stream_name": "ORDERS", "config": config})
        if done and not nameless:
            await app.request(f"{api}.CONSUMER.DELETE.ORDERS.{cname}", b"", timeout=2)
        return done

    async def delete_victim() -> bool:
        await app.request(
            f"{api}.CONSUMER.CREATE.ORDERS.victim",
            json.dumps({"stream_name": "ORDERS", "config": {"name": "victim", "durable_name": "victim"}}).encode(),
            timeout=2,
        )
        return await _ok(nc, f"{api}.CONSUMER.DELETE.ORDERS.victim")

    async def update_stream() -> bool:
        info = json.loads((await app.request(f"{api}.STREAM.INFO.ORDERS", b"", timeout=2)).data)
        return await _ok(nc, f"{api}.STREAM.UPDATE.ORDERS", info["config"])

    async def create_stream() -> bool:
        stream = f"X{name.replace('-', '')}"
        done = await _ok(nc, f"{api}.STREAM.CREATE.{stream}", {"name": stream, "subjects": [f"{OWNER}.x{stream}"]})
        if done:
            await app.request(f"{api}.STREAM.DELETE.{stream}", b"", timeout=2)
        return done

    async def ping() -> bool:
        try:
            await nc.request("$SYS.REQ.SERVER.PING", b"", timeout=0.7)
        except Exception:
            return False
        return True

    async def listen() -> bool:
        sub = await nc.subscribe("_INBOX_someone-else.x")
        await nc.flush()
        await asyncio.sleep(0.2)
        await app.publish("_INBOX_someone-else.x", b"secret")
        await app.flush()
        try:
            await sub.next_msg(timeout=0.5)
        except Exception:
            return False
        finally:
            await sub.unsubscribe()
        return True

    tries: dict[str, Callable[[], Awaitable[bool]]] = {
        "publish ORDERS": lambda: _published(nc, f"{OWNER}.orders.t"),
        "publish PRICES": lambda: _published(nc, f"{OWNER}.prices.t"),
        "info ORDERS": lambda: _ok(nc, f"{api}.STREAM.INFO.ORDERS"),
        "info PRICES": lambda: _ok(nc, f"{api}.STREAM.INFO.PRICES"),
        "read ORDERS": lambda: _ok(nc, f"{api}.STREAM.MSG.GET.ORDERS", {"seq": 1}),
        "read PRICES": lambda: _ok(nc, f"{api}.STREAM.MSG.GET.PRICES", {"seq": 1}),
        "read INVOICES": lambda: _ok(nc, f"{api}.STREAM.MSG.GET.INVOICES", {"seq": 1}),
        "own consumer": lambda: consumer(name),
        "other consumer": lambda: consumer("intruder"),
        "ephemeral consumer": lambda: consumer("", nameless=True),
        "delete a consumer": delete_victim,
        "update a stream": update_stream,
        "create a stream": create_stream,
        "system ping": ping,
        "write the catalog copy": lambda: _published(nc, f"$KV.natsmesh_catalog.{OWNER}.x"),
        "listen on another's inbox": listen,
    }
    results = await asyncio.gather(*(f() for f in tries.values()))
    return dict(zip(tries, results, strict=True))


ALLOWED = {
    "producer": {"publish ORDERS", "info ORDERS"},
    "reader": {"info ORDERS", "read ORDERS", "own consumer"},
    "copy-reader": {"read INVOICES"},
    "admin": set(VERBS) - {"system ping", "write the catalog copy"},
}


def test_each_role_may_do_what_it_is_for_and_nothing_more(world: World) -> None:
    w = world
    creds = {
        "producer": w.user("producer", "--role", "producer", "--stream", "ORDERS"),
        "reader": w.user("reader", "--role", "reader", "--stream", "ORDERS"),
        "copy-reader": w.user("copy-reader", "--role", "reader", "--stream", "INVOICES"),
        "admin": w.user("ops-admin", "--role", "admin"),
    }
    names = {"producer": "producer", "reader": "reader", "copy-reader": "copy-reader", "admin": "ops-admin"}

    async def matrix() -> dict[str, dict[str, bool]]:
        app = await w.connect(creds["admin"])
        out = {}
        try:
            for role, path in creds.items():
                nc = await w.connect(path)
                try:
                    out[role] = await _tries(w, nc, names[role], app)
                finally:
                    await nc.close()
        finally:
            await app.close()
        return out

    found = run(matrix())
    for role, results in found.items():
        allowed = {verb for verb, ok in results.items() if ok}
        assert allowed == ALLOWED[role], (role, sorted(allowed ^ ALLOWED[role]))
    bad = run_cli("--bundle", str(w.folder), "user", "add", "x", "--role", "producer", "--stream", "INVOICES")
    assert bad.returncode != 0 and "sales/INVOICES is a mirror: only a product is published to" in bad.stderr
    assert "Traceback" not in bad.stderr
    config = run_cli("--bundle", str(w.mesh.data_dir / w.mesh.domain(OTHER).folder), "user", "list")
    assert config.returncode != 0 and "keeps its users in its configs" in config.stderr, config.stderr


def _load_times(mesh: Mesh) -> dict[str, Any]:
    return {n.name: config_load_time(n.host, n.http_port) for n in mesh.nodes()}


def test_issue_and_revoke_touch_nothing_else_and_a_revocation_closes_at_once(world: World) -> None:
    w = world
    platform = (w.mesh.data_dir / "secrets.json").read_bytes()
    loaded = _load_times(w.mesh)
    began = time.monotonic()
    path = w.user("orders-feed", "--role", "producer", "--stream", "ORDERS")

    async def first_publish() -> float:
        nc = await w.connect(path)
        try:
            assert await _published(nc, f"{OWNER}.orders.feed")
            return time.monotonic() - began
        finally:
            await nc.close()

    print(f"user add -> first publish: {run(first_publish()):.3f} s (the CLI's start included)")

    async def revoked() -> float:
        closed = asyncio.Event()

        async def on_closed() -> None:
            closed.set()

        _held = await w.connect(path, closed_cb=on_closed, allow_reconnect=False)  # the server closes it
        started = time.monotonic()
        res = await asyncio.to_thread(
            run_cli, "--bundle", str(w.folder), "user", "revoke", "orders-feed", "--reason", "retired", "--json"
        )
        assert res.returncode == 0, res.stderr
        await asyncio.wait_for(closed.wait(), 10)
        return time.monotonic() - started

    took = run(revoked())
    print(f"revoke command until the connection closed: {took:.3f} s")
    with pytest.raises(Exception):  # noqa: B017 - nats-py raises its own kinds for a refused connection
        run(w.connect(path, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=1))
    assert _load_times(w.mesh) == loaded  # no server of any party reloaded (nor restarted)
    assert (w.mesh.data_dir / "secrets.json").read_bytes() == platform  # nothing of the platform's touched
    listed = run_cli("--bundle", str(w.folder), "user", "list", "--json")
    users = {u["name"]: u for u in json.loads(listed.stdout)["users"]}
    assert users["orders-feed"]["status"] == "revoked" and users["producer"]["status"] == "active", users


def test_a_user_that_expires_is_cut_off_by_the_servers_on_time(world: World) -> None:
    w = world
    path = w.user("short-lived", "--role", "reader", "--stream", "ORDERS", "--expires", "3s")

    async def cut() -> float:
        closed = asyncio.Event()

        async def on_closed() -> None:
            closed.set()

        nc = await w.connect(path, closed_cb=on_closed, allow_reconnect=False)
        assert await _ok(nc, "$JS.API.STREAM.INFO.ORDERS")
        started = time.monotonic()
        await asyncio.wait_for(closed.wait(), 10)
        return time.monotonic() - started

    assert run(cut()) < 5


def test_pub_tail_and_the_loss_checker_take_a_creds_file_and_the_folders_mesh_json_only(world: World) -> None:
    w = world
    service = w.tmp / "service"
    service.mkdir()
    shutil.copy(w.folder / "mesh.json", service / "mesh.json")  # no secrets.json: the creds file is all it holds
    writer = w.user("writer", "--role", "producer", "--stream", "ORDERS")
    reader = w.user("tailer", "--role", "reader", "--stream", "ORDERS")
    pub = run_cli("--bundle", str(service), "pub", f"{OWNER}/ORDERS", '{"via": "creds"}',
                  "--subject", f"{OWNER}.orders.c", "--creds", str(writer))  # fmt: skip
    assert pub.returncode == 0, pub.stderr
    tail = run_cli("--bundle", str(service), "tail", f"{OWNER}/ORDERS", "-n", "1", "--creds", str(reader), "--json")
    assert tail.returncode == 0 and '"via": "creds"' in tail.stdout.replace('\\"', '"'), tail.stdout + tail.stderr
    denied = run_cli("--bundle", str(service), "tail", f"{OWNER}/ORDERS", "--creds", str(writer))
    assert denied.returncode != 0 and "user writer may not read sales/ORDERS (a producer of ORDERS)" in denied.stderr

    result = run(check_product(w.mesh, f"{OWNER}/ORDERS", count=200, rate=1000, settle=20, user=service_login(writer)))
    assert result.ok, result.to_json()


def test_the_audit_trail_holds_each_user_issued_and_revoked(world: World) -> None:
    w = world
    assert run_cli("apply", "-f", str(w.spec)).returncode == 0
    res = run_cli("audit", "-f", str(w.spec), "--json")
    assert res.returncode == 0, res.stderr
    entries = [e for e in json.loads(res.stdout)["entries"] if e["what"] in ("user-issue", "user-revoke")]
    issued = {e["about"].split()[1] for e in entries if e["what"] == "user-issue"}
    assert {"producer", "reader", "copy-reader", "ops-admin", "orders-feed"} <= issued, entries
    revoked = [e for e in entries if e["what"] == "user-revoke"]
    assert [e["about"].split()[1] for e in revoked] == ["orders-feed"] and revoked[0]["reason"] == "retired"
    assert all(e["valid"] and e["actor"] == OWNER for e in entries), entries


def test_turning_users_of_its_own_on_for_a_running_domain_or_one_with_data_is_refused(world: World) -> None:
    import yaml

    w = world
    text = w.spec.read_text()
    doc = yaml.safe_load(text)
    doc["domains"][1]["service_users"] = True
    try:
        w.spec.write_text(yaml.safe_dump(doc, sort_keys=False))
        res = run_cli("apply", "-f", str(w.spec))
        assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
        assert "billing runs with its users in its configs and the spec turns on service_users" in res.stderr
        assert "(nothing was applied)" in res.stderr
    finally:
        w.spec.write_text(text)
    from dataclasses import replace

    from natsmesh.local.layout import own_operator_problems

    stopped = replace(w.mesh, service_users=(OWNER, OTHER))  # billing's stores hold its config-mode account's data
    assert any("billing's stores" in p and "not supported yet" in p for p in own_operator_problems(stopped, False))
    assert own_operator_problems(w.mesh, False) == []


def test_logs_follows_a_nodes_new_lines_and_names_what_it_does_not_know(world: World) -> None:
    import select
    import subprocess

    from helpers import natsmesh_exe

    w = world
    follow = subprocess.Popen(
        [natsmesh_exe(), "logs", f"{OWNER}-0", "-F", "-n", "0", "-f", str(w.spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # it has taken where the file ends

        async def refused() -> None:  # a connection its server refuses: a line in its log
            with pytest.raises(Exception):  # noqa: B017 - nats-py raises its own kinds for a refused connection
                await nats.connect(w.url(), user="nobody", password="x", allow_reconnect=False, error_cb=_quiet)

        run(refused())
        assert follow.stdout is not None
        deadline = time.monotonic() + 15
        seen: list[str] = []
        while (left := deadline - time.monotonic()) > 0 and select.select([follow.stdout], [], [], left)[0]:
            line = follow.stdout.readline()
            seen.append(line)
            if "authentication error" in line or "Authorization Violation" in line:
                break
        assert seen and seen[-1].split(" | ", 1)[0].strip() == f"{OWNER}-0", seen  # padded to the longest name
    finally:
        follow.terminate()
        follow.wait(10)
    unknown = run_cli("logs", "nobody-0", "-f", str(w.spec))
    assert unknown.returncode == 1 and "has no node or cluster 'nobody-0'" in unknown.stderr, unknown.stderr
    assert "Traceback" not in unknown.stderr
