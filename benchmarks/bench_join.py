"""Join time: a new domain on a running mesh of N single-node spokes (3-node hub), operator mode against config mode.

For each size N, from empty data directories, the same mesh in each mode (`trust: operator`, `trust: config`):
`up --detach`, `apply` (one product on the first spoke, 1,000 messages in it), then the spec gains one domain
that mirrors that product, and the clock runs from the command until the new domain's mirror holds all 1,000:

- operator: `natsmesh apply` (the account pushed, the new cluster started under the running supervisor, the
  mirror made); no hub server restarts or reloads (checked: hub pids and `config_load_time` unchanged);
- config: what natsmesh offers on one machine for a new cluster in config mode, where every account is in the
  hub's configs: `natsmesh down`, `natsmesh up --detach`, `natsmesh apply` (stores kept).

Printed: per size and mode, the bring-up time (`up --detach` from empty data directories), the join time, when
the new leaf linked (operator: from the join's start), the hub RSS per account and per leaf link (operator, from
the sizes' difference), and the machine.

Usage: python benchmarks/bench_join.py [--sizes 10 200 500] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

import natsmesh
from natsmesh.client import MeshClient
from natsmesh.local.specfile import load_spec
from natsmesh.model.mesh import Mesh
from natsmesh.model.templates import init_spec_text
from natsmesh.model.topology import block_size, monitor_host, plan_ports
from natsmesh.observe.monitor import config_load_time, http_json
from natsmesh.run import lifecycle
from natsmesh.run.ports import free_port_base

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bringup import machine, rss_bytes

MESSAGES = 1000
JOINER = "joiner"
EXE = str(Path(sys.executable).parent / "natsmesh")


def spec_doc(n: int, data: Path, trust: str) -> dict[str, Any]:
    base = free_port_base(block_size(3) * (n + 2))
    doc = yaml.safe_load(init_spec_text(name=f"join{n}{trust[0]}", domains=n, nodes=1, hub_nodes=3, base=base))
    doc["data_dir"] = str(data)
    doc["trust"] = trust
    doc["leafnodes"]["system_bridge"] = False
    for d in doc["domains"]:
        d.pop("products", None)
        d.pop("consumes", None)
    first = doc["domains"][0]
    first["products"] = [{"name": "ORDERS", "subjects": [f"{first['name']}.orders.>"]}]
    return dict(doc)


def cli(*args: str) -> float:
    start = time.monotonic()
    res = subprocess.run([EXE, *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"natsmesh {' '.join(args[:2])} failed: {res.stderr[-2000:]}")
    return time.monotonic() - start


async def publish(mesh: Mesh, ref: str, subject: str) -> None:
    async with MeshClient(mesh, name="bench") as mc:
        for i in range(MESSAGES):
            await mc.publish(ref, json.dumps({"i": i}).encode(), subject=subject)


async def count(mesh: Mesh, domain: str, stream: str) -> int:
    try:
        async with MeshClient(mesh, name="bench") as mc:
            return int((await (await mc.jetstream(domain)).stream_info(stream)).state.messages)
    except Exception:
        return -1


def hub_facts(mesh: Mesh) -> dict[str, tuple[int, str | None]]:
    """Each hub server's pid and when it loaded its config."""
    state = json.loads((mesh.data_dir / "run" / "state.json").read_text())
    return {
        n.name: (int(state["nodes"][n.name]["pid"]), config_load_time(monitor_host(n), n.http_port))
        for n in mesh.hub.nodes
    }


def linked(mesh: Mesh) -> bool:
    """Whether the joiner's leaf node reports its link to the hub."""
    node = mesh.domain(JOINER).nodes[0]
    try:
        return bool(http_json(monitor_host(node), node.http_port, "/leafz").get("leafs"))
    except (OSError, ValueError):
        return False


def one(n: int, trust: str, root: Path) -> dict[str, Any]:
    data = root / f"{trust}{n}"
    spec = root / f"{trust}{n}.yaml"
    doc = spec_doc(n, data, trust)
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    mesh = load_spec(spec)
    row: dict[str, Any] = {"spokes": n, "trust": trust}
    try:
        row["up_s"] = round(cli("up", "--detach", "--timeout", "600", "-f", str(spec)), 2)
        cli("apply", "-f", str(spec))
        first = doc["domains"][0]["name"]
        asyncio.run(publish(mesh, f"{first}/ORDERS", f"{first}.orders.x"))
        state = json.loads((data / "run" / "state.json").read_text())
        hub_pids = [state["nodes"][h.name]["pid"] for h in mesh.hub.nodes]
        row["hub_rss_mib"] = round(rss_bytes(hub_pids) / 2**20, 1)
        before = hub_facts(mesh)
        joiner_ports = plan_ports(doc["hub"]["ports"]["client"], block_size(3), n + 1, 1, False).as_spec()  # reserved
        doc["domains"].append(
            {"name": JOINER, "nodes": 1, "ports": joiner_ports, "consumes": [{"product": f"{first}/ORDERS"}]}
        )
        spec.write_text(yaml.safe_dump(doc, sort_keys=False))
        joined = load_spec(spec)
        start = time.monotonic()
        if trust == "config":
            cli("down", "-f", str(spec))
            cli("up", "--detach", "--timeout", "600", "-f", str(spec))
        # the copy is watched while `apply` runs: it may be complete before the command has checked the rest
        apply = subprocess.Popen([EXE, "apply", "-f", str(spec)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        link_s = None
        while asyncio.run(count(joined, JOINER, "ORDERS")) < MESSAGES:
            if link_s is None and linked(joined):
                link_s = time.monotonic() - start
            if time.monotonic() - start > 300 or (apply.poll() not in (None, 0)):
                raise RuntimeError(f"{trust} {n}: the joiner's mirror did not complete")
            time.sleep(0.02)
        row["join_s"] = round(time.monotonic() - start, 2)
        apply.wait()
        row["command_s"] = round(time.monotonic() - start, 2)
        row["linked_by_s"] = round(link_s, 2) if link_s is not None else None
        after = hub_facts(joined)
        row["hub_untouched"] = after == before
    finally:
        lifecycle.down(load_spec(spec), timeout=120)
        shutil.rmtree(data, ignore_errors=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 200, 500])
    ap.add_argument("--json", dest="json_out", default=None)
    ap.add_argument("--modes", nargs="+", default=["operator", "config"], choices=["operator", "config"])
    args = ap.parse_args()
    compileall.compile_dir(Path(natsmesh.__file__).parent, quiet=1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="natsmesh-join-") as tmp:
        for n in args.sizes:
            for trust in args.modes:
                row = one(n, trust, Path(tmp))
                rows.append(row)
                print(json.dumps(row), flush=True)
    print()
    print(
        "| spokes | mode | until the commands returned | until the new mirror is complete | hub restarted or reloaded |"
    )
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        how = "`apply`" if r["trust"] == "operator" else "`down`, `up -d`, `apply`"
        print(
            f"| {r['spokes']} | {r['trust']} | {how}: {r['command_s']} s | {r['join_s']} s | "
            f"{'no' if r['hub_untouched'] else 'yes'} |"
        )
    for n in args.sizes if len(args.modes) == 2 else ():
        op = next(r for r in rows if r["spokes"] == n and r["trust"] == "operator")
        cf = next(r for r in rows if r["spokes"] == n and r["trust"] == "config")
        print(f"{n} spokes: operator join / config join = {op['join_s'] / cf['join_s']:.3f}")
        print(f"{n} spokes: operator up / config up = {op['up_s'] / cf['up_s']:.3f} ({op['up_s']} / {cf['up_s']} s)")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    print(json.dumps(machine()))


if __name__ == "__main__":
    main()
