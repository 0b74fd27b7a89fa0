"""Watching the mesh (issue 13): each copy's thresholds in the spec and on its stream (natscli's metadata), the
metrics of `natsmesh serve`, and a real Prometheus (Debian's `prometheus`) scraping it with the rendered rules:
lag for every declared copy, and an alert that fires while a domain is partitioned and clears after it heals."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import MeshRunner, servers_under, small_mesh_text, start_http, start_serve, stop
from natsmesh.client import MeshClient, run
from natsmesh.errors import SpecError
from natsmesh.faults import chaos
from natsmesh.local.specfile import parse_spec
from natsmesh.model.mesh import Mesh
from natsmesh.observe.snapshot import Snapshot
from natsmesh.observe.wire import JszStreams, StreamDetail, Upstream
from natsmesh.reconcile.apply import reconcile
from natsmesh.render.monitoring import monitoring_files
from natsmesh.render.streams import desired_streams
from natsmesh.run.ports import free_port_base
from natsmesh.serve.metrics import families

A, B, C = "leaf-domain-a", "leaf-domain-b", "leaf-domain-c"
PROMETHEUS, PROMTOOL = "/usr/bin/prometheus", "/usr/bin/promtool"


def watched_doc(data_dir: Path) -> dict[str, Any]:
    """a owns ORDERS; b mirrors it, c sources it with thresholds of its own; no system bridge, so serve asks
    each cluster directly and still sees a while a is cut off from the hub."""
    doc = yaml.safe_load(small_mesh_text(data_dir, domains=3, name="watched"))
    doc["leafnodes"] = {"system_bridge": False}
    doc["alerts"] = {"lag_critical": 5, "seen_critical": "3s"}
    doms = {d["name"]: d for d in doc["domains"]}
    doms[A]["products"] = [{"name": "ORDERS", "subjects": [f"{A}.orders.>"]}]
    doms[B]["consumes"] = [{"product": f"{A}/ORDERS"}]
    doms[C]["consumes"] = [
        {
            "as": "ALL",
            "mode": "source",
            "products": [f"{A}/ORDERS"],
            "alerts": {"lag_critical": 50, "seen_critical": "1m"},
        }
    ]
    return doc


def test_thresholds_come_from_the_spec_and_are_stamped_as_natscli_metadata(tmp_path: Path) -> None:
    mesh = parse_spec(yaml.safe_dump(watched_doc(tmp_path)), cache=False)
    streams = desired_streams(mesh)
    b, c = streams[B]["ORDERS"]["metadata"], streams[C]["ALL"]["metadata"]
    assert (b["io.nats.monitor.lag-critical"], b["io.nats.monitor.seen-critical"]) == ("5", "3s")  # mesh defaults
    assert (c["io.nats.monitor.lag-critical"], c["io.nats.monitor.seen-critical"]) == ("50", "1m")  # its own
    assert b["io.nats.monitor.enabled"] == c["io.nats.monitor.enabled"] == "true"
    plain = yaml.safe_load(small_mesh_text(tmp_path, domains=2))
    plain["domains"][0]["products"] = [{"name": "P", "subjects": [f"{A}.p"]}]
    plain["domains"][1]["consumes"] = [{"product": f"{A}/P"}]
    meta = desired_streams(parse_spec(yaml.safe_dump(plain), cache=False))[B]["P"]["metadata"]
    assert (meta["io.nats.monitor.lag-critical"], meta["io.nats.monitor.seen-critical"]) == ("1000", "30s")


def test_a_bad_threshold_names_the_file_and_path(tmp_path: Path) -> None:
    doc = watched_doc(tmp_path)
    doc["domains"][2]["consumes"][0]["alerts"] = {"seen_critical": "soon", "lag_critical": 0}
    with pytest.raises(SpecError) as err:
        parse_spec(yaml.safe_dump(doc), source="watched.yaml", cache=False)
    text = str(err.value)
    assert "watched.yaml" in text and "domains[2].consumes[0].alerts.seen_critical" in text, text
    assert "domains[2].consumes[0].alerts.lag_critical" in text, text


def _detail(name: str, account: str, last: int, **kw: Any) -> StreamDetail:
    return StreamDetail(account=account, name=name, messages=last, last_seq=last, metadata={}, **kw)


def test_metrics_of_a_snapshot_mark_silent_copies_and_servers_that_did_not_answer(tmp_path: Path) -> None:
    """Pure: b's mirror heard from a 10 s ago and is 7 behind; c's leader did not answer (no lag series, stalled,
    its server down); the hub did not answer either."""
    mesh = parse_spec(yaml.safe_dump(watched_doc(tmp_path)), cache=False)
    a0, b0 = mesh.domain(A).nodes[0].name, mesh.domain(B).nodes[0].name
    snap = Snapshot(
        taken=100.0,
        seconds=0.01,
        jsz={
            a0: JszStreams(details=(_detail("ORDERS", A, 17),), max_storage=1000, storage=10),
            b0: JszStreams(
                details=(_detail("ORDERS", B, 10, mirror=Upstream(name="ORDERS", lag=0, active_seconds=10.0)),)
            ),
        },
        missing=("hub-server-0", mesh.domain(C).nodes[0].name),
    )
    text = "\n".join(
        f"{s.name}{sorted(s.labels.items())} {s.value}" for fam in families(mesh, snap) for s in fam.samples
    )
    assert f"natsmesh_copy_lag_messages[('domain', '{B}')" in text and "7" in text
    rows = {
        (s.name, s.labels.get("domain"), s.labels.get("server")): s.value
        for f in families(mesh, snap)
        for s in f.samples
    }
    assert rows[("natsmesh_copy_lag_messages", B, None)] == 7  # its upstream's 17 against its own 10
    assert rows[("natsmesh_copy_stalled", B, None)] == 1  # 10 s > its 3 s
    assert ("natsmesh_copy_lag_messages", C, None) not in rows and rows[("natsmesh_copy_stalled", C, None)] == 1
    assert rows[("natsmesh_server_up", None, "hub-server-0")] == 0 and rows[("natsmesh_server_up", None, a0)] == 1
    assert rows[("natsmesh_leaf_link_up", A, a0)] == 0  # the hub did not answer: no link seen


def test_a_sources_lag_is_what_the_owners_consumer_has_not_had_stored() -> None:
    """Pure (issue 18): while linked, what the owner delivered is stored and only what is pending is behind
    (flow-control acks arrive in steps of up to 1,000, so the unacknowledged would show a current copy behind);
    cut off, only what the copy acknowledged is known stored: pending and unacknowledged both count."""
    from natsmesh.observe.wire import ConsumerDetail, CopyProgress, copy_progress

    consumer = ConsumerDetail(name="c~ALL", pending=5, ack_pending=980, delivered_seq=2520, ack_floor_seq=1540)
    assert copy_progress(consumer, 0.4) == CopyProgress(lag=5, last=2520)
    assert copy_progress(consumer, 17.3) == CopyProgress(lag=985, last=1540)
    assert copy_progress(consumer, None) == CopyProgress(lag=985, last=1540)  # never heard: nothing assumed
    parsed = ConsumerDetail.from_response(
        {
            "name": "leaf-domain-c~ALL",
            "delivered": {"consumer_seq": 5, "stream_seq": 35},
            "ack_floor": {"consumer_seq": 5, "stream_seq": 30},
            "num_ack_pending": 5,
            "num_pending": 3,
        }
    )
    assert parsed == ConsumerDetail(
        name="leaf-domain-c~ALL", pending=3, ack_pending=5, delivered_seq=35, ack_floor_seq=30
    )


def test_rendered_prometheus_files_pass_promtool(tmp_path: Path) -> None:
    mesh = parse_spec(yaml.safe_dump(watched_doc(tmp_path)), cache=False)
    for name, text in monitoring_files(mesh, "127.0.0.1:9470").items():
        (tmp_path / name).write_text(text)
    res = subprocess.run(
        [PROMTOOL, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr
    res = subprocess.run(
        [PROMTOOL, "check", "rules", str(tmp_path / "natsmesh-rules.yml")], capture_output=True, text=True
    )
    assert res.returncode == 0 and "5 rules found" in res.stdout, res.stdout + res.stderr


def _kept(ours: Any, theirs: Any, path: str = "") -> list[str]:
    """Where THEIRS (the model read back) lost or changed something OURS said."""
    if isinstance(ours, dict):
        if not isinstance(theirs, dict):
            return [path or "/"]
        return [
            p for k, v in ours.items() for p in (_kept(v, theirs[k], f"{path}/{k}") if k in theirs else [f"{path}/{k}"])
        ]
    if isinstance(ours, list):
        if not isinstance(theirs, list) or len(ours) != len(theirs):
            return [path]
        return [p for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) for p in _kept(a, b, f"{path}[{i}]")]
    return [] if ours == theirs else [path]


def test_the_grafana_dashboard_loads_into_grafanas_dashboard_model(tmp_path: Path) -> None:
    """Read into the Grafana Foundation SDK's Dashboard (Grafana's own schema, generated from its kinds) and
    written back, every field of every panel, target and variable is still there: nothing it does not know."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    mesh = parse_spec(yaml.safe_dump(watched_doc(tmp_path)), cache=False)
    doc = json.loads(monitoring_files(mesh, "127.0.0.1:9470")["grafana-dashboard.json"])
    back = json.loads(json.dumps(Dashboard.from_json(doc), cls=JSONEncoder))
    assert _kept(doc, back) == []
    titles = {p["title"] for p in doc["panels"]}
    assert {"Mesh $mesh", "Domain $domain", "Product $domain/$product"} <= titles  # overview, a domain, a product
    exprs = " ".join(t["expr"] for p in doc["panels"] for t in p.get("targets", []))
    assert "natsmesh_copy_lag_messages" in exprs and "natsmesh_product_ingest_rate" in exprs


@dataclass
class Watched:
    mesh: Mesh
    spec: Path
    serve_url: str
    prom_url: str
    tmp: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.prom_url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        with urllib.request.urlopen(url, timeout=5) as r:
            return list(json.loads(r.read())["data"]["result"])

    def alerts(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(f"{self.prom_url}/api/v1/alerts", timeout=5) as r:
            return list(json.loads(r.read())["data"]["alerts"])


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watched]:
    tmp = tmp_path_factory.mktemp("watched")
    runner = MeshRunner(tmp)
    mesh, spec = runner.up_file(watched_doc(tmp / "data"), "watched.yaml", chaos=True)
    procs: list[subprocess.Popen[str]] = []
    try:
        run(reconcile(mesh))
        base = free_port_base(2)
        procs.append(start_serve(spec, base, cwd=tmp))
        serve_url = f"http://127.0.0.1:{base}"
        prom_dir = tmp / "prom"
        files = monitoring_files(mesh, f"127.0.0.1:{base}", interval="1s", hold="0s")
        prom_dir.mkdir()
        for name, text in files.items():
            (prom_dir / name).write_text(text)
        prom_url = f"http://127.0.0.1:{base + 1}"
        prom = [
            PROMETHEUS,
            f"--config.file={prom_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={prom_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{base + 1}",
        ]
        procs.append(start_http(prom, f"{prom_url}/-/ready"))
        yield Watched(mesh, spec, serve_url, prom_url, tmp)
    finally:
        for p in reversed(procs):
            stop(p)
        runner.close()
        assert not servers_under(tmp)


def _until(check: Any, timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.25)
    raise AssertionError(f"{what} not within {timeout} s")


def test_prometheus_has_lag_for_every_declared_copy(watched: Watched) -> None:
    declared = {(c.domain, c.stream) for c in watched.mesh.consumptions}

    def every_copy() -> bool:
        rows = watched.query('natsmesh_copy_lag_messages{mesh="watched"}')
        return {(r["metric"]["domain"], r["metric"]["stream"]) for r in rows} == declared

    _until(every_copy, 30, "a lag series for every declared copy")
    up = watched.query('natsmesh_server_up{mesh="watched"}')
    assert len(up) == len(watched.mesh.nodes()) and all(r["value"][1] == "1" for r in up), up


async def test_copies_carry_natscli_thresholds(watched: Watched) -> None:
    async with MeshClient(watched.mesh, name="monitoring") as mc:
        info = await (await mc.jetstream(B)).stream_info("ORDERS")
    meta = info.config.metadata or {}
    assert meta.get("io.nats.monitor.lag-critical") == "5" and meta.get("io.nats.monitor.seen-critical") == "3s"
    assert meta.get("io.nats.monitor.enabled") == "true"


def test_a_partitioned_domains_copies_alert_and_clear_after_it_heals(watched: Watched) -> None:
    """a keeps taking writes while cut off from the hub: b's mirror falls behind (its lag alert fires) and then
    hears nothing for longer than its 3 s (its silence alert fires, a still taking data); after the partition
    heals the copy catches up and both clear."""
    mesh = watched.mesh

    def b_alerts() -> list[str]:
        return sorted(
            a["labels"]["alertname"]
            for a in watched.alerts()
            if a["state"] == "firing" and a["labels"].get("domain") == B
        )

    assert b_alerts() == [], "nothing fires before the partition"
    stop = {"done": False}

    async def publish() -> int:
        n = 0
        async with MeshClient(mesh, name="monitoring-pub") as mc:
            while not stop["done"]:
                await mc.publish(f"{A}/ORDERS", f"m{n}".encode(), subject=f"{A}.orders.x")
                n += 1
                await __import__("asyncio").sleep(0.05)
        return n

    import asyncio
    import threading

    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.update(n=asyncio.run(publish())))
    thread.start()
    try:
        chaos.partition(mesh, A, None)
        try:
            fired = _until(lambda: "NatsmeshCopyLagCritical" in b_alerts(), 20, "b's lag alert firing")
            silent = _until(lambda: "NatsmeshCopySilent" in b_alerts(), 20, "b's silence alert firing (a takes data)")
        finally:
            chaos.restore(mesh, A)
    finally:
        stop["done"] = True
        thread.join(30)
    cleared = _until(lambda: b_alerts() == [], 60, "b's alerts clearing after the partition healed")
    print(
        json.dumps(
            {
                "lag_alert_fired_after_s": round(fired, 1),
                "silent_alert_fired_after_s": round(fired + silent, 1),
                "cleared_after_s": round(cleared, 1),
                "published": result.get("n"),
            }
        )
    )


def test_portal_pages_search_the_catalog_and_escape_what_the_spec_says(tmp_path: Path) -> None:
    """Pure: the catalog search takes every word (name, owner, domain, tags, description, any case); whatever a
    spec's description holds is shown as text, never as markup."""
    from natsmesh.serve import portal

    doc = watched_doc(tmp_path)
    doc["domains"][0]["products"][0] |= {"description": "<script>alert(1)</script> EU orders", "tags": ["Sales"]}
    mesh = parse_spec(yaml.safe_dump(doc), cache=False)
    product = mesh.product(f"{A}/ORDERS")
    assert portal.matches(product, "eu SALES") and portal.matches(product, "leaf-domain-a orders")
    assert not portal.matches(product, "orders invoices")
    page = portal.catalog(mesh, "sales")
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "1 of 1 products" in page
    detail = portal.product_page(mesh, product, None)
    assert "<script>alert" not in detail and detail.count("<tr class=copy>") == 2  # b's mirror and c's source
    assert portal.health(mesh, None).count("no snapshot") == 1


def test_heal_nudges_are_counted_per_copy_when_serve_heals(tmp_path: Path) -> None:
    mesh = parse_spec(yaml.safe_dump(watched_doc(tmp_path)), cache=False)
    snap = Snapshot(taken=1.0, seconds=0.0)
    by_copy = {f"{B}/ORDERS <- {A}/ORDERS": 2}
    rows = {
        s.labels["domain"]: s.value
        for f in families(mesh, snap, nudges=by_copy)
        for s in f.samples
        if s.name == "natsmesh_copy_heal_nudges_total"
    }
    assert rows == {B: 2, C: 0}
    assert not [f for f in families(mesh, snap) if f.name == "natsmesh_copy_heal_nudges"]  # only with --heal


def test_a_paused_server_never_hangs_a_scrape_and_shows_as_down(watched: Watched) -> None:
    """SIGSTOP c's only server for 8 s: every scrape meanwhile answers within one bounded round (2 s) plus
    slack, and soon shows natsmesh_server_up 0 for it with its copy's lag series gone."""
    node = watched.mesh.domain(C).nodes[0].name
    down = f'natsmesh_server_up{{cluster="{C}",mesh="watched",server="{node}"}} 0.0'
    pauser = threading.Thread(target=chaos.pause, args=(watched.mesh, node, 8.0))
    pauser.start()
    took, seen = [], None
    try:
        start = time.monotonic()
        while time.monotonic() - start < 6 and seen is None:
            began = time.monotonic()
            with urllib.request.urlopen(f"{watched.serve_url}/metrics", timeout=30) as r:
                text = r.read().decode()
            took.append(time.monotonic() - began)
            if down in text:
                seen = text
    finally:
        pauser.join(30)
    assert max(took) < 2.0 + 3.0, took
    assert seen is not None, "the paused server never showed as down"
    lag_c = [ln for ln in seen.splitlines() if ln.startswith("natsmesh_copy_lag_messages") and f'domain="{C}"' in ln]
    assert lag_c == [], lag_c


def test_serve_from_a_domains_folder_shows_its_own_copies_and_servers(watched: Watched) -> None:
    from natsmesh.local.bundle import render_bundle

    render_bundle(watched.mesh, watched.tmp / "handed", party=B)
    folder = watched.tmp / "handed" / watched.mesh.domain(B).folder
    port = free_port_base(1)
    proc = start_serve(watched.spec, port, bundle=folder)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=10) as r:
            doc = json.loads(r.read())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
    finally:
        stop(proc)
    assert [c["copy"] for c in doc["copies"]] == [f"{B}/ORDERS"] and doc["missing_servers"] == []
    assert doc["copies"][0]["lag"] == 0, doc
    ups = [ln for ln in text.splitlines() if ln.startswith("natsmesh_server_up")]
    assert ups == [
        f'natsmesh_server_up{{cluster="{B}",mesh="watched",server="{watched.mesh.domain(B).nodes[0].name}"}} 1.0'
    ]


def test_serve_says_where_it_listens_and_stops_cleanly_on_ctrl_c(watched: Watched) -> None:
    port = free_port_base(1)
    proc = start_serve(watched.spec, port, "--heal")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            assert "natsmesh_copy_heal_nudges_total" in r.read().decode()  # --heal counts its nudges
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    finally:
        stop(proc)
    assert proc.returncode == 0, out
    assert f"at http://127.0.0.1:{port}/metrics" in out and "stopped" in out and "Traceback" not in out, out
