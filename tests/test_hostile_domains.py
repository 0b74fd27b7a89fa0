"""What one running domain can do to the others and to the platform (issue 17), on real servers: a domain cannot
write its cluster's read copy of the catalog, and a copy broken anyway (a domain that gave itself the right on its
own servers) never stops `apply` for the others; text from the spec, the catalog and other domains' payloads
reaches the terminal inert; a folder's `serve` shows only what its party may read."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import nats
import pytest
import yaml
from nats.js.api import StreamConfig

from helpers import MeshRunner, natsmesh_exe, run_cli, servers_under, small_mesh_text, start_serve, stop
from natsmesh.client import MeshClient, run
from natsmesh.local.bundle import render_bundle
from natsmesh.local.secrets import load_credentials
from natsmesh.model.identities import user_url
from natsmesh.model.mesh import Mesh
from natsmesh.model.products import CATALOG_BUCKET
from natsmesh.observe.connect import Connections
from natsmesh.reconcile.apply import reconcile
from natsmesh.reconcile.catalog import read_catalog
from natsmesh.run.ports import free_port_base

pytestmark = pytest.mark.integration
A, B, C = "leaf-domain-a", "leaf-domain-b", "leaf-domain-c"
MARKUP = "Orders [link=https://evil.example/]click[/link] [bold red]alarm[/] [/nonsense]"
ESCAPES = b'{"note": "\x1b]0;PWNED\x07\x1b]52;c;cHduZWQ=\x07 [link=https://evil.example/]x[/link] \x1b[2J"}'


def hostile_doc(data_dir: Path) -> dict[str, Any]:
    doc = yaml.safe_load(small_mesh_text(data_dir, domains=3, name="hostile"))
    doms = {d["name"]: d for d in doc["domains"]}
    doms[A]["products"] = [
        {"name": "ORDERS", "subjects": [f"{A}.orders.>"], "description": MARKUP, "owner": "[b]sales[/b]"},
        {"name": "PATIENTS", "subjects": [f"{A}.patients.>"], "description": "private health data", "tags": ["pii"]},
    ]
    doms[B]["products"] = [{"name": "STOCK", "subjects": [f"{B}.stock.>"], "tags": ["[i]inventory[/i]"]}]
    doms[B]["consumes"] = [{"product": f"{A}/ORDERS"}]
    doms[C]["consumes"] = [{"as": "ALL_ORDERS", "mode": "source", "products": [f"{A}/ORDERS"]}]
    return doc


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mesh, Path]]:
    tmp = tmp_path_factory.mktemp("hostile")
    runner = MeshRunner(tmp)
    mesh, spec = runner.up_file(hostile_doc(tmp / "data"), "hostile.yaml")
    try:
        run(reconcile(mesh))
        yield mesh, spec
    finally:
        runner.close()
        assert not servers_under(tmp)


async def _copy(mesh: Mesh, domain: str) -> dict[str, Any]:
    async with Connections(mesh, name="platform") as mc:
        return await read_catalog(await mc.jetstream(domain))


async def _app(mesh: Mesh, domain: str) -> Any:
    """DOMAIN's app user (what its folder holds) on its own servers."""
    creds = load_credentials(mesh, create=False)
    node = mesh.domain(domain).nodes[0]
    return await nats.connect(user_url("nats", *creds.client(domain), node.host, node.client_port))


async def _attempt(coro: Any) -> str:
    try:
        await asyncio.wait_for(coro, 0.5)  # a permission violation is never answered: a short wait says enough
    except Exception as exc:
        return f"refused: {type(exc).__name__}"
    return "ok"


async def test_a_domain_cannot_write_its_clusters_read_copy_of_the_catalog(hostile: tuple[Mesh, Path]) -> None:
    mesh, _ = hostile
    before = {d: await _copy(mesh, d) for d in (A, B, C)}
    assert f"{A}.ORDERS" in before[B] and f"{A}.PATIENTS" not in before[B]  # what b may read, no more
    outcomes: dict[tuple[str, str], str] = {}
    for domain in (A, B, C):
        nc = await _app(mesh, domain)
        try:
            js = nc.jetstream()
            kv = await js.key_value(CATALOG_BUCKET)
            assert (await kv.get(f"{A}.ORDERS")).value  # it reads its copy ...
            stream = f"KV_{CATALOG_BUCKET}"
            info = await js.stream_info(stream)
            wider = StreamConfig.from_response({**info.config.as_dict(), "max_msgs_per_subject": 100})
            for other in (A, B, C):  # ... and writes none: its own copy, or another's through the hub
                ojs = js if other == domain else nc.jetstream(domain=other, timeout=0.5)
                tries: dict[str, Any] = {
                    "put": partial(ojs.publish, f"$KV.{CATALOG_BUCKET}.{A}.ORDERS", b"{not json"),
                    "delete": partial(ojs.delete_stream, stream),
                }
                if other == domain:
                    tries |= {
                        "put new key": partial(ojs.publish, f"$KV.{CATALOG_BUCKET}.{C}.FAKE", b"{}"),
                        "purge": partial(ojs.purge_stream, stream),
                        "update": partial(ojs.update_stream, wider),
                        "delete message": partial(ojs.delete_msg, stream, 1),
                    }
                for verb, attempt in tries.items():
                    outcomes[(domain, f"{other} {verb}")] = await _attempt(attempt())
        finally:
            await nc.close()
    breaches = {k: v for k, v in outcomes.items() if v == "ok"}
    assert not breaches, breaches
    assert {d: await _copy(mesh, d) for d in (A, B, C)} == before


def test_a_broken_copy_is_rewritten_and_never_stops_apply_for_the_others(
    hostile: tuple[Mesh, Path], tmp_path: Path
) -> None:
    """A domain that gave its app user the right on its own servers (it runs them) writes junk into its copy:
    `apply` (which used to exit with a JSONDecodeError traceback before changing anything, revocations included)
    rewrites it, says so, and the other domains' changes land."""
    mesh, spec = hostile

    async def poison() -> None:
        async with Connections(mesh, name="as-if-b") as mc:
            kv = await (await mc.jetstream(B)).key_value(CATALOG_BUCKET)
            await kv.put(f"{A}.ORDERS", b"{not json")
            await kv.put(f"{A}.PATIENTS", b"[1, 2]")  # an entry b may not hold, and no descriptor either

    run(poison())
    doc = yaml.safe_load(spec.read_text())
    doc["domains"][2]["products"] = [{"name": "INVOICES", "subjects": [f"{C}.invoices.>"]}]
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(doc, sort_keys=False))
    dry = run_cli("apply", "-f", str(changed), "--dry-run", "--json", cwd=spec.parent)
    assert dry.returncode == 0 and "Traceback" not in dry.stderr, dry
    detail = next(
        c["detail"] for c in json.loads(dry.stdout)["changes"] if c["kind"] == "catalog-copy" and c["domain"] == B
    )
    assert "1 unreadable entry rewritten" in detail and "1 entry it may not hold removed" in detail, detail
    res = run_cli("apply", "-f", str(changed), cwd=spec.parent)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res
    copy = run(_copy(mesh, B))
    hub = run(_copy(mesh, mesh.hub.name))
    assert copy[f"{A}.ORDERS"] == hub[f"{A}.ORDERS"] and f"{A}.PATIENTS" not in copy
    assert f"{C}.INVOICES" in hub and f"{C}.INVOICES" in run(_copy(mesh, C))
    again = run_cli("apply", "-f", str(changed), "--json", cwd=spec.parent)
    plan = json.loads(again.stdout)
    assert all(c["action"] == "unchanged" for c in plan["changes"]), plan


def _inert(out: bytes) -> None:
    assert b"\x1b]" not in out and b"\x07" not in out and b"\x1b[2J" not in out, out[:2000]


def test_spec_text_and_payloads_reach_the_terminal_inert(hostile: tuple[Mesh, Path]) -> None:
    """Markup from the spec and escape sequences from another domain's payloads: shown, never acted on (rich's
    MarkupError used to crash `catalog list` for every reader; `tail` printed window-title and clipboard
    sequences)."""
    mesh, spec = hostile

    async def publish() -> None:
        async with MeshClient(mesh, name="a-producer") as mc:
            await mc.publish(f"{A}/ORDERS", ESCAPES, subject=f"{A}.orders.eu")

    run(publish())
    f = ("-f", str(spec))
    commands = [
        ("catalog", "list", *f),
        ("catalog", "show", f"{A}/ORDERS", *f),
        ("apply", "--dry-run", *f),
        ("lineage", *f),
        ("report", "jetstream", *f),
        ("tail", f"{A}/ORDERS", "-n", "1", *f),
        ("tail", f"{C}/ALL_ORDERS", "-n", "1", *f),
        ("policy", "show", *f),
    ]
    outputs = {}
    for args in commands:
        res = subprocess.run([natsmesh_exe(), *args], capture_output=True, timeout=60)
        assert res.returncode == 0 and b"Traceback" not in res.stderr, (args, res.stderr[-2000:])
        _inert(res.stdout + res.stderr)
        outputs[args[:2]] = res.stdout.decode()
    listed = outputs[("catalog", "list")]
    assert "[link=https://evil.example/]click[/link]" in listed and "[b]sales[/b]" in listed  # shown as written
    assert "[link=https://evil.example/]click[/link]" in outputs[("catalog", "show")]
    assert "\\x1b]0;PWNED\\x07" in outputs[("tail", f"{A}/ORDERS")]  # made visible
    assert "\\x1b]0;PWNED\\x07" in outputs[("tail", f"{C}/ALL_ORDERS")]  # another domain's payload, in c's copy
    raw = subprocess.run(
        [natsmesh_exe(), "tail", f"{A}/ORDERS", "-n", "1", "--raw", *f],
        capture_output=True,
        timeout=60,
    )
    assert raw.returncode == 0 and raw.stdout == ESCAPES + b"\n"  # for pipes: the bytes as stored


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return str(r.read().decode())


def test_a_folders_serve_shows_only_what_its_party_may_read(hostile: tuple[Mesh, Path], tmp_path: Path) -> None:
    mesh, _ = hostile
    render_bundle(mesh, tmp_path / "out", party=B)
    folder = tmp_path / "out" / mesh.domain(B).folder
    port = free_port_base(1)
    serve = start_serve(folder, port, bundle=folder, cwd=tmp_path, output=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        pages = {p: _get(url + p) for p in ("/", "/catalog", "/api/state", "/api/health", "/metrics")}
        for path, body in pages.items():
            assert "PATIENTS" not in body and "patients" not in body, path  # a's private product, not b's to see
        assert f"{A}/ORDERS" in pages["/catalog"] and f"{B}/STOCK" in pages["/catalog"]
        state = json.loads(pages["/api/state"])
        assert "PATIENTS" not in json.dumps(state)
    finally:
        stop(serve)
