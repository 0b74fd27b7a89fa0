"""Model in, files out: one nats-server config per node and a Procfile per cluster folder. Pure.

The layout is the seed's (`hub-cluster/`, `leaf-cluster-a/`, …), so `goreman start` or `honcho start` inside a
folder still works: every path in a config is relative to that folder.
"""

from __future__ import annotations

import json

from natsmesh.model.identities import SYSTEM_ACCOUNT, Credentials, account_of, user_url
from natsmesh.model.mesh import Mesh
from natsmesh.model.products import deliver_subject, shares
from natsmesh.model.topology import Cluster, Node

DEFAULT_SERVER_COMMAND = "nats-server"
TLS_DIR = "../tls"  # the mesh's certificates, seen from a cluster folder
CERT_FILES = ("ca.pem", "server.pem", "server-key.pem")


def _tls_block(indent: str) -> list[str]:
    return [
        f"{indent}tls {{",
        f'{indent}  cert_file: "{TLS_DIR}/server.pem"',
        f'{indent}  key_file: "{TLS_DIR}/server-key.pem"',
        f'{indent}  ca_file: "{TLS_DIR}/ca.pem"',
        f"{indent}  timeout: 5",
        f"{indent}}}",
    ]


def _q(value: str) -> str:
    """A quoted string literal in nats-server's config syntax (JSON escapes are accepted)."""
    return json.dumps(value)


def config_name(node: Node) -> str:
    return f"{node.name}.conf"


def store_dir(node: Node) -> str:
    """JetStream store, relative to the cluster folder (nats-server appends `/jetstream`)."""
    return f"data/{node.name}"


def leaf_url(mesh: Mesh, hub_node: Node, user: str, password: str, port: int | None = None) -> str:
    """A leaf remote URL to HUB_NODE (or to PORT, a fault proxy in front of it)."""
    to = port or hub_node.leafnode_port
    assert to is not None  # hub nodes always listen for leafnodes
    return user_url("nats-leaf", user, password, mesh.host, to)


Via = dict[tuple[str, str], int]  # (leaf domain, hub node) -> the port of a fault proxy in front of that hub node


def route_peers(cluster: Cluster, node: Node) -> list[Node]:
    """The nodes NODE lists in `routes`: the others when the cluster has an odd size (or 2), all otherwise.

    A fresh JetStream meta group sizes itself by the routes it is given and needs every one of those peers to
    vote in its first election; a vote request lost while routes are still forming costs a 4-9 s election
    timeout (seen in about 1 start in 20, more under load). Leaving itself out makes the bootstrap size N-1,
    whose quorum is still a majority of N when N is odd, so the first election no longer waits for the
    slowest link. For an even N >= 4 that quorum would not be a majority, so those keep the full list.
    """
    n = len(cluster.nodes)
    if n % 2 == 1 or n == 2:
        return [other for other in cluster.nodes if other.name != node.name]
    return list(cluster.nodes)


def render_node(mesh: Mesh, cluster: Cluster, node: Node, creds: Credentials, via: Via | None = None) -> str:
    """The nats-server config of one node; VIA sends its leaf links through fault proxies (`up --chaos`)."""
    host = mesh.host
    lines = [
        f"# natsmesh: mesh {mesh.name!r}, cluster/domain {cluster.name!r}, node {node.name!r}. Generated; edit",
        "# the spec and re-render instead of this file.",
        f"server_name: {_q(node.name)}",
        f"listen: {_q(f'{host}:{node.client_port}')}",
        f"http: {_q(f'{host}:{node.http_port}')}",
        "# A silent peer (a half-open link too) is dropped ping_interval x ping_max (+ up to one interval) later.",
        f"ping_interval: {_q(mesh.ping_interval)}",
        f"ping_max: {mesh.ping_max}",
        "# `down` asks for lame-duck mode first: leaders move away and JetStream stops cleanly, then clients are",
        "# told to go after the grace period (the duration is nats-server's minimum).",
        'lame_duck_grace_period: "1s"',
        'lame_duck_duration: "30s"',
        *(_tls_block("") if mesh.tls else []),
        "",
        "jetstream {",
        f"  domain: {_q(cluster.domain)}",
        f"  store_dir: {_q(store_dir(node))}",
        f"  max_memory_store: {mesh.max_memory}",
        f"  max_file_store: {mesh.max_file}",
    ]
    if mesh.sync_interval:
        lines.append(
            f"  sync_interval: {mesh.sync_interval if mesh.sync_interval == 'always' else _q(mesh.sync_interval)}"
        )
    if not cluster.is_hub:
        # A leaf cluster elects its own meta leader without waiting for the hub (domain autonomy).
        lines.append("  extension_hint: no_extend")
    lines.append("}")
    if len(cluster.nodes) > 1:
        routes = ", ".join(_q(f"nats-route://{host}:{n.cluster_port}") for n in route_peers(cluster, node))
        lines += [
            "",
            "cluster {",
            f"  name: {_q(cluster.name)}",
            f"  listen: {_q(f'{host}:{node.cluster_port}')}",
            f"  routes: [{routes}]",
            *(_tls_block("  ") if mesh.tls else []),
            "}",
        ]
    lines += [
        "",
        "accounts {",
        f"  {SYSTEM_ACCOUNT}: {{",
        f"    users: [{{ user: {_q(creds.system_user)}, password: {_q(creds.system_password)} }}]",
        "  }",
        *render_accounts(mesh, cluster, creds),
        "}",
        f"system_account: {SYSTEM_ACCOUNT}",
        "",
        "leafnodes {",
        f"  reconnect: {_q(mesh.leafnode_reconnect)}",
    ]
    if cluster.is_hub:
        lines.append(f"  listen: {_q(f'{host}:{node.leafnode_port}')}")
        # Leaf nodes dial exactly the hub URLs in their remotes (every hub node); advertised URLs would let a
        # link bypass what the remotes name (a fault proxy, a load balancer, an address seen from outside).
        lines.append("  no_advertise: true")
        if mesh.tls:
            lines += _tls_block("  ")
    else:
        hub = mesh.hub.nodes
        remote_tls = f', tls: {{ ca_file: "{TLS_DIR}/ca.pem" }}' if mesh.tls else ""
        ports = {h.name: (via or {}).get((cluster.name, h.name)) for h in hub}
        sys_urls = ", ".join(
            _q(leaf_url(mesh, h, creds.system_user, creds.system_password, ports[h.name])) for h in hub
        )
        link_user, link_password = creds.link(cluster.name)
        data_urls = ", ".join(_q(leaf_url(mesh, h, link_user, link_password, ports[h.name])) for h in hub)
        account = _q(account_of(cluster.name))
        if mesh.system_bridge:
            lines += [
                "  # Both accounts reach every hub node: SYS so one request at the hub sees every server; the",
                "  # domain's own account, bound at the hub to its link user, for the data it shares and takes.",
                "  remotes: [",
                f"    {{ urls: [{sys_urls}], account: {SYSTEM_ACCOUNT}{remote_tls} }}",
            ]
        else:
            lines += [
                "  # The domain's own account reaches every hub node, bound there to its link user, for the data it",
                "  # shares and takes. The system account stays local (leafnodes.system_bridge): natsmesh asks each",
                "  # cluster's servers directly, which keeps large meshes cheap.",
                "  remotes: [",
            ]
        lines += [f"    {{ urls: [{data_urls}], account: {account}{remote_tls} }}", "  ]"]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _exports_imports(mesh: Mesh, account: str) -> tuple[list[str], list[str]]:
    """The hub-side exports and imports of ACCOUNT: exactly what the declared consumptions need.

    Per share of OWNER/STREAM with its CONSUMERS: OWNER exports the consumer-create API of that stream and its
    flow-control replies to those consumers, and the delivery subject space of each consumer to that consumer
    only; each consumer imports those. Nothing else crosses between domain accounts. (Streams of the hub domain
    are never shared: validation refuses it, see docs/design/isolation.md.)
    """
    consumers: dict[tuple[str, str], list[str]] = {}
    for owner, stream, consumer in shares(mesh.consumptions):
        consumers.setdefault((owner, stream), []).append(consumer)
    for p in mesh.products:  # a public product may be taken by every other domain without a declaration
        if p.public:
            takers = consumers.setdefault((p.domain, p.name), [])
            takers += [c.name for c in mesh.clusters if c.name not in (p.domain, *takers)]
    exports: list[str] = []
    imports: list[str] = []
    for (owner, stream), takers in sorted(consumers.items()):
        services = [
            f"$JS.{owner}.API.CONSUMER.CREATE.{stream}",
            f"$JS.{owner}.API.CONSUMER.CREATE.{stream}.>",
            f"$JS.FC.{stream}.>",
        ]
        src = _q(account_of(owner))
        if account_of(owner) == account:
            to = ", ".join(_q(account_of(t)) for t in takers)
            exports += [f"{{ service: {_q(sv)}, accounts: [{to}] }}" for sv in services]
        for t in takers:
            deliver = _q(deliver_subject(owner, t, stream) + ".>")
            if account_of(owner) == account:
                exports.append(f"{{ stream: {deliver}, accounts: [{_q(account_of(t))}] }}")
            if account_of(t) == account:
                imports += [f"{{ service: {{ account: {src}, subject: {_q(sv)} }} }}" for sv in services]
                imports.append(f"{{ stream: {{ account: {src}, subject: {deliver} }} }}")
    return exports, imports


def render_accounts(mesh: Mesh, cluster: Cluster, creds: Credentials) -> list[str]:
    """The data accounts of a node: on a leaf, only its own domain's; on the hub, one per domain.

    Each domain's data lives in its own account. A leaf cluster holds its account's JetStream and its client
    users. The hub holds the hub domain's account (JetStream, the hub's clients) and, for every leaf domain,
    an account without JetStream whose only user is that domain's leaf link: that is where the domains'
    accounts meet, and where the exports and imports of the declared consumptions live.
    """
    lines: list[str] = []

    def account(name: str, users: list[str], jetstream: bool, exports: list[str], imports: list[str]) -> None:
        lines.append(f"  {_q(name)}: {{")
        if jetstream:
            lines.append("    jetstream: enabled")
        lines.append(f"    users: [{', '.join(users)}]")
        for key, items in (("exports", exports), ("imports", imports)):
            if items:
                lines.append(f"    {key}: [")
                lines.extend(f"      {item}" for item in items)
                lines.append("    ]")
        lines.append("  }")

    def user(name: str, password: str, leaf_only: bool = False) -> str:
        extra = ', allowed_connection_types: ["LEAFNODE"]' if leaf_only else ""
        return f"{{ user: {_q(name)}, password: {_q(password)}{extra} }}"

    if not cluster.is_hub:
        account(account_of(cluster.name), [user(*creds.client(cluster.name))], True, [], [])
        return lines
    hub_account = account_of(cluster.name)
    account(hub_account, [user(*creds.client(cluster.name))], True, *_exports_imports(mesh, hub_account))
    for domain in mesh.domains:
        name = account_of(domain.name)
        account(name, [user(*creds.link(domain.name), leaf_only=True)], False, *_exports_imports(mesh, name))
    return lines


def render_procfile(cluster: Cluster, server_command: str = DEFAULT_SERVER_COMMAND) -> str:
    return "".join(f"{n.name}: {server_command} -c {config_name(n)}\n" for n in cluster.nodes)


def render_mesh(
    mesh: Mesh,
    creds: Credentials,
    server_command: str = DEFAULT_SERVER_COMMAND,
    certs: dict[str, str] | None = None,
    via: Via | None = None,
) -> dict[str, str]:
    """Every file of the mesh, keyed by path relative to the output directory.

    For a TLS mesh, CERTS (file name -> PEM text of `CERT_FILES`) go to `tls/`, where the configs look. VIA
    routes leaf links through local fault proxies (only for `up --chaos`; never in configs for real hosts).
    """
    files: dict[str, str] = {}
    for name, text in (certs or {}).items():
        files[f"tls/{name}"] = text
    for cluster in mesh.clusters:
        for node in cluster.nodes:
            files[f"{cluster.folder}/{config_name(node)}"] = render_node(mesh, cluster, node, creds, via)
        files[f"{cluster.folder}/Procfile"] = render_procfile(cluster, server_command)
    return files
