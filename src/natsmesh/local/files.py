"""Writing files the way the data dir needs them: atomically, and private where they hold secrets."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_SUFFIXES = (".conf", "-key.pem", "secrets.json", ".creds")  # rendered files that hold secrets


def write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only, atomically, creating a 0700 parent if needed."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write_atomic(path: Path, text: str) -> None:
    """Replace PATH with TEXT in one step (a reader sees the old or the new file, never half of one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_files(files: dict[str, str], out_dir: Path) -> list[Path]:
    """Write rendered files under OUT_DIR (configs hold secrets: owner-readable only); a file that already says
    the same is left as it is (at 500 clusters, rewriting every folder for one change took seconds). Returns the
    paths."""
    written = []
    for rel, text in files.items():
        path = out_dir / rel
        private = rel.endswith(PRIVATE_SUFFIXES)
        if _holds(path, text, 0o600 if private else 0o644):
            written.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.chmod(0o600 if private else 0o644)
        tmp.replace(path)
        written.append(path)
    return written


def _holds(path: Path, text: str, mode: int) -> bool:
    """Whether PATH is a regular file with exactly TEXT and MODE."""
    try:
        return (path.stat().st_mode & 0o777) == mode and path.read_text() == text
    except (OSError, UnicodeDecodeError):
        return False
