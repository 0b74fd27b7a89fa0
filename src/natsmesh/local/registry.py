"""Which mesh a command means: the spec each data dir belongs to, and the meshes running on this machine.

A mesh's data dir (its secrets, configs and stores) belongs to the spec that first brought it up: the spec's
path is recorded in `<data_dir>/identity.json`. A command whose spec names the same data dir but is another file
(two specs in one folder with one mesh name) is refused before it touches anything (`WrongMeshError`), so
`down -f other.yaml` never stops this mesh and `up -f other.yaml` never starts on its stores.

Every mesh `up` starts is also listed in the user's state dir (`$NATSMESH_STATE_DIR`, else
`$XDG_STATE_HOME/natsmesh`, else `~/.local/state/natsmesh`) with its spec and the directory it was started from,
so a command without `-f` finds the mesh `up` started here, and `status` from anywhere can say what runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from natsmesh.errors import WrongMeshError
from natsmesh.local.files import write_atomic
from natsmesh.local.layout import MeshDirs
from natsmesh.local.state import lock_held_at
from natsmesh.model.mesh import Mesh

STATE_ENV = "NATSMESH_STATE_DIR"
EMBEDDED = "<embedded default>"


def spec_identity(mesh: Mesh) -> str | None:
    """What identifies MESH's spec: its file's absolute path, `EMBEDDED` for the built-in seed, or None for a
    spec given as text (a library call), which claims nothing."""
    if mesh.source.startswith("<embedded"):
        return EMBEDDED
    path = Path(mesh.source)
    return str(path.resolve()) if path.is_file() else None


def _identity_file(mesh: Mesh) -> Path:
    return MeshDirs.of(mesh).root / "identity.json"


def recorded_spec(mesh: Mesh) -> str | None:
    """The spec MESH's data dir belongs to, if one is recorded."""
    try:
        doc = json.loads(_identity_file(mesh).read_text())
    except (OSError, ValueError):
        return None
    spec = doc.get("spec") if isinstance(doc, dict) else None
    return spec if isinstance(spec, str) else None


def check_identity(mesh: Mesh) -> None:
    """`WrongMeshError` if MESH's data dir belongs to another spec (one that still exists)."""
    mine, theirs = spec_identity(mesh), recorded_spec(mesh)
    if mine is None or theirs is None or mine == theirs:
        return
    if theirs != EMBEDDED and not Path(theirs).is_file():
        return  # the spec that made it was moved or removed: this one takes the data dir over (`claim`)
    raise WrongMeshError(
        f"{mesh.data_dir} holds mesh {mesh.name!r} of {_shown(theirs)}, not of {_shown(mine)}: two specs name "
        f"the same mesh in one folder. Nothing was done. Give this spec its own `name:` (or `data_dir`), or "
        f"use {_shown(theirs)}"
    )


def _shown(spec: str) -> str:
    if spec == EMBEDDED:
        return "the embedded default"
    try:
        return f"spec {os.path.relpath(spec)}"
    except ValueError:
        return f"spec {spec}"


def claim(mesh: Mesh) -> None:
    """Record that MESH's data dir belongs to its spec (after `check_identity`)."""
    mine = spec_identity(mesh)
    if mine is None or recorded_spec(mesh) == mine:
        return
    write_atomic(_identity_file(mesh), json.dumps({"mesh": mesh.name, "spec": mine}, indent=1) + "\n")


# ---------------------------------------------------------------------------------------------------------------
# The meshes running on this machine


@dataclass(frozen=True)
class Running:
    """A mesh `up` started: its name, spec, data dir, and the directory it was started from."""

    mesh: str
    spec: str
    data_dir: str
    cwd: str
    started: float

    @property
    def spec_shown(self) -> str:
        return _shown(self.spec)


def state_dir() -> Path:
    env = os.environ.get(STATE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "natsmesh" / "meshes"


def _entry_file(data_dir: Path) -> Path:
    return state_dir() / f"{hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:20]}.json"


def register(mesh: Mesh, cwd: Path | None = None) -> None:
    """List MESH as running, started from CWD (default: this process's working directory). Best effort: a state
    dir that cannot be written only costs the convenience."""
    spec = spec_identity(mesh)
    if spec is None:
        return
    entry = Running(mesh.name, spec, str(mesh.data_dir), str((cwd or Path.cwd()).resolve()), time.time())
    try:
        state_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(_entry_file(mesh.data_dir), json.dumps(asdict(entry)) + "\n")
    except OSError:
        pass


def unregister(mesh: Mesh) -> None:
    with contextlib.suppress(OSError):
        _entry_file(mesh.data_dir).unlink()


def running() -> list[Running]:
    """Every mesh listed as running whose supervisor still holds its lock; stale entries are removed."""
    out = []
    try:
        files = sorted(state_dir().glob("*.json"))
    except OSError:
        return []
    for f in files:
        try:
            doc = json.loads(f.read_text())
            entry = Running(**{k: doc[k] for k in ("mesh", "spec", "data_dir", "cwd", "started")})
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _held(Path(entry.data_dir)):
            out.append(entry)
        else:
            f.unlink(missing_ok=True)
    return out


def _held(data_dir: Path) -> bool:
    return lock_held_at(MeshDirs(data_dir, data_dir / "tls").lock)


def started_here(cwd: Path | None = None) -> list[Running]:
    """The running meshes `up` was started from CWD (default: here), newest first."""
    here = str((cwd or Path.cwd()).resolve())
    return sorted((r for r in running() if r.cwd == here), key=lambda r: -r.started)


def elsewhere_hint() -> str:
    """What runs on this machine, for a message about a mesh that does not run ("" if nothing does)."""
    found = running()
    if not found:
        return ""
    listed = "; ".join(f"{r.mesh} ({r.spec_shown}; data in {r.data_dir})" for r in found[:5])
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    return f"; running on this machine: {listed}{more}"
