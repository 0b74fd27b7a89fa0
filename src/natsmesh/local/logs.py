"""The nodes' log files (`natsmesh logs`): which ones a name means, their last lines, and the lines they gain.

The supervisor writes each node's output to `<data_dir>/logs/<node>.log` (`natsmesh.local.layout`); a party's
folder keeps its own nodes' logs in `<folder>/logs/` when its hosts write them there.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from natsmesh.errors import NotRunningError, UnknownDomainError
from natsmesh.local.layout import MeshDirs
from natsmesh.model.mesh import Mesh
from natsmesh.model.units import parse_duration

LINE_TIME = re.compile(r"^\[\d+\] (\d{4}/\d\d/\d\d \d\d:\d\d:\d\d)")  # nats-server: `[pid] 2026/12/08 02:08:53.0…`
CHUNK = 64 * 1024  # bytes read back from a file's end at a time when looking for its last lines
POLL = 0.2  # seconds between looks at a followed file


def log_files(mesh: Mesh, which: str | None = None) -> dict[str, Path]:
    """Node -> its log file, for node or cluster WHICH (None: every node), in the mesh's order;
    `UnknownDomainError` naming the nodes and clusters if WHICH is neither; `NotRunningError` if none exists."""
    if which is None:
        nodes = [n.name for n in mesh.nodes()]
    elif which in {n.name for n in mesh.nodes()}:
        nodes = [which]
    elif which in {c.name for c in mesh.clusters}:
        nodes = [n.name for n in mesh.domain(which).nodes]
    else:
        names = [c.name for c in mesh.clusters]
        clusters = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        raise UnknownDomainError(
            f"mesh {mesh.name!r} has no node or cluster {which!r} (clusters: {clusters}; `natsmesh status` lists "
            "the nodes)"
        )
    dirs = MeshDirs.of(mesh)
    found = {n: dirs.log(n) for n in nodes if dirs.log(n).is_file()}
    if not found:
        raise NotRunningError(
            f"no log file of {which or 'any node'} in {dirs.logs}: the mesh has not run here (on hosts of its own, "
            "each host's service manager keeps its node's output: `journalctl -u UNIT`)"
        )
    return found


def since_time(text: str, now: float | None = None) -> datetime:
    """`--since`: a duration back from NOW (`10m`, `2h`) or a local time (`2026-12-08 02:08:53`, ISO)."""
    try:
        return datetime.fromtimestamp((now if now is not None else time.time()) - parse_duration(text))
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected a duration (10m, 2h) or a time (2026-12-08 02:08:53), got {text!r}") from None


def line_time(line: str) -> datetime | None:
    """When nats-server wrote LINE (its local time), None for a line that does not say (a continuation)."""
    m = LINE_TIME.match(line)
    return datetime.strptime(m.group(1), "%Y/%m/%d %H:%M:%S") if m else None


def last_lines(path: Path, count: int) -> list[str]:
    """The last COUNT lines of PATH (read back from its end, not the whole file)."""
    if count <= 0:
        return []
    with path.open("rb") as f:
        end = f.seek(0, os.SEEK_END)
        data, pos = b"", end
        while pos > 0 and data.count(b"\n") <= count:
            pos = max(0, pos - CHUNK)
            f.seek(pos)
            data = f.read(end - pos)
    return data.decode(errors="replace").splitlines()[-count:]


def recent(path: Path, count: int, since: datetime | None = None) -> list[str]:
    """The last COUNT lines of PATH, only those written at or after SINCE (a line without a time goes with the
    one before it)."""
    lines = last_lines(path, count)
    if since is None:
        return lines
    out: list[str] = []
    keep = False
    for line in lines:
        at = line_time(line)
        keep = at >= since if at is not None else keep
        if keep:
            out.append(line)
    return out


@dataclass
class Follower:
    """The lines files gain from now on: each file read from where it ends now (from its start again if it is
    replaced or cut)."""

    files: dict[str, Path]
    offsets: dict[str, int] = field(default_factory=dict)
    partial: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, path in self.files.items():
            self.offsets[name] = path.stat().st_size if path.exists() else 0

    def new_lines(self) -> Iterator[tuple[str, str]]:
        """(node, line) for every whole line written since the last look."""
        for name, path in self.files.items():
            try:
                size = path.stat().st_size
            except OSError:
                continue
            if size < self.offsets[name]:  # rotated or truncated: read it from its start
                self.offsets[name], self.partial[name] = 0, b""
            if size == self.offsets[name]:
                continue
            with path.open("rb") as f:
                f.seek(self.offsets[name])
                data = self.partial.pop(name, b"") + f.read(size - self.offsets[name])
            self.offsets[name] = size
            *whole, rest = data.split(b"\n")
            if rest:
                self.partial[name] = rest
            for raw in whole:
                yield name, raw.decode(errors="replace")

    def run(self, say: Callable[[str, str], None], stop: Callable[[], bool] = lambda: False) -> None:
        """Say each new line until STOP (or Ctrl-C)."""
        while not stop():
            for name, line in self.new_lines():
                say(name, line)
            time.sleep(POLL)
