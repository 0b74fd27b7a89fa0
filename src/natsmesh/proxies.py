"""Fault proxies on a local mesh's leaf links (`natsmesh up --chaos`): their ports and where they are recorded.

With `--chaos`, every leaf domain reaches each hub node through its own TCP proxy, owned by the supervisor, so
`natsmesh chaos partition` can cut a domain's real traffic (both accounts) and restore it. The ports are bound
before the supervisor starts (it inherits the sockets), so the configs can name them; `run/faults.json` keeps
them for later re-renders (a policy change must not move the links off the proxies).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from natsmesh.render import Via
from natsmesh.spec import Mesh

if TYPE_CHECKING:  # the proxy itself (asyncio) is only loaded where it runs: `up` stays quick to start
    import socket

    from natsmesh.faultproxy import ProxyLink

FAULTS_FILE = "faults.json"
CONTROL_SOCKET = "faults.sock"


def _run(mesh: Mesh) -> Path:
    return mesh.data_dir / "run"


def control_path(mesh: Mesh) -> Path:
    """The supervisor's fault-control socket (in /tmp when the run dir's path is too long for a unix socket)."""
    path = _run(mesh) / CONTROL_SOCKET
    if len(str(path)) < 100:
        return path
    digest = hashlib.sha1(str(mesh.data_dir.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"natsmesh-{digest}.sock"


def allocate(mesh: Mesh) -> tuple[list[ProxyLink], dict[int, socket.socket]]:
    """One bound listener per (leaf domain, hub node), on ports the mesh does not use."""
    from natsmesh.faultproxy import ProxyLink, bind_listeners

    pairs = [(d.name, h) for d in mesh.domains for h in mesh.hub.nodes]
    used = {p for n in mesh.nodes() for p in n.ports().values()}
    socks = bind_listeners(mesh.host, len(pairs), used)
    links = []
    for (domain, hub_node), sock in zip(pairs, socks, strict=True):
        port = sock.getsockname()[1]
        assert hub_node.leafnode_port is not None  # hub nodes always listen for leaf links
        links.append(ProxyLink(domain, f"{domain}->{hub_node.name}", port, hub_node.leafnode_port))
    return links, {s.getsockname()[1]: s for s in socks}


def via(links: list[ProxyLink]) -> Via:
    return {(link.domain, link.name.split("->", 1)[1]): link.listen_port for link in links}


def record(mesh: Mesh, links: list[ProxyLink] | None) -> None:
    """Remember the proxies of the mesh being started (None: started without them)."""
    path = _run(mesh) / FAULTS_FILE
    if links is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    rows = [[link.domain, link.name, link.listen_port, link.target_port] for link in links]
    path.write_text(json.dumps({"links": rows}))


def recorded(mesh: Mesh) -> list[ProxyLink] | None:
    """The proxies the running (or last) mesh was started with, or None."""
    from natsmesh.faultproxy import ProxyLink

    try:
        rows = json.loads((_run(mesh) / FAULTS_FILE).read_text())["links"]
    except (FileNotFoundError, ValueError, KeyError):
        return None
    return [ProxyLink(str(d), str(n), int(lp), int(tp)) for d, n, lp, tp in rows]


def recorded_via(mesh: Mesh) -> Via | None:
    links = recorded(mesh)
    return via(links) if links is not None else None
