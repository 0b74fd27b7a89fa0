"""Fault proxies on a local mesh's leaf links (`natsmesh up --chaos`): one bound listener per link.

With `--chaos`, every leaf domain reaches each hub node through its own TCP proxy, owned by the supervisor, so
`natsmesh chaos partition` can cut a domain's real traffic (each account it links in) and restore it. The ports
are bound
before the supervisor starts (it inherits the sockets), so the configs can name them; they are recorded
(`natsmesh.local.records`) for later re-renders: a policy change must not move the links off the proxies.
"""

from __future__ import annotations

import socket

from natsmesh.faults.proxy import bind_listeners
from natsmesh.local.records import ProxyLink
from natsmesh.model.mesh import Mesh


def allocate(mesh: Mesh) -> tuple[list[ProxyLink], dict[int, socket.socket]]:
    """One bound listener per (leaf domain, hub node), on ports the mesh does not use."""
    pairs = [(d.name, h) for d in mesh.domains for h in mesh.hub.nodes]
    used = {p for n in mesh.nodes() for p in n.ports().values()}
    socks = bind_listeners(mesh.host, len(pairs), used)
    links = []
    for (domain, hub_node), sock in zip(pairs, socks, strict=True):
        port = sock.getsockname()[1]
        assert hub_node.leafnode_port is not None  # hub nodes always listen for leaf links
        links.append(ProxyLink(domain, f"{domain}->{hub_node.name}", port, hub_node.leafnode_port))
    return links, {s.getsockname()[1]: s for s in socks}
