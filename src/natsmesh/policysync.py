"""Changing the policy of a running mesh: re-render, reload the servers, and cut revoked shares.

A config reload makes the servers apply new accounts, exports and imports without a restart. It does not
re-check the subscriptions a leaf connection already holds, so a mirror whose share was revoked would keep
receiving; the consumer domain's leaf links at the hub are therefore kicked, and they reconnect under the new
policy within about a second (see docs/design/isolation.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from dataclasses import dataclass, field

from natsmesh.certs import cert_texts
from natsmesh.credentials import load_credentials
from natsmesh.errors import NotRunningError
from natsmesh.observe import connect_system, ping
from natsmesh.products import shares
from natsmesh.proxies import recorded_via
from natsmesh.readiness import http_json
from natsmesh.render import render_mesh, write_files
from natsmesh.spec import Mesh
from natsmesh.supervisor import read_state

SHARES_FILE = "shares.json"


@dataclass
class PolicyChange:
    """What a policy sync would do or did."""

    changed_files: list[str] = field(default_factory=list)
    reloaded: list[str] = field(default_factory=list)
    granted: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    kicked: int = 0

    @property
    def pending(self) -> bool:
        return bool(self.changed_files or self.revoked or self.granted)

    def describe(self) -> str:
        parts = []
        if self.granted:
            parts.append("grant " + ", ".join(self.granted))
        if self.revoked:
            parts.append("revoke " + ", ".join(self.revoked))
        if self.changed_files:
            parts.append(f"{len(self.changed_files)} server configs change")
        return "; ".join(parts)


def _share_names(mesh: Mesh) -> list[str]:
    return [f"{o}/{s} -> {c}" for o, s, c in shares(mesh.consumptions)]


def _applied_shares(mesh: Mesh) -> list[str]:
    try:
        data: list[str] = json.loads((mesh.data_dir / "run" / SHARES_FILE).read_text())
        return data
    except (OSError, ValueError):
        return []


def record_shares(mesh: Mesh) -> None:
    path = mesh.data_dir / "run" / SHARES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_share_names(mesh)))


def plan_policy(mesh: Mesh) -> PolicyChange:
    """Compare the configs the spec renders, and its shares, with what the running mesh was given."""
    files = render_mesh(mesh, load_credentials(mesh, create=False), certs=cert_texts(mesh), via=recorded_via(mesh))
    changed = []
    for rel, text in files.items():
        if rel.endswith(".conf"):
            path = mesh.data_dir / rel
            if not path.exists() or path.read_text() != text:
                changed.append(rel)
    old, new = set(_applied_shares(mesh)), set(_share_names(mesh))
    return PolicyChange(changed_files=changed, granted=sorted(new - old), revoked=sorted(old - new))


def _load_time(mesh: Mesh, port: int) -> str | None:
    try:
        return str(http_json(mesh.host, port, "/varz").get("config_load_time"))
    except (OSError, ValueError):
        return None


async def apply_policy(mesh: Mesh, change: PolicyChange, timeout: float = 10.0) -> PolicyChange:
    """Write the new configs, reload the nodes whose config changed, and kick the leaf links of domains that lost
    a share. Needs the mesh's supervisor (local processes)."""
    if not change.pending:
        return change
    state = read_state(mesh) or {}
    pids = {name: info.get("pid") for name, info in (state.get("nodes") or {}).items()}
    creds = load_credentials(mesh, create=False)
    write_files(render_mesh(mesh, creds, certs=cert_texts(mesh), via=recorded_via(mesh)), mesh.data_dir)
    by_file = {f"{c.folder}/{n.name}.conf": n for c in mesh.clusters for n in c.nodes}
    nodes = [by_file[f] for f in change.changed_files if f in by_file]
    before = {n.name: _load_time(mesh, n.http_port) for n in nodes}
    for n in nodes:
        pid = pids.get(n.name)
        if not pid:
            raise NotRunningError(f"node {n.name} of mesh {mesh.name!r} is not running; cannot reload its policy")
        os.kill(int(pid), signal.SIGHUP)
    deadline = time.monotonic() + timeout
    for n in nodes:
        while _load_time(mesh, n.http_port) == before[n.name]:
            if time.monotonic() > deadline:
                raise NotRunningError(f"node {n.name} did not reload its configuration within {timeout:g} s")
            await asyncio.sleep(0.05)
        change.reloaded.append(n.name)
    losers = {r.rsplit(" -> ", 1)[1] for r in change.revoked}
    if losers:
        change.kicked = await kick_links(mesh, losers)
    record_shares(mesh)
    return change


async def kick_links(mesh: Mesh, domains: set[str]) -> int:
    """Close the hub's leaf connections of DOMAINS' data accounts; they reconnect under the current policy."""
    creds = load_credentials(mesh, create=False)
    nc = await connect_system(mesh, creds)
    kicked = 0
    try:
        leafz = await ping(nc, "LEAFZ", {n.name for n in mesh.hub.nodes}, timeout=2.0)
        for rep in leafz.replies.values():
            server_id = (rep.get("server") or {}).get("id")
            for link in (rep.get("data") or {}).get("leafs") or []:
                if link.get("account") in domains and server_id:
                    await nc.request(
                        f"$SYS.REQ.SERVER.{server_id}.KICK", json.dumps({"cid": link["id"]}).encode(), timeout=2.0
                    )
                    kicked += 1
    finally:
        await nc.close()
    return kicked
