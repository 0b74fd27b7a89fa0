"""The JetStream stream configs the spec implies: one per product and consumption, as the JetStream API takes
them. Pure."""

from __future__ import annotations

from typing import Any

from natsmesh.model.mesh import Mesh
from natsmesh.model.products import KIND_KEY, MANAGED_KEY, MESH_KEY, Consumption, Product, SourceRef, deliver_subject


def _metadata(mesh_name: str, kind: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {MANAGED_KEY: "true", MESH_KEY: mesh_name, KIND_KEY: kind, **(extra or {})}


def product_config(mesh_name: str, p: Product) -> dict[str, Any]:
    return {
        "name": p.name,
        "subjects": list(p.subjects),
        "description": p.description,
        "max_age": int(p.max_age * 1e9),
        "max_bytes": p.max_bytes,
        "max_msgs": p.max_msgs,
        "num_replicas": p.replicas,
        "storage": p.storage,
        "metadata": _metadata(mesh_name, "product", {"natsmesh.owner": p.owner, "natsmesh.tags": ",".join(p.tags)}),
    }


def source_config(s: SourceRef, consumer: str) -> dict[str, Any]:
    deliver = deliver_subject(s.domain, consumer, s.stream)
    out: dict[str, Any] = {"name": s.stream, "external": {"api": f"$JS.{s.domain}.API", "deliver": deliver}}
    if s.filter and not s.transform:
        out["filter_subject"] = s.filter
    if s.transform:
        out["subject_transforms"] = [{"src": s.filter or ">", "dest": s.transform}]
    return out


def consumption_config(mesh_name: str, c: Consumption) -> dict[str, Any]:
    what = ", ".join(s.ref for s in c.sources)
    cfg: dict[str, Any] = {
        "name": c.stream,
        "description": c.description or f"{c.mode} of {what}",
        "num_replicas": c.replicas,
        "storage": c.storage,
        "metadata": _metadata(mesh_name, c.mode, {"natsmesh.upstream": what}),
    }
    if c.mode == "mirror":
        cfg["mirror"] = source_config(c.sources[0], c.domain)
    else:
        cfg["sources"] = [source_config(s, c.domain) for s in c.sources]
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
    return out
