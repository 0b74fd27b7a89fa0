"""Changing the policy of a running mesh: re-render, reload the servers, and cut revoked shares.

A config reload makes the servers apply new accounts, exports and imports without a restart. It does not
re-check the subscriptions a leaf connection already holds, so a mirror whose share was revoked would keep
receiving; the consumer domain's leaf links at the hub are therefore kicked, and they reconnect under the new
policy within about a second (see docs/design/isolation.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass, field

from natsmesh.errors import ConfigRejectedError, NotDeployedError, NotRunningError
from natsmesh.local.binary import locate, refused_configs
from natsmesh.local.certs import cert_texts
from natsmesh.local.files import write_files
from natsmesh.local.records import record_shares, recorded_shares, recorded_via, share_names
from natsmesh.local.secrets import load_credentials
from natsmesh.local.state import node_process
from natsmesh.model.identities import Credentials
from natsmesh.model.mesh import Mesh
from natsmesh.model.products import share_taker
from natsmesh.model.topology import monitor_host
from natsmesh.observe.connect import connect_system
from natsmesh.observe.monitor import config_load_time
from natsmesh.observe.system import ping
from natsmesh.observe.wire import Leafz
from natsmesh.render.servers import config_name, render_mesh
from natsmesh.render.trust import realise


@dataclass
class PolicyChange:
    """What a policy sync would do or did."""

    changed_files: list[str] = field(default_factory=list)
    reloaded: list[str] = field(default_factory=list)
    granted: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    kicked: int = 0
    files: dict[str, str] = field(default_factory=dict, repr=False)  # what the spec renders (made once per plan)

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


def plan_policy(mesh: Mesh, creds: Credentials | None = None, files: dict[str, str] | None = None) -> PolicyChange:
    """Compare the configs the spec renders (FILES, if already rendered with these credentials), and its shares,
    with what the running mesh was given. Every config that would change is checked by nats-server itself (`-t`)
    first: `ConfigRejectedError` if it refuses one, so a spec that slipped past validation changes no file and
    reloads no node."""
    creds = creds or load_credentials(mesh, create=False)
    files = files or render_mesh(mesh, creds, certs=cert_texts(mesh), via=recorded_via(mesh))
    changed = []
    for rel, text in files.items():
        if rel.endswith(".conf"):
            path = mesh.data_dir / rel
            if not path.exists() or path.read_text() != text:
                changed.append(rel)
    if changed and (refused := refused_configs(locate(), files, changed)):
        raise ConfigRejectedError(refused)
    old, new = set(recorded_shares(mesh)), set(share_names(mesh))
    return PolicyChange(changed_files=changed, granted=sorted(new - old), revoked=sorted(old - new), files=files)


async def apply_policy(mesh: Mesh, change: PolicyChange, timeout: float = 10.0) -> PolicyChange:
    """Write the new configs, reload the nodes whose config changed, and kick the leaf links of domains that lost
    a share. Needs the mesh's supervisor (local processes)."""
    if not change.pending:
        return change
    if mesh.hosted and not change.changed_files:  # shares only (operator mode: they are claims, pushed by apply)
        if change.revoked:
            change.kicked = await kick_links(mesh, {share_taker(r) for r in change.revoked})
        record_shares(mesh)
        return change
    if mesh.hosted:
        raise NotDeployedError(
            f"mesh {mesh.name!r} runs on hosts of its own and its servers need new configs "
            f"({change.describe()}); render them (`natsmesh render --out DIR`), put each folder on its hosts, "
            "reload their servers (`systemctl reload`), then run `natsmesh apply` again"
        )
    creds = load_credentials(mesh, create=False)
    files = change.files or render_mesh(mesh, creds, certs=cert_texts(mesh), via=recorded_via(mesh))
    write_files(files, mesh.data_dir)
    by_file = {f"{c.folder}/{config_name(n)}": n for c in mesh.clusters for n in c.nodes}
    nodes = [by_file[f] for f in change.changed_files if f in by_file]
    before = {n.name: config_load_time(monitor_host(n), n.http_port) for n in nodes}
    pids = {n.name: node_process(mesh, n.name) for n in nodes}  # every node checked before the first is signalled
    for n in nodes:
        with contextlib.suppress(ProcessLookupError):  # it ended since: its restart reads the new config anyway
            os.kill(pids[n.name], signal.SIGHUP)
    deadline = time.monotonic() + timeout
    for n in nodes:
        while config_load_time(monitor_host(n), n.http_port) == before[n.name]:
            if time.monotonic() > deadline:
                raise NotRunningError(f"node {n.name} did not reload its configuration within {timeout:g} s")
            await asyncio.sleep(0.05)
        change.reloaded.append(n.name)
    losers = {share_taker(r) for r in change.revoked}
    if losers:
        change.kicked = await kick_links(mesh, losers)
    record_shares(mesh)
    return change


async def kick_links(mesh: Mesh, domains: set[str]) -> int:
    """Close the hub's leaf connections of DOMAINS' data accounts; they reconnect under the current policy."""
    creds = load_credentials(mesh, create=False)
    present = {c.name for c in mesh.domains}  # a domain leaving the mesh goes with its account
    accounts = {realise(mesh, creds).hub_account(d) for d in domains & present} - {""}
    nc = await connect_system(mesh, creds)
    kicked = 0
    try:
        leafz = await ping(nc, "LEAFZ", {n.name: mesh.hub.name for n in mesh.hub.nodes}, 2.0, asked=mesh.hub.name)
        for rep in leafz.replies.values():
            data: Leafz = rep.data
            for link in data.leafs:
                if link.account in accounts and rep.server.id:
                    await nc.request(
                        f"$SYS.REQ.SERVER.{rep.server.id}.KICK", json.dumps({"cid": link.id}).encode(), timeout=2.0
                    )
                    kicked += 1
    finally:
        await nc.close()
    return kicked
