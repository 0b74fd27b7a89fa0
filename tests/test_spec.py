"""The spec: defaults, validation messages that name the place, and the port plan of `init`."""

from __future__ import annotations

from pathlib import Path

import pytest

from natsmesh.errors import SpecError
from natsmesh.local.specfile import default_mesh, load_spec, parse_spec
from natsmesh.model.templates import EPHEMERAL_LOW, init_spec_text, seed_spec_text

SEED_PORTS = {
    "hub": (4222, 6222),
    "leaf-domain-a": (4111, 6322),
    "leaf-domain-b": (4211, 6422),
    "leaf-domain-c": (4311, 6522),
    "leaf-domain-d": (4511, 6622),
    "leaf-domain-e": (4611, 6722),
}


def test_default_is_the_seed_topology() -> None:
    mesh = default_mesh()
    assert [c.name for c in mesh.clusters] == list(SEED_PORTS)
    assert [c.domain for c in mesh.clusters] == list(SEED_PORTS)
    assert [n.name for n in mesh.hub.nodes] == ["hub-server-0", "hub-server-1", "hub-server-2"]
    assert [n.leafnode_port for n in mesh.hub.nodes] == [7422, 7423, 7424]
    for cluster in mesh.clusters:
        client, route = SEED_PORTS[cluster.name]
        assert [n.client_port for n in cluster.nodes] == [client, client + 1, client + 2]
        assert [n.cluster_port for n in cluster.nodes] == [route, route + 1, route + 2]
        if not cluster.is_hub:
            assert [n.name for n in cluster.nodes] == [f"{cluster.name}-{i}" for i in range(3)]
    assert len(mesh.nodes()) == 18
    assert mesh.fixed_system is None and mesh.fixed_data is None  # no fixed password in the default


def test_default_used_without_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_spec().source.startswith("<embedded default")
    (tmp_path / "mesh.yaml").write_text(init_spec_text(name="local", domains=1))
    assert load_spec().name == "local"


def test_seed_example_matches_the_seed() -> None:
    path = Path(__file__).parent.parent / "examples" / "seed.yaml"
    mesh = load_spec(path)
    assert mesh.fixed_system == ("admin", "password")
    assert [(c.name, c.nodes[0].client_port, c.nodes[0].cluster_port) for c in mesh.clusters] == [
        (name, *ports) for name, ports in SEED_PORTS.items()
    ]


def _problems(text: str) -> str:
    with pytest.raises(SpecError) as err:
        parse_spec(text, source="bad.yaml")
    msg = str(err.value)
    assert msg.startswith("invalid mesh spec bad.yaml")
    return msg


SEED_BODY = seed_spec_text()

BAD_SPECS = [
    ("unknown top-level key", "name: x\nhubb: {}\n", ["hubb", "line 2", "unknown key 'hubb'", "expected one of"]),
    ("unknown nested key", "domains:\n  - name: a\n    nodez: 3\n", ["domains[0].nodez", "line 3", "unknown key"]),
    ("name with a dot", "domains:\n  - name: team.a\n", ["domains[0].name", "line 2", "invalid cluster/domain name"]),
    ("name with a space", "domains:\n  - name: team a\n", ["domains[0].name", "no spaces"]),
    ("name with a wildcard", "domains:\n  - name: 'team*'\n", ["domains[0].name", "'*'"]),
    ("name with >", "domains:\n  - name: 'team>'\n", ["domains[0].name", "'>'"]),
    (
        "duplicate domain names",
        "domains:\n  - {name: a, ports: {client: 5000}}\n  - {name: a, ports: {client: 5100}}\n",
        ["domains[1].name", "line 3", "duplicate cluster/domain name 'a'", "domains[0].name"],
    ),
    ("domain named like the hub", "domains:\n  - name: hub\n", ["domains[0].name", "duplicate", "'hub'"]),
    ("zero nodes", "domains:\n  - {name: a, nodes: 0}\n", ["domains[0].nodes", "line 2", "greater than or equal to 1"]),
    ("nodes not a number", "hub:\n  nodes: three\n", ["hub.nodes", "line 2", "integer"]),
    ("port out of range", "hub:\n  ports: {client: 70000}\n", ["hub.ports.client", "line 2", "65535"]),
    (
        "port collision between clusters",
        "hub:\n  ports: {client: 5000, cluster: 5010, http: 5020, leafnode: 5030}\n"
        "domains:\n  - {name: a, ports: {client: 5001, cluster: 5040, http: 5050}}\n",
        ["domains[0].ports", "line 4", "port 5001", "collides with hub-server-1 client"],
    ),
    (
        "leafnode port on a domain",
        "domains:\n  - {name: a, ports: {client: 5000, leafnode: 5100}}\n",
        ["domains[0].ports.leafnode", "only the hub listens for leafnodes"],
    ),
    (
        "duplicate server names",
        "domains:\n  - {name: a, server_prefix: hub-server}\n",
        ["domains[0].server_prefix", "server name 'hub-server-0'", "unique across the mesh"],
    ),
    ("duplicate folders", "domains:\n  - {name: a, folder: hub-cluster}\n", ["domains[0].folder", "hub-cluster"]),
    ("bad host", "host: 'not a host!'\n", ["host", "line 1", "IP address or host name"]),
    ("bad size", "jetstream:\n  max_memory: lots\n", ["jetstream.max_memory", "line 2", "64MiB"]),
    ("bad duration", "leafnodes:\n  reconnect: soon\n", ["leafnodes.reconnect", "250ms"]),
    ("domains not a list", "domains: {name: a}\n", ["domains", "line 1", "list"]),
    ("top level not a mapping", "- a\n- b\n", ["(top level)", "expected a mapping"]),
    ("not YAML", "hub: {nodes: 3\n", ["not valid YAML", "line"]),
    (
        "empty password",
        "credentials:\n  system: {user: admin, password: ''}\n",
        ["credentials.system.password", "line 2", "at least 1 character"],
    ),
    ("credentials missing user", "credentials:\n  data: {password: x}\n", ["credentials.data.user", "missing"]),
    ("port plan too high", "ports: {base: 65530}\ndomains:\n  - name: a\n", ["above 65535"]),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in BAD_SPECS], ids=[i for i, _, _ in BAD_SPECS])
def test_bad_spec_names_the_place(text: str, expected: list[str]) -> None:
    msg = _problems(text)
    for part in expected:
        assert part in msg, f"{part!r} not in:\n{msg}"


def test_many_bad_specs() -> None:
    assert len(BAD_SPECS) >= 15


def test_every_problem_reported_at_once() -> None:
    msg = _problems("hub:\n  nodes: 0\ndomains:\n  - name: a.b\n  - name: c\n    extra: 1\n")
    assert "3 problems" in msg
    assert "hub.nodes" in msg and "domains[0].name" in msg and "domains[1].extra" in msg


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="file not found"):
        load_spec(tmp_path / "nope.yaml")


def test_two_node_cluster_warns() -> None:
    mesh = parse_spec("domains:\n  - {name: a, nodes: 2}\n")
    assert any("2-node cluster tolerates no failure" in w and "domains[0].nodes" in w for w in mesh.warnings)


@pytest.mark.parametrize(("domains", "nodes"), [(0, 1), (5, 3), (100, 3), (200, 1), (600, 3), (1000, 3)])
def test_init_port_plan_holds(domains: int, nodes: int) -> None:
    mesh = parse_spec(init_spec_text(domains=domains, nodes=nodes))  # validation rejects any collision
    ports = [p for n in mesh.nodes() for p in n.ports().values()]
    assert len(ports) == len(set(ports))
    assert max(ports) < EPHEMERAL_LOW
    assert len(mesh.domains) == domains
    assert len({c.name for c in mesh.clusters}) == domains + 1


def test_init_refuses_what_cannot_fit() -> None:
    with pytest.raises(ValueError, match="spread the mesh"):
        init_spec_text(domains=2000, nodes=15)


def test_init_spec_is_commented_and_round_trips(tmp_path: Path) -> None:
    text = init_spec_text(name="m", domains=3, nodes=3)
    assert "# Port plan" in text and "ephemeral" in text
    path = tmp_path / "mesh.yaml"
    path.write_text(text)
    mesh = load_spec(path)
    assert mesh.data_dir == (tmp_path / ".natsmesh" / "m").resolve()
    assert [c.name for c in mesh.domains] == ["leaf-domain-a", "leaf-domain-b", "leaf-domain-c"]


def test_single_node_clusters_have_no_route_port() -> None:
    mesh = parse_spec(init_spec_text(domains=2, nodes=1, hub_nodes=1))
    assert all(n.cluster_port is None for n in mesh.nodes())
    assert mesh.hub.nodes[0].leafnode_port is not None


def test_cached_spec_loads_without_pydantic(tmp_path: Path) -> None:
    """A spec validated once is served from the cache by content: same mesh, and pydantic never loads."""
    import subprocess
    import sys

    spec = tmp_path / "mesh.yaml"
    spec.write_text(init_spec_text(name="cached", domains=2))
    first = load_spec(spec)
    code = (
        "import sys; from natsmesh.local.specfile import load_spec; m = load_spec(sys.argv[1]); "
        "print(len(m.nodes()), m.name, m.data_dir, 'pydantic' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(spec)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["9", "cached", str(first.data_dir), "False"]
    assert load_spec(spec) == first


def test_cache_never_serves_a_stale_or_broken_entry(tmp_path: Path) -> None:
    from natsmesh.local.specfile import cache_dir

    spec = tmp_path / "mesh.yaml"
    spec.write_text(init_spec_text(name="one", domains=1))
    assert load_spec(spec).name == "one"
    spec.write_text(init_spec_text(name="two", domains=1))
    assert load_spec(spec).name == "two"
    spec.write_text("domains:\n  - name: bad.name\n")
    with pytest.raises(SpecError):
        load_spec(spec)
    entries = list(cache_dir().glob("*.json"))
    assert entries and all((p.stat().st_mode & 0o777) == 0o600 for p in entries)
    for p in entries:
        p.write_text("{not json")
    spec.write_text(init_spec_text(name="one", domains=1))
    assert load_spec(spec).name == "one"  # a corrupt entry is ignored and replaced
