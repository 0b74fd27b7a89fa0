"""Where clients connect: the system URL at the hub and a data-account URL per domain, for scripts and tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from natsmesh.credentials import Credentials
from natsmesh.spec import Mesh


def _url(user: str, password: str, host: str, port: int, scheme: str = "nats") -> str:
    return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}"


def mesh_info(mesh: Mesh, creds: Credentials) -> dict[str, Any]:
    """`{"system": {"url"}, "domains": {name: {"url", "servers"}}}`: the shape `natsmesh info --json` prints."""
    hub0 = mesh.hub.nodes[0]
    domains: dict[str, Any] = {}
    for cluster in mesh.clusters:
        servers = [_url(*creds.client(cluster.name), mesh.host, n.client_port, mesh.scheme) for n in cluster.nodes]
        domains[cluster.domain] = {
            "url": servers[0],
            "servers": servers,
            "cluster": cluster.name,
            "hub": cluster.is_hub,
            "jetstream_api": f"$JS.{cluster.domain}.API",
            "monitoring": [f"http://{mesh.host}:{n.http_port}" for n in cluster.nodes],
        }
    return {
        "mesh": mesh.name,
        "data_dir": str(mesh.data_dir),
        "system": {
            "url": _url(creds.system_user, creds.system_password, mesh.host, hub0.client_port, mesh.scheme),
            "servers": [
                _url(creds.system_user, creds.system_password, mesh.host, n.client_port, mesh.scheme)
                for n in mesh.hub.nodes
            ],
        },
        **({"tls": {"ca_file": str(mesh.tls_dir / "ca.pem")}} if mesh.tls else {}),
        "domains": domains,
    }


def write_nats_contexts(mesh: Mesh, creds: Credentials, directory: Path) -> list[Path]:
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
        if domain:
            doc["jetstream_domain"] = domain
        path.write_text(json.dumps(doc, indent=2) + "\n")
        path.chmod(0o600)
        written.append(path)
    return written
