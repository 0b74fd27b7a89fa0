"""Secrets, TLS and durable sourcing (issue 11): the same meshes before and after, as ratios measured in one run.

Three variants of each mesh, their runs alternating:

- before:    configs rendered by the code before issue 11 (a checkout of `4d47b17^`, `--before DIR`, run with
             PYTHONPATH=DIR/src): plaintext passwords in users entries and in leaf URLs, no route authorization,
             one shared TLS certificate (not used here), copies made through an exported CONSUMER.CREATE;
- after:     the current code: bcrypt hashes (cost 6), route authorization, nkey leaf links, account limits;
- after-tls: the current code with `tls: {enabled: true}` (a certificate per node, leaf links verified both ways).

Measured:

1. bring-up of the seed mesh (examples/seed.yaml's 18 servers on free ports; its fixed loopback credentials keep
   the system bridge) and of N single-node spokes on a 3-node hub (`--sizes`, default 100 and 200), each from
   an empty data dir until ready: `natsmesh up --detach` of that variant's code (the whole command) against the
   bare loop (`bare_up.py`: the same rendered configs started by a plain loop, the same readiness poll); for the
   spokes also `up` with the secrets and certificates kept from an earlier run (what every `up` after the first
   pays: the first makes ~2 bcrypt hashes per domain). After every `up`, `natsmesh report jetstream --json`.
2. reconnect storms, on every bare run once ready: every leaf connection at the hub kicked at once
   (`$SYS.REQ.SERVER.<id>.KICK {"cid": N}`, cids from each hub node's LEAFZ), timed until the hub holds as many
   leaf connections again, none of them an old one; on the seed also `--clients` client connections to the hub
   (its data account, bcrypt users after) opened at once, then all kicked at once and timed until every one
   has reconnected.
3. R1 copy catch-up after a lost setup request (`secrets_tree.py catchup`): single-node hub and domains; domain b
   mirrors a/P (R1) and sources a/P and a/Q (R1, two sources: the heal watch's re-add nudge applies); a is cut
   off through the fault proxies for `--outage` seconds (long enough that a setup request is lost) while
   messages are published into P and Q; time from lifting the cut until each copy is complete. Durable sourcing
   (current) against classic (before), each with the supervisor's heal watch and without it (the same library
   steps as `lifecycle.up_detached`, with only the fault proxies as the supervisor's background task).

Usage: python benchmarks/bench_secrets.py [--before DIR] [--parts seed spokes catchup] [--json FILE]
The before checkout: git worktree add --detach /tmp/before11 4d47b17^
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import nats
import yaml

from natsmesh.local import binary
from natsmesh.model.templates import init_spec_text
from natsmesh.model.topology import block_size
from natsmesh.observe.monitor import http_json
from natsmesh.run.ports import free_port_base, port_problem

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_bringup import machine, rss_bytes  # noqa: E402

CURRENT = HERE.parent / "src"
CLI = "import sys; from natsmesh.cli import main; sys.exit(main())"
SEED_GOAL, SPOKES_GOAL, READY_200_GOAL, REPORT_GOAL = 1.25, 1.5, 15.0, 1.0


@dataclass(frozen=True)
class Variant:
    name: str
    src: Path  # which tree's code renders and runs it
    tls: bool


class Runner:
    """Runs one tree's code: the natsmesh CLI and the helper steps, each a fresh process."""

    def __init__(self, root: Path, server: str) -> None:
        self.root, self.server = root, server
        self.env = dict(os.environ, NATSMESH_CACHE_DIR=str(root / "spec-cache"))

    def env_for(self, v: Variant) -> dict[str, str]:
        return dict(self.env, PYTHONPATH=str(v.src))

    def cli(self, v: Variant, *args: str, check: bool = True) -> tuple[float, subprocess.CompletedProcess[str]]:
        start = time.monotonic()
        res = subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True, env=self.env_for(v))
        took = time.monotonic() - start
        if check and res.returncode != 0:
            raise RuntimeError(f"{v.name}: natsmesh {' '.join(args[:2])} failed: {res.stderr[-2000:]}")
        return took, res

    def helper(self, v: Variant, *args: str) -> dict[str, Any]:
        res = subprocess.run(
            [sys.executable, str(HERE / "secrets_tree.py"), *args], capture_output=True, text=True, env=self.env_for(v)
        )
        if res.returncode != 0:
            raise RuntimeError(f"{v.name}: secrets_tree.py {args[0]} failed: {res.stderr[-3000:]}")
        out: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
        if Path(out["code"]) != v.src.resolve():
            raise RuntimeError(f"{v.name}: ran the code in {out['code']}, not {v.src}")
        return out


# ---------------------------------------------------------------------------------------------------------------
# Specs


def seed_doc(base: int) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((HERE.parent / "examples" / "seed.yaml").read_text())
    for k, c in enumerate([doc["hub"], *doc["domains"]]):
        s = base + k * block_size(3)
        c["ports"] = {"client": s, "cluster": s + 3, "http": s + 6} | ({"leafnode": s + 9} if k == 0 else {})
    return doc


def spokes_doc(n: int, base: int) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(init_spec_text(name=f"spokes{n}", domains=n, nodes=1, hub_nodes=3, base=base))
    return doc


def write_spec(doc: dict[str, Any], path: Path, data: Path, tls: bool) -> Path:
    d = dict(doc, data_dir=str(data), tls={"enabled": tls})
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def port_base(count: int, old: int | None) -> int:
    if old is not None and all(port_problem("127.0.0.1", p) is None for p in range(old, old + count)):
        return old
    return free_port_base(count)


# ---------------------------------------------------------------------------------------------------------------
# Stopping what this benchmark started


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child of ours counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def fast_stop(data: Path, timeout: float = 60) -> None:
    """Stop a mesh `up --detach` started, without the lame-duck wait (its data is thrown away): SIGKILL its
    supervisor (the nodes get SIGTERM from the kernel, PR_SET_PDEATHSIG), SIGTERM the nodes too, wait for them."""
    state = json.loads((data / "run" / "state.json").read_text())
    pids = [n["pid"] for n in state["nodes"].values() if n.get("pid")]
    for pid, sig in [(state["pid"], signal.SIGKILL), *((p, signal.SIGTERM) for p in pids)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids):
        if time.monotonic() > deadline:
            for p in pids:
                if _alive(p):
                    os.kill(p, signal.SIGKILL)
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------------------------
# Storms


def tls_context(info: dict[str, Any]) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=info["ca"]) if info["ca"] else None


def split_url(url: str) -> tuple[str, dict[str, str]]:
    u = urlsplit(url)
    return f"{u.scheme}://{u.hostname}:{u.port}", {
        "user": unquote(u.username or ""),
        "password": unquote(u.password or ""),
    }


def hub_leafs(info: dict[str, Any]) -> list[tuple[str, int]]:
    """(server id, cid) of every leaf connection at the hub, from each hub node's monitoring port."""
    out = []
    for port in info["hub_http"]:
        for attempt in range(5):  # a hub node busy taking hundreds of links back answers late
            try:
                doc = http_json("127.0.0.1", port, "/leafz", timeout=5.0)
                break
            except OSError:
                if attempt == 4:
                    raise
        out += [(doc["server_id"], int(link["id"])) for link in doc.get("leafs") or []]
    return out


async def kick_all(nc: Any, conns: list[tuple[str, int]]) -> list[str]:
    """KICK every (server id, cid) at once; returns the errors the servers answered."""
    inbox = nc.new_inbox()
    replies: list[bytes] = []
    got = asyncio.Event()

    async def cb(msg: Any) -> None:
        replies.append(msg.data)
        if len(replies) >= len(conns):
            got.set()

    sub = await nc.subscribe(f"{inbox}.*", cb=cb)
    for i, (sid, cid) in enumerate(conns):
        await nc.publish(f"$SYS.REQ.SERVER.{sid}.KICK", json.dumps({"cid": cid}).encode(), reply=f"{inbox}.{i}")
    await nc.flush()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(got.wait(), 10)
    await sub.unsubscribe()
    errors = [str(doc["error"]) for doc in map(json.loads, replies) if doc.get("error")]
    if len(replies) < len(conns):
        errors.append(f"{len(conns) - len(replies)} kicks unanswered")
    return errors


async def leaf_storm(info: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
    old = hub_leafs(info)
    url, auth = split_url(info["hub_system"][0])
    nc = await nats.connect(servers=[url], tls=tls_context(info), allow_reconnect=False, **auth)
    try:
        start = time.monotonic()
        errors = await kick_all(nc, old)
        kicked = time.monotonic() - start
        gone = set(old)
        while True:
            now = hub_leafs(info)
            if len(now) >= len(old) and not gone & set(now):
                break
            if time.monotonic() - start > timeout:
                stale = len(gone & set(now))
                return {"links": len(old), "back_s": None, "errors": [*errors[:3], f"{stale} old links still up"]}
            await asyncio.sleep(0.02)
        return {
            "links": len(old),
            "kicks_sent_s": round(kicked, 3),
            "back_s": round(time.monotonic() - start, 3),
            "errors": errors[:3],
        }
    finally:
        await nc.close()


async def quiet(_exc: Exception) -> None:
    """nats-py prints every error of a kicked connection without an error callback."""


async def quiet_event() -> None:
    pass


async def client_storm(info: dict[str, Any], count: int, timeout: float = 60) -> dict[str, Any]:
    """COUNT clients of the hub's data account connect at once (spread over the hub nodes); then all are kicked
    at once and timed until every one has reconnected."""
    ctx = tls_context(info)
    targets = [split_url(u) for u in info["hub_clients"]]
    back = asyncio.Event()
    reconnected: set[int] = set()

    def on_reconnect(i: int) -> Any:
        async def cb() -> None:
            reconnected.add(i)
            if len(reconnected) >= count:
                back.set()

        return cb

    async def one(i: int) -> Any:
        url, auth = targets[i % len(targets)]
        return await nats.connect(
            servers=[url],
            tls=ctx,
            name=f"storm-{i}",
            reconnect_time_wait=0.05,
            max_reconnect_attempts=-1,
            connect_timeout=20,
            reconnected_cb=on_reconnect(i),
            error_cb=quiet,
            disconnected_cb=quiet_event,
            **auth,
        )

    start = time.monotonic()
    conns = await asyncio.gather(*(one(i) for i in range(count)))
    connect_s = time.monotonic() - start
    try:
        sys_url, sys_auth = split_url(info["hub_system"][0])
        admin = await nats.connect(servers=[sys_url], tls=ctx, allow_reconnect=False, **sys_auth)
        try:
            ids = [(c._server_info["server_id"], int(c._server_info["client_id"])) for c in conns]
            start = time.monotonic()
            errors = await kick_all(admin, ids)
            await asyncio.wait_for(back.wait(), timeout)
            reconnect_s = time.monotonic() - start
        finally:
            await admin.close()
    finally:
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
    return {"clients": count, "connect_s": round(connect_s, 3), "reconnect_s": round(reconnect_s, 3), "errors": errors}


# ---------------------------------------------------------------------------------------------------------------
# One run of each side


def bare_run(run: Runner, v: Variant, spec: Path, work: Path, storms: dict[str, int]) -> dict[str, Any]:
    """Render with V's code (untimed), start with the bare loop (timed until ready), then the storms."""
    data = Path(yaml.safe_load(spec.read_text())["data_dir"])
    shutil.rmtree(data, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    info = run.helper(v, "render", str(spec), str(work))
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "bare_up.py"), info["desc"], run.server],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        line = proc.stdout.readline()
        ready = time.monotonic() - start
        if not line.startswith("READY"):
            raise RuntimeError(f"{v.name}: bare loop failed: {line!r}")
        out: dict[str, Any] = {
            "ready_s": ready,
            "rss_mib": rss_bytes([int(p) for p in line.split()[2:]]) / 2**20,
            "secrets_s": info["secrets_s"],
            "prepare_s": info["prepare_s"],
            "system_bridge": info["system_bridge"],
        }
        if storms:
            time.sleep(1.0)  # let JetStream settle after ready
            out["leaf_storm"] = asyncio.run(leaf_storm(info))
            if storms.get("clients"):
                out["client_storm"] = asyncio.run(client_storm(info, storms["clients"]))
        return out
    finally:
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(120)
        shutil.rmtree(work, ignore_errors=True)


def up_run(run: Runner, v: Variant, spec: Path, keep_secrets: bool, reports: int) -> dict[str, Any]:
    """`natsmesh up --detach` of V's code from an empty data dir (KEEP_SECRETS: secrets.json and the TLS dir of an
    earlier run kept), timed; then REPORTS runs of `natsmesh report jetstream --json`; then a fast stop."""
    data = Path(yaml.safe_load(spec.read_text())["data_dir"])
    if keep_secrets and data.exists():
        for p in data.iterdir():
            if p.name not in ("secrets.json", "tls"):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    else:
        shutil.rmtree(data, ignore_errors=True)
    took, res = run.cli(v, "up", "--detach", "--timeout", "300", "-f", str(spec), "--json")
    out: dict[str, Any] = {"up_s": took, "up_reported_s": json.loads(res.stdout)["seconds"]}
    try:
        times, covered = [], []
        for _ in range(reports):
            t, rep = run.cli(v, "report", "jetstream", "--json", "-f", str(spec))
            times.append(t)
            covered.append(len(json.loads(rep.stdout).get("servers") or []))
        if reports:
            out |= {"report_s": times, "report_servers": min(covered)}
    finally:
        fast_stop(data)
    return out


# ---------------------------------------------------------------------------------------------------------------
# The comparisons


def bringup(
    run: Runner,
    variants: list[Variant],
    label: str,
    doc: dict[str, Any],
    runs: int,
    sides: list[str],
    storms: dict[str, int],
) -> dict[str, Any]:
    root = run.root / label
    root.mkdir(parents=True, exist_ok=True)
    specs = {}
    for v in variants:
        specs[v.name, "bare"] = write_spec(doc, root / f"{v.name}-bare.yaml", root / f"{v.name}-bare-data", v.tls)
        specs[v.name, "up"] = write_spec(doc, root / f"{v.name}-up.yaml", root / f"{v.name}-up-data", v.tls)
        run.cli(v, "validate", "-f", str(specs[v.name, "up"]))  # the spec cache warm, as on every run but the first
    results: dict[str, dict[str, list[dict[str, Any]]]] = {v.name: {s: [] for s in sides} for v in variants}
    order = [(v, s) for v in variants for s in sides]
    for i in range(runs):
        for v, side in order if i % 2 == 0 else list(reversed(order)):
            if side == "bare":
                r = bare_run(run, v, specs[v.name, "bare"], root / f"{v.name}-bare-out", storms)
            else:
                r = up_run(run, v, specs[v.name, "up"], keep_secrets=side == "up_kept", reports=1)
            results[v.name][side].append(r)
        line = ", ".join(
            f"{v.name} {s} {results[v.name][s][-1].get('ready_s') or results[v.name][s][-1]['up_s']:.2f}s"
            for v, s in order
        )
        print(f"  {label} run {i + 1}/{runs}: {line}", file=sys.stderr, flush=True)
    return {"label": label, "runs": runs, "results": results, "summary": summarize(results, variants)}


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def summarize(results: dict[str, dict[str, list[dict[str, Any]]]], variants: list[Variant]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v in variants:
        r = results[v.name]
        bare = [x["ready_s"] for x in r["bare"]]
        s: dict[str, Any] = {
            "bare_median_s": med(bare),
            "bare_best_s": min(bare),
            "bare_rss_mib": med([x["rss_mib"] for x in r["bare"]]),
            "secrets_s": med([x["secrets_s"] for x in r["bare"]]),
            "prepare_s": med([x["prepare_s"] for x in r["bare"]]),
        }
        for side in ("up", "up_kept"):
            if side in r:
                ups = [x["up_s"] for x in r[side]]
                s[f"{side}_median_s"] = med(ups)
                s[f"{side}_ratio"] = med(ups) / med(bare)
                s[f"{side}_ratio_to_best_bare"] = med(ups) / min(bare)
        reports = [t for side in ("up", "up_kept") for x in r.get(side, []) for t in x.get("report_s", [])]
        s["report_median_s"] = med(reports)
        s["report_max_s"] = max(reports) if reports else None
        s["report_servers"] = min(x["report_servers"] for side in ("up", "up_kept") for x in r.get(side, []))
        storms = [x["leaf_storm"] for x in r["bare"] if "leaf_storm" in x]
        if storms:
            s["leaf_links"] = storms[0]["links"]
            s["leaf_storm_median_s"] = med([x["back_s"] for x in storms if x["back_s"] is not None])
            s["leaf_storm_runs_s"] = [x["back_s"] for x in storms]
            s["leaf_storm_errors"] = sorted({e for x in storms for e in x["errors"]})
        clients = [x["client_storm"] for x in r["bare"] if "client_storm" in x]
        if clients:
            s["clients"] = clients[0]["clients"]
            s["client_connect_median_s"] = med([x["connect_s"] for x in clients])
            s["client_reconnect_median_s"] = med([x["reconnect_s"] for x in clients])
        out[v.name] = s
    base = out.get("before")
    keys = ("bare_median_s", "up_median_s", "up_kept_median_s", "report_median_s", "leaf_storm_median_s")
    keys += ("client_connect_median_s", "client_reconnect_median_s")
    for s in out.values():
        for key in keys:
            if base and key in s and key in base:
                s[f"{key}_vs_before"] = s[key] / base[key]
    return out


def catchup_spec(path: Path, data: Path, base: int) -> Path:
    doc: dict[str, Any] = yaml.safe_load(init_spec_text(name="catchup", domains=2, nodes=1, hub_nodes=1, base=base))
    a, b = doc["domains"]
    a["products"] = [
        {"name": "P", "subjects": [f"{a['name']}.p.>"]},
        {"name": "Q", "subjects": [f"{a['name']}.q.>"]},
    ]
    b["consumes"] = [
        {"product": f"{a['name']}/P", "as": "MIRROR"},
        {"as": "AGG", "mode": "source", "products": [f"{a['name']}/P", f"{a['name']}/Q"]},
    ]
    return write_spec(doc, path, data, tls=False)


def catchup(run: Runner, before: Variant, after: Variant, runs: int, outage: float, messages: int) -> dict[str, Any]:
    root = run.root / "catchup"
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    spec = catchup_spec(root / "catchup.yaml", data, free_port_base(block_size(3) * 3))
    order = [(after, True), (before, True), (after, False), (before, False)]
    results: dict[str, list[dict[str, Any]]] = {}
    for i in range(runs):
        for v, heal in order if i % 2 == 0 else list(reversed(order)):
            shutil.rmtree(data, ignore_errors=True)
            args = ["catchup", str(spec), "--outage", str(outage), "--messages", str(messages)]
            r = run.helper(v, *args, *([] if heal else ["--no-heal"]))
            key = f"{'durable' if v is after else 'classic'}, heal {'on' if heal else 'off'}"
            results.setdefault(key, []).append(r)
            print(f"  catch-up run {i + 1}/{runs} {key}: {r['complete_s']}", file=sys.stderr, flush=True)
    summary = {}
    for key, rs in results.items():
        copies = list(rs[0]["complete_s"])
        summary[key] = {
            c: {
                "median_s": med([x["complete_s"][c] for x in rs if x["complete_s"][c] is not None]),
                "runs_s": [x["complete_s"][c] for x in rs],
                "complete": all(x["held"][c] == x["expected"][c] for x in rs),
            }
            for c in copies
        } | {"nudges": sorted({e for x in rs for e in x["heal_events"]})}
    return {"runs": runs, "outage_s": outage, "messages": messages, "results": results, "summary": summary}


# ---------------------------------------------------------------------------------------------------------------
# Tables


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def print_bringup(part: dict[str, Any]) -> None:
    summ = part["summary"]
    print(f"\n### {part['label']} ({part['runs']} alternating runs, medians)\n")
    head = "| variant | bare ready (median, best) | `up` | up / bare | up / best bare |"
    kept = any("up_kept_median_s" in s for s in summ.values())
    if kept:
        head += " `up`, secrets kept | kept / best bare |"
    head += " secrets (+ certs) made | report jetstream (servers) |"
    print(head)
    print("|" + " --- |" * (head.count("|") - 1))
    for name, s in summ.items():
        cells = [
            name,
            f"{s['bare_median_s']:.3f} s, {s['bare_best_s']:.3f} s",
            f"{s['up_median_s']:.3f} s",
            fmt_ratio(s["up_ratio"]),
            fmt_ratio(s["up_ratio_to_best_bare"]),
        ]
        if kept:
            cells += [f"{s['up_kept_median_s']:.3f} s", fmt_ratio(s["up_kept_ratio_to_best_bare"])]
        cells += [f"{s['prepare_s']:.3f} s", f"{s['report_median_s']:.3f} s ({s['report_servers']})"]
        print("| " + " | ".join(cells) + " |")
    if "before" in summ:
        print("\n| variant | bare / before | up / before | report / before | leaf storm (links) | storm / before |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name, s in summ.items():
            storm = f"{s['leaf_storm_median_s']:.3f} s ({s['leaf_links']})" if "leaf_storm_median_s" in s else "-"
            bare, up = fmt_ratio(s.get("bare_median_s_vs_before")), fmt_ratio(s.get("up_median_s_vs_before"))
            print(
                f"| {name} | {bare} | {up}"
                f" | {fmt_ratio(s.get('report_median_s_vs_before'))} | {storm} |"
                f" {fmt_ratio(s.get('leaf_storm_median_s_vs_before'))} |"
            )
    if any("clients" in s for s in summ.values()):
        print("\n| variant | clients | connect at once | / before | all kicked, reconnected | / before |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name, s in summ.items():
            if "clients" in s:
                print(
                    f"| {name} | {s['clients']} | {s['client_connect_median_s']:.3f} s |"
                    f" {fmt_ratio(s.get('client_connect_median_s_vs_before'))} |"
                    f" {s['client_reconnect_median_s']:.3f} s |"
                    f" {fmt_ratio(s.get('client_reconnect_median_s_vs_before'))} |"
                )


def print_catchup(part: dict[str, Any]) -> None:
    print(f"\n### R1 catch-up after a {part['outage_s']:g} s cut ({part['runs']} run(s) each, medians)\n")
    print("| sourcing, heal watch | b/MIRROR (R1 mirror of a/P) | b/AGG (R1, sources a/P + a/Q) | nudges sent |")
    print("| --- | --- | --- | --- |")
    for key, s in part["summary"].items():
        m, a = s["leaf-domain-b/MIRROR"], s["leaf-domain-b/AGG"]
        nudges = "; ".join(s["nudges"]) or "none"
        print(
            f"| {key} | {m['median_s']:.2f} s{'' if m['complete'] else ' (INCOMPLETE)'} |"
            f" {a['median_s']:.2f} s{'' if a['complete'] else ' (INCOMPLETE)'} | {nudges} |"
        )


def goals(parts: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    out = []
    if seed := parts.get("seed"):
        for name, s in seed["summary"].items():
            x = s["up_ratio"]
            out.append((f"seed, {name}", "natsmesh up --detach / bare <= 1.25x", f"{x:.2f}x", x <= SEED_GOAL))
            r = s["report_max_s"]
            out.append((f"seed, {name}", "report jetstream < 1 s", f"max {r:.2f} s", r < REPORT_GOAL))
    for label, part in parts.items():
        if not label.startswith("spokes"):
            continue
        n = int(label.removeprefix("spokes"))
        for name, s in part["summary"].items():
            if n == 100:
                for side in ("up", "up_kept"):
                    x = s.get(f"{side}_ratio_to_best_bare")
                    if x is not None:
                        what = "up" if side == "up" else "up, secrets kept"
                        out.append((f"100 spokes, {name}", f"{what} <= 1.5x best bare", f"{x:.2f}x", x <= SPOKES_GOAL))
            if n == 200:
                t = s["up_median_s"]
                out.append((f"200 spokes, {name}", "ready < 15 s", f"{t:.2f} s", t < READY_200_GOAL))
            r, servers = s["report_max_s"], s["report_servers"]
            ok = r < REPORT_GOAL and servers == n + 3
            out.append((f"{n} spokes, {name}", "report over all servers < 1 s", f"max {r:.2f} s ({servers})", ok))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default="/tmp/before11", help="checkout of the code before issue 11 (4d47b17^)")
    ap.add_argument("--parts", nargs="+", choices=["seed", "spokes", "catchup"], default=["seed", "spokes", "catchup"])
    ap.add_argument("--seed-runs", type=int, default=5, help="alternating runs per seed comparison")
    ap.add_argument("--spoke-runs", type=int, default=3, help="alternating runs per spokes comparison")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 200], help="spokes")
    ap.add_argument("--clients", type=int, default=200, help="clients in the seed's client storm (0: none)")
    ap.add_argument("--catchup-runs", type=int, default=1)
    ap.add_argument("--outage", type=float, default=25.0, help="seconds the owner is cut off")
    ap.add_argument("--messages", type=int, default=1000, help="published into each product while cut off")
    ap.add_argument(
        "--variants",
        nargs="+",
        choices=["before", "after", "after-tls", "before-tls"],
        default=["before", "after", "after-tls"],
        help="which to compare in the bring-up parts (before-tls: the old tree's one shared TLS key)",
    )
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()
    logging.getLogger("asyncio").setLevel(logging.ERROR)  # "eof_received() has no effect when using ssl", per kick
    before_src = Path(args.before) / "src"
    if not (before_src / "natsmesh").is_dir():
        ap.error(f"no natsmesh code in {before_src}: git worktree add --detach {args.before} 4d47b17^")
    before = Variant("before", before_src, tls=False)
    after = Variant("after", CURRENT, tls=False)
    after_tls = Variant("after-tls", CURRENT, tls=True)
    known = {v.name: v for v in (before, after, after_tls, Variant("before-tls", before_src, tls=True))}
    variants = [known[name] for name in args.variants]
    began = time.monotonic()
    parts: dict[str, Any] = {}

    def save() -> None:  # after every part, so a run cut short keeps what it measured
        if args.json_out:
            doc = {"benchmark": "secrets", "machine": machine(), "before": str(before_src), "parts": parts}
            Path(args.json_out).write_text(json.dumps(doc, indent=1) + "\n")

    with tempfile.TemporaryDirectory(prefix="natsmesh-secrets-") as tmp:
        run = Runner(Path(tmp), binary.resolve().path)
        if "seed" in args.parts:
            print("seed mesh…", file=sys.stderr, flush=True)
            doc = seed_doc(port_base(block_size(3) * 6, None))
            storms = {"leafs": 1, "clients": args.clients}
            parts["seed"] = bringup(run, variants, "seed", doc, args.seed_runs, ["bare", "up"], storms)
            save()
        if "spokes" in args.parts:
            for n in args.sizes:
                print(f"{n} spokes…", file=sys.stderr, flush=True)
                doc = spokes_doc(n, free_port_base(block_size(3) * (n + 1)))
                sides = ["bare", "up", "up_kept"]
                parts[f"spokes{n}"] = bringup(run, variants, f"spokes{n}", doc, args.spoke_runs, sides, {"leafs": 1})
                save()
        if "catchup" in args.parts:
            print("catch-up…", file=sys.stderr, flush=True)
            parts["catchup"] = catchup(run, before, after, args.catchup_runs, args.outage, args.messages)
    m = machine()
    where = f"{m['cores']} cores ({m['cpu']}), {m['ram_gib']} GiB, Linux {m['kernel']}, Python {m['python']}"
    print(f"\nmachine: {where}, nats-server {m['nats_server']}, {m['date']}; took {time.monotonic() - began:.0f} s")
    for label, part in parts.items():
        print_catchup(part) if label == "catchup" else print_bringup(part)
    found = goals(parts)
    if found:
        print("\n| mesh | goal | measured | met |\n| --- | --- | --- | --- |")
        for mesh, goal, measured, ok in found:
            print(f"| {mesh} | {goal} | {measured} | {'yes' if ok else 'NO'} |")
    if args.json_out:
        doc = {
            "benchmark": "secrets",
            "machine": m,
            "before": str(before_src),
            "seconds": round(time.monotonic() - began),
            "parts": parts,
            "goals": [{"mesh": a, "goal": b, "measured": c, "met": d} for a, b, c, d in found],
        }
        Path(args.json_out).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
