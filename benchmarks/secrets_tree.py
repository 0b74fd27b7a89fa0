"""The steps of bench_secrets.py that must run with one tree's natsmesh: the current one, or an older checkout put
first on the path (`PYTHONPATH=/tmp/before11/src python benchmarks/secrets_tree.py ...`). It uses only library
calls that both trees have, and prints one JSON object.

  render SPEC OUT      make SPEC's secrets (and TLS certificates) in its data dir, render its configs into OUT and
                       describe them for bare_up.py (OUT/bare.json); also the URLs the storms connect to
  catchup SPEC         bring SPEC up with fault proxies (with or without the supervisor's heal watch), apply it,
                       cut the owner domain off for --outage seconds while --messages are published into each of
                       its products, lift the cut and time every copy until it is complete

Usage: python benchmarks/secrets_tree.py render SPEC OUT
       python benchmarks/secrets_tree.py catchup SPEC [--outage S] [--messages N] [--no-heal]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import natsmesh
from natsmesh.local.certs import cert_texts
from natsmesh.local.files import write_files
from natsmesh.local.secrets import load_credentials
from natsmesh.local.specfile import parse_spec
from natsmesh.model.mesh import Mesh
from natsmesh.observe.connect import data_urls, system_urls
from natsmesh.observe.readiness import targets
from natsmesh.render.servers import config_name, render_mesh


def load(spec: str) -> Mesh:
    path = Path(spec)
    return parse_spec(path.read_text(), source=str(path), base_dir=path.parent, cache=False)


def render(spec: str, out: str) -> dict[str, Any]:
    mesh = load(spec)
    mesh.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    start = time.monotonic()
    creds = load_credentials(mesh)
    secrets_s = time.monotonic() - start
    certs = cert_texts(mesh)
    prepare_s = time.monotonic() - start
    dest = Path(out)
    write_files(render_mesh(mesh, creds, certs=certs), dest)
    desc = {
        "nodes": [
            {"conf": config_name(n), "cwd": str(dest / mesh.cluster_of(n.name).folder), "target": t.__dict__}
            for n, t in zip(mesh.nodes(), targets(mesh), strict=True)
        ]
    }
    (dest / "bare.json").write_text(json.dumps(desc))
    hub = mesh.hub
    return {
        "code": str(Path(natsmesh.__file__).resolve().parents[1]),
        "desc": str(dest / "bare.json"),
        "secrets_s": secrets_s,
        "prepare_s": prepare_s,
        "tls": bool(mesh.tls),
        "ca": str(mesh.tls_dir / "ca.pem") if mesh.tls else None,
        "system_bridge": mesh.system_bridge,
        "leaf_links": sum(len(d.nodes) for d in mesh.domains) * (2 if mesh.system_bridge else 1),
        "hub_http": [n.http_port for n in hub.nodes],
        "hub_system": system_urls(mesh, creds),
        "hub_clients": data_urls(mesh, creds, hub.name),
    }


def without_heal(mesh: Mesh, timeout: float) -> None:
    """`lifecycle.up_detached(mesh, chaos=True)` with the same public steps, minus the heal watch: the
    supervisor is handed the fault proxies as its only background task."""
    from natsmesh.faults.links import allocate
    from natsmesh.observe.readiness import wait_ready
    from natsmesh.run import lifecycle
    from natsmesh.run.supervisor import start_detached

    server = lifecycle.preflight(mesh)
    links, sockets = allocate(mesh)
    try:
        lifecycle.prepare(mesh, links)
        start_detached(
            mesh,
            server.path,
            owner_pid=os.getpid(),
            background=[lifecycle.fault_proxies(mesh, links, sockets)],
            handover=list(sockets.values()),
        )
    finally:
        for sock in sockets.values():
            sock.close()
    wait_ready(mesh, timeout=timeout)


async def _held(mc: Any, ref: str) -> int:
    domain, stream = ref.split("/", 1)
    js = await mc.jetstream(domain)
    return int((await js.stream_info(stream)).state.messages)


async def _fill(mc: Any, ref: str, subject: str, count: int) -> None:
    async with mc.publisher(ref, max_inflight=500) as pub:
        for _ in range(count):
            await pub.publish(b"x" * 64, subject=subject)


async def _catchup_run(mesh: Mesh, outage: float, messages: int, timeout: float) -> dict[str, Any]:
    from natsmesh.client import MeshClient
    from natsmesh.faults import chaos
    from natsmesh.reconcile.apply import reconcile

    owner = next(p.domain for p in mesh.products)
    products = [p for p in mesh.products if p.domain == owner]
    want = {c.ref: [s.ref for s in c.sources] for c in mesh.consumptions}
    async with MeshClient(mesh, name="bench-catchup") as mc:
        await reconcile(mesh, mc=mc)
        for p in products:  # every copy flowing before the cut
            await _fill(mc, p.ref, f"{p.subjects[0][:-2]}.before", 10)
        counts = {p.ref: 10 for p in products}
        for copy, ups in want.items():
            while await _held(mc, copy) < sum(counts[u] for u in ups):
                await asyncio.sleep(0.05)
        chaos.partition(mesh, owner, None)
        cut = time.monotonic()
        for p in products:
            await _fill(mc, p.ref, f"{p.subjects[0][:-2]}.during", messages)
            counts[p.ref] += messages
        during = {c: await _held(mc, c) for c in want}
        await asyncio.sleep(max(0.0, outage - (time.monotonic() - cut)))
        chaos.restore(mesh, owner)
        start = time.monotonic()
        done: dict[str, float] = {}
        while len(done) < len(want) and time.monotonic() - start < timeout:
            for copy, ups in want.items():
                if copy not in done and await _held(mc, copy) >= sum(counts[u] for u in ups):
                    done[copy] = time.monotonic() - start
            await asyncio.sleep(0.05)
        held = {c: await _held(mc, c) for c in want}
    return {
        "outage_s": round(start - cut, 2),
        "published_during": messages,
        "held_when_restored": during,
        "expected": {c: sum(counts[u] for u in ups) for c, ups in want.items()},
        "held": held,
        "complete_s": {c: round(done[c], 2) if c in done else None for c in want},
    }


def catchup(spec: str, outage: float, messages: int, heal: bool, timeout: float) -> dict[str, Any]:
    from natsmesh.local.state import SupervisorState
    from natsmesh.run import lifecycle

    mesh = load(spec)
    if heal:
        lifecycle.up_detached(mesh, owner_pid=os.getpid(), timeout=120, chaos=True)
    else:
        without_heal(mesh, timeout=120)
    try:
        out = asyncio.run(_catchup_run(mesh, outage, messages, timeout))
        state = SupervisorState.read(mesh)
        out["heal_events"] = [e for e in (state.events if state else ()) if "heal" in e]
    finally:
        lifecycle.down(mesh)
    return {"code": str(Path(natsmesh.__file__).resolve().parents[1]), "heal_watch": heal, **out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="step", required=True)
    r = sub.add_parser("render")
    r.add_argument("spec")
    r.add_argument("out")
    c = sub.add_parser("catchup")
    c.add_argument("spec")
    c.add_argument("--outage", type=float, default=25.0)
    c.add_argument("--messages", type=int, default=1000)
    c.add_argument("--no-heal", action="store_true")
    c.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()
    if args.step == "render":
        result = render(args.spec, args.out)
    else:
        result = catchup(args.spec, args.outage, args.messages, not args.no_heal, args.timeout)
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
