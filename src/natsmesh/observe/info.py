"""Where clients connect: the system URL at the hub and a data-account URL per domain, for scripts and tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from natsmesh.local.certs import paths as cert_paths
from natsmesh.local.files import write_files
from natsmesh.local.secrets import load_credentials
from natsmesh.model.identities import Credentials
from natsmesh.model.mesh import Mesh
from natsmesh.model.topology import Cluster, monitor_host
from natsmesh.observe.connect import data_urls, system_urls
from natsmesh.render.trust import Login, realise


def mesh_info(mesh: Mesh, creds: Credentials | None = None) -> dict[str, Any]:
    """`{"system": {"url"}, "domains": {name: {"url", "servers"}}}`: the shape `natsmesh info --json` prints.
    Without CREDS the mesh's own (generated and stored first if missing)."""
    creds = creds or load_credentials(mesh)
    trust = realise(mesh, creds)
    domains: dict[str, Any] = {}
    for cluster in mesh.clusters:
        servers, signin = _urls(
            mesh, cluster, trust.logins("client", cluster.name), data_urls(mesh, creds, cluster.name)
        )
        domains[cluster.domain] = {
            "url": servers[0],
            "servers": servers,
            **signin,
            "cluster": cluster.name,
            "hub": cluster.is_hub,
            "jetstream_api": f"$JS.{cluster.domain}.API",
            "monitoring": [f"http://{monitor_host(n)}:{n.http_port}" for n in cluster.nodes],
        }
    system, signin = _urls(mesh, mesh.hub, trust.logins("system", mesh.hub.name), system_urls(mesh, creds))
    return {
        "mesh": mesh.name,
        "data_dir": str(mesh.data_dir),
        "system": {"url": system[0], "servers": system, **signin},
        **({"tls": {"ca_file": str(cert_paths(mesh).ca)}} if mesh.tls else {}),
        "domains": domains,
    }


def _urls(mesh: Mesh, cluster: Cluster, logins: list[Login], passwords: list[str]) -> tuple[list[str], dict[str, str]]:
    """CLUSTER's URLs for the first of LOGINS: PASSWORDS (the URLs with a user and password in them), or, where it
    signs in with a creds file of its folder (an operator-mode hub), plain URLs and `{"creds": path}`."""
    if not logins or not logins[0].file:
        return passwords, {}
    plain = [f"{mesh.scheme}://{n.host}:{n.client_port}" for n in cluster.nodes]
    rel = f"{cluster.folder}/{logins[0].file}"
    write_files({rel: logins[0].creds}, mesh.data_dir)  # there before the mesh ever ran (owner-readable only)
    return plain, {"creds": str(mesh.data_dir / rel)}


MASK = "…"


def masked(doc: Any) -> Any:
    """DOC (`mesh_info`'s shape) with the password in every URL replaced by `…` (what `natsmesh info` prints
    unless asked for the secrets)."""
    if isinstance(doc, dict):
        return {k: masked(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [masked(v) for v in doc]
    if isinstance(doc, str) and "://" in doc and "@" in doc:
        scheme, rest = doc.split("://", 1)
        auth, _, where = rest.rpartition("@")
        user = auth.split(":", 1)[0]
        return f"{scheme}://{user}:{MASK}@{where}"
    return doc


def write_nats_contexts(mesh: Mesh, directory: Path, creds: Credentials | None = None) -> list[Path]:
    """natscli context files (`nats --context NAME`): `<mesh>-system` and `<mesh>-<domain>` per domain."""
    directory.mkdir(parents=True, exist_ok=True)
    info = mesh_info(mesh, creds)
    written = []
    entries = [(f"{mesh.name}-system", info["system"]["servers"], "system account at the hub", None)]
    entries += [
        (f"{mesh.name}-{d}", v["servers"], f"data account in domain {d}", d) for d, v in info["domains"].items()
    ]
    for name, urls, desc, domain in entries:
        path = directory / f"{name}.json"
        doc = {"description": f"natsmesh {mesh.name}: {desc}", "url": ",".join(urls)}
        where = info["domains"][domain] if domain else info["system"]
        if "creds" in where:
            doc["creds"] = where["creds"]
        if domain:
            doc["jetstream_domain"] = domain
        path.write_text(json.dumps(doc, indent=2) + "\n")
        path.chmod(0o600)
        written.append(path)
    return written
