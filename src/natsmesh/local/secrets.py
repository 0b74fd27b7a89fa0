"""The mesh's identities: fixed where the spec says so, otherwise generated once and kept in the data dir.

Generated secrets live in `<data_dir>/secrets.json`, mode 0600 in a 0700 directory, and are reused on every
later command so that configs, URLs and running servers agree.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from natsmesh.errors import NotRunningError, PreflightError
from natsmesh.local.files import write_private
from natsmesh.local.layout import MeshDirs
from natsmesh.model.identities import Credentials
from natsmesh.model.mesh import Mesh


def _token() -> str:
    return secrets.token_urlsafe(24)


def load_credentials(mesh: Mesh, *, create: bool = True) -> Credentials:
    """Credentials for MESH: the spec's fixed ones, else the stored ones; missing ones are generated and stored
    (owner-readable only) if CREATE, else `NotRunningError`."""
    path = MeshDirs.of(mesh).secrets
    stored: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    before = json.dumps(stored, sort_keys=True)
    if not mesh.fixed_system:
        stored.setdefault("system_user", "admin")
        if "system_password" not in stored and create:
            stored["system_password"] = _token()
    clients: dict[str, str] = stored.setdefault("client_passwords", {})
    links: dict[str, str] = stored.setdefault("link_passwords", {})
    for cluster in mesh.clusters:
        if not mesh.fixed_data and cluster.name not in clients and create:
            clients[cluster.name] = _token()
        if not cluster.is_hub and cluster.name not in links and create:
            links[cluster.name] = _token()
    if json.dumps(stored, sort_keys=True) != before and create:
        try:
            write_private(path, json.dumps(stored, indent=2) + "\n")
        except OSError as exc:
            raise PreflightError(f"cannot write secrets to {path}: {exc.strerror}") from None
    system = mesh.fixed_system or (stored.get("system_user", "admin"), stored.get("system_password"))
    client_user = mesh.fixed_data[0] if mesh.fixed_data else "app"
    if mesh.fixed_data:
        clients = {c.name: mesh.fixed_data[1] for c in mesh.clusters}
    missing = [c.name for c in mesh.clusters if c.name not in clients or (not c.is_hub and c.name not in links)]
    if system[1] is None or missing:
        raise NotRunningError(
            f"mesh {mesh.name!r} has no credentials yet in {mesh.data_dir}: it has never been started"
        )
    return Credentials(
        system_user=system[0],
        system_password=system[1],
        client_user=client_user,
        client_passwords={c.name: clients[c.name] for c in mesh.clusters},
        link_passwords={c.name: links[c.name] for c in mesh.domains},
    )
