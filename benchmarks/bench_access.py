"""Access requests and grants (issue 20): how soon a grant flows and a revocation stops, and what reading,
recording and carrying out the domains' documents costs `apply` at scale.

Part 1, a hub and three single-node domains (operator mode), 1,000 messages in sales/ORDERS:
- grant -> first message: from `natsmesh --bundle OWNER access grant ID` until the first message is in the new
  copy (the grant, then the platform's `apply`), against the same copy declared in the spec (`apply` until its
  first message): like for like, a copy made by `apply`, one from a signed grant and one from the spec;
- revoke -> stopped: `natsmesh --bundle OWNER access revoke ID` (the owner's consumer for the copy paused before
  it returns; checked: 100 messages published after it never arrive), against the bare JetStream pause request
  it makes (the floor: a CLI process and the signing around it).

Part 2, N single-node spokes (3-node hub), P products each, R requests granted across domains: `apply` with
nothing to change, with access on (the hub's audit trail and every domain's access stream read, the apply
recorded as a signed event) against access off (`reconcile(..., access=False)`), alternating rounds in one
process, each over connections to every cluster opened before it is timed (whichever step comes first would
open them for both). Goal: <= 1.1x. The rounds' spread on this machine is as large as the difference, so the
access steps are also timed inside each apply (the library's functions wrapped): `steps_ratio` is an apply
without access plus their median time, over an apply without access.

Usage: python benchmarks/bench_access.py [--spokes 500] [--products 10] [--requests 20] [--rounds 3] [--json F]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from natsmesh.client import MeshClient
from natsmesh.local.folder import load_folder
from natsmesh.local.secrets import load_credentials
from natsmesh.local.specfile import load_spec
from natsmesh.model.mesh import Mesh
from natsmesh.model.templates import init_spec_text
from natsmesh.model.topology import block_size
from natsmesh.observe.connect import Connections
from natsmesh.reconcile.access import act, set_paused, signer_of
from natsmesh.reconcile.apply import reconcile
from natsmesh.run import lifecycle
from natsmesh.run.ports import free_port_base

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bringup import machine

EXE = str(Path(sys.executable).parent / "natsmesh")
MESSAGES = 1000


def spec_doc(n: int, products: int, data: Path, name: str) -> dict[str, Any]:
    base = free_port_base(block_size(3) * (n + 1))
    doc = yaml.safe_load(init_spec_text(name=name, domains=n, nodes=1, hub_nodes=3 if n > 3 else 1, base=base))
    doc["data_dir"] = str(data)
    doc["trust"] = "operator"
    doc["leafnodes"]["system_bridge"] = False
    for d in doc["domains"]:
        d.pop("consumes", None)
        ns = d.get("namespace", d["name"])
        d["products"] = [{"name": f"P{i}", "subjects": [f"{ns}.p{i}.>"]} for i in range(products)]
    return dict(doc)


def cli(*args: str) -> tuple[float, str]:
    start = time.monotonic()
    res = subprocess.run([EXE, *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"natsmesh {' '.join(args[:4])} failed: {res.stderr[-2000:]}")
    return time.monotonic() - start, res.stdout


async def count(mesh: Mesh, domain: str, stream: str) -> int:
    try:
        async with MeshClient(mesh, name="bench") as mc:
            return int((await (await mc.jetstream(domain)).stream_info(stream)).state.messages)
    except Exception:
        return -1


async def publish(mesh: Mesh, ref: str, subject: str, n: int) -> None:
    async with MeshClient(mesh, name="bench") as mc:
        for i in range(n):
            await mc.publish(ref, json.dumps({"i": i}).encode(), subject=subject)


def until_first(mesh: Mesh, domain: str, stream: str, start: float, proc: subprocess.Popen[bytes] | None) -> float:
    while asyncio.run(count(mesh, domain, stream)) < 1:
        if time.monotonic() - start > 120 or (proc is not None and proc.poll() not in (None, 0)):
            raise RuntimeError(f"{domain}/{stream} got nothing")
        time.sleep(0.01)
    return time.monotonic() - start


def flows(root: Path) -> dict[str, Any]:
    data, spec = root / "flows", root / "flows.yaml"
    doc = spec_doc(3, 1, data, "accflow")
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    owner, taker = doc["domains"][0]["name"], doc["domains"][1]["name"]
    ns = doc["domains"][0].get("namespace", owner)
    mesh = load_spec(spec)
    folder = {d: data / mesh.domain(d).folder for d in (owner, taker)}
    out: dict[str, Any] = {}
    try:
        cli("up", "--detach", "-f", str(spec))
        cli("apply", "-f", str(spec))
        asyncio.run(publish(mesh, f"{owner}/P0", f"{ns}.p0.x", MESSAGES))

        # the same copy declared in the spec: `apply` until its first message
        doc["domains"][1]["consumes"] = [{"product": f"{owner}/P0", "as": "DECLARED"}]
        spec.write_text(yaml.safe_dump(doc, sort_keys=False))
        start = time.monotonic()
        proc = subprocess.Popen([EXE, "apply", "-f", str(spec)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        out["declared_first_s"] = round(until_first(mesh, taker, "DECLARED", start, proc), 3)
        proc.wait()

        _, said = cli("--bundle", str(folder[taker]), "access", "request", f"{owner}/P0", "--as", "GRANTED",
                      "--reason", "bench", "--json")  # fmt: skip
        rid = json.loads(said)["id"]
        cli("apply", "-f", str(spec))
        start = time.monotonic()
        cli("--bundle", str(folder[owner]), "access", "grant", rid)
        proc = subprocess.Popen([EXE, "apply", "-f", str(spec)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        out["granted_first_s"] = round(until_first(mesh, taker, "GRANTED", start, proc), 3)
        proc.wait()
        out["grant_ratio"] = round(out["granted_first_s"] / out["declared_first_s"], 2)
        while asyncio.run(count(mesh, taker, "GRANTED")) < MESSAGES:
            time.sleep(0.05)

        out["revoke_s"] = round(cli("--bundle", str(folder[owner]), "access", "revoke", rid, "--reason", "b")[0], 3)
        asyncio.run(publish(mesh, f"{owner}/P0", f"{ns}.p0.y", 100))
        time.sleep(2)
        out["revoked_kept_out"] = asyncio.run(count(mesh, taker, "GRANTED")) == MESSAGES

        async def bare_pause() -> float:
            held = load_folder(folder[owner])
            async with Connections(held, load_credentials(held, create=False)) as mc:
                nc = await mc.connection(owner)
                start = time.monotonic()
                await set_paused(nc, "P0", f"{taker}~DECLARED", True)
                took = time.monotonic() - start
                await set_paused(nc, "P0", f"{taker}~DECLARED", False)
                return took

        out["bare_pause_s"] = round(min(asyncio.run(bare_pause()) for _ in range(5)), 4)
        out["revoke_ratio"] = round(out["revoke_s"] / out["bare_pause_s"], 1)
    finally:
        lifecycle.down(load_spec(spec), timeout=120)
        shutil.rmtree(data, ignore_errors=True)
    return out


STEPS: dict[str, list[float]] = {}  # each access step's time in every apply with access on


@contextlib.contextmanager
def timed_access_steps(spent: list[float]) -> Iterator[None]:
    """Add to SPENT[0] the time `apply`'s access steps take (reading and folding the documents, relaying them,
    setting the owners' consumers, recording expiries and the apply): the library's functions wrapped for it."""
    from natsmesh.reconcile import apply as module

    names = ("gather", "relay", "hold_back", "record_expiries", "record")
    real = {name: getattr(module, name) for name in names}

    def timed(fn: Any) -> Any:
        async def wrapper(*args: Any, **kw: Any) -> Any:
            start = time.monotonic()
            try:
                return await fn(*args, **kw)
            finally:
                spent[0] += time.monotonic() - start
                STEPS.setdefault(fn.__name__, []).append(time.monotonic() - start)

        return wrapper

    for name in names:
        setattr(module, name, timed(real[name]))
    try:
        yield
    finally:
        for name in names:
            setattr(module, name, real[name])


def apply_cost(root: Path, n: int, products: int, requests: int, rounds: int) -> dict[str, Any]:
    data, spec = root / "scale", root / "scale.yaml"
    doc = spec_doc(n, products, data, f"acc{n}")
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    mesh = load_spec(spec)
    out: dict[str, Any] = {"spokes": n, "products": n * products, "requests": requests}
    try:
        out["up_s"] = round(cli("up", "--detach", "--timeout", "900", "-f", str(spec))[0], 1)
        out["first_apply_s"] = round(cli("apply", "-f", str(spec))[0], 1)
        names = [d["name"] for d in doc["domains"]]

        async def post(kind: str, pairs: list[tuple[str, dict[str, Any]]]) -> list[str]:
            """Each (domain, what) as a KIND document signed from that domain's own folder."""
            out = []
            for domain, what in pairs:
                held = load_folder(data / mesh.domain(domain).folder)
                async with Connections(held, load_credentials(held, create=False)) as mc:
                    out.append((await act(held, mc, signer_of(held, mc.creds), kind, **what)).id)  # type: ignore[arg-type]
            return out

        pairs = [(names[i % n], names[(i + 1) % n]) for i in range(requests)]  # (owner, taker)
        asked = asyncio.run(
            post("request", [(t, {"product": f"{o}/P0", "copy": f"R{i}"}) for i, (o, t) in enumerate(pairs)])
        )
        cli("apply", "-f", str(spec))  # relays each request to its owner
        asyncio.run(post("grant", [(o, {"request": r}) for (o, _), r in zip(pairs, asked, strict=True)]))
        cli("apply", "-f", str(spec))  # the copies made; from here on, applies with nothing to change
        times: dict[str, list[float]] = {"on": [], "off": []}
        phases: list[float] = []  # what the access steps took of each apply with access on

        async def warm_apply(on: bool) -> float:
            """One apply over connections to every cluster opened before it is timed: what access adds, without
            the connections that whichever step comes first would open for both."""
            scaled = load_spec(spec)
            async with Connections(scaled, name="bench-apply") as mc:
                await asyncio.gather(*(mc.connection(c.name) for c in scaled.clusters))
                start = time.monotonic()
                await reconcile(scaled, mc=mc, access=on)
                return time.monotonic() - start

        for r in range(rounds):
            for mode in ("on", "off") if r % 2 == 0 else ("off", "on"):
                spent = [0.0]
                with timed_access_steps(spent):
                    times[mode].append(asyncio.run(warm_apply(mode == "on")))
                if mode == "on":
                    phases.append(spent[0])
        out["apply_on_s"] = [round(t, 2) for t in times["on"]]
        out["apply_off_s"] = [round(t, 2) for t in times["off"]]
        out["access_steps_s"] = [round(t, 3) for t in phases]
        out["steps_median_s"] = {k: round(statistics.median(v), 3) for k, v in STEPS.items()}
        out["ratio"] = round(statistics.median(times["on"]) / statistics.median(times["off"]), 3)
        # the same question without the rounds' spread: the access steps' own time over an apply without them
        off = statistics.median(times["off"])
        out["steps_ratio"] = round((off + statistics.median(phases)) / off, 3)
        out["goal_met"] = out["ratio"] <= 1.1
    finally:
        lifecycle.down(load_spec(spec), timeout=300)
        shutil.rmtree(data, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spokes", type=int, default=500)
    ap.add_argument("--products", type=int, default=10)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-flows", action="store_true")
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()
    result: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory(prefix="natsmesh-access-") as tmp:
        if not args.skip_flows:
            result["flows"] = flows(Path(tmp))
            print(json.dumps(result["flows"]), flush=True)
        if args.spokes:
            result["apply"] = apply_cost(Path(tmp), args.spokes, args.products, args.requests, args.rounds)
            print(json.dumps(result["apply"]), flush=True)
    print(json.dumps(result["machine"]))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
