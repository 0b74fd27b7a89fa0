"""Acting from one party's folder (`natsmesh --bundle DIR`): the mesh as the folder describes it, with that
party's own secrets and CA certificate only.

`natsmesh render` writes `mesh.json` into every folder: the validated mesh without any fixed credentials
(`natsmesh.render.servers.party_mesh`). Loaded from here, the mesh's data dir is the folder itself, so its
`secrets.json` (`natsmesh.local.secrets`) and `tls/` are what every connection uses; no other party's key is
there to use.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from natsmesh.errors import NotHeldError
from natsmesh.model.mesh import Mesh
from natsmesh.render.servers import MESH_FILE, SECRETS_FILE, TLS_DIR

MAX_BYTES = 16 * 1024 * 1024  # far beyond any mesh's description


def load_folder(folder: str | Path, secrets: bool = True) -> Mesh:
    """The mesh of the party folder FOLDER (as `natsmesh render` wrote it); `NotHeldError` saying what is
    missing if FOLDER is not one. Without SECRETS, its `mesh.json` is enough (a service with a creds file of a
    domain's own user needs nothing else of its domain's folder)."""
    root = Path(folder).expanduser().resolve()
    path = root / MESH_FILE
    hint = "render one with `natsmesh render --for PARTY`"
    if not root.is_dir():
        raise NotHeldError(f"{folder} is not a directory ({hint})")
    for needed in (MESH_FILE, SECRETS_FILE) if secrets else (MESH_FILE,):
        if not (root / needed).is_file():
            raise NotHeldError(f"{folder} is not a party's folder: it has no {needed} ({hint})")
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ValueError(f"larger than {MAX_BYTES} bytes")
        mesh = Mesh.from_json(json.loads(path.read_bytes()), str(path), root)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NotHeldError(f"{path} is not a mesh description as `natsmesh render` writes it: {exc}") from None
    return replace(mesh, data_dir_setting=str(root), tls_dir_setting=str(root / TLS_DIR))
