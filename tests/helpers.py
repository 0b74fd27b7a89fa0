"""What tests share besides fixtures: meshes on free ports chosen at run time, a runner that guarantees they are
down afterwards, the CLI run as a user runs it (and `natsmesh serve`), a check for servers left running, and the
contents of a domain's streams to compare before and after."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from nats.aio.client import Client

from natsmesh.local.specfile import parse_spec
from natsmesh.local.state import SupervisorState, lock_is_held
from natsmesh.model.mesh import Mesh
from natsmesh.model.templates import init_spec_text, seed_spec_text
from natsmesh.model.topology import block_size, plan_ports
from natsmesh.observe.streams import list_streams
from natsmesh.run import lifecycle
from natsmesh.run.ports import free_port_base
from natsmesh.run.supervisor import RestartPolicy

EXAMPLES = Path(__file__).parent.parent / "examples"
FAST_RESTART = RestartPolicy(initial=0.1, maximum=1.0, limit=5, window=60.0)


def with_keys(text: str, **keys: Any) -> str:
    """Spec TEXT with top-level KEYS set (a spec may name each key once, so they cannot just be appended)."""
    doc = yaml.safe_load(text)
    doc.update(keys)
    return yaml.safe_dump(doc, sort_keys=False)


def seed_on_free_ports(data_dir: Path) -> str:
    """The seed topology (names, clusters, domains as in the seed) moved onto free ports, with one declared
    share: leaf-domain-b may mirror leaf-domain-a's ORDERS (isolation lets nothing else cross)."""
    base = free_port_base(block_size(3) * 6)
    doc = yaml.safe_load(seed_spec_text(base=base))
    doc["domains"][0]["products"] = [{"name": "ORDERS", "subjects": ["leaf-domain-a.orders.>"]}]
    doc["domains"][1]["consumes"] = [{"product": "leaf-domain-a/ORDERS", "as": "ORDERS_FROM_A"}]
    doc["data_dir"] = str(data_dir)
    doc["leafnodes"] = {"system_bridge": True}  # the seed's one request at the hub, through restricted links
    return yaml.safe_dump(doc, sort_keys=False)


def example_on_free_ports(name: str, data_dir: Path) -> str:
    """An example spec from examples/ with every cluster moved onto free ports and data under DATA_DIR."""
    doc = yaml.safe_load((EXAMPLES / name).read_text())
    clusters = [doc["hub"], *doc.get("domains", [])]
    block = block_size(max(c.get("nodes", 3) for c in clusters))
    base = free_port_base(block * len(clusters))
    for k, c in enumerate(clusters):
        c["ports"] = plan_ports(base, block, k, c.get("nodes", 3), c is doc["hub"]).as_spec()
    doc["data_dir"] = str(data_dir)
    return yaml.safe_dump(doc, sort_keys=False)


def small_mesh_text(data_dir: Path, *, domains: int = 2, nodes: int = 1, hub_nodes: int = 1, name: str = "t") -> str:
    block = block_size(max(nodes, hub_nodes))
    base = free_port_base(block * (domains + 1))
    text = init_spec_text(name=name, domains=domains, nodes=nodes, hub_nodes=hub_nodes, base=base)
    return text + f"data_dir: {data_dir}\n"


def read_state(mesh: Mesh) -> dict[str, Any] | None:
    """The supervisor's state file as its JSON document (what other processes read of it)."""
    state = SupervisorState.read(mesh)
    return state.to_json() if state else None


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

    def up_file(self, doc: dict[str, Any], name: str, chaos: bool = False) -> tuple[Mesh, Path]:
        """The spec DOC written to NAME (the file to give `natsmesh` commands) and its mesh brought up."""
        spec = self.write(yaml.safe_dump(doc, sort_keys=False), name)
        return self.up(self.load(spec.read_text()), chaos=chaos), spec

    def close(self) -> None:
        for mesh in self.started:
            if lock_is_held(mesh):
                lifecycle.down(mesh)


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


def natsmesh_exe() -> str:
    """The `natsmesh` console script installed next to this Python."""
    return shutil.which("natsmesh", path=str(Path(sys.executable).parent)) or "natsmesh"


def run_cli(
    *args: str,
    cwd: Path | None = None,
    timeout: float = 90.0,
    env: dict[str, str] | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the installed `natsmesh` console script as a user would (INPUT: its stdin; none by default)."""
    return subprocess.run(
        [natsmesh_exe(), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


CliRunner = Callable[..., subprocess.CompletedProcess[str]]


def wait_http(url: str, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    """Until URL answers (PROC, the process that serves it, must stay alive meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{proc.args} exited"
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def stop(proc: subprocess.Popen[str]) -> None:
    """Terminate PROC if it still runs, and kill it if it has not ended 15 s later."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_http(
    args: list[str], ready: str, cwd: Path | None = None, output: int = subprocess.DEVNULL
) -> subprocess.Popen[str]:
    """Start ARGS (its stdout and stderr to OUTPUT) and wait until the URL READY answers; stopped again if not."""
    proc = subprocess.Popen(args, cwd=cwd, stdout=output, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(ready, proc)
    except BaseException:
        stop(proc)
        raise
    return proc


def start_serve(
    spec: Path,
    port: int,
    *extra: str,
    bundle: Path | None = None,
    cwd: Path | None = None,
    output: int = subprocess.PIPE,
) -> subprocess.Popen[str]:
    """`natsmesh serve` of SPEC (or, with BUNDLE, of that party's folder) on PORT with a 1 s cache and EXTRA
    options, once it answers /healthz; its output (stdout and stderr) to OUTPUT, a pipe unless told."""
    head = [natsmesh_exe(), *(["--bundle", str(bundle)] if bundle else [])]
    tail = [] if bundle else ["-f", str(spec)]
    args = [*head, "serve", *tail, "--port", str(port), "--cache", "1", *extra]
    return start_http(args, f"http://127.0.0.1:{port}/healthz", cwd=cwd, output=output)


async def stream_contents(nc: Client) -> dict[str, tuple[int, int, int, str]]:
    """Every stream of NC's domain but KV buckets: its count, first and last sequence, and a hash of every
    message in it (sequence, subject and data)."""
    js = nc.jetstream()
    out = {}
    for name, info in sorted((await list_streams(nc)).items()):
        if name.startswith("KV_"):
            continue
        msgs = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1) if info.state.messages else ():
            m = await js.get_msg(name, seq)
            msgs.append(f"{m.seq or 0}|{m.subject or ''}|".encode() + (m.data or b""))
        digest = hashlib.sha256(b"".join(msgs)).hexdigest()
        out[name] = (info.state.messages, info.state.first_seq, info.state.last_seq, digest)
    return out


# Browser tests: the Debian chromium, headless (Playwright with executable_path)
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
