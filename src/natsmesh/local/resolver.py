"""The hub's resolver store on disk: the account JWTs each hub node loads when it starts (operator mode).

nats-server's `full` resolver keeps one `<account public key>.jwt` file per account in its directory and reads
them all at start. Writing the spec's accounts there before the hub starts lets every leaf link as soon as the
hub listens, instead of after a push of every account's claims (at 500 spokes a push of 502 accounts into a hub
that 500 leaves were already knocking at took most of a minute). A running hub still learns every change by a
claims push (`natsmesh.reconcile.claims`); this is only its starting point.
"""

from __future__ import annotations

import time
from pathlib import Path

from natsmesh.local.files import write_files
from natsmesh.local.layout import MeshDirs
from natsmesh.model import jwt
from natsmesh.model.identities import Credentials
from natsmesh.model.mesh import Mesh
from natsmesh.render.trust import RESOLVER_DIR, realise

SUFFIX = ".jwt"


def _held(path: Path) -> str | None:
    try:
        return path.read_text().strip() if path.is_file() else None
    except (OSError, UnicodeDecodeError):
        return None


def preload(mesh: Mesh, creds: Credentials, now: int | None = None, folder: Path | None = None) -> int:
    """Write every account the hub must hold into each hub node's resolver directory (in the hub's FOLDER: by
    default its folder in the data dir), unless the file there says the same already (one issued later than the
    one held, as the resolver itself would take it). Only for a hub about to start: a running node reads its
    directory at start only. Returns how many files were written (0 in config mode)."""
    issued = int(time.time()) if now is None else now
    trust = realise(mesh, creds)
    wanted = trust.claims(issued)
    if not wanted:
        return 0
    hub = folder or MeshDirs.of(mesh).cluster(mesh.hub)
    held = {
        (node.name, account): _held(hub / RESOLVER_DIR / node.name / f"{account}{SUFFIX}")
        for node in mesh.hub.nodes
        for account in wanted
    }
    later = issued
    for old in held.values():
        if old is not None:
            try:
                later = max(later, int(jwt.decode(old).get("iat") or 0) + 1)
            except ValueError:
                continue  # not a JWT: replaced below
    tokens = trust.claims(later) if later > issued else wanted
    files: dict[str, str] = {}
    for (node, account), old in held.items():
        try:
            same = old is not None and jwt.says(old) == jwt.says(tokens[account])
        except ValueError:
            same = False
        if not same:
            files[f"{RESOLVER_DIR}/{node}/{account}{SUFFIX}"] = tokens[account]
    write_files(files, hub)
    return len(files)
