"""Bring-up of the default (seed) mesh: `natsmesh up --detach` against a bare baseline, in the same run.

Both sides start the same rendered configs from empty data directories and wait for the same readiness
condition (every node healthy, a meta leader per cluster, every leaf linked in both accounts):

- cli:  `natsmesh up --detach` as a user runs it, timed from exec until it returns ready, with the spec
        already validated once (natsmesh caches validated specs by content, as on every run after the first);
- cli_cold: the same with an empty spec cache, as on the very first run of a new spec;
- bare: a separate Python process (`bare_up.py`) that starts the servers in a plain loop and runs the same
        readiness poll, timed from exec until it prints READY;
- api:  `lifecycle.up_detached()` inside this process, against the bare loop run inside this process too;
- seed: the seed's own configs (plain passwords, one shared data account, leaf remotes to hub-server-0 only, no
        route authorization, limits or TLS; an HTTP port added so readiness can be seen) started by the same
        plain loop (`bare_up.py`): what the issue's shell loop measured;
- restart / bare_restart: `natsmesh up --detach` of a stopped mesh with its stores, against the plain loop over
        the same configs and stores (both wait out the Raft elections of a restart).

Runs alternate between the sides; the figure is the ratio of medians. Also the whole mesh's RSS once ready.
Usage: python benchmarks/bench_bringup.py [--runs N] [--json FILE]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import natsmesh
from natsmesh.local import binary
from natsmesh.local.files import write_files
from natsmesh.local.secrets import load_credentials
from natsmesh.local.specfile import ALLOWED_DIRS_ENV, parse_spec
from natsmesh.model.mesh import Mesh
from natsmesh.model.templates import seed_spec_text
from natsmesh.model.topology import Node, block_size
from natsmesh.observe.readiness import targets, wait_ready
from natsmesh.render.servers import config_name, render_mesh
from natsmesh.run import lifecycle
from natsmesh.run.ports import free_port_base, port_problem

HERE = Path(__file__).resolve().parent
GOAL = 1.25
# Benchmarks keep their meshes' data in temporary dirs, outside the specs' folders: allowed, as the platform would.
os.environ.setdefault(ALLOWED_DIRS_ENV, tempfile.gettempdir())


def machine() -> dict[str, object]:
    mem_kb = int(
        next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")).split()[1]
    )
    model = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kb / 1024**2, 1),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "nats_server": binary.resolve().version_text,
        "date": time.strftime("%Y-%m-%d"),
    }


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


PORT_BASE: list[int] = []
DOWN: list[float] = []  # `natsmesh down` of the idle mesh each cli run brought up
BARE_STOP: list[float] = []  # the plain loop's stop of the same configs (bare_process): SIGTERM to all, wait


def fresh_mesh(root: Path, label: str) -> tuple[Mesh, Path]:
    """The seed topology on free ports with an empty data dir; returns the mesh and its spec file.

    Every run uses the same ports (checked free again each time), so the spec text is the same each run.
    """
    data = root / label
    if data.exists():
        shutil.rmtree(data)
    count = block_size(3) * 6
    if not PORT_BASE or any(port_problem("127.0.0.1", p) for p in range(PORT_BASE[0], PORT_BASE[0] + count)):
        PORT_BASE[:] = [free_port_base(count)]
    text = seed_spec_text(base=PORT_BASE[0]) + f"data_dir: {data}\n"
    spec = root / f"{label}.yaml"
    spec.write_text(text)
    return parse_spec(text, source=str(spec), base_dir=root), spec


def bare_layout(mesh: Mesh, root: Path) -> Path:
    """Render the same configs natsmesh would into an empty dir and describe them for bare_up.py."""
    out = root / "bare-data"
    if out.exists():
        shutil.rmtree(out)
    write_files(render_mesh(mesh, load_credentials(mesh)), out)
    doc = {
        "nodes": [
            {"conf": config_name(n), "cwd": str(out / mesh.cluster_of(n.name).folder), "target": t.__dict__}
            for n, t in zip(mesh.nodes(), targets(mesh), strict=True)
        ]
    }
    path = root / "bare.json"
    path.write_text(json.dumps(doc))
    return path


def run_bare_process(mesh: Mesh, root: Path, server: str, stop_timeout: float = 30) -> tuple[float, int]:
    desc = bare_layout(mesh, root)
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "bare_up.py"), str(desc), server],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline()
    elapsed = time.monotonic() - start
    if not line.startswith("READY"):
        proc.kill()
        raise RuntimeError(f"bare baseline failed: {line!r}")
    rss = rss_bytes([int(p) for p in line.split()[2:]])
    start = time.monotonic()
    proc.stdin.write("\n")
    proc.stdin.flush()
    proc.wait(stop_timeout)
    BARE_STOP.append(time.monotonic() - start)
    return elapsed, rss


def seed_config(mesh: Mesh, node: Node) -> str:
    """NODE's config as the seed wrote it (seed.md), on this mesh's ports, plus an HTTP port for readiness."""
    cluster = mesh.cluster_of(node.name)
    hub0 = mesh.hub.nodes[0]
    routes = ", ".join(f"nats://127.0.0.1:{n.cluster_port}" for n in cluster.nodes)
    lines = [
        f"server_name: {node.name}",
        f"listen: 127.0.0.1:{node.client_port}",
        f"http: 127.0.0.1:{node.http_port}",
        f'jetstream {{ store_dir: "./store/{node.name}", domain: {cluster.name} }}',
        f"cluster {{ name: {cluster.name}, listen: 127.0.0.1:{node.cluster_port}, routes: [{routes}] }}",
        "accounts {",
        "  SYS: { users: [{ user: admin, password: password }] }",
        "  APP: { jetstream: enabled, users: [{ user: app, password: app }] }",
        "}",
        "system_account: SYS",
    ]
    if cluster.is_hub:
        lines.append(f"leafnodes {{ listen: 127.0.0.1:{node.leafnode_port} }}")
    else:
        url = f"127.0.0.1:{hub0.leafnode_port}"
        lines.append(
            f'leafnodes {{ remotes: [{{ url: "nats://admin:password@{url}", account: SYS }}, '
            f'{{ url: "nats://app:app@{url}", account: APP }}] }}'
        )
    return "\n".join(lines) + "\n"


def seed_layout(mesh: Mesh, root: Path) -> Path:
    """The seed's own configs for MESH's nodes in an empty dir, described for bare_up.py."""
    out = root / "seed-data"
    if out.exists():
        shutil.rmtree(out)
    nodes = []
    for node, t in zip(mesh.nodes(), targets(mesh), strict=True):
        folder = out / mesh.cluster_of(node.name).folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / config_name(node)).write_text(seed_config(mesh, node))
        target = t.__dict__ | {"link_accounts": ["SYS", "APP"] if t.leaf else []}
        nodes.append({"conf": config_name(node), "cwd": str(folder), "target": target})
    path = root / "seed.json"
    path.write_text(json.dumps({"nodes": nodes}))
    return path


def run_described(desc: Path, server: str, stop_timeout: float = 30) -> float:
    """bare_up.py over the configs DESC describes: seconds from exec until it prints READY."""
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "bare_up.py"), str(desc), server], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline().decode()
    elapsed = time.monotonic() - start
    if not line.startswith("READY"):
        proc.kill()
        raise RuntimeError(f"plain loop failed: {line!r}")
    proc.stdin.write(b"\n")
    proc.stdin.flush()
    proc.wait(stop_timeout)
    return elapsed


def restart_pair(root: Path, server: str, cli_first: bool) -> tuple[float, float]:
    """A seed mesh brought up once (streams: none, stores: its meta state) and stopped; then `natsmesh up` of it
    and the plain loop over the same configs and stores, in the order given. Returns (natsmesh, plain)."""
    mesh, spec = fresh_mesh(root, "restart")
    exe = Path(sys.executable).parent / "natsmesh"
    lifecycle.up_detached(mesh, owner_pid=os.getpid())
    lifecycle.down(mesh)
    desc = {
        "nodes": [
            {"conf": config_name(n), "cwd": str(mesh.data_dir / mesh.cluster_of(n.name).folder), "target": t.__dict__}
            for n, t in zip(mesh.nodes(), targets(mesh), strict=True)
        ]
    }
    path = root / "restart.json"
    path.write_text(json.dumps(desc))
    out: dict[str, float] = {}
    for side in ("cli", "plain") if cli_first else ("plain", "cli"):
        if side == "cli":
            start = time.monotonic()
            subprocess.run([str(exe), "up", "--detach", "-f", str(spec)], check=True, capture_output=True)
            out["cli"] = time.monotonic() - start
            lifecycle.down(mesh)
        else:
            out["plain"] = run_described(path, server)
    return out["cli"], out["plain"]


def run_bare_inprocess(mesh: Mesh, root: Path, server: str) -> float:
    desc = json.loads(bare_layout(mesh, root).read_text())
    start = time.monotonic()
    procs = [
        subprocess.Popen([server, "-c", n["conf"]], cwd=n["cwd"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for n in desc["nodes"]
    ]
    try:
        wait_ready(mesh, timeout=60)
        return time.monotonic() - start
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


def run_cli(root: Path, cold: bool = False) -> tuple[float, int, int]:
    mesh, spec = fresh_mesh(root, "cli")
    exe = Path(sys.executable).parent / "natsmesh"
    env = dict(os.environ)
    if cold:
        cache = root / "empty-cache"
        shutil.rmtree(cache, ignore_errors=True)
        env["NATSMESH_CACHE_DIR"] = str(cache)
    start = time.monotonic()
    res = subprocess.run(
        [str(exe), "up", "--detach", "-f", str(spec), "--json"], capture_output=True, text=True, env=env
    )
    elapsed = time.monotonic() - start
    if res.returncode != 0:
        raise RuntimeError(f"natsmesh up failed: {res.stderr}")
    state = json.loads((mesh.data_dir / "run" / "state.json").read_text())
    rss = rss_bytes([n["pid"] for n in state["nodes"].values()])
    sup_rss = rss_bytes([state["pid"]])
    start = time.monotonic()
    subprocess.run([str(exe), "down", "-f", str(spec)], check=True, capture_output=True, env=env)
    DOWN.append(time.monotonic() - start)
    return elapsed, rss, sup_rss


def run_api(root: Path) -> float:
    mesh, _ = fresh_mesh(root, "api")
    start = time.monotonic()
    lifecycle.up_detached(mesh, owner_pid=os.getpid())
    elapsed = time.monotonic() - start
    lifecycle.down(mesh)
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()
    server = binary.resolve().path
    # Bytecode for natsmesh's modules, as a wheel's install writes it: with PYTHONDONTWRITEBYTECODE set (as on
    # the machines here) an editable install would otherwise compile ~45 modules on every run (~80 ms).
    compileall.compile_dir(Path(natsmesh.__file__).parent, quiet=1)
    root = Path(tempfile.mkdtemp(prefix="natsmesh-bench-"))
    res: dict[str, list[float]] = {
        "cli": [],
        "cli_cold": [],
        "bare_process": [],
        "seed_process": [],
        "api": [],
        "bare_inprocess": [],
        "restart": [],
        "bare_restart": [],
    }
    rss: dict[str, list[int]] = {"cli": [], "bare_process": [], "supervisor": []}
    try:
        for i in range(args.runs):
            # Alternate the order so drift on a noisy machine hits both sides alike.
            sides = ["cli", "bare_process", "seed_process", "cli_cold", "api", "bare_inprocess", "restart"]
            if i % 2:
                sides.reverse()
            for side in sides:
                if side == "cli":
                    t, r, sup = run_cli(root)
                    rss["cli"].append(r)
                    rss["supervisor"].append(sup)
                elif side == "cli_cold":
                    t, _, _ = run_cli(root, cold=True)
                elif side == "bare_process":
                    mesh, _ = fresh_mesh(root, "bare")
                    t, r = run_bare_process(mesh, root, server)
                    rss["bare_process"].append(r)
                elif side == "seed_process":
                    mesh, _ = fresh_mesh(root, "seed")
                    t = run_described(seed_layout(mesh, root), server)
                elif side == "api":
                    t = run_api(root)
                elif side == "restart":
                    t, plain = restart_pair(root, server, cli_first=i % 2 == 0)
                    res["bare_restart"].append(plain)
                else:
                    mesh, _ = fresh_mesh(root, "bare")
                    t = run_bare_inprocess(mesh, root, server)
                res[side].append(t)
            print(
                f"run {i + 1}/{args.runs}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in res.items()), file=sys.stderr
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in res.items()}
    cli_ratio = med["cli"] / med["bare_process"]
    api_ratio = med["api"] / med["bare_inprocess"]
    cold_ratio = med["cli_cold"] / med["bare_process"]
    seed_ratio = med["cli"] / med["seed_process"]
    restart_ratio = med["restart"] / med["bare_restart"]
    report = {
        "benchmark": "bringup",
        "machine": machine(),
        "runs": args.runs,
        "seconds": res,
        "median_seconds": med,
        "ratio_cli_vs_bare_process": round(cli_ratio, 3),
        "ratio_api_vs_bare_inprocess": round(api_ratio, 3),
        "ratio_cli_cold_cache_vs_bare_process": round(cold_ratio, 3),
        "ratio_cli_vs_seed_configs": round(seed_ratio, 3),
        "ratio_restart_vs_bare_restart": round(restart_ratio, 3),
        "goal": GOAL,
        "goal_met": cli_ratio <= GOAL and api_ratio <= GOAL and seed_ratio <= GOAL,
        "mesh_rss_mib": {k: round(statistics.median(v) / 1024**2, 1) for k, v in rss.items()},
        "down_seconds": DOWN,
        "plain_stop_seconds": BARE_STOP,
    }
    print(f"machine: {report['machine']}")
    print(f"{'side':<16}{'median s':>10}{'min s':>10}{'max s':>10}")
    for k, v in res.items():
        print(f"{k:<16}{med[k]:>10.3f}{min(v):>10.3f}{max(v):>10.3f}")
    print(f"natsmesh up --detach vs bare process: {cli_ratio:.2f}x (goal <= {GOAL}x)")
    print(f"lifecycle.up_detached vs bare in-process loop: {api_ratio:.2f}x (goal <= {GOAL}x)")
    print(f"first run of a new spec (empty spec cache) vs bare process: {cold_ratio:.2f}x")
    print(f"natsmesh up --detach vs the plain loop over the seed's own configs: {seed_ratio:.2f}x (goal <= {GOAL}x)")
    print(f"up of a stopped mesh with its stores vs a plain restart of the same stores: {restart_ratio:.2f}x")
    print(
        f"natsmesh down of the idle mesh: median {statistics.median(DOWN):.2f} s, max {max(DOWN):.2f} s (goal <= 2 s); "
        f"the plain loop's SIGTERM-and-wait: median {statistics.median(BARE_STOP):.2f} s"
    )
    mib = report["mesh_rss_mib"]
    print(
        f"RSS once ready, 18 servers: natsmesh {mib['cli']} MiB (+ supervisor {mib['supervisor']} MiB), "
        f"bare {mib['bare_process']} MiB"
    )
    print(f"goal met: {report['goal_met']}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
