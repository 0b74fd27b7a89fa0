"""What Prometheus needs to watch a mesh through `natsmesh serve`: a scrape config and alert rules. Pure.

The rules read natsmesh's own series (`natsmesh.serve.metrics`), each copy judged by its own thresholds (the
`io.nats.monitor.*` values its stream carries): a copy too far behind, a copy silent while its upstream takes
data, a leaf link down, a server down, JetStream near its limits.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from natsmesh.model.mesh import Mesh
from natsmesh.render.dashboard import DASHBOARD_FILE, dashboard

RULES_FILE = "natsmesh-rules.yml"
CONFIG_FILE = "prometheus.yml"
NEAR_LIMIT = 0.9  # JetStream use over this share of a server's limit alerts


def alert_rules(mesh: Mesh, hold: str = "1m") -> dict[str, Any]:
    """The alert rules of MESH, each firing after its condition held for HOLD (a Prometheus duration)."""
    m = f'mesh="{mesh.name}"'

    def rule(name: str, expr: str, summary: str, severity: str = "critical") -> dict[str, Any]:
        return {
            "alert": name,
            "expr": expr,
            "for": hold,
            "labels": {"severity": severity},
            "annotations": {"summary": summary},
        }

    upstream_active = f'label_replace(natsmesh_product_ingest_rate{{{m}}} > 0, "upstream", "$1", "ref", "(.*)")'
    rules = [
        rule(
            "NatsmeshCopyLagCritical",
            f"natsmesh_copy_lag_messages{{{m}}} > on(mesh, domain, stream, upstream) "
            f"natsmesh_copy_lag_critical_messages{{{m}}}",
            "{{ $labels.domain }}/{{ $labels.stream }} is {{ $value }} messages behind {{ $labels.upstream }}",
        ),
        rule(
            "NatsmeshCopySilent",
            f"natsmesh_copy_stalled{{{m}}} == 1 and on(mesh, upstream) {upstream_active}",
            "{{ $labels.domain }}/{{ $labels.stream }} hears nothing from {{ $labels.upstream }}, which takes data",
        ),
        rule(
            "NatsmeshLeafLinkDown",
            f"natsmesh_leaf_link_up{{{m}}} == 0",
            "{{ $labels.server }} has no link in account {{ $labels.account }} at the hub",
        ),
        rule("NatsmeshServerDown", f"natsmesh_server_up{{{m}}} == 0", "{{ $labels.server }} does not answer"),
        rule(
            "NatsmeshJetStreamNearLimit",
            f"(natsmesh_server_jetstream_storage_bytes{{{m}}} / natsmesh_server_jetstream_storage_limit_bytes{{{m}}}"
            f" > {NEAR_LIMIT}) or (natsmesh_server_jetstream_memory_bytes{{{m}}}"
            f" / natsmesh_server_jetstream_memory_limit_bytes{{{m}}} > {NEAR_LIMIT})",
            f"{{{{ $labels.server }}}} uses over {NEAR_LIMIT:.0%} of its JetStream memory or storage",
            "warning",
        ),
    ]
    return {"groups": [{"name": f"natsmesh-{mesh.name}", "rules": rules}]}


def scrape_config(mesh: Mesh, target: str, interval: str = "15s") -> dict[str, Any]:
    """A Prometheus config scraping `natsmesh serve` at TARGET (host:port) every INTERVAL, with the rules."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [RULES_FILE],
        "scrape_configs": [
            {
                "job_name": f"natsmesh-{mesh.name}",
                "scrape_timeout": interval if _seconds(interval) <= 10 else "10s",
                "static_configs": [{"targets": [target], "labels": {"natsmesh_mesh": mesh.name}}],
            }
        ],
    }


def _seconds(duration: str) -> float:
    from natsmesh.model.units import parse_duration

    return parse_duration(duration)


def monitoring_files(mesh: Mesh, target: str, interval: str = "15s", hold: str = "1m") -> dict[str, str]:
    """File name -> text: the scrape config, the alert rules and the Grafana dashboard."""

    def dump(doc: dict[str, Any]) -> str:
        return str(yaml.safe_dump(doc, sort_keys=False, width=200))

    return {
        CONFIG_FILE: dump(scrape_config(mesh, target, interval)),
        RULES_FILE: dump(alert_rules(mesh, hold)),
        DASHBOARD_FILE: json.dumps(dashboard(mesh), indent=2) + "\n",
    }
