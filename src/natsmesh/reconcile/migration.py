"""Moving a running mesh from one trust mode to the other (`trust: config` <-> `trust: operator`).

nats-server cannot reload into or out of operator mode (a resolver and trusted operators are not reloadable), and a
hub half in each mode would name each domain's account two ways (by name on config-mode nodes, by public key on
operator-mode ones), so the hub's nodes are restarted together with their new configs; the hub holds no domain's
data, so nothing of a product is at stake, and copies pause while it is down and resume from where they were (each
copy's consumer lives in its owner's cluster). The leaf clusters keep running: only their link's remote changes
(an nkey in config mode, a creds file in operator mode), which nats-server 2.15 replaces on a reload.

The hub's own account changes name with the mode, and with it the home of its JetStream data: the catalog is
copied out first and written back into the new account (its created times kept); a hub that holds products of its
own is refused, since their streams would be left in an account that no longer exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from natsmesh.errors import ApplyError, NotDeployedError, NotRunningError
from natsmesh.local.certs import cert_texts
from natsmesh.local.files import write_files
from natsmesh.local.records import (
    forget_carried_catalog,
    record_carried_catalog,
    record_members,
    recorded_carried_catalog,
    recorded_members,
    recorded_via,
)
from natsmesh.local.resolver import preload
from natsmesh.local.secrets import load_credentials
from natsmesh.local.state import node_process
from natsmesh.model.mesh import Mesh
from natsmesh.model.record import Record
from natsmesh.model.topology import monitor_host
from natsmesh.observe.connect import Connections
from natsmesh.observe.monitor import config_load_time
from natsmesh.observe.readiness import targets, wait_ready
from natsmesh.observe.streams import list_streams, wait_jetstream
from natsmesh.reconcile.catalog import ensure_bucket, read_catalog, write_entries
from natsmesh.reconcile.plan import CATALOG_STREAM
from natsmesh.render.servers import render_mesh

TIMEOUT = 60.0


@dataclass(frozen=True)
class TrustMove(Record):
    """A running mesh moved from trust mode BEFORE to AFTER: the hub nodes restarted, the leaf nodes reloaded,
    the catalog entries carried over, and how long the hub was away (copies paused) in seconds."""

    before: str
    after: str
    restarted: list[str] = field(default_factory=list)
    reloaded: list[str] = field(default_factory=list)
    catalog_entries: int = 0
    hub_away_s: float = 0.0

    def describe(self) -> str:
        return (
            f"from trust: {self.before} to trust: {self.after}: hub nodes {', '.join(self.restarted)} restarted "
            f"together (away {self.hub_away_s:.1f} s; copies paused, none lost), {len(self.reloaded)} leaf nodes "
            f"reloaded, {self.catalog_entries} catalog entries carried over"
        )


def trust_change(mesh: Mesh) -> tuple[str, str] | None:
    """(running, wanted) trust modes if MESH's spec asks another mode than the running mesh's, else None."""
    running = recorded_members(mesh)
    if running is None or running.trust == mesh.trust:
        return None
    return running.trust, mesh.trust


def move_detail(mesh: Mesh, before: str) -> str:
    """What moving MESH from trust mode BEFORE to its spec's mode does, for a plan's row."""
    return (
        f"from trust: {before} to trust: {mesh.trust}: the hub's {len(mesh.hub.nodes)} nodes restart together "
        "with new configs (nats-server cannot reload into or out of operator mode; copies pause meanwhile), every "
        "leaf node reloads its link, the catalog is carried over"
    )


async def _hub_catalog(old: Mesh) -> dict[str, dict[str, Any]]:
    """The hub's catalog under the running mode, after checking the hub holds nothing else; it is saved in the run
    directory, then its stream is deleted (its account will not exist under the new mode)."""
    if (saved := recorded_carried_catalog(old)) is not None:  # an earlier move stopped half-way: its copy
        return saved
    creds = load_credentials(old, create=False)
    async with Connections(old, creds, name="natsmesh-migrate") as mc:
        nc = await mc.connection(old.hub.name)
        streams = sorted(await list_streams(nc))
        others = [s for s in streams if s != CATALOG_STREAM]
        if others:
            raise ApplyError(
                f"the hub holds streams of its own ({', '.join(others)}): they live in the hub's account, whose "
                "name changes with the trust mode, and would be left behind; move them to a domain first"
            )
        if not streams:
            return {}
        js = await mc.jetstream(old.hub.name)
        entries = await read_catalog(js)
        record_carried_catalog(old, entries)
        await js.delete_stream(CATALOG_STREAM)
        return entries


def _wait(check: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise NotRunningError(f"{what} within {timeout:g} s")
        time.sleep(0.05)


async def move_trust(mesh: Mesh, timeout: float = TIMEOUT) -> TrustMove:
    """Move the running MESH to its spec's trust mode (see the module's doc)."""
    change = trust_change(mesh)
    old = recorded_members(mesh)
    if change is None or old is None:
        raise ApplyError(f"mesh {mesh.name!r} already runs with trust: {mesh.trust}")
    if mesh.hosted:
        raise NotDeployedError(
            f"mesh {mesh.name!r} runs on hosts: render the folders (`natsmesh render`), stop every hub server, put "
            "the hub's new folder on its hosts and start them, then put each domain's folder on its hosts and "
            "reload their servers (docs/deploy.md)"
        )
    if {c.name for c in old.clusters} != {c.name for c in mesh.clusters}:
        raise ApplyError("a mesh changes trust mode with the clusters it runs: join or leave clusters before or after")
    if mesh.hub.name in {p.domain for p in mesh.products}:
        raise ApplyError(
            f"the hub {mesh.hub.name} owns products: their streams live in the hub's account, whose name changes "
            "with the trust mode; move them to a domain first"
        )
    entries = await _hub_catalog(old)
    creds = load_credentials(mesh, create=True)
    write_files(render_mesh(mesh, creds, certs=cert_texts(mesh), via=recorded_via(mesh)), mesh.data_dir)
    preload(mesh, creds)
    leaves = [n for c in mesh.domains for n in c.nodes]
    loaded = {n.name: config_load_time(monitor_host(n), n.http_port) for n in leaves}
    hub_pids = {n.name: node_process(mesh, n.name) for n in mesh.hub.nodes}
    leaf_pids = {n.name: node_process(mesh, n.name) for n in leaves}
    started = time.monotonic()
    for pid in hub_pids.values():  # together: a hub half in each mode names each account two ways
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in leaf_pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGHUP)
    record_members(mesh)

    def restarted() -> bool:
        try:
            return all(node_process(mesh, name) != pid for name, pid in hub_pids.items())
        except NotRunningError:
            return False

    await asyncio.to_thread(_wait, restarted, "the hub's nodes did not start again", timeout)
    await asyncio.to_thread(wait_ready, [t for t in targets(mesh) if t.cluster == mesh.hub.name], timeout=timeout)
    away = round(time.monotonic() - started, 2)
    for n in leaves:
        await asyncio.to_thread(
            _wait,
            lambda n=n: config_load_time(monitor_host(n), n.http_port) != loaded[n.name],
            f"leaf node {n.name} did not reload its configuration",
            timeout,
        )
    await asyncio.to_thread(wait_ready, mesh, timeout=timeout)
    if entries:
        async with Connections(mesh, load_credentials(mesh, create=False), name="natsmesh-migrate") as mc:
            await wait_jetstream(await mc.connection(mesh.hub.name))  # the hub's new account, just loaded
            js = await mc.jetstream(mesh.hub.name)
            await ensure_bucket(js, replicas=min(3, len(mesh.hub.nodes)))
            await write_entries(js, entries)
    forget_carried_catalog(mesh)
    return TrustMove(change[0], change[1], sorted(hub_pids), [n.name for n in leaves], len(entries), hub_away_s=away)
