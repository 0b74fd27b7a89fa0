"""The folders that run a mesh anywhere: every node's config and a Procfile per cluster, written to a directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from natsmesh.local.certs import cert_texts
from natsmesh.local.files import write_files
from natsmesh.local.secrets import load_credentials
from natsmesh.model.mesh import Mesh
from natsmesh.render.servers import DEFAULT_SERVER_COMMAND, render_mesh


@dataclass(frozen=True)
class RenderResult:
    out: str
    files: list[Path]

    @property
    def folders(self) -> list[str]:
        return sorted({p.parent.name for p in self.files})

    def to_json(self) -> dict[str, Any]:
        return {"out": self.out, "files": [str(p) for p in self.files]}


def render_bundle(mesh: Mesh, out_dir: Path, server_command: str = DEFAULT_SERVER_COMMAND) -> RenderResult:
    """Write the mesh's configs (its secrets generated if missing) into OUT_DIR, one folder per cluster."""
    files = render_mesh(mesh, load_credentials(mesh), server_command, certs=cert_texts(mesh))
    return RenderResult(str(out_dir), write_files(files, out_dir))
