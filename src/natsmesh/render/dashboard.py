"""A Grafana dashboard for a mesh, on the series `natsmesh serve` exports. Pure.

Three rows: the mesh at a glance (servers and links up, copies stalled, the worst lag), one domain (`$domain`:
its copies' lag and last contact, its servers' JetStream use), one product (`$product`: its ingest and every
copy of it). Variables come from the series themselves, so the dashboard fits any mesh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from natsmesh.model.mesh import Mesh

DASHBOARD_FILE = "grafana-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_WIDTH = 24  # the columns of Grafana's grid


Target = tuple[str, str]  # a PromQL expression and its legend


@dataclass(frozen=True)
class Panel:
    """One panel: what it shows and how large it is; `_layout` numbers and places it."""

    title: str
    targets: tuple[Target, ...]
    kind: str  # Grafana's panel type
    size: tuple[int, int]  # width (columns) and height
    unit: str | None = None
    description: str | None = None


def _stat(title: str, *targets: Target) -> Panel:
    """A figure: four of them fill a line."""
    return Panel(title, targets, "stat", (GRID_WIDTH // 4, 4))


def _up_of(title: str, series: str) -> Panel:
    """How many of SERIES (each 1 or 0) are up, and of how many."""
    return _stat(title, (f"sum({series})", "up"), (f"count({series})", "of"))


def _chart(title: str, *targets: Target, unit: str | None = None, width: int = GRID_WIDTH // 2) -> Panel:
    """A time series, half a line wide unless WIDTH says."""
    return Panel(title, targets, "timeseries", (width, 8), unit)


def _panel(pid: int, p: Panel, pos: tuple[int, int, int, int]) -> dict[str, Any]:
    x, y, w, h = pos
    panel: dict[str, Any] = {
        "id": pid,
        "type": p.kind,
        "title": p.title,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(p.targets)
        ],
    }
    if p.unit is not None:
        panel["fieldConfig"] = {"defaults": {"unit": p.unit}, "overrides": []}
    if p.description is not None:
        panel["description"] = p.description
    return panel


def _row(pid: int, title: str, y: int) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "row",
        "title": title,
        "collapsed": False,
        "gridPos": {"x": 0, "y": y, "w": GRID_WIDTH, "h": 1},
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


MESH = 'mesh="$mesh"'  # the series of the dashboard's mesh, of its domain, of copies of its product
DOMAIN = f'{MESH}, domain="$domain"'
COPIES = f'{MESH}, upstream="$domain/$product"'


def _against_threshold(title: str, series: str, critical: str, unit: str | None = None) -> Panel:
    """The domain's copies: SERIES of each, and its threshold CRITICAL."""
    return _chart(
        title,
        (f"{series}{{{DOMAIN}}}", "{{stream}} <- {{upstream}}"),
        (f"{critical}{{{DOMAIN}}}", "{{stream}} critical"),
        unit=unit,
    )


ROWS: tuple[tuple[str, tuple[Panel, ...]], ...] = (  # each row's title and its panels, left to right
    (
        "Mesh $mesh",
        (
            _up_of("Servers up", f"natsmesh_server_up{{{MESH}}}"),
            _up_of("Leaf links up", f"natsmesh_leaf_link_up{{{MESH}}}"),
            _stat("Copies stalled", (f"sum(natsmesh_copy_stalled{{{MESH}}})", "stalled")),
            _stat("Worst copy lag", (f"max(natsmesh_copy_lag_messages{{{MESH}}})", "messages")),
            _chart(
                "Copy lag (messages)",
                (f"natsmesh_copy_lag_messages{{{MESH}}}", "{{domain}}/{{stream}} <- {{upstream}}"),
                width=GRID_WIDTH,
            ),
        ),
    ),
    (
        "Domain $domain",
        (
            _against_threshold(
                "Its copies: lag against threshold", "natsmesh_copy_lag_messages", "natsmesh_copy_lag_critical_messages"
            ),
            _against_threshold(
                "Its copies: last contact",
                "natsmesh_copy_last_seen_seconds",
                "natsmesh_copy_seen_critical_seconds",
                unit="s",
            ),
            _chart(
                "Its servers: JetStream storage in use",
                (f'natsmesh_server_jetstream_storage_bytes{{{MESH}, cluster="$domain"}}', "{{server}}"),
                unit="bytes",
            ),
            _chart(
                "Its leaf links: round trip",
                (f"natsmesh_leaf_link_rtt_seconds{{{DOMAIN}}}", "{{server}} {{account}}"),
                unit="s",
            ),
        ),
    ),
    (
        "Product $domain/$product",
        (
            _chart(
                "Ingest", (f'natsmesh_product_ingest_rate{{{MESH}, ref="$domain/$product"}}', "messages/s"), unit="ops"
            ),
            _chart("Its copies: lag", (f"natsmesh_copy_lag_messages{{{COPIES}}}", "{{domain}}/{{stream}}")),
        ),
    ),
)


def _layout(rows: tuple[tuple[str, tuple[Panel, ...]], ...]) -> list[dict[str, Any]]:
    """ROWS numbered from 1 and placed on the grid: each row on a line of its own, then its panels left to right,
    going on at the left below the tallest of a line's panels when the next one does not fit beside them."""
    out: list[dict[str, Any]] = []
    y = 0
    for title, panels in rows:
        out.append(_row(len(out) + 1, title, y))
        x, y, line = 0, y + 1, 0  # LINE: the height of the line of panels so far
        for p in panels:
            w, h = p.size
            if x + w > GRID_WIDTH:
                x, y, line = 0, y + line, 0
            out.append(_panel(len(out) + 1, p, (x, y, w, h)))
            x, line = x + w, max(line, h)
        y += line
    return out


def dashboard(mesh: Mesh) -> dict[str, Any]:
    """The dashboard model (Grafana's JSON) for MESH."""
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
        "panels": _layout(ROWS),
    }
