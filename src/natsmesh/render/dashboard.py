"""A Grafana dashboard for a mesh, on the series `natsmesh serve` exports. Pure.

Three rows: the mesh at a glance (servers and links up, copies stalled, the worst lag), one domain (`$domain`:
its copies' lag and last contact, its servers' JetStream use), one product (`$product`: its ingest and every
copy of it). Variables come from the series themselves, so the dashboard fits any mesh.
"""

from __future__ import annotations

from typing import Any

from natsmesh.model.mesh import Mesh

DASHBOARD_FILE = "grafana-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def _panel(
    pid: int, title: str, kind: str, exprs: list[tuple[str, str]], pos: tuple[int, int, int, int], **kw: Any
) -> dict[str, Any]:
    x, y, w, h = pos
    panel: dict[str, Any] = {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(exprs)
        ],
    }
    if "unit" in kw:
        panel["fieldConfig"] = {"defaults": {"unit": kw["unit"]}, "overrides": []}
    if "description" in kw:
        panel["description"] = kw["description"]
    return panel


def _row(pid: int, title: str, y: int) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "row",
        "title": title,
        "collapsed": False,
        "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
        "panels": [],
    }


def _variable(name: str, query: str, label: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": query,
        "refresh": 2,
        "includeAll": False,
        "multi": False,
        "sort": 1,
    }


def dashboard(mesh: Mesh) -> dict[str, Any]:
    """The dashboard model (Grafana's JSON) for MESH."""
    m = 'mesh="$mesh"'
    d = f'{m}, domain="$domain"'
    p = f'{m}, upstream="$domain/$product"'
    panels = [
        _row(1, "Mesh $mesh", 0),
        _panel(
            2,
            "Servers up",
            "stat",
            [(f"sum(natsmesh_server_up{{{m}}})", "up"), (f"count(natsmesh_server_up{{{m}}})", "of")],
            (0, 1, 6, 4),
        ),
        _panel(
            3,
            "Leaf links up",
            "stat",
            [(f"sum(natsmesh_leaf_link_up{{{m}}})", "up"), (f"count(natsmesh_leaf_link_up{{{m}}})", "of")],
            (6, 1, 6, 4),
        ),
        _panel(4, "Copies stalled", "stat", [(f"sum(natsmesh_copy_stalled{{{m}}})", "stalled")], (12, 1, 6, 4)),
        _panel(5, "Worst copy lag", "stat", [(f"max(natsmesh_copy_lag_messages{{{m}}})", "messages")], (18, 1, 6, 4)),
        _panel(
            6,
            "Copy lag (messages)",
            "timeseries",
            [(f"natsmesh_copy_lag_messages{{{m}}}", "{{domain}}/{{stream}} <- {{upstream}}")],
            (0, 5, 24, 8),
        ),
        _row(7, "Domain $domain", 13),
        _panel(
            8,
            "Its copies: lag against threshold",
            "timeseries",
            [
                (f"natsmesh_copy_lag_messages{{{d}}}", "{{stream}} <- {{upstream}}"),
                (f"natsmesh_copy_lag_critical_messages{{{d}}}", "{{stream}} critical"),
            ],
            (0, 14, 12, 8),
        ),
        _panel(
            9,
            "Its copies: last contact",
            "timeseries",
            [
                (f"natsmesh_copy_last_seen_seconds{{{d}}}", "{{stream}} <- {{upstream}}"),
                (f"natsmesh_copy_seen_critical_seconds{{{d}}}", "{{stream}} critical"),
            ],
            (12, 14, 12, 8),
            unit="s",
        ),
        _panel(
            10,
            "Its servers: JetStream storage in use",
            "timeseries",
            [(f'natsmesh_server_jetstream_storage_bytes{{{m}, cluster="$domain"}}', "{{server}}")],
            (0, 22, 12, 8),
            unit="bytes",
        ),
        _panel(
            11,
            "Its leaf links: round trip",
            "timeseries",
            [(f"natsmesh_leaf_link_rtt_seconds{{{d}}}", "{{server}} {{account}}")],
            (12, 22, 12, 8),
            unit="s",
        ),
        _row(12, "Product $domain/$product", 30),
        _panel(
            13,
            "Ingest",
            "timeseries",
            [(f'natsmesh_product_ingest_rate{{{m}, ref="$domain/$product"}}', "messages/s")],
            (0, 31, 12, 8),
            unit="ops",
        ),
        _panel(
            14,
            "Its copies: lag",
            "timeseries",
            [(f"natsmesh_copy_lag_messages{{{p}}}", "{{domain}}/{{stream}}")],
            (12, 31, 12, 8),
        ),
    ]
    return {
        "uid": f"natsmesh-{mesh.name}"[:40],
        "title": f"natsmesh: {mesh.name}",
        "description": "Data products and their copies across the mesh (natsmesh serve)",
        "tags": ["natsmesh", "nats"],
        "timezone": "browser",
        "editable": True,
        "schemaVersion": 36,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus"},
                _variable("mesh", "label_values(natsmesh_server_up, mesh)", "Mesh"),
                _variable("domain", 'label_values(natsmesh_server_up{mesh="$mesh"}, cluster)', "Domain"),
                _variable(
                    "product",
                    'label_values(natsmesh_product_messages{mesh="$mesh", domain="$domain"}, product)',
                    "Product",
                ),
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }
