"""The JetStream stream configs the spec implies: one per product and consumption, as the JetStream API takes
them. Pure."""

from __future__ import annotations

from typing import Any

from natsmesh.model.mesh import Mesh
from natsmesh.model.products import (
    DEADLETTER_PREFIX,
    DEADLETTER_STREAM,
    KIND_KEY,
    MANAGED_KEY,
    MESH_KEY,
    Consumption,
    Product,
    Share,
    SourceRef,
)

SHARE_HEARTBEAT_NS = 1_000_000_000  # the server forces 1 s for a sourcing consumer anyway


def _metadata(mesh_name: str, kind: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {MANAGED_KEY: "true", MESH_KEY: mesh_name, KIND_KEY: kind, **(extra or {})}


def product_config(mesh_name: str, p: Product) -> dict[str, Any]:
    contract = {"natsmesh.contract": p.contract.version, "natsmesh.enforce": p.contract.enforce} if p.contract else {}
    return {
        "name": p.name,
        "subjects": list(p.subjects),
        "description": p.description,
        "max_age": int(p.max_age * 1e9),
        "max_bytes": p.max_bytes,
        "max_msgs": p.max_msgs,
        "max_consumers": p.max_consumers,
        "num_replicas": p.replicas,
        "storage": p.storage,
        "metadata": _metadata(
            mesh_name,
            "product",
            {
                "natsmesh.owner": p.owner,
                "natsmesh.tags": ",".join(p.tags),
                "natsmesh.classification": p.classification,
                **contract,
            },
        ),
    }


DEADLETTER_MAX_AGE = 7 * 24 * 3600  # seconds a refused message is kept for its producer to see why


def deadletter_config(mesh: Mesh, domain: str) -> dict[str, Any]:
    """The stream of DOMAIN's messages its gate refused, each with the reason in its headers."""
    return {
        "name": DEADLETTER_STREAM,
        "subjects": [f"{DEADLETTER_PREFIX}.>"],
        "description": f"messages the contract gate of {domain} refused, with the reason (natsmesh gate)",
        "max_age": int(DEADLETTER_MAX_AGE * 1e9),
        "max_bytes": -1,
        "max_msgs": -1,
        "max_consumers": -1,
        "num_replicas": min(3, len(mesh.domain(domain).nodes)),
        "storage": "file",
        "metadata": _metadata(mesh.name, "deadletter"),
    }


def source_config(s: SourceRef, taker: str, copy: str) -> dict[str, Any]:
    """How copy TAKER/COPY reads upstream S: through the owner's consumer reserved for it (durable sourcing), so
    the copy's domain needs no consumer API of the owner's beyond resetting that one consumer. The filter is the
    owner consumer's; a transform stays here."""
    share = Share(s.domain, s.stream, taker, copy, s.filter, s.team)
    out: dict[str, Any] = {
        "name": s.stream,
        "external": {"api": f"$JS.{share.address}.API"},
        "consumer": {"name": share.consumer, "deliver_subject": share.deliver},
    }
    if s.transform:
        out["subject_transforms"] = [{"src": s.filter or ">", "dest": s.transform}]
    return out


def share_consumer_config(mesh_name: str, share: Share) -> dict[str, Any]:
    """The owner's push consumer for one copy: flow-controlled, from the first message, never expiring (an
    inactivity threshold would delete it during an outage and the copy would never recover)."""
    cfg: dict[str, Any] = {
        "name": share.consumer,
        "durable_name": share.consumer,
        "description": f"natsmesh: for {share.name}",
        "deliver_subject": share.deliver,
        "deliver_policy": "all",
        "ack_policy": "flow_control",
        "flow_control": True,
        "idle_heartbeat": SHARE_HEARTBEAT_NS,
        "max_deliver": -1,
        "metadata": _metadata(mesh_name, "share", {"natsmesh.copy": share.name}),
    }
    if share.filter:
        cfg["filter_subject"] = share.filter
    return cfg


def desired_consumers(mesh: Mesh) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """Owner domain -> upstream stream -> consumer name -> the config of every share's consumer."""
    out: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for share in mesh.shares:
        out.setdefault(share.owner, {}).setdefault(share.stream, {})[share.consumer] = share_consumer_config(
            mesh.name, share
        )
    return out


MONITOR_ENABLED = "io.nats.monitor.enabled"
MONITOR_LAG_CRITICAL = "io.nats.monitor.lag-critical"
MONITOR_SEEN_CRITICAL = "io.nats.monitor.seen-critical"


def go_duration_text(seconds: float) -> str:
    """SECONDS as a Go duration (what natscli parses `seen-critical` with): `30s`, `1m30s`, `1.5s`."""
    whole_minutes, rest = divmod(seconds, 60)
    if whole_minutes and rest == 0:
        return f"{int(whole_minutes)}m"
    if whole_minutes:
        return f"{int(whole_minutes)}m{rest:g}s"
    return f"{seconds:g}s"


def monitor_metadata(c: Consumption) -> dict[str, str]:
    """The copy's thresholds as natscli's `server check stream` and Synadia Insights read them from a stream."""
    return {
        MONITOR_ENABLED: "true",
        MONITOR_LAG_CRITICAL: str(c.lag_critical),
        MONITOR_SEEN_CRITICAL: go_duration_text(c.seen_critical),
    }


DESCRIPTION_BYTES = 4096  # the longest stream description nats-server takes


def _bounded(text: str) -> str:
    """TEXT cut to a description nats-server takes (a source of hundreds of products names them all)."""
    data = text.encode()
    return text if len(data) <= DESCRIPTION_BYTES else data[: DESCRIPTION_BYTES - 3].decode(errors="ignore") + "..."


def consumption_config(mesh_name: str, c: Consumption) -> dict[str, Any]:
    what = ", ".join(s.ref for s in c.sources)
    cfg: dict[str, Any] = {
        "name": c.stream,
        "description": c.description or _bounded(f"{c.mode} of {what}"),
        "num_replicas": c.replicas,
        "storage": c.storage,
        "max_age": int(c.max_age * 1e9),  # at most what its upstreams allow (`checks._governance_rules`)
        "metadata": _metadata(mesh_name, c.mode, {"natsmesh.upstream": what, **monitor_metadata(c)}),
    }
    if c.mode == "mirror":
        cfg["mirror"] = source_config(c.sources[0], c.domain, c.stream)
    else:
        cfg["sources"] = [source_config(s, c.domain, c.stream) for s in c.sources]
        if c.subjects:
            cfg["subjects"] = list(c.subjects)
    return cfg


def desired_streams(mesh: Mesh) -> dict[str, dict[str, dict[str, Any]]]:
    """domain -> stream name -> the config natsmesh wants there, for every product and consumption."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for p in mesh.products:
        out.setdefault(p.domain, {})[p.name] = product_config(mesh.name, p)
    for c in mesh.consumptions:
        out.setdefault(c.domain, {})[c.stream] = consumption_config(mesh.name, c)
    for domain in mesh.gated_domains:
        out[domain][DEADLETTER_STREAM] = deadletter_config(mesh, domain)
    return out
