"""Integration (issue 14): contracts enforced on a real mesh: by natsmesh's publishers, by the domain's gate
(the only writer of a gated product), and at apply (a breaking change refused, a compatible one recorded)."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
import pytest
import yaml

from helpers import MeshRunner, read_state, run_cli, small_mesh_text
from natsmesh.client import MeshClient
from natsmesh.errors import ContractViolationError, PlanRefusedError
from natsmesh.faults.losscheck import publish_steady, verify
from natsmesh.local.secrets import load_credentials
from natsmesh.local.specfile import parse_spec
from natsmesh.model.mesh import Mesh
from natsmesh.model.products import DEADLETTER_STREAM, catalog_key, ingress_subject
from natsmesh.observe.connect import data_urls
from natsmesh.reconcile.apply import reconcile
from natsmesh.reconcile.catalog import read_catalog
from natsmesh.run.lifecycle import gate_service_name
from natsmesh.serve.gate import REASON

pytestmark = pytest.mark.integration

A, B = "leaf-domain-a", "leaf-domain-b"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"run": {"type": "string"}, "id": {"type": "integer", "minimum": 0}, "note": {"type": "string"}},
    "required": ["run", "id"],
}


def _doc(data_dir: Path) -> dict[str, Any]:
    doc = yaml.safe_load(small_mesh_text(data_dir, domains=2, name="gate"))
    doc["domains"][0]["products"] = [
        {
            "name": "ORDERS",
            "subjects": [f"{A}.orders.>"],
            "contract": {"schema": SCHEMA, "enforce": "gate", "examples": [{"run": "r", "id": 1}]},
        },
        {"name": "PLAIN", "subjects": [f"{A}.plain"], "contract": {"schema": SCHEMA}},
    ]
    doc["domains"][1]["consumes"] = [{"product": f"{A}/ORDERS"}]
    return doc


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """A hub and two domains of one node each; A's ORDERS gated and mirrored by B; applied."""
    tmp = tmp_path_factory.mktemp("gate")
    r = MeshRunner(tmp)
    text = yaml.safe_dump(_doc(tmp / "data"), sort_keys=False)
    (tmp / "mesh.yaml").write_text(text)
    mesh = parse_spec(text, source=str(tmp / "mesh.yaml"), base_dir=tmp)
    r.up(mesh)
    try:
        asyncio.run(reconcile(mesh))
        asyncio.run(_gate_answers(mesh))
        yield mesh
    finally:
        r.close()
        assert not _gates_under(tmp), "a gate outlived its mesh"


def _gates_under(path: Path) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:
            continue
        if b"gate" in cmd and any(str(path).encode() in c for c in cmd):
            out.append(int(entry.name))
    return out


async def _gate_answers(mesh: Mesh, timeout: float = 20.0) -> None:
    """Wait until A's gate takes messages (it starts after the nodes)."""
    async with MeshClient(mesh) as mc:
        nc = await mc.connection(A)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                await nc.request(ingress_subject(f"{A}.orders.probe"), b"not json", timeout=1)
                return
            except Exception:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.2)


async def _count(mc: MeshClient, domain: str, stream: str) -> int:
    js = await mc.jetstream(domain)
    return (await js.stream_info(stream)).state.messages


async def _raw(mesh: Mesh) -> tuple[nats.aio.client.Client, list[str]]:
    """A plain nats-py connection with domain A's own client credentials; the errors the server sends it."""
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(data_urls(mesh, load_credentials(mesh, create=False), A), error_cb=on_error)
    return nc, errors


def test_a_valid_message_is_stored_and_copied_and_an_invalid_one_refused_by_the_client(gated: Mesh) -> None:
    async def go() -> None:
        async with MeshClient(gated) as mc:
            before = await _count(mc, A, "ORDERS")
            ack = await mc.publish(f"{A}/ORDERS", b'{"run": "c", "id": 1}', subject=f"{A}.orders.eu")
            assert ack.stream == "ORDERS" and ack.seq == before + 1
            with pytest.raises(ContractViolationError, match=r"id: -1 is less than the minimum of 0"):
                await mc.publish(f"{A}/ORDERS", b'{"run": "c", "id": -1}', subject=f"{A}.orders.eu")
            with pytest.raises(ContractViolationError, match=r"message 2 .*\$: \"run\" is a required property"):
                async with mc.publisher(f"{A}/PLAIN") as pub:
                    await pub.publish(b'{"run": "c", "id": 1}')
                    await pub.publish(b'{"id": 2}')
            assert await _count(mc, A, "ORDERS") == before + 1
            assert await _count(mc, A, "PLAIN") == 1  # the valid one before the refusal
            for _ in range(50):
                if await _count(mc, B, "ORDERS") == before + 1:
                    break
                await asyncio.sleep(0.1)
            assert await _count(mc, B, "ORDERS") == before + 1

    asyncio.run(go())


def test_natsmesh_pub_refuses_an_invalid_line_before_sending_any(gated: Mesh) -> None:
    spec = gated.source

    async def count() -> int:
        async with MeshClient(gated) as mc:
            return await _count(mc, A, "PLAIN")

    before = asyncio.run(count())
    res = run_cli("pub", f"{A}/PLAIN", "-f", spec, input='{"run": "p", "id": 1}\n{"run": "p", "id": "two"}\n')
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert 'message 2 does not satisfy leaf-domain-a/PLAIN\'s contract 1.0.0: id: "two" is not of type "integer"' in (
        res.stderr
    )
    assert asyncio.run(count()) == before


def test_the_gate_is_the_only_writer_and_sends_what_it_refuses_to_the_dead_letter_stream(gated: Mesh) -> None:
    async def go() -> None:
        nc, errors = await _raw(gated)
        js = nc.jetstream()
        async with MeshClient(gated) as mc:
            orders, copies, dead = (
                await _count(mc, A, "ORDERS"),
                await _count(mc, B, "ORDERS"),
                await _count(mc, A, DEADLETTER_STREAM),
            )
            # the domain's own credentials cannot write the product's subjects, valid payload or not
            for payload in (b'{"run": "raw", "id": -5}', b'{"run": "raw", "id": 5}'):
                with pytest.raises((nats.errors.TimeoutError, nats.js.errors.NoStreamResponseError)):
                    await js.publish(f"{A}.orders.raw", payload, timeout=1)
            await asyncio.sleep(0.2)
            denied = [
                e for e in errors if "permissions violation for publish to" in e.lower() and f"{A}.orders.raw" in e
            ]
            assert denied, errors
            # to the ingress subject: the gate refuses it with its reason and keeps it in the dead-letter stream
            with pytest.raises(nats.js.errors.BadRequestError, match=r"id: -5 is less than the minimum of 0"):
                await js.publish(ingress_subject(f"{A}.orders.raw"), b'{"run": "raw", "id": -5}', timeout=5)
            assert await _count(mc, A, "ORDERS") == orders
            assert await _count(mc, A, DEADLETTER_STREAM) == dead + 1
            last = await (await mc.jetstream(A)).get_last_msg(DEADLETTER_STREAM, "natsmesh.deadletter.ORDERS")
            assert last.data == b'{"run": "raw", "id": -5}' and last.headers is not None
            assert "id: -5 is less than the minimum of 0" in last.headers[REASON]
            # a valid one through the ingress subject is written, with its message id: a retry is not stored twice
            for _ in range(2):
                ack = await js.publish(
                    ingress_subject(f"{A}.orders.raw"), b'{"run": "raw", "id": 6}', headers={"Nats-Msg-Id": "raw-6"}
                )
            assert ack.duplicate and await _count(mc, A, "ORDERS") == orders + 1
            await asyncio.sleep(1.0)
            assert await _count(mc, B, "ORDERS") == copies + 1  # the refused one is in no copy
        await nc.close()

    asyncio.run(go())


def test_the_gate_answers_only_on_inboxes_and_carries_only_a_producers_own_headers(gated: Mesh) -> None:
    """Issue 17: the gate may write every gated subject, and used to answer on whatever reply subject a producer
    named: a reply on a product subject stored the gate's ack (or its refusal) in the product and its copies.
    Now, from the domain's own app user (what its folder holds): valid and invalid messages with reply subjects
    on product subjects add nothing but the valid messages themselves, a producer's forged headers stay behind,
    the product and its copy hold the same messages and `contract test` finds none that breaks the contract."""

    async def go() -> None:
        nc, _ = await _raw(gated)
        async with MeshClient(gated) as mc:
            before = await _count(mc, A, "ORDERS")
            sent = 0
            for k, reply in enumerate((f"{A}.orders.a", f"{A}.orders.x.y", f"{A}.plain", "natsmesh.deadletter.ORDERS")):
                await nc.publish(ingress_subject(f"{A}.orders.r"), b'{"run": "forge", "id": -1}', reply=reply)
                valid = json.dumps({"run": "forge", "id": 100 + k}).encode()
                await nc.publish(ingress_subject(f"{A}.orders.r"), valid, reply=reply)
                sent += 1
            forged = {
                "Nats-Msg-Id": "forged-1",
                "Nats-Expected-Last-Sequence": "1",  # would make the stream refuse the write, if it got through
                "Natsmesh-Reason": "forged by the producer",
                "Natsmesh-Contract": "9.9.9",
            }
            ack = await nc.jetstream().publish(
                ingress_subject(f"{A}.orders.h"), b'{"run": "forge", "id": 200}', headers=forged, timeout=5
            )
            sent += 1
            await asyncio.sleep(1.0)
            js = await mc.jetstream(A)
            assert await _count(mc, A, "ORDERS") == before + sent  # the valid ones, nothing else
            stored = await js.get_msg("ORDERS", ack.seq)
            headers = stored.headers or {}
            assert headers.get("Nats-Msg-Id") == "forged-1" and headers.get("Natsmesh-Contract") == "1.0.0"
            assert "Natsmesh-Reason" not in headers and "Nats-Expected-Last-Sequence" not in headers
            for seq in range(before + 1, before + sent + 1):
                assert json.loads((await js.get_msg("ORDERS", seq)).data)["run"] == "forge"  # no ack, no refusal
            plain = await (await mc.jetstream(A)).stream_info("PLAIN")
            deadline = asyncio.get_running_loop().time() + 10
            while await _count(mc, B, "ORDERS") != before + sent:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.1)
            assert (await (await mc.jetstream(A)).stream_info("PLAIN")).state.messages == plain.state.messages
        await nc.close()

    asyncio.run(go())
    res = run_cli("contract", "test", f"{A}/ORDERS", "-f", gated.source)
    assert res.returncode == 0 and "all satisfy it" in res.stdout, res.stdout + res.stderr


def test_a_gate_killed_under_load_loses_and_duplicates_nothing(gated: Mesh) -> None:
    async def go() -> None:
        async with MeshClient(gated) as mc:
            stop = asyncio.Event()
            task = asyncio.create_task(
                publish_steady(
                    mc, f"{A}/ORDERS", count=None, rate=200, subject=f"{A}.orders.load", stop=stop, retries=40
                )
            )
            kills = 0
            for _ in range(3):
                await asyncio.sleep(1.5)
                state = read_state(gated) or {}
                pid = state["nodes"][gate_service_name(A)]["pid"]
                os.kill(pid, signal.SIGKILL)
                kills += 1
                await asyncio.sleep(0.5)
            await asyncio.sleep(2.0)
            stop.set()
            run = await task
            assert kills == 3 and len(run.acked) > 500 and not run.failed, (len(run.acked), run.failed)
            checks = await verify(gated, mc, run)
            assert {c.stream for c in checks} == {f"{A}/ORDERS", f"{B}/ORDERS"}
            for c in checks:
                assert not c.lost and not c.duplicated, c.to_json()
        state = read_state(gated) or {}
        assert state["nodes"][gate_service_name(A)]["restarts"] >= 3

    asyncio.run(go())
    asyncio.run(_gate_answers(gated))


def test_apply_refuses_a_breaking_contract_and_records_a_compatible_one(gated: Mesh, tmp_path: Path) -> None:
    def variant(schema: dict[str, Any], version: str) -> Mesh:
        doc = copy.deepcopy(gated.document)
        doc["domains"][0]["products"][1]["contract"] |= {"schema": schema, "version": version}
        path = tmp_path / f"mesh-{version}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return parse_spec(path.read_text(), source=str(path), base_dir=Path(gated.source).parent)

    async def catalog() -> dict[str, Any]:
        async with MeshClient(gated) as mc:
            entries = await read_catalog(await mc.jetstream("hub"))
            return entries[catalog_key(f"{A}/PLAIN")]

    before = asyncio.run(catalog())
    breaking = copy.deepcopy(SCHEMA) | {"required": ["run"]}
    breaking["properties"]["id"] = {"type": "string"}
    with pytest.raises(PlanRefusedError) as exc:
        asyncio.run(reconcile(variant(breaking, "2.0.0")))
    text = str(exc.value)
    assert "nothing was applied" in text and "1.0.0 -> 2.0.0 is not backward-compatible" in text
    assert "id: required field removed or renamed" in text and "new major version" in text
    assert asyncio.run(catalog()) == before

    wider = copy.deepcopy(SCHEMA)
    wider["properties"]["region"] = {"type": "string", "enum": ["eu", "us"]}
    plan = asyncio.run(reconcile(variant(wider, "1.1.0")))
    assert any(c.detail == "contract 1.0.0 -> 1.1.0 (backward-compatible)" for c in plan.changes)
    after = asyncio.run(catalog())
    assert after["contract"]["version"] == "1.1.0" and after["contract"]["schema"] == wider
    assert [h["version"] for h in after["contract_history"]] == ["1.0.0"]
    assert after["contract_history"][0]["schema"] == SCHEMA
    shown = run_cli("catalog", "show", f"{A}/PLAIN", "-f", gated.source)
    assert shown.returncode == 0 and "contract: 1.1.0 (backward, enforced by client" in shown.stdout
    assert "history: 1.0.0 (from " in shown.stdout
    as_json = json.loads(run_cli("catalog", "show", f"{A}/PLAIN", "-f", gated.source, "--json").stdout)
    assert as_json["contract"]["version"] == "1.1.0"


def test_contract_test_reports_stored_violations_by_sequence(gated: Mesh) -> None:
    async def bypass() -> int:
        nc, _ = await _raw(gated)  # a client-enforced contract: a raw publisher can still store anything
        ack = await nc.jetstream().publish(f"{A}.plain", b'{"id": "seven"}')
        await nc.close()
        return ack.seq

    seq = asyncio.run(bypass())
    res = run_cli("contract", "test", f"{A}/PLAIN", "-f", gated.source, "--json")
    assert res.returncode == 1, res.stderr
    doc = json.loads(res.stdout)
    assert doc["checked"] >= 1 and not doc["ok"]
    [v] = [v for v in doc["violations"] if v["seq"] == seq]
    assert v["subject"] == f"{A}.plain" and "is a required property" in v["problem"]

    async def publish() -> None:
        async with MeshClient(gated) as mc:
            for i in range(3):
                await mc.publish(f"{A}/ORDERS", json.dumps({"run": "t", "id": i}).encode(), subject=f"{A}.orders.t")

    asyncio.run(publish())
    last = run_cli("contract", "test", f"{A}/ORDERS", "-f", gated.source, "--last", "2")
    assert last.returncode == 0 and "checked 2 message(s) against contract 1.0.0: all satisfy it" in last.stdout
