"""The data portal in a real browser (issue 13): headless Chromium (Debian's, driven by Playwright) opens
`natsmesh serve` on a real mesh, searches the catalog, opens a product, sees its copies, and sees a copy's lag
rise on the page (no reload) while the copy's domain is cut off from the hub and the product takes messages.

With NATSMESH_SCREENSHOTS=DIR the pages are also saved there (docs/ keeps a set)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import CHROMIUM, FLAGS, MeshRunner, run_cli, servers_under, small_mesh_text, start_serve, stop
from natsmesh.client import MeshClient, run
from natsmesh.faults import chaos
from natsmesh.local.bundle import render_bundle
from natsmesh.model.mesh import Mesh
from natsmesh.reconcile.apply import reconcile
from natsmesh.run.ports import free_port_base

pytestmark = pytest.mark.integration
A, B, C = "leaf-domain-a", "leaf-domain-b", "leaf-domain-c"


def portal_doc(data_dir: Path) -> dict[str, Any]:
    doc = yaml.safe_load(small_mesh_text(data_dir, domains=3, name="portal"))
    doc["leafnodes"] = {"system_bridge": False}
    doms = {d["name"]: d for d in doc["domains"]}
    doms[A]["products"] = [
        {
            "name": "ORDERS",
            "subjects": [f"{A}.orders.>"],
            "description": "Every order placed in the shop, as it is placed",
            "owner": "sales-team",
            "tags": ["orders", "sales"],
        },
        {"name": "RETURNS", "subjects": [f"{A}.returns.>"], "description": "Returned goods", "tags": ["sales"]},
    ]
    doms[B]["products"] = [{"name": "STOCK", "subjects": [f"{B}.stock.>"], "tags": ["inventory"]}]
    doms[B]["consumes"] = [{"product": f"{A}/ORDERS"}]
    doms[C]["consumes"] = [{"as": "ALL_ORDERS", "mode": "source", "products": [f"{A}/ORDERS"]}]
    return doc


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mesh, str]]:
    tmp = tmp_path_factory.mktemp("portal")
    runner = MeshRunner(tmp)
    mesh, spec = runner.up_file(portal_doc(tmp / "data"), "portal.yaml", chaos=True)
    serve: subprocess.Popen[str] | None = None
    try:
        run(reconcile(mesh))
        port = free_port_base(1)
        serve = start_serve(spec, port, cwd=tmp, output=subprocess.DEVNULL)
        yield mesh, f"http://127.0.0.1:{port}"
    finally:
        if serve is not None:
            stop(serve)
        runner.close()
        assert not servers_under(tmp)


@pytest.fixture
def page(portal: tuple[Mesh, str]) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser.new_page(viewport={"width": 1200, "height": 900})
        finally:
            browser.close()


def _shot(page: Any, name: str) -> None:
    if out := os.environ.get("NATSMESH_SCREENSHOTS"):
        Path(out).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(out) / f"portal-{name}.png"), full_page=True)


def _publish(mesh: Mesh, n: int) -> None:
    """N messages into a's ORDERS, from a thread of its own (Playwright's sync API holds this thread's loop)."""

    async def go() -> None:
        async with MeshClient(mesh, name="portal-pub") as mc:
            for i in range(n):
                await mc.publish(f"{A}/ORDERS", f"order {i}".encode(), subject=f"{A}.orders.eu")

    worker = threading.Thread(target=lambda: run(go()))
    worker.start()
    worker.join(60)


B_LAG = f'[data-copy="{B}/ORDERS<-{A}/ORDERS"][data-field=lag]'
LAG_JS = f"Number(document.querySelector({json.dumps(B_LAG)}).textContent)"


def test_the_portal_shows_the_topology_catalog_product_and_a_copys_lag_live(
    page: Any, portal: tuple[Mesh, str]
) -> None:
    mesh, url = portal
    _publish(mesh, 5)
    page.goto(url)
    assert page.title().startswith("Topology")
    for d in mesh.domains:
        assert page.locator(f'section[data-domain="{d.name}"]').count() == 1
    page.wait_for_function(f"document.querySelectorAll('.dot.up').length === {len(mesh.nodes())}", timeout=15000)
    page.wait_for_function(
        "[...document.querySelectorAll('[data-link]')].every(e => e.textContent === 'up')", timeout=15000
    )
    _shot(page, "topology")

    page.click("nav >> text=Catalog")
    page.fill("input[name=q]", "orders sales")
    page.keyboard.press("Enter")
    page.wait_for_url("**/catalog?q=orders+sales")
    rows = page.locator("table.catalog tr.product")
    assert rows.count() == 1 and "leaf-domain-a/ORDERS" in rows.inner_text()  # RETURNS has no "orders"
    page.fill("input[name=q]", "nothing-like-this")
    page.keyboard.press("Enter")
    page.wait_for_url("**/catalog?q=nothing-like-this")
    assert "no product matches" in page.inner_text("main")
    page.fill("input[name=q]", "sales")
    page.keyboard.press("Enter")
    page.wait_for_url("**/catalog?q=sales")
    assert page.locator("table.catalog tr.product").count() == 2
    _shot(page, "catalog")

    page.click("text=leaf-domain-a/ORDERS")
    page.wait_for_url(f"**/products/{A}/ORDERS")
    copies = page.locator("table.copies tr.copy")
    assert copies.count() == 2
    text = copies.all_inner_texts()
    assert any(f"{B}/ORDERS" in t and "mirror" in t for t in text) and any(f"{C}/ALL_ORDERS" in t for t in text)
    assert page.locator("svg.lineage rect.node-copy").count() == 2
    assert "sales-team" in page.inner_text("dl.facts")
    b_lag = page.locator(B_LAG)
    page.wait_for_function(f"{LAG_JS} === 0", timeout=15000)
    _shot(page, "product")

    chaos.partition(mesh, B, None)  # b, the copy's domain, is cut off from the hub
    try:
        _publish(mesh, 40)
        page.wait_for_function(f"{LAG_JS} >= 40", timeout=20000)  # the page's own script refreshed it: no reload
        lag_cut = int(b_lag.inner_text())
        held = "document.querySelector('[data-field=held]').textContent.includes('last sequence 45')"
        page.wait_for_function(held, timeout=10000)  # what the product holds, refreshed too
        _shot(page, "product-cut-off")
    finally:
        chaos.restore(mesh, B)
    page.wait_for_function(f"{LAG_JS} === 0", timeout=60000)
    assert lag_cut >= 40
    page.click("nav >> text=Health")
    assert page.title().startswith("Health")


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_a_contract_naming_the_platforms_secrets_never_reaches_a_reader(
    page: Any, portal: tuple[Mesh, str], tmp_path: Path
) -> None:
    """Issue 16: a team's line `schema: <the data dir>/secrets.json` (or a link to it beside the spec) used to be
    stored by `apply` as the product's contract, and every other domain's folder and the portal showed every
    party's passwords. Now apply refuses it, and nothing of the file reaches the catalog, a folder or the page."""
    mesh, url = portal
    spec = mesh.base_dir / "portal.yaml"
    secrets = [s for s in _strings(json.loads((mesh.data_dir / "secrets.json").read_text())) if len(s) >= 12]
    assert len(secrets) >= 10  # passwords, hashes and seeds of every party
    (mesh.base_dir / "schemas").mkdir(exist_ok=True)
    (mesh.base_dir / "schemas" / "orders.json").symlink_to(mesh.data_dir / "secrets.json")
    for name in (str((mesh.data_dir / "secrets.json").relative_to(mesh.base_dir)), "schemas/orders.json"):
        doc = yaml.safe_load(spec.read_text())
        next(d for d in doc["domains"] if d["name"] == A)["products"][0]["contract"] = {"schema": name}
        hostile = mesh.base_dir / "hostile.yaml"
        hostile.write_text(yaml.safe_dump(doc, sort_keys=False))
        res = run_cli("apply", "-f", str(hostile), cwd=mesh.base_dir)
        assert res.returncode == 1 and "Traceback" not in res.stderr, res
        assert "leads into the mesh's private folder" in res.stderr or "is in a hidden folder" in res.stderr, res
        assert not any(s in res.stdout + res.stderr for s in secrets)

    shown = run_cli("catalog", "show", f"{A}/ORDERS", "--json", "-f", str(spec), cwd=mesh.base_dir)
    assert shown.returncode == 0 and "contract" not in json.loads(shown.stdout), shown.stdout
    render_bundle(mesh, tmp_path / "out", party=B)  # what the platform hands domain b
    folder = next(p for p in (tmp_path / "out").iterdir() if (p / "mesh.json").exists())
    res = run_cli("--bundle", str(folder), "catalog", "show", f"{A}/ORDERS", cwd=tmp_path)
    assert res.returncode == 0 and f"{A}/ORDERS" in res.stdout, res
    assert "contract" not in res.stdout and not any(s in res.stdout for s in secrets)
    page.goto(f"{url}/products/{A}/ORDERS")
    assert "Every order placed" in page.inner_text("body")
    html = page.content()
    assert not any(s in html for s in secrets)


def _metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_every_copys_lag_grows_while_its_owner_is_cut_off_sources_included(portal: tuple[Mesh, str]) -> None:
    """Issue 18: a source's own count stays 0 while it is cut off, so `report lag`, /metrics and the portal showed
    a behind source as lag 0 and `--max-lag` could never fire for one. Now a source's lag is what the owner's
    consumer for it has not had stored: with a's links cut, 7 new orders show in every copy of a/ORDERS, mirror
    and source alike, everywhere; `--max-lag 0` names the source and exits 1; all back to 0 after."""
    mesh, url = portal
    spec = str(mesh.base_dir / "portal.yaml")
    chaos.partition(mesh, A, None)  # the owner itself is cut off from the hub: it keeps taking writes
    try:
        _publish(mesh, 7)
        time.sleep(4.0)  # the copies' last contact ages past the 3 s a linked copy is judged by
        res = run_cli("report", "lag", "-f", spec, "--json")
        rows = {f"{r['domain']}/{r['stream']}": r for r in json.loads(res.stdout)["rows"]}
        assert rows[f"{C}/ALL_ORDERS"]["lag"] >= 7 and rows[f"{B}/ORDERS"]["lag"] >= 7, rows
        source = rows[f"{C}/ALL_ORDERS"]
        assert source["local_last_seq"] == source["upstream_last_seq"] - source["lag"]  # per upstream: copied up to
        strict = run_cli("report", "lag", "-f", spec, "--max-lag", "0")
        assert strict.returncode == 1 and f"{C}/ALL_ORDERS <- {A}/ORDERS: lag" in strict.stderr, strict.stderr
        metrics = _get_text(f"{url}/metrics")
        for domain, stream in ((C, "ALL_ORDERS"), (B, "ORDERS")):
            value = _metric(metrics, "natsmesh_copy_lag_messages", domain=domain, stream=stream)
            assert value is not None and value >= 7, (domain, stream, value)
        state = json.loads(_get_text(f"{url}/api/state"))
        assert state["copies"][f"{C}/ALL_ORDERS<-{A}/ORDERS"]["lag"] >= 7, state["copies"]
    finally:
        chaos.restore(mesh, A)
    deadline = time.monotonic() + 60
    while True:
        rows = json.loads(run_cli("report", "lag", "-f", spec, "--json").stdout)["rows"]
        if all(r["lag"] == 0 for r in rows):
            break
        assert time.monotonic() < deadline, rows
        time.sleep(1.0)


def _get_text(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as r:
        return str(r.read().decode())
