"""Users per service (issue 20): how soon a new user publishes, and how soon a revoked one is cut off.

One mesh (operator mode): a single-node hub and `sales`, a 3-node cluster under its own operator
(`service_users: true`) with a product ORDERS. In one process, alternating rounds:

- `user add` -> first publish: the library's `issue` (signed, its record posted to the domain's stream, the creds
  file written), then a fresh connection with the new creds file and one acknowledged publish; against the same
  connection and publish by a user that already exists (the floor: what any new connection costs);
- revoke -> connection closed: the library's `revoke` (the account read, signed anew, pushed to the three nodes,
  the record posted) until the user's open connection is closed by its server; against one bare
  `$SYS.REQ.CLAIMS.UPDATE` round trip of the unchanged account (the floor: the push alone).

The CLI adds a process start to each (about 0.6 s here; `tests/test_service_users.py` prints both whole).

Usage: python benchmarks/bench_users.py [--rounds 5] [--json F]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
import yaml

from natsmesh.local.folder import load_folder
from natsmesh.local.secrets import load_credentials
from natsmesh.local.specfile import load_spec
from natsmesh.model.topology import block_size, plan_ports
from natsmesh.observe.connect import connect_system
from natsmesh.observe.grants import lookup_claims
from natsmesh.reconcile.apply import reconcile
from natsmesh.reconcile.users import issue, own_operator, revoke
from natsmesh.run import lifecycle
from natsmesh.run.ports import free_port_base

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bringup import machine
from reporting import machine_line, write_json


def spec_doc(data: Path) -> dict[str, Any]:
    base = free_port_base(block_size(3) * 2)
    hub = {"name": "hub", "nodes": 1, "ports": plan_ports(base, block_size(3), 0, 1, True).as_spec()}
    sales = {
        "name": "sales",
        "nodes": 3,
        "service_users": True,
        "ports": plan_ports(base, block_size(3), 1, 3, False).as_spec(),
        "products": [{"name": "ORDERS", "subjects": ["sales.orders.>"]}],
    }
    return {"name": "bench-users", "trust": "operator", "data_dir": str(data), "hub": hub, "domains": [sales]}


async def _quiet(_: Exception) -> None:
    pass


async def publish_once(url: str, creds: Path, name: str) -> None:
    nc = await nats.connect(url, user_credentials=str(creds), inbox_prefix=f"_INBOX_{name}", error_cb=_quiet)
    try:
        await nc.jetstream().publish("sales.orders.bench", b"{}")
    finally:
        await nc.close()


async def rounds(root: Path, count: int) -> dict[str, Any]:
    spec = root / "users.yaml"
    spec.write_text(yaml.safe_dump(spec_doc(root / "data")))
    mesh = load_spec(str(spec))
    lifecycle.up_detached(mesh, timeout=60)
    try:
        await reconcile(mesh)
        folder = load_folder(mesh.data_dir / mesh.domain("sales").folder)
        creds = load_credentials(folder, create=False)
        node = mesh.domain("sales").nodes[0]
        url = f"nats://{node.host}:{node.client_port}"
        floor = await issue(folder, creds, "floor", "producer", ("ORDERS",), root / "floor.creds")
        del floor
        out: dict[str, list[float]] = {"add_first_publish": [], "existing_publish": [], "revoke": [], "push": []}
        own = own_operator(folder, creds)
        for k in range(count):
            began = time.monotonic()
            await publish_once(url, root / "floor.creds", "floor")
            out["existing_publish"].append(time.monotonic() - began)
            began = time.monotonic()
            await issue(folder, creds, f"svc{k}", "producer", ("ORDERS",), root / f"svc{k}.creds")
            await publish_once(url, root / f"svc{k}.creds", f"svc{k}")
            out["add_first_publish"].append(time.monotonic() - began)

            nc = await connect_system(mesh, load_credentials(mesh, create=False), cluster=mesh.domain("sales"))
            try:
                held = await lookup_claims(nc, own.data.public)
                assert held is not None
                began = time.monotonic()
                await nc.request("$SYS.REQ.CLAIMS.UPDATE", held.encode(), timeout=5)
                out["push"].append(time.monotonic() - began)
            finally:
                await nc.close()
            closed = asyncio.Event()

            async def on_closed(event: asyncio.Event = closed) -> None:
                event.set()

            user = await nats.connect(
                url,
                user_credentials=str(root / f"svc{k}.creds"),
                inbox_prefix=f"_INBOX_svc{k}",
                error_cb=_quiet,
                closed_cb=on_closed,
                allow_reconnect=False,
            )
            began = time.monotonic()
            await revoke(folder, creds, f"svc{k}", "bench")
            await asyncio.wait_for(closed.wait(), 10)
            out["revoke"].append(time.monotonic() - began)
            del user
        return {key: statistics.median(v) for key, v in out.items()} | {"rounds": count}
    finally:
        lifecycle.down(mesh)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", dest="json_out", type=Path, default=None)
    args = ap.parse_args()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="natsmesh-users-") as tmp:
        r = asyncio.run(rounds(Path(tmp), args.rounds))
    m = machine()
    print("| what | measured (median) | baseline (same run) | ratio |\n| --- | --- | --- | --- |")
    add, floor = r["add_first_publish"], r["existing_publish"]
    print(f"| user add -> first publish | {add * 1000:.1f} ms | an existing user's connect + publish, "
          f"{floor * 1000:.1f} ms | {add / floor:.2f}x |")  # fmt: skip
    rev, push = r["revoke"], r["push"]
    print(f"| revoke -> connection closed | {rev * 1000:.1f} ms | one bare claims push, {push * 1000:.1f} ms "
          f"| {rev / push:.2f}x |")  # fmt: skip
    print(machine_line(m, began=began))
    write_json(args.json_out, "users", m, **r)


if __name__ == "__main__":
    main()
