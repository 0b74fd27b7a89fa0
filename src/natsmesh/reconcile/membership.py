"""Clusters joining and leaving a running mesh without touching the others (operator mode).

In operator mode the hub's configs name no domain: a domain is an account JWT in the hub's resolver. So a domain
the spec adds joins a running mesh with a claims push and its own cluster started under the running supervisor
(`natsmesh.run.supervisor`, told through `run/members.json`); no hub server reloads or restarts and no other leaf
link reconnects. A domain the spec drops leaves in the opposite order: its streams are deleted while its cluster
still runs (accounts vanishing under live streams cost nats-server slow restarts and lost quorum, #3176, #3306),
then its account is deleted from the resolver, then its nodes stop. Its stores and secrets stay on disk. On
hosts, where no supervisor here runs the clusters, a domain the spec drops is an account the resolver holds and
the spec does not name (`strays`): `apply --prune` deletes the copies of its products, then its account, whose
leaf links then close; its servers and their stores are its team's to stop.

In config mode every account is in the hub's configs: a new cluster needs them re-rendered and a restart (the
error says so, `natsmesh.local.secrets`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass, field

from natsmesh.errors import ApplyError, NotDeployedError, NotRunningError
from natsmesh.local.certs import cert_texts
from natsmesh.local.files import write_files
from natsmesh.local.records import record_members, recorded_members, recorded_via
from natsmesh.local.secrets import load_credentials
from natsmesh.local.state import SupervisorState, lock_is_held
from natsmesh.model import jwt
from natsmesh.model.identities import Credentials
from natsmesh.model.mesh import Mesh
from natsmesh.model.topology import Cluster
from natsmesh.model.trust import changed_hub_accounts
from natsmesh.observe.connect import Connections, connect_system
from natsmesh.observe.grants import lookup_claims, resolver_accounts
from natsmesh.observe.readiness import targets, wait_ready
from natsmesh.observe.wire import claims_refusal
from natsmesh.render.servers import render_mesh
from natsmesh.render.trust import joins_live, realise

TIMEOUT = 30.0


@dataclass
class Membership:
    """Which clusters join the running mesh and which leave it (by name)."""

    joining: list[str] = field(default_factory=list)
    leaving: list[str] = field(default_factory=list)

    @property
    def pending(self) -> bool:
        return bool(self.joining or self.leaving)

    def describe(self) -> str:
        parts = [f"join: {', '.join(self.joining)}"] * bool(self.joining)
        parts += [f"leave (its streams deleted, its account removed): {', '.join(self.leaving)}"] * bool(self.leaving)
        return "; ".join(parts)


def running_mesh(mesh: Mesh) -> Mesh | None:
    """The mesh MESH's supervisor runs (as `up` or the last live join or leave left it), or None."""
    return recorded_members(mesh) if lock_is_held(mesh) else None


def plan_membership(mesh: Mesh) -> Membership:
    """The clusters MESH names that its running supervisor does not run, and the other way round. Empty unless
    the mesh runs here in operator mode."""
    running = running_mesh(mesh)
    if running is None or mesh.hosted or not joins_live(mesh):
        return Membership()
    have = {c.name for c in running.clusters}
    want = {c.name for c in mesh.clusters}
    return Membership(
        joining=[c.name for c in mesh.clusters if c.name not in have],
        leaving=[c.name for c in running.clusters if c.name not in want],
    )


def _tell_supervisor(mesh: Mesh) -> None:
    state = SupervisorState.read(mesh)
    if state is None or not state.pid:
        raise NotRunningError(f"mesh {mesh.name!r} has no supervisor to start or stop clusters")
    record_members(mesh)
    os.kill(state.pid, signal.SIGUSR1)


def _wait_members(mesh: Mesh, clusters: list[Cluster], present: bool, timeout: float) -> None:
    """Until the supervisor's state lists every node of CLUSTERS as running (PRESENT) or not at all."""
    names = {n.name for c in clusters for n in c.nodes}
    deadline = time.monotonic() + timeout
    while True:
        state = SupervisorState.read(mesh)
        nodes = state.nodes if state else {}
        if present and all(n in nodes and nodes[n].state == "running" for n in names):
            return
        if not present and not names & set(nodes):
            return
        if time.monotonic() > deadline:
            verb = "start" if present else "stop"
            raise NotRunningError(f"the supervisor did not {verb} {', '.join(sorted(names))} within {timeout:g} s")
        time.sleep(0.05)


async def join(mesh: Mesh, change: Membership, timeout: float = TIMEOUT) -> dict[str, str]:
    """Make the joining clusters' secrets and folders, push the accounts the join changes (theirs, and those of
    the owners they copy from), start their nodes, and wait until they are ready (linked to the hub). Nothing
    else is written to or restarted, and nothing here grows with the clusters already running: the rest of the
    mesh (every other folder, every other account) is brought in step by the apply that follows. Returns the
    joining folders' files as rendered, {} if none joins."""
    if not change.joining:
        return {}
    if mesh.hosted:
        raise NotDeployedError("a cluster joins a mesh on hosts when its party starts its own servers")
    running = running_mesh(mesh)
    creds = load_credentials(mesh, create=True)  # the new clusters' keys; nobody else's change
    files = render_mesh(mesh, creds, certs=cert_texts(mesh), via=recorded_via(mesh), only=change.joining)
    write_files(files, mesh.data_dir)
    from natsmesh.reconcile.claims import push_claims

    # the accounts first: a leaf that links before its account exists waits 0.5 s more
    await push_claims(mesh, creds, only=changed_hub_accounts(running, mesh) if running else None)
    joining = [mesh.domain(name) for name in change.joining]
    _tell_supervisor(mesh)
    await asyncio.to_thread(_wait_members, mesh, joining, True, timeout)
    ready = [t for t in targets(mesh) if t.cluster in change.joining]
    await asyncio.to_thread(wait_ready, ready, timeout=timeout, name=f"joining {', '.join(change.joining)}")
    return files


async def strays(mesh: Mesh, creds: Credentials) -> dict[str, str]:
    """The accounts the hub's resolver holds that MESH does not name, by key, each with the name its claims give
    (operator mode: domains dropped from the spec of a mesh on hosts, where no supervisor here ran them)."""
    trust = realise(mesh, creds)
    if not trust.pushes:
        return {}
    wanted = set(trust.claims(int(time.time())))
    nc = await connect_system(mesh, creds, cluster=mesh.hub)
    try:
        out = {}
        for key in sorted(await resolver_accounts(nc) - wanted):
            token = await lookup_claims(nc, key)
            out[key] = str(jwt.decode(token).get("name") or key) if token else key
        return out
    finally:
        await nc.close()


async def forget(mesh: Mesh, creds: Credentials, accounts: dict[str, str]) -> None:
    """Delete ACCOUNTS (key -> name) from the hub's resolver: their leaf links close, nothing else changes."""
    request = realise(mesh, creds).forget(sorted(accounts), int(time.time()))
    if not request:
        return
    nc = await connect_system(mesh, creds, cluster=mesh.hub)
    try:
        msg = await nc.request("$SYS.REQ.CLAIMS.DELETE", request.encode(), timeout=2.0)
        if (why := claims_refusal(msg.data)) is not None:
            names = ", ".join(sorted(accounts.values()))
            raise ApplyError(f"the hub's resolver refused to delete {names}: {why}")
    finally:
        await nc.close()


async def leave(mesh: Mesh, change: Membership, timeout: float = TIMEOUT) -> list[str]:
    """Delete the leaving clusters' streams, then their accounts at the hub, then stop their nodes. Returns the
    streams deleted (`DOMAIN/STREAM`)."""
    running = running_mesh(mesh)
    if not change.leaving or running is None:
        return []
    creds = load_credentials(running, create=False)
    deleted: list[str] = []
    async with Connections(running, creds, name="natsmesh-leave") as mc:
        for name in change.leaving:
            js = await mc.jetstream(name)
            for stream in await js.streams_info():
                await js.delete_stream(stream.config.name or "")
                deleted.append(f"{name}/{stream.config.name}")
    trust = realise(running, creds)
    await forget(running, creds, {trust.hub_account(name): name for name in change.leaving})
    leaving = [running.domain(name) for name in change.leaving]
    _tell_supervisor(mesh)
    await asyncio.to_thread(_wait_members, mesh, leaving, False, timeout)
    return deleted
