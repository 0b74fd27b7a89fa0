"""Access requests and grants between domains, on real servers (issue 20): a domain asks from its own folder, the
owner grants, denies or revokes from its own folder with its own key, the platform's `apply` records and relays
the signed documents and makes the copy; the hub's servers let nothing flow without the owner's activation.

One mesh (hub, `sales` owning ORDERS and PRICES, `billing` asking, `ops` a third domain), every step as the
holder of a folder would run it (`natsmesh --bundle FOLDER access ...`).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import CHROMIUM, FLAGS, MeshRunner, run_cli, start_serve, stop
from natsmesh.client import MeshClient, run
from natsmesh.local.folder import load_folder
from natsmesh.local.secrets import load_credentials
from natsmesh.model import access as model
from natsmesh.model.mesh import Mesh
from natsmesh.model.topology import block_size, plan_ports
from natsmesh.observe.connect import Connections
from natsmesh.reconcile import access
from natsmesh.run.ports import free_port_base
from probes import attempt, is_breach

pytestmark = pytest.mark.integration

OWNER, TAKER, OTHER = "sales", "billing", "ops"


def _doc(data_dir: Path) -> dict[str, Any]:
    block = block_size(1)
    base = free_port_base(block * 4)
    clusters: list[dict[str, Any]] = [
        {"name": "hub", "nodes": 1},
        {
            "name": OWNER,
            "nodes": 1,
            "products": [
                {
                    "name": "ORDERS",
                    "subjects": [f"{OWNER}.orders.>"],
                    "owner": "sales@example.com",
                    "limits": {"max_age": "30d"},
                },
                {"name": "PRICES", "subjects": [f"{OWNER}.prices.>"], "owner": "sales@example.com"},
            ],
        },
        {"name": TAKER, "nodes": 1, "products": [{"name": "INVOICES", "subjects": [f"{TAKER}.invoices.>"]}]},
        {"name": OTHER, "nodes": 1},
    ]
    for k, c in enumerate(clusters):
        c["ports"] = plan_ports(base, block, k, 1, k == 0).as_spec()
    return {"name": "acc", "trust": "operator", "data_dir": str(data_dir), "hub": clusters[0], "domains": clusters[1:]}


class World:
    def __init__(self, tmp: Path, mesh: Mesh, spec: Path) -> None:
        self.tmp, self.mesh, self.spec = tmp, mesh, spec
        self.acts: dict[str, str] = {}  # every document posted through natsmesh: id -> what it was
        self.refused: set[str] = set()  # every document posted past natsmesh's checks (refused by the platform)
        self.forged = ""  # one of them, signed by another domain's key than the domain it names

    def act(self, domain: str, *args: str) -> str:
        """Run `natsmesh --bundle FOLDER access ARGS --json` as DOMAIN; the posted document's id."""
        res = self.as_(domain, "access", *args, "--json")
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        self.acts[doc["id"]] = f"{domain} {args[0]}"
        return str(doc["id"])

    def folder(self, domain: str) -> Path:
        return self.mesh.data_dir / self.mesh.domain(domain).folder

    def as_(self, domain: str, *args: str) -> Any:
        return run_cli("--bundle", str(self.folder(domain)), *args)

    def apply(self) -> dict[str, Any]:
        res = run_cli("apply", "-f", str(self.spec), "--json")
        assert res.returncode == 0, res.stdout + res.stderr
        return json.loads(res.stdout)  # type: ignore[no-any-return]

    def listing(self, domain: str) -> dict[str, Any]:
        res = self.as_(domain, "access", "list", "--json")
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)  # type: ignore[no-any-return]

    def request_of(self, domain: str, rid: str) -> dict[str, Any]:
        return next(r for r in self.listing(domain)["requests"] if r["id"] == rid)

    def count(self, domain: str, stream: str) -> int:
        async def go() -> int:
            async with MeshClient(self.mesh, name="counter") as mc:
                try:
                    return int((await (await mc.jetstream(domain)).stream_info(stream)).state.messages)
                except Exception:
                    return -1

        return int(run(go()))

    def max_age(self, domain: str, stream: str) -> float:
        """Seconds DOMAIN's STREAM keeps a message (0: unlimited)."""

        async def go() -> float:
            async with MeshClient(self.mesh, name="reader") as mc:
                return float((await (await mc.jetstream(domain)).stream_info(stream)).config.max_age or 0)

        return float(run(go()))

    def publish(self, ref: str, subject: str, n: int) -> None:
        async def go() -> None:
            async with MeshClient(self.mesh, name="producer") as mc:
                for i in range(n):
                    await mc.publish(ref, json.dumps({"i": i}).encode(), subject=subject)

        run(go())

    def wait_count(self, domain: str, stream: str, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while (have := self.count(domain, stream)) != n:
            assert time.monotonic() < deadline, f"{domain}/{stream} holds {have}, not {n}"
            time.sleep(0.2)

    def post_raw(self, domain: str, doc: model.AccessDoc) -> None:
        """DOC into DOMAIN's own stream as its folder's holder could write it, without natsmesh's checks."""
        mesh = load_folder(self.folder(domain))

        async def go() -> None:
            async with Connections(mesh, load_credentials(mesh, create=False)) as mc:
                await access.post(mesh, mc, domain, doc)

        run(go())

    def signer(self, domain: str) -> access.Signer:
        mesh = load_folder(self.folder(domain))
        return access.signer_of(mesh, load_credentials(mesh, create=False))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("access")
    runner = MeshRunner(tmp)
    try:
        mesh, spec = runner.up_file(_doc(tmp / "data"), "acc.yaml")
        w = World(tmp, mesh, spec)
        w.apply()
        yield w
    finally:
        runner.close()


def _requested(w: World, domain: str, *args: str) -> str:
    return w.act(domain, "request", *args)


def test_request_grant_copy_then_revoke_stops_it_and_keeps_its_data(world: World) -> None:
    w = world
    w.publish(f"{OWNER}/ORDERS", f"{OWNER}.orders.a", 30)
    rid = _requested(w, TAKER, f"{OWNER}/ORDERS", "--as", "ORDERS", "--reason", "invoicing needs orders")
    assert w.request_of(TAKER, rid)["status"] == "pending"
    assert rid not in {r["id"] for r in w.listing(OWNER)["requests"]}  # not relayed yet
    w.apply()
    asked = w.request_of(OWNER, rid)
    assert asked["status"] == "pending" and asked["reason"] == "invoicing needs orders", asked
    assert rid not in {r["id"] for r in w.listing(OTHER)["requests"]}  # a third domain sees none of it
    assert w.count(TAKER, "ORDERS") == -1  # nothing before the owner's grant

    # only the owner may answer: the requester and a third domain are refused with the reason, nothing posted
    own = w.as_(TAKER, "access", "grant", rid)
    assert own.returncode != 0 and "only sales/ORDERS's owner sales can" in own.stderr, own.stderr
    assert "Traceback" not in own.stderr
    third = w.as_(OTHER, "access", "grant", rid)
    assert third.returncode != 0 and "knows no request" in third.stderr, third.stderr

    w.act(OWNER, "grant", rid, "--retain", "45d", "--reason", "ok for invoicing")
    w.apply()
    w.wait_count(TAKER, "ORDERS", 30)
    assert w.max_age(TAKER, "ORDERS") == 45 * 86400  # longer than ORDERS' own 30d: the owner's grant says so
    assert w.request_of(TAKER, rid)["status"] == "granted"
    w.publish(f"{OWNER}/ORDERS", f"{OWNER}.orders.b", 10)
    w.wait_count(TAKER, "ORDERS", 40)

    w.act(OWNER, "revoke", rid, "--reason", "contract ended")
    w.publish(f"{OWNER}/ORDERS", f"{OWNER}.orders.c", 10)  # after the revocation: none of these may arrive
    time.sleep(2)
    assert w.count(TAKER, "ORDERS") == 40
    w.apply()
    w.publish(f"{OWNER}/ORDERS", f"{OWNER}.orders.d", 10)
    time.sleep(2)
    assert w.count(TAKER, "ORDERS") == 40  # its data stays, nothing new
    seen = w.request_of(TAKER, rid)
    assert seen["status"] == "revoked" and seen["answer"] == "contract ended", seen
    for args in (("-f", str(w.spec)), ("--bundle", str(w.folder(TAKER)))):  # the platform's and the taker's
        head, tail = (args, ()) if args[0] == "--bundle" else ((), args)
        res = run_cli(*head, "report", "lag", *tail, "--json", "--max-inactive", "5")
        assert res.returncode == 0, res.stdout + res.stderr  # stopped by its owner: not a stalled copy
        row = next(r for r in json.loads(res.stdout)["rows"] if r["domain"] == TAKER and r["stream"] == "ORDERS")
        assert row["access"] == "revoked: contract ended" and row["local_last_seq"] == 40, row


def test_a_denied_request_makes_nothing_and_the_requester_reads_why(world: World) -> None:
    w = world
    rid = _requested(w, TAKER, f"{OWNER}/PRICES", "--as", "PRICES_DENIED", "--reason", "curious")
    w.apply()
    w.act(OWNER, "deny", rid, "--reason", "prices are confidential")
    w.apply()
    seen = w.request_of(TAKER, rid)
    assert seen["status"] == "denied" and seen["answer"] == "prices are confidential", seen
    assert w.count(TAKER, "PRICES_DENIED") == -1


def test_an_expiring_grant_stops_the_copy_when_it_expires(world: World) -> None:
    w = world
    w.publish(f"{OWNER}/PRICES", f"{OWNER}.prices.a", 10)
    rid = _requested(w, TAKER, f"{OWNER}/PRICES", "--as", "PRICES", "--reason", "one quarter")
    w.apply()
    w.act(OWNER, "grant", rid, "--expires", "8s")
    w.apply()
    w.wait_count(TAKER, "PRICES", 10)
    expires = w.request_of(TAKER, rid)["expires"]
    time.sleep(max(0.0, expires - time.time()) + 1.2)
    w.publish(f"{OWNER}/PRICES", f"{OWNER}.prices.b", 10)
    time.sleep(2)
    assert w.count(TAKER, "PRICES") == 10
    assert w.request_of(TAKER, rid)["status"] == "expired"
    lag = json.loads(run_cli("report", "lag", "-f", str(w.spec), "--json").stdout)["rows"]
    row = next(r for r in lag if r["domain"] == TAKER and r["stream"] == "PRICES")
    assert str(row["access"]).startswith("expired at "), row
    w.apply()  # the platform notices the expiry: an event of its own in the audit trail


def test_requests_and_answers_no_domain_may_make_are_refused(world: World) -> None:
    w = world
    own = w.as_(OWNER, "access", "request", f"{OWNER}/ORDERS", "--as", "MINE", "--reason", "x")
    assert own.returncode != 0 and "sales's own product" in own.stderr, own.stderr
    assert "Traceback" not in own.stderr

    # written straight into their own streams, past natsmesh's checks: the platform refuses them, says why, and
    # nothing flows; a document signed by another domain's key is refused as not that domain's
    rid = _requested(w, TAKER, f"{OWNER}/ORDERS", "--as", "ORDERS_AGAIN", "--reason", "again")
    w.apply()
    mesh = load_folder(w.folder(TAKER))
    keys = access.keys_of(mesh)
    self_grant = model.sign("grant", TAKER, keys[TAKER].account, w.signer(TAKER).seed, request=rid, activations={})
    w.post_raw(TAKER, self_grant)
    w.refused |= {self_grant.id}
    other = model.sign("grant", OTHER, keys[OTHER].account, w.signer(OTHER).seed, request=rid)
    w.post_raw(OTHER, other)
    forged = model.sign("grant", OWNER, keys[OWNER].account, w.signer(OTHER).seed, request=rid)  # ops' key
    w.post_raw(OTHER, forged)
    w.refused |= {other.id, forged.id}
    w.forged = forged.id
    w.apply()
    res = run_cli("access", "list", "-f", str(w.spec), "--json")
    assert res.returncode == 0, res.stderr
    refused = {r["id"]: r["refused"] for r in json.loads(res.stdout)["refused"]}
    assert "its requester cannot grant" in refused[self_grant.id], refused
    assert "ops cannot grant" in refused[other.id] and "only sales/ORDERS's owner sales can" in refused[other.id]
    assert "which is not a key of sales" in refused[forged.id], refused
    assert w.request_of(TAKER, rid)["status"] == "pending"
    assert w.count(TAKER, "ORDERS_AGAIN") == -1


def test_no_folder_reads_or_changes_another_domains_requests_or_the_audit_trail(world: World) -> None:
    """The folder-holder matrix's access verbs, where the streams exist: every domain's folder, with its own app
    user, tries to read, purge and delete every other domain's access stream and the hub's audit trail, and to
    publish into the audit trail's subjects; nothing answers as done, and the trail and the streams keep their
    counts."""
    w = world

    async def counts() -> dict[str, int]:
        async with Connections(w.mesh) as mc:
            out = {}
            for cluster, stream in ((c.name, "natsmesh_access") for c in w.mesh.domains):
                with contextlib.suppress(Exception):
                    out[cluster] = (await (await mc.jetstream(cluster)).stream_info(stream)).state.messages
            out["hub"] = (await (await mc.jetstream("hub")).stream_info("natsmesh_audit")).state.messages
            return out

    before = run(counts())
    assert before["hub"] and before[OWNER] and before[TAKER]
    for party in (OWNER, TAKER, OTHER):
        mesh = load_folder(w.folder(party))

        async def tries(mesh: Mesh = mesh, party: str = party) -> dict[str, str]:
            async with Connections(mesh, load_credentials(mesh, create=False)) as mc:
                app = await mc.connection(party)
                out = {}
                for other in (c for c in mesh.clusters if c.name != party):
                    stream = "natsmesh_audit" if other.is_hub else "natsmesh_access"
                    for verb, body in (("MSG.GET", {"seq": 1}), ("PURGE", None), ("DELETE", None), ("INFO", None)):
                        subject = f"$JS.{other.name}.API.STREAM.{verb}.{stream}"
                        out[f"{party} -> {other.name} {stream} {verb}"] = await attempt(app, subject, body)
                for subject in (f"natsmesh.audit.access.{OWNER}.grant", "natsmesh.audit.platform.apply"):
                    await app.publish(subject, b"forged")
                await app.flush()
                return out

        outcomes = run(tries())
        assert not [k for k, v in outcomes.items() if is_breach(v)], outcomes
    assert run(counts()) == before


def test_the_audit_trail_holds_every_act_once_signed_and_cannot_be_purged(world: World) -> None:
    w = world
    res = run_cli("audit", "-f", str(w.spec), "--json")
    assert res.returncode == 0, res.stderr
    entries = json.loads(res.stdout)["entries"]
    ids = [e["id"] for e in entries]
    assert len(ids) == len(set(ids))
    by_id = {e["id"]: e for e in entries}
    for rid, what in w.acts.items():  # every act through natsmesh: once, valid, by its domain
        assert rid in by_id, what
        assert by_id[rid]["valid"] and by_id[rid]["actor"] == what.split()[0] and not by_id[rid].get("refused")
    for rid in w.refused:  # every act past natsmesh's checks: once, with why it was refused
        assert by_id[rid]["refused"], by_id[rid]
    assert not by_id[w.forged]["valid"]  # signed by another domain's key than the one it names
    platform = [e for e in entries if e["actor"] == "platform"]
    assert platform and all(e["valid"] for e in platform)
    assert {e["what"] for e in platform} >= {"apply", "expired"}

    # the owner's folder reads the acts about its products from its own stream, each checked
    mine = json.loads(w.as_(OWNER, "audit", "--json", "--product", f"{OWNER}/ORDERS").stdout)["entries"]
    assert mine and all(e["valid"] and e["about"].startswith(f"{OWNER}/ORDERS") for e in mine)
    assert not w.as_(OTHER, "audit", "--json", "--product", f"{OWNER}/ORDERS").stdout.count(f"{TAKER}")

    # a changed byte fails verification
    from natsmesh.model import audit as audit_model

    async def tokens() -> list[str]:
        async with Connections(w.mesh) as mc:
            from natsmesh.observe.access import read_tokens

            return await read_tokens(await mc.jetstream("hub"), "natsmesh_audit", limit=10**6)

    token = next(t for t in run(tokens()) if model.doc_id(t) in w.acts)
    head, body, sig = token.split(".")
    tampered = f"{head}.{body[:-2]}{'A' if body[-2] != 'A' else 'B'}{body[-1]}.{sig}"
    keys = access.keys_of(load_folder(w.folder(OWNER)))
    assert audit_model.verify(token, keys, "").valid
    assert not audit_model.verify(tampered, keys, "").valid

    # no identity natsmesh makes at the hub may delete, purge or change the audit stream
    async def attempts() -> tuple[list[str], int, int]:
        async with Connections(w.mesh) as mc:
            js = await mc.jetstream("hub", timeout=1.0)  # a refused request gets no answer: its time is the wait
            before = (await js.stream_info("natsmesh_audit")).state.messages
            refused = []
            for attempt in (js.purge_stream("natsmesh_audit"), js.delete_stream("natsmesh_audit")):
                try:
                    await attempt
                except Exception as exc:
                    refused.append(type(exc).__name__)
            return refused, before, (await js.stream_info("natsmesh_audit")).state.messages

    refused, before, after = run(attempts())
    print("audit stream changes refused:", refused)
    assert len(refused) == 2 and after == before >= len(w.acts), (refused, before, after)


def test_apply_reads_only_what_is_new_and_notices_a_stream_changed_under_it(world: World) -> None:
    """`apply` remembers what each domain's stream held (run/access-seen.json) and reads only what was added; a
    message deleted from a domain's stream is noticed (its state no longer only grew): what the platform relayed
    there is given again."""
    from natsmesh.observe.access import ACCESS_STREAM

    w = world
    _requested(w, TAKER, f"{OWNER}/PRICES", "--as", "PRICES_SEEN", "--reason", "seen")
    w.apply()  # relayed to its owner
    w.apply()  # read as it was: nothing new
    seen = json.loads((w.mesh.data_dir / "run" / "access-seen.json").read_text())
    assert seen[OWNER]["state"][2] == len(seen[OWNER]["messages"]) > 0
    mesh = load_folder(w.folder(OWNER))

    async def relayed() -> list[tuple[int, str]]:
        async with Connections(mesh, load_credentials(mesh, create=False)) as mc:
            js = await mc.jetstream(OWNER)
            info = await js.stream_info(ACCESS_STREAM)
            out = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                with contextlib.suppress(Exception):
                    m = await js.get_msg(ACCESS_STREAM, seq)
                    if m.subject.startswith("natsmesh.access.in."):
                        out.append((seq, (m.data or b"").decode()))
            return out

    async def delete(seq: int) -> None:
        async with Connections(mesh, load_credentials(mesh, create=False)) as mc:
            await (await mc.jetstream(OWNER)).delete_msg(ACCESS_STREAM, seq)

    before = run(relayed())
    assert before, "the platform relayed documents to the owner"
    seq, token = before[0]
    run(delete(seq))  # the owner's own stream: its holder may
    w.apply()
    after = json.loads((w.mesh.data_dir / "run" / "access-seen.json").read_text())[OWNER]
    assert after["state"][2] == seen[OWNER]["state"][2] - 1  # read again as it is now, not as remembered
    assert token not in {text for _, text, _ in after["messages"]}
    # (given again by a later apply: the stream's duplicate window drops a message id it saw within 2 min)


def test_the_portal_shows_who_holds_access_who_asked_and_when_a_grant_expires(world: World) -> None:
    """Chromium on the platform's portal and on the owner's folder-served portal: the product page lists each
    domain's request with its status, a pending one, a grant's expiry, and the product's recent audit."""
    from playwright.sync_api import sync_playwright

    w = world
    pending = _requested(w, TAKER, f"{OWNER}/PRICES", "--as", "PRICES_NEXT", "--reason", "next quarter")
    held = _requested(w, TAKER, f"{OWNER}/PRICES", "--as", "PRICES_YEAR", "--reason", "the yearly report")
    w.apply()
    w.act(OWNER, "grant", held, "--expires", "30d")
    w.apply()
    expiry = time.strftime("%Y-%m-%d", time.gmtime(w.request_of(TAKER, held)["expires"]))
    servers = []
    try:
        port = free_port_base(2)
        servers.append(start_serve(w.spec, port, cwd=w.tmp, output=subprocess.DEVNULL))
        servers.append(start_serve(w.spec, port + 1, bundle=w.folder(OWNER), cwd=w.tmp, output=subprocess.DEVNULL))
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                for base in (f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"):
                    page.goto(f"{base}/products/{OWNER}/PRICES")
                    rows = {
                        r.locator("td").nth(1).inner_text(): r.inner_text()
                        for r in page.locator("table.access tbody tr").all()
                    }
                    assert "pending" in rows["PRICES_NEXT"] and pending in rows["PRICES_NEXT"], rows
                    assert "granted" in rows["PRICES_YEAR"] and expiry in rows["PRICES_YEAR"], rows
                    assert "denied" in rows["PRICES_DENIED"] and "prices are confidential" in rows["PRICES_DENIED"]
                    assert "expired" in rows["PRICES"], rows
                    audit = page.locator("table.audit tbody tr").all_inner_texts()
                    assert any("grant" in a and "valid" in a for a in audit), audit
                    assert not any("INVALID" in a for a in audit), audit
            finally:
                browser.close()
    finally:
        for proc in servers:
            stop(proc)
