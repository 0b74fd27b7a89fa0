"""Shared fixtures: free port ranges chosen at run time, meshes in temporary directories, and a check that
no nats-server outlives the test that started it."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from natsmesh import lifecycle
from natsmesh.ports import free_port_base
from natsmesh.spec import CACHE_ENV, Mesh, block_size, init_spec_text, parse_spec, seed_spec_text
from natsmesh.supervisor import RestartPolicy, lock_is_held


def seed_on_free_ports(data_dir: Path) -> str:
    """The seed topology (names, clusters, domains as in the seed) moved onto free ports, with one declared
    share: leaf-domain-b may mirror leaf-domain-a's ORDERS (isolation lets nothing else cross)."""
    import yaml

    base = free_port_base(block_size(3) * 6)
    doc = yaml.safe_load(seed_spec_text(base=base))
    doc["domains"][0]["products"] = [{"name": "ORDERS", "subjects": ["leaf-domain-a.orders.>"]}]
    doc["domains"][1]["consumes"] = [{"product": "leaf-domain-a/ORDERS", "as": "ORDERS_FROM_A"}]
    doc["data_dir"] = str(data_dir)
    return yaml.safe_dump(doc, sort_keys=False)


EXAMPLES = Path(__file__).parent.parent / "examples"


def example_on_free_ports(name: str, data_dir: Path) -> str:
    """An example spec from examples/ with every cluster moved onto free ports and data under DATA_DIR."""
    import yaml

    doc = yaml.safe_load((EXAMPLES / name).read_text())
    clusters = [doc["hub"], *doc.get("domains", [])]
    block = block_size(max(c.get("nodes", 3) for c in clusters))
    base = free_port_base(block * len(clusters))
    for k, c in enumerate(clusters):
        start, n = base + k * block, c.get("nodes", 3)
        c["ports"] = {"client": start, "cluster": start + n, "http": start + 2 * n}
        if c is doc["hub"]:
            c["ports"]["leafnode"] = start + 3 * n
    doc["data_dir"] = str(data_dir)
    return yaml.safe_dump(doc, sort_keys=False)


def small_mesh_text(data_dir: Path, *, domains: int = 2, nodes: int = 1, hub_nodes: int = 1, name: str = "t") -> str:
    block = block_size(max(nodes, hub_nodes))
    base = free_port_base(block * (domains + 1))
    text = init_spec_text(name=name, domains=domains, nodes=nodes, hub_nodes=hub_nodes, base=base)
    return text + f"data_dir: {data_dir}\n"


@pytest.fixture(autouse=True, scope="session")
def _private_spec_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Validated-spec cache in a temporary dir, for this run and the CLI processes it starts."""
    old = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("spec-cache"))
    yield
    if old is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = old


FAST_RESTART = RestartPolicy(initial=0.1, maximum=1.0, limit=5, window=60.0)


class MeshRunner:
    """Starts meshes for a test and guarantees they are down afterwards."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[Mesh] = []

    def write(self, text: str, name: str = "mesh.yaml") -> Path:
        path = self.tmp / name
        path.write_text(text)
        return path

    def load(self, text: str) -> Mesh:
        return parse_spec(text, source="test", base_dir=self.tmp)

    def up(self, mesh: Mesh, timeout: float = 60.0, chaos: bool = False) -> Mesh:
        self.started.append(mesh)
        lifecycle.up_detached(mesh, timeout=timeout, owner_pid=os.getpid(), policy=FAST_RESTART, chaos=chaos)
        return mesh

    def close(self) -> None:
        for mesh in self.started:
            if lock_is_held(mesh):
                lifecycle.down(mesh)


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[MeshRunner]:
    r = MeshRunner(tmp_path)
    try:
        yield r
    finally:
        r.close()
        leftovers = servers_under(tmp_path)
        for pid in leftovers:
            os.kill(pid, signal.SIGKILL)
        assert not leftovers, f"nats-server processes left running: {leftovers}"


def servers_under(path: Path) -> list[int]:
    """PIDs of nats-server processes whose working directory lies under PATH."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if "nats-server" not in (entry / "comm").read_text():
                continue
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(path)):
            out.append(int(entry.name))
    return out


@pytest.fixture(scope="module")
def seed_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """The seed topology (18 servers) running on free ports, shared by a module's read-mostly tests."""
    tmp = tmp_path_factory.mktemp("seed")
    r = MeshRunner(tmp)
    mesh = r.load(seed_on_free_ports(tmp / "data"))
    r.up(mesh)
    try:
        yield mesh
    finally:
        r.close()
        assert not servers_under(tmp)


def run_cli(
    *args: str,
    cwd: Path | None = None,
    timeout: float = 90.0,
    env: dict[str, str] | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the installed `natsmesh` console script as a user would (INPUT: its stdin; none by default)."""
    import shutil
    import sys

    exe = shutil.which("natsmesh", path=str(Path(sys.executable).parent)) or "natsmesh"
    return subprocess.run(
        [exe, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


CliRunner = Callable[..., subprocess.CompletedProcess[str]]
