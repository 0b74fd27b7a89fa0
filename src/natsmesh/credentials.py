"""Who the mesh's servers and clients are: fixed where the spec says so, otherwise generated per mesh.

Generated secrets live in `<data_dir>/secrets.json`, mode 0600 in a 0700 directory, and are reused on every
later command so that configs, URLs and running servers agree.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from natsmesh.errors import NotRunningError, PreflightError

if TYPE_CHECKING:
    from natsmesh.spec import Mesh

SYSTEM_ACCOUNT = "SYS"
SECRETS_FILE = "secrets.json"
LINK_USER_PREFIX = "link-"


def account_of(domain: str) -> str:
    """The NATS account that holds DOMAIN's data: one account per domain, named after it."""
    return domain


@dataclass(frozen=True)
class Credentials:
    """Every identity of a mesh: the system user, each domain's client user, each leaf domain's link user."""

    system_user: str
    system_password: str
    client_user: str
    client_passwords: dict[str, str] = field(hash=False)
    link_passwords: dict[str, str] = field(hash=False)

    def client(self, domain: str) -> tuple[str, str]:
        """DOMAIN's client identity (data account of that domain, valid only on its own servers)."""
        return self.client_user, self.client_passwords[domain]

    def link(self, domain: str) -> tuple[str, str]:
        """The identity DOMAIN's leaf nodes use at the hub (leafnode connections only)."""
        return f"{LINK_USER_PREFIX}{domain}", self.link_passwords[domain]

    def secrets(self) -> list[str]:
        return [self.system_password, *self.client_passwords.values(), *self.link_passwords.values()]


def _token() -> str:
    import secrets

    return secrets.token_urlsafe(24)


def write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only, atomically, creating a 0700 parent if needed."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load_credentials(mesh: Mesh, *, create: bool = True) -> Credentials:
    """Credentials for MESH: the spec's fixed ones, else the stored ones; missing ones are generated and stored
    (owner-readable only) if CREATE, else `NotRunningError`."""
    path = mesh.data_dir / SECRETS_FILE
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
