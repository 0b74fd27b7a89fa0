"""The folders that run a mesh anywhere: one per party (a cluster), each with its nodes' configs, a Procfile and
only that party's own secrets, written to a directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from natsmesh.errors import UnknownDomainError
from natsmesh.local.certs import cert_texts
from natsmesh.local.files import write_files
from natsmesh.local.records import record_shares
from natsmesh.local.resolver import preload
from natsmesh.local.secrets import load_credentials
from natsmesh.model.mesh import Mesh
from natsmesh.model.topology import Cluster
from natsmesh.render.servers import DEFAULT_SERVER_COMMAND, render_mesh, render_party
from natsmesh.render.trust import RESOLVER_DIR

PLATFORM = "hub"  # what `--for` calls the platform's party, whatever the hub cluster is named


@dataclass(frozen=True)
class RenderResult:
    out: str
    files: list[Path]

    @property
    def folders(self) -> list[str]:
        return sorted({p.relative_to(self.out).parts[0] for p in self.files})

    def to_json(self) -> dict[str, Any]:
        return {"out": self.out, "files": [str(p) for p in self.files]}


def party_cluster(mesh: Mesh, party: str) -> Cluster:
    """The cluster of PARTY: `hub` (or the hub's name) for the platform, else a domain's name."""
    if party in (PLATFORM, mesh.hub.name):
        return mesh.hub
    try:
        return mesh.domain(party)
    except KeyError:
        domains = ", ".join(d.name for d in mesh.domains) or "none"
        raise UnknownDomainError(
            f"mesh {mesh.name!r} has no party {party!r}: its parties are {PLATFORM} (the platform, cluster "
            f"{mesh.hub.name!r}) and the domains {domains}"
        ) from None


def render_bundle(
    mesh: Mesh,
    out_dir: Path,
    server_command: str = DEFAULT_SERVER_COMMAND,
    party: str | None = None,
    install_dir: str | None = None,
) -> RenderResult:
    """Write the folder of PARTY (None: of every party) into OUT_DIR, for hosts that keep it at INSTALL_DIR; the
    mesh's secrets are generated (and kept in its data dir, the platform's copy) if missing."""
    cluster = party_cluster(mesh, party) if party is not None else None
    creds = load_credentials(mesh)
    if cluster is None:
        files = render_mesh(mesh, creds, server_command, certs=cert_texts(mesh), install_dir=install_dir)
    else:
        files = render_party(mesh, creds, cluster, server_command, cert_texts(mesh), install_dir=install_dir)
    written = write_files(files, out_dir)
    hub = out_dir / mesh.hub.folder
    if (cluster is None or cluster.is_hub) and not (hub / RESOLVER_DIR).exists():
        # operator mode, a hub folder made now: its servers start holding every account. Never into a folder
        # that has one: a running resolver reads its files on a lookup, so a file changed under it would read
        # as pushed when no server took it (`apply` pushes what changed)
        preload(mesh, creds, folder=hub)
    if mesh.hosted:  # the platform's record of what its hosts were handed, which `apply` compares with the spec
        write_files({p: t for p, t in files.items() if p.endswith(".conf")}, mesh.data_dir)
        if cluster is None or cluster.is_hub:
            record_shares(mesh)
    return RenderResult(str(out_dir), written)
