"""The nodes' log files (`natsmesh.local.logs`), without servers: which files a name means, the last lines and
those since a time, and the lines a followed file gains (cut lines, a file replaced). `logs -F` against a running
node is in `tests/test_service_users.py`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import yaml

from natsmesh.errors import NotRunningError, UnknownDomainError
from natsmesh.local.layout import MeshDirs
from natsmesh.local.logs import Follower, last_lines, log_files, recent, since_time
from natsmesh.local.specfile import parse_spec
from natsmesh.model.mesh import Mesh


@pytest.fixture
def mesh(tmp_path: Path) -> Mesh:
    doc = {"name": "logs", "data_dir": str(tmp_path / "data"), "hub": {"name": "hub", "nodes": 1},
           "domains": [{"name": "sales", "nodes": 2}]}  # fmt: skip
    return parse_spec(yaml.safe_dump(doc), base_dir=tmp_path, cache=False)


def _line(t: str, text: str) -> str:
    return f"[42] 2026/12/08 {t}.000001 [INF] {text}\n"


def test_a_name_means_a_node_a_cluster_or_every_node_and_anything_else_is_a_clear_error(mesh: Mesh) -> None:
    with pytest.raises(NotRunningError, match="no log file of any node"):
        log_files(mesh)
    dirs = MeshDirs.of(mesh)
    dirs.logs.mkdir(parents=True)
    for n in mesh.nodes():
        dirs.log(n.name).write_text(_line("01:00:00", f"{n.name} up"))
    assert list(log_files(mesh)) == ["hub-server-0", "sales-0", "sales-1"]
    assert list(log_files(mesh, "sales")) == ["sales-0", "sales-1"]
    assert list(log_files(mesh, "sales-1")) == ["sales-1"]
    with pytest.raises(UnknownDomainError, match="no node or cluster 'nope' \\(clusters: hub, sales"):
        log_files(mesh, "nope")


def test_last_lines_and_those_since_a_time(tmp_path: Path) -> None:
    path = tmp_path / "n.log"
    path.write_text("".join(_line(f"01:{m:02d}:00", f"line {m}") for m in range(60)) + "  a continuation\n")
    assert last_lines(path, 2) == [_line("01:59:00", "line 59").rstrip("\n"), "  a continuation"]
    assert last_lines(path, 0) == []
    assert len(last_lines(path, 1000)) == 61
    since = recent(path, 1000, datetime(2026, 12, 8, 1, 58))
    assert [s.split("[INF] ")[-1] for s in since] == ["line 58", "line 59", "  a continuation"]
    assert since_time("2026-12-08 01:58:00") == datetime(2026, 12, 8, 1, 58)
    assert since_time("10m", now=datetime(2026, 12, 8, 2, 0).timestamp()) == datetime(2026, 12, 8, 1, 50)
    with pytest.raises(ValueError, match="expected a duration"):
        since_time("yesterday-ish")


def test_a_followed_file_gives_each_new_whole_line_once(tmp_path: Path) -> None:
    path = tmp_path / "n.log"
    path.write_text(_line("01:00:00", "old"))
    f = Follower({"n": path})
    assert list(f.new_lines()) == []
    with path.open("a") as out:
        out.write(_line("01:00:01", "new") + "[42] half a li")
    assert [line.split("[INF] ")[-1] for _, line in f.new_lines()] == ["new"]
    with path.open("a") as out:
        out.write("ne\n")
    assert [line for _, line in f.new_lines()] == ["[42] half a line"]
    path.write_text(_line("01:00:02", "after a restart"))  # replaced, shorter: read from its start
    assert [line.split("[INF] ")[-1] for _, line in f.new_lines()] == ["after a restart"]
