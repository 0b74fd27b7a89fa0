"""What a running mesh was given, kept in its run dir for later commands: its fault proxies, shares and members.

`faults.json` lists the fault proxies of `up --chaos` (so a re-render for a policy change keeps the leaf links
on them); `shares.json` lists the shares the running servers were configured with (so `apply` knows what a new
spec grants and revokes); `members.json` is the mesh its supervisor runs (so `apply` knows which clusters a new
spec adds or drops, and the supervisor which nodes to start or stop).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from natsmesh.local.files import write_private
from natsmesh.local.layout import MeshDirs
from natsmesh.model.mesh import Mesh
from natsmesh.render.servers import Via

CutMode = Literal["reset", "drop"]
CUT_MODES: tuple[CutMode, ...] = get_args(CutMode)  # how a fault proxy partitions: close links, or go silent


@dataclass(frozen=True)
class ProxyLink:
    """One proxied leafnode link: leaf nodes of DOMAIN connect to `listen_port`, the proxy to `target_port`."""

    domain: str
    name: str  # "<domain>-><hub node>"
    listen_port: int
    target_port: int

    @property
    def hub_node(self) -> str:
        return self.name.split("->", 1)[1]


def via(links: list[ProxyLink]) -> Via:
    """Where each leaf domain's link to each hub node goes instead (`natsmesh.render.servers.render_node`)."""
    return {(link.domain, link.hub_node): link.listen_port for link in links}


def record_links(mesh: Mesh, links: list[ProxyLink] | None) -> None:
    """Remember the proxies of the mesh being started (None: started without them)."""
    path = MeshDirs.of(mesh).faults
    if links is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    rows = [[link.domain, link.name, link.listen_port, link.target_port] for link in links]
    path.write_text(json.dumps({"links": rows}))


def recorded_links(mesh: Mesh) -> list[ProxyLink] | None:
    """The proxies the running (or last) mesh was started with, or None."""
    try:
        rows = json.loads(MeshDirs.of(mesh).faults.read_text())["links"]
        return [ProxyLink(str(d), str(n), int(lp), int(tp)) for d, n, lp, tp in rows]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def recorded_via(mesh: Mesh) -> Via | None:
    links = recorded_links(mesh)
    return via(links) if links is not None else None


def share_names(mesh: Mesh) -> list[str]:
    """`owner/stream -> taker/copy` for every share (a public product's slots too)."""
    return sorted(s.name for s in mesh.shares)


def record_shares(mesh: Mesh) -> None:
    path = MeshDirs.of(mesh).shares
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(share_names(mesh)))


def recorded_shares(mesh: Mesh) -> list[str]:
    """The shares the running servers were configured with (none recorded: none)."""
    try:
        data = json.loads(MeshDirs.of(mesh).shares.read_text())
    except (OSError, ValueError):
        return []
    return [str(x) for x in data] if isinstance(data, list) else []


def record_members(mesh: Mesh) -> None:
    """Say which mesh the supervisor runs (`up`), or is to run next (a live join or leave)."""
    write_private(MeshDirs.of(mesh).members, json.dumps(mesh.to_json()) + "\n")


def recorded_members(mesh: Mesh) -> Mesh | None:
    """The mesh MESH's supervisor runs, as `up` or the last live join or leave recorded it (None: not recorded)."""
    try:
        return Mesh.from_json(json.loads(MeshDirs.of(mesh).members.read_text()), mesh.source, mesh.base_dir)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _carried(mesh: Mesh) -> Path:
    return MeshDirs.of(mesh).run / "catalog-carried.json"


def record_carried_catalog(mesh: Mesh, entries: dict[str, dict[str, Any]]) -> None:
    """Keep the hub's catalog ENTRIES while the hub changes trust mode (`natsmesh.reconcile.migration`)."""
    write_private(_carried(mesh), json.dumps(entries) + "\n")


def recorded_carried_catalog(mesh: Mesh) -> dict[str, dict[str, Any]] | None:
    """The catalog a move of trust mode that stopped half-way kept, if any."""
    try:
        data = json.loads(_carried(mesh).read_text())
    except (OSError, ValueError):
        return None
    return {str(k): dict(v) for k, v in data.items()} if isinstance(data, dict) else None


def forget_carried_catalog(mesh: Mesh) -> None:
    _carried(mesh).unlink(missing_ok=True)


def _seen(mesh: Mesh) -> Path:
    return MeshDirs.of(mesh).run / "access-seen.json"


def recorded_access_reads(mesh: Mesh) -> dict[str, dict[str, Any]]:
    """What each domain's access stream held when the platform last read it (`natsmesh.observe.access.gather`):
    its state and messages, so that the next `apply` reads only what is new. Empty if none is recorded."""
    try:
        data = json.loads(_seen(mesh).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record_access_reads(mesh: Mesh, seen: dict[str, dict[str, Any]]) -> None:
    write_private(_seen(mesh), json.dumps(seen) + "\n")
