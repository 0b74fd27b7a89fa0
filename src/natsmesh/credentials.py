"""Who the mesh's servers and clients are: fixed where the spec says so, otherwise generated per mesh.

Generated secrets live in `<data_dir>/secrets.json`, mode 0600 in a 0700 directory, and are reused on every
later command so that configs, URLs and running servers agree.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from natsmesh.errors import NotRunningError, PreflightError

if TYPE_CHECKING:
    from natsmesh.spec import Mesh

SYSTEM_ACCOUNT = "SYS"
DATA_ACCOUNT = "APP"
SECRETS_FILE = "secrets.json"


@dataclass(frozen=True)
class Credentials:
    system_user: str
    system_password: str
    data_user: str
    data_password: str

    def secrets(self) -> list[str]:
        return [self.system_password, self.data_password]


def _generate() -> dict[str, str]:
    import secrets

    return {
        "system_user": "admin",
        "system_password": secrets.token_urlsafe(24),
        "data_user": "app",
        "data_password": secrets.token_urlsafe(24),
    }


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
    """Credentials for MESH: the spec's fixed ones, else the stored ones, else new ones (stored if CREATE)."""
    path = mesh.data_dir / SECRETS_FILE
    stored: dict[str, str] = {}
    if path.is_file():
        stored = json.loads(path.read_text())
    elif not (mesh.fixed_system and mesh.fixed_data):
        if not create:
            raise NotRunningError(
                f"mesh {mesh.name!r} has no credentials yet in {mesh.data_dir}: it has never been started"
            )
        stored = _generate()
        if create:
            try:
                write_private(path, json.dumps(stored, indent=2) + "\n")
            except OSError as exc:
                raise PreflightError(f"cannot write secrets to {path}: {exc.strerror}") from None
    values = dict(stored)
    if mesh.fixed_system:
        values["system_user"], values["system_password"] = mesh.fixed_system
    if mesh.fixed_data:
        values["data_user"], values["data_password"] = mesh.fixed_data
    return Credentials(**{k: values[k] for k in asdict(_EMPTY)})


_EMPTY = Credentials("", "", "", "")
