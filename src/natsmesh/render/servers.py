"""Model in, files out: one folder per party (a cluster), with its nodes' configs, a Procfile and its secrets. Pure.

The layout is the seed's (`hub-cluster/`, `leaf-cluster-a/`, …), so `goreman start` or `honcho start` inside a
folder still works: every path in a config is relative to that folder. A folder carries only its own party's
secrets: routes, system and client users are its own (servers get bcrypt hashes), its leaf links sign with its
own nkeys, and the hub's configs name only the public keys of the domains' links.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection

from natsmesh.model.identities import SYSTEM_ACCOUNT, Credentials, user_url
from natsmesh.model.mesh import Mesh
from natsmesh.model.topology import Cluster, Node
from natsmesh.render.hosts import host_files
from natsmesh.render.trust import account_keys, realise

DEFAULT_SERVER_COMMAND = "nats-server"
SECRETS_FILE = "secrets.json"  # in each party's folder: that party's own secrets
MESH_FILE = "mesh.json"  # in each party's folder: the mesh it acts on (`party_mesh`)
TLS_DIR = "tls"  # a party's certificates, inside its folder
CA_FILE = "ca.pem"


def _tls_block(indent: str, node: Node, verify: bool = False) -> list[str]:
    """The node's own certificate; VERIFY: the peer must present one the mesh CA signed (routes, leaf links)."""
    return [
        f"{indent}tls {{",
        f'{indent}  cert_file: "{TLS_DIR}/{node.name}.pem"',
        f'{indent}  key_file: "{TLS_DIR}/{node.name}-key.pem"',
        f'{indent}  ca_file: "{TLS_DIR}/{CA_FILE}"',
        *([f"{indent}  verify: true"] if verify else []),
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


def leaf_url(mesh: Mesh, hub_node: Node, port: int | None = None) -> str:
    """A leaf remote URL to HUB_NODE's address (or to PORT on this machine, a fault proxy in front of it); the
    identity is the remote's nkey."""
    if port is not None:
        return f"nats-leaf://{mesh.host}:{port}"
    return f"nats-leaf://{hub_node.host}:{hub_node.leafnode_port}"


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


def _list(items: list[str]) -> str:
    return "[" + ", ".join(_q(x) for x in items) + "]"


def _header(mesh: Mesh, cluster: Cluster, node: Node) -> list[str]:
    return [
        f"# natsmesh: mesh {mesh.name!r}, cluster/domain {cluster.name!r}, node {node.name!r}. Generated; edit",
        "# the spec and re-render instead of this file.",
        f"server_name: {_q(node.name)}",
        f"listen: {_q(f'{node.bind}:{node.client_port}')}",
        f"http: {_q(f'{node.http_bind}:{node.http_port}')}",
        "# A silent peer (a half-open link too) is dropped ping_interval x ping_max (+ up to one interval) later.",
        f"ping_interval: {_q(mesh.ping_interval)}",
        f"ping_max: {mesh.ping_max}",
        "# A host's unit stops its node with SIGUSR2 (lame duck): its leaders move to the nodes that stay up, then",
        "# clients are told to go after the grace period (the duration is nats-server's minimum).",
        'lame_duck_grace_period: "1s"',
        'lame_duck_duration: "30s"',
        *(_tls_block("", node) if mesh.tls else []),
    ]


def _jetstream(mesh: Mesh, cluster: Cluster, node: Node) -> list[str]:
    lines = [
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
    return [*lines, "}"]


def _cluster(mesh: Mesh, cluster: Cluster, node: Node, creds: Credentials) -> list[str]:
    """Routes between the cluster's nodes, each authenticated with the secret only this cluster holds."""
    if len(cluster.nodes) < 2:
        return []
    user, password = creds.route(cluster.name)
    routes = ", ".join(
        _q(user_url("nats-route", user, password, n.host, n.cluster_port or 0)) for n in route_peers(cluster, node)
    )
    return [
        "",
        "cluster {",
        f"  name: {_q(cluster.name)}",
        f"  listen: {_q(f'{node.bind}:{node.cluster_port}')}",
        # The route secret in plain text, as in the route URLs above (a hash here would hide nothing those
        # show): nats-server checks a bcrypt hash on every route connection, which on two cores delayed TLS
        # routes enough that JetStream's first election lost a vote and waited 4-9 s in most starts.
        f"  authorization {{ user: {_q(user)}, password: {_q(password)} }}",
        f"  routes: [{routes}]",
        *(_tls_block("  ", node, verify=True) if mesh.tls else []),
        "}",
    ]


def _leafnodes(mesh: Mesh, cluster: Cluster, node: Node, creds: Credentials, via: Via | None) -> list[str]:
    lines = ["", "leafnodes {", f"  reconnect: {_q(mesh.leafnode_reconnect)}"]
    if cluster.is_hub:
        lines.append(f"  listen: {_q(f'{node.bind}:{node.leafnode_port}')}")
        # Leaf nodes dial exactly the hub URLs in their remotes (every hub node); advertised URLs would let a
        # link bypass what the remotes name (a fault proxy, a load balancer, an address seen from outside).
        lines.append("  no_advertise: true")
        if mesh.tls:
            lines += _tls_block("  ", node, verify=True)  # a leaf link shows its domain's certificate
        return [*lines, "}"]
    link_cert = f"{TLS_DIR}/{cluster.name}-link"
    remote_tls = (
        f', tls: {{ cert_file: "{link_cert}.pem", key_file: "{link_cert}-key.pem", ca_file: "{TLS_DIR}/{CA_FILE}" }}'
        if mesh.tls
        else ""
    )
    urls = ", ".join(_q(leaf_url(mesh, h, (via or {}).get((cluster.name, h.name)))) for h in mesh.hub.nodes)

    def remote(account: str, auth: str) -> str:
        return f"{{ urls: [{urls}], account: {account}, {auth}{remote_tls} }}"

    trust = realise(mesh, creds)
    data = remote(_q(trust.local_account(cluster)), trust.leaf_auth(cluster, creds.links[cluster.name].seed))
    if mesh.system_bridge:
        system = remote(SYSTEM_ACCOUNT, f"nkey: {_q(creds.system_links[cluster.name].seed)}")
        lines += [
            "  # Two links to the hub (each to one of the hub nodes listed, moving on if it goes), each with its own",
            "  # nkey: SYS through a link the hub lets answer its pings and nothing else, so one request at the hub",
            "  # sees every server; the domain's own account, bound at the hub to its link identity, for the data it",
            "  # shares and takes.",
            "  remotes: [",
            f"    {system}",
        ]
    else:
        lines += [
            "  # A link to the hub (to one of the hub nodes listed, moving on if it goes) for the domain's own",
            "  # account, bound at the hub to its link identity, for the data it shares and takes. The system account",
            "  # stays local (leafnodes.system_bridge): natsmesh asks each cluster's servers directly.",
            "  remotes: [",
        ]
    return [*lines, f"    {data}", "  ]", "}"]


def render_node(mesh: Mesh, cluster: Cluster, node: Node, creds: Credentials, via: Via | None = None) -> str:
    """The nats-server config of one node; VIA sends its leaf links through fault proxies (`up --chaos`). It
    holds secrets of the node's own party only (and public keys of the others' leaf links)."""
    lines = [
        *_header(mesh, cluster, node),
        *_jetstream(mesh, cluster, node),
        *_cluster(mesh, cluster, node, creds),
        *realise(mesh, creds).accounts(cluster, node),
        *_leafnodes(mesh, cluster, node, creds, via),
    ]
    return "\n".join(lines) + "\n"


def render_procfile(cluster: Cluster, server_command: str = DEFAULT_SERVER_COMMAND) -> str:
    return "".join(f"{n.name}: {server_command} -c {config_name(n)}\n" for n in cluster.nodes)


def party_secrets(mesh: Mesh, creds: Credentials, cluster: Cluster) -> str:
    """The `secrets.json` of CLUSTER's folder: what its party holds to use its own servers (mode 0600)."""
    doc: dict[str, object] = {
        "party": cluster.name,
        "system": dict(zip(("user", "password"), creds.system(cluster.name), strict=True)),
        "client": dict(zip(("user", "password"), creds.client(cluster.name), strict=True)),
    }
    if (own := creds.system_keys.get(cluster.name)) is not None:
        doc["system_key"] = {"public": own.public, "seed": own.seed}
    if cluster.name in creds.gate_passwords:
        doc["gate"] = dict(zip(("user", "password"), creds.gate(cluster.name), strict=True))
    if cluster.name in creds.route_passwords:
        doc["route"] = dict(zip(("user", "password"), creds.route(cluster.name), strict=True))
    held = {name: key for name, key in creds.trust_keys.items() if key.seed}  # operator mode: its own keys
    if held:
        doc["trust_keys"] = {name: {"public": key.public, "seed": key.seed} for name, key in sorted(held.items())}
    if not cluster.is_hub:
        if creds.links[cluster.name].public:  # a team with its own account key made its own link user
            doc["link"] = {"public": creds.links[cluster.name].public, "seed": creds.links[cluster.name].seed}
        if mesh.system_bridge:
            key = creds.system_links[cluster.name]
            doc["system_link"] = {"public": key.public, "seed": key.seed}
    return json.dumps(doc, indent=2) + "\n"


@functools.lru_cache(maxsize=4)
def party_mesh(mesh: Mesh, keys: tuple[tuple[str, str, str], ...] = ()) -> str:
    """The `mesh.json` of every folder: the validated mesh its party acts on (`natsmesh --bundle`), without the
    spec's fixed credentials, its warnings, or where the platform keeps its files and binary. The same for every
    party, so made once per mesh (at 100 domains with 1,000 products, making it for each folder was 24 s of an
    apply's 34)."""
    blank = dict.fromkeys(("fixed_system", "fixed_data", "data_dir_setting", "tls_dir_setting"))
    doc = mesh.to_json() | blank | {"document": {}, "warnings": [], "activations": []}  # (the hub's to hold)
    doc |= {"account_keys": keys} if keys else {}
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def party_tls_files(cluster: Cluster) -> list[str]:
    """The TLS files CLUSTER's folder holds: the CA certificate, its nodes' and (a leaf) its links' keys."""
    names = [CA_FILE, *(f"{n.name}{suffix}" for n in cluster.nodes for suffix in (".pem", "-key.pem"))]
    return names + ([] if cluster.is_hub else [f"{cluster.name}-link.pem", f"{cluster.name}-link-key.pem"])


def render_party(
    mesh: Mesh,
    creds: Credentials,
    cluster: Cluster,
    server_command: str = DEFAULT_SERVER_COMMAND,
    certs: dict[str, str] | None = None,
    via: Via | None = None,
    install_dir: str | None = None,
) -> dict[str, str]:
    """The folder of CLUSTER's party, keyed by path below the output directory: its nodes' configs, a Procfile,
    a systemd unit per node and a README for its hosts (`natsmesh.render.hosts`, the folder at INSTALL_DIR
    there), its own secrets and (TLS) its own keys from CERTS (file name -> PEM). Rendered from the party's own
    credentials (`Credentials.party`), it holds nothing of another party's but the public keys of the domains'
    leaf links, which the hub's configs name."""
    own = creds.party(cluster.name)
    files = {f"{cluster.folder}/{config_name(n)}": render_node(mesh, cluster, n, own, via) for n in cluster.nodes}
    files[f"{cluster.folder}/Procfile"] = render_procfile(cluster, server_command)
    files.update(
        {f"{cluster.folder}/{k}": v for k, v in host_files(mesh, cluster, server_command, install_dir).items()}
    )
    files[f"{cluster.folder}/{SECRETS_FILE}"] = party_secrets(mesh, own, cluster)
    files[f"{cluster.folder}/{MESH_FILE}"] = party_mesh(mesh, account_keys(mesh, creds))
    files.update({f"{cluster.folder}/{k}": v for k, v in realise(mesh, own).files(cluster).items()})
    if mesh.tls and certs is not None:
        files.update({f"{cluster.folder}/{TLS_DIR}/{name}": certs[name] for name in party_tls_files(cluster)})
    return files


def render_mesh(
    mesh: Mesh,
    creds: Credentials,
    server_command: str = DEFAULT_SERVER_COMMAND,
    certs: dict[str, str] | None = None,
    via: Via | None = None,
    install_dir: str | None = None,
    only: Collection[str] | None = None,
) -> dict[str, str]:
    """Every party's folder (`render_party`; ONLY: of these clusters), keyed by path relative to the output
    directory. For a TLS mesh, CERTS (file name -> PEM, `natsmesh.local.certs.cert_texts`) go into the folders
    that hold them. VIA routes leaf links through local fault proxies (only for `up --chaos`; never in configs for
    real hosts)."""
    files: dict[str, str] = {}
    for cluster in mesh.clusters if only is None else [c for c in mesh.clusters if c.name in only]:
        files.update(render_party(mesh, creds, cluster, server_command, certs, via, install_dir))
    return files
