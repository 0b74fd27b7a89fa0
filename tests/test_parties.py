"""Every secret belongs to one party: each folder holds only its own party's, rendered for that party alone."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers import EXAMPLES, example_on_free_ports, with_keys
from natsmesh.cli import cli
from natsmesh.errors import SpecError, UnknownDomainError
from natsmesh.local.bundle import render_bundle
from natsmesh.local.folder import load_folder
from natsmesh.local.secrets import load_credentials
from natsmesh.local.specfile import load_spec, parse_spec
from natsmesh.render.trust import realise


def _mesh(tmp_path: Path, trust: str | None = None):  # type: ignore[no-untyped-def]
    text = example_on_free_ports("data-mesh.yaml", tmp_path / "data")
    return parse_spec(with_keys(text, trust=trust) if trust else text, base_dir=tmp_path, cache=False)


def test_each_folder_holds_its_own_secrets_and_no_other_partys(tmp_path: Path) -> None:
    mesh = _mesh(tmp_path)
    render_bundle(mesh, tmp_path / "out")
    creds = load_credentials(mesh, create=False)
    parties = [c.name for c in mesh.clusters]
    own = {p: set(creds.party(p).secrets()) for p in parties}
    for p, mine in own.items():
        others = set().union(*(own[q] for q in parties if q != p)) - mine
        assert mine and not mine & others, p  # no secret is shared between parties
        folder = tmp_path / "out" / mesh.domain(p).folder
        text = "\n".join(f.read_text() for f in folder.rglob("*") if f.is_file())
        assert not [s for s in others if s in text], f"{p}'s folder holds another party's secret"
        doc = json.loads((folder / "secrets.json").read_text())
        assert doc["party"] == p and doc["client"]["password"] in mine and doc["system"]["password"] in mine
        assert stat.S_IMODE((folder / "secrets.json").stat().st_mode) == 0o600
        for conf in folder.glob("*.conf"):
            assert stat.S_IMODE(conf.stat().st_mode) == 0o600
            # users hold bcrypt hashes; the route secret is in the route URLs anyway, so it is plain there too
            users = "\n".join(ln for ln in conf.read_text().splitlines() if "authorization {" not in ln)
            assert not re.search(r'password: "(?!\$2a\$)', users), "a plaintext password in users"


@pytest.mark.parametrize("trust", ["config", "operator"])
def test_each_clusters_system_user_also_has_an_nkey_only_its_party_holds(tmp_path: Path, trust: str) -> None:
    """The platform's system connections sign with an nkey (checked in microseconds) instead of a password
    (a bcrypt check per connection); each key is its own cluster's, in its config and its folder only. (An
    operator-mode hub signs its system user in with a JWT instead: its config names no user.)"""
    mesh = _mesh(tmp_path, trust)
    render_bundle(mesh, tmp_path / "out")
    creds = load_credentials(mesh, create=False)
    assert set(creds.system_keys) == {c.name for c in mesh.clusters}
    for c in mesh.clusters:
        key = creds.system_keys[c.name]
        folder = tmp_path / "out" / c.folder
        conf = (folder / f"{c.nodes[0].name}.conf").read_text()
        assert key.seed not in conf
        if c.is_hub and trust == "operator":
            assert "nkey:" not in conf and 'operator: "operator.jwt"' in conf
            assert realise(mesh, creds).logins("system", c.name)[0].creds  # a JWT user of the system account
        else:
            assert f'{{ nkey: "{key.public}" }}' in conf
        others = [k.public for n, k in creds.system_keys.items() if n != c.name]
        assert not [pub for pub in others if pub in conf], f"{c.name} accepts another cluster's system key"
        own = json.loads((folder / "secrets.json").read_text())["system_key"]
        assert own == {"public": key.public, "seed": key.seed}
        party = creds.party(c.name)
        assert party.system_keys == {c.name: key} and party.system_key(c.name) == key


def test_only_the_platform_writes_a_domains_catalog_copy(tmp_path: Path) -> None:
    """Issue 17: each leaf account has an identity of the platform's (an nkey no folder holds a seed of), and the
    domain's app user may not publish the copy's writes or change its stream (plain or domain-prefixed API)."""
    from natsmesh.model.trust import CATALOG_WRITES

    mesh = _mesh(tmp_path)
    render_bundle(mesh, tmp_path / "out")
    creds = load_credentials(mesh, create=False)
    assert set(creds.platform_keys) == {c.name for c in mesh.domains}
    assert "$KV.natsmesh_catalog.>" in CATALOG_WRITES and "$JS.*.API.STREAM.PURGE.KV_natsmesh_catalog" in CATALOG_WRITES
    for c in mesh.domains:
        key = creds.platform_keys[c.name]
        folder = tmp_path / "out" / c.folder
        text = "\n".join(f.read_text() for f in folder.rglob("*") if f.is_file())
        assert key.seed not in text  # no folder holds the platform's seed, not even its own cluster's
        conf = (folder / f"{c.nodes[0].name}.conf").read_text()
        assert f'{{ nkey: "{key.public}" }}' in conf
        app = next(ln for ln in conf.splitlines() if 'user: "app"' in ln)
        assert all(json.dumps(w) in app for w in CATALOG_WRITES), app
        assert creds.party(c.name).platform_key(c.name) is None


@pytest.mark.parametrize("trust", ["config", "operator"])
def test_render_for_one_party_writes_only_its_folder(tmp_path: Path, trust: str) -> None:
    mesh = _mesh(tmp_path, trust)
    res = render_bundle(mesh, tmp_path / "a", party="leaf-domain-a")
    assert res.folders == ["leaf-cluster-a"]
    folder = tmp_path / "a" / "leaf-cluster-a"
    # its link's seed: in its config (config mode) or its own link.creds (operator mode), nowhere else
    held = "".join(p.read_text() for p in (*folder.glob("*.conf"), *folder.glob("*.creds")))
    creds = load_credentials(mesh, create=False)
    assert creds.links["leaf-domain-a"].seed in held and creds.links["leaf-domain-b"].seed not in held
    assert (folder / "link.creds").exists() == (trust == "operator")
    hub = render_bundle(mesh, tmp_path / "h", party="hub")
    assert hub.folders == ["hub-cluster"]
    hub_text = "".join(p.read_text() for p in (tmp_path / "h" / "hub-cluster").rglob("*") if p.is_file())
    assert not any(creds.links[d.name].seed in hub_text for d in mesh.domains)
    # a config-mode hub names each link's key; an operator-mode hub names no domain at all
    named = [d.name for d in mesh.domains if creds.links[d.name].public in hub_text]
    assert named == ([d.name for d in mesh.domains] if trust == "config" else [])


def test_render_for_an_unknown_party_lists_the_parties_and_writes_nothing(tmp_path: Path) -> None:
    spec = tmp_path / "mesh.yaml"
    spec.write_text(example_on_free_ports("data-mesh.yaml", tmp_path / "data"))
    with pytest.raises(UnknownDomainError, match=r"no party 'sales': its parties are hub .* leaf-domain-a, "):
        render_bundle(load_spec(spec), tmp_path / "out", party="sales")
    res = CliRunner().invoke(cli, ["render", "-f", str(spec), "--for", "sales", "--out", str(tmp_path / "out")])
    assert res.exit_code == 1 and "no party 'sales'" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


def test_fixed_credentials_only_on_loopback() -> None:
    seed = (EXAMPLES / "seed.yaml").read_text()
    assert parse_spec(seed, cache=False).fixed_system == ("admin", "password")  # the seed keeps its commands
    with pytest.raises(SpecError, match=r"credentials.system \(line \d+\): fixed credentials are shared by every"):
        parse_spec(seed.replace("host: 127.0.0.1", "host: 10.1.2.3"), cache=False)


def _folder(tmp_path: Path, party: str = "leaf-domain-a") -> tuple[object, Path]:
    mesh = _mesh(tmp_path)
    render_bundle(mesh, tmp_path / "out", party=party)
    return mesh, tmp_path / "out" / mesh.domain(party).folder


def test_a_folder_describes_its_mesh_and_holds_only_its_partys_keys(tmp_path: Path) -> None:
    """`mesh.json` in a folder is the validated mesh (no fixed credentials, none of the platform's paths);
    loaded from the folder, the mesh's secrets and CA are the folder's own, and they are its party's only."""
    text = with_keys(
        example_on_free_ports("data-mesh.yaml", tmp_path / "data"),
        credentials={"system": {"user": "sys", "password": "fixed-sys-pw"}},
    )
    mesh = parse_spec(text, base_dir=tmp_path, cache=False)
    render_bundle(mesh, tmp_path / "out", party="leaf-domain-b")
    folder = tmp_path / "out" / "leaf-cluster-b"
    assert "fixed-sys-pw" not in (folder / "mesh.json").read_text()
    view = load_folder(folder)
    assert (view.products, view.consumptions, view.clusters, view.shares) == (
        mesh.products,
        mesh.consumptions,
        mesh.clusters,
        mesh.shares,
    )
    assert view.fixed_system is None and view.data_dir == folder.resolve() and view.tls_dir == folder / "tls"
    creds = load_credentials(view, create=False)
    platform = load_credentials(mesh, create=False).party("leaf-domain-b")
    assert creds.holder == "leaf-domain-b" and set(creds.client_passwords) == {"leaf-domain-b"}
    assert set(creds.secrets()) == set(platform.secrets())  # every key of its own, nobody else's
    assert creds.system() == ("sys", "fixed-sys-pw") and creds.links["leaf-domain-b"].seed


def test_from_a_folder_only_its_partys_commands_run_and_the_rest_is_refused(tmp_path: Path) -> None:
    """No servers needed: each refusal happens before anything is sent, and says who was refused what."""
    _, folder = _folder(tmp_path)
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str]:
        res = runner.invoke(cli, ["--bundle", str(folder), *args])
        assert not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), res.output
        return res.exit_code, res.output

    code, out = run("lineage")
    assert code == 0 and "leaf-domain-a/ORDERS" in out
    for platform_only in (["apply"], ["report", "servers"], ["status"], ["up"], ["heal"], ["info"]):
        code, out = run(*platform_only)
        assert code == 1 and "needs the platform's spec and secrets" in out and "pub, tail" in out, platform_only
    code, out = run("pub", "leaf-domain-b/SHIPMENTS", "x")
    assert code == 1 and "leaf-domain-a may not publish on leaf-domain-b/SHIPMENTS" in out
    code, out = run("tail", "leaf-domain-b/ORDERS_FROM_A")
    assert code == 1 and "leaf-domain-a may not read leaf-domain-b/ORDERS_FROM_A" in out
    code, out = run("pub", "--as", "leaf-domain-b", "leaf-domain-a/ORDERS", "x")
    assert code == 1 and "holds leaf-domain-a's identity only, not leaf-domain-b's" in out
    code, out = run("pub", "-f", str(tmp_path / "mesh.yaml"), "leaf-domain-a/ORDERS", "x")
    assert code == 2 and "give one" in out


def test_a_folder_that_is_not_one_gets_a_clear_error(tmp_path: Path) -> None:
    _, folder = _folder(tmp_path)
    runner = CliRunner()
    for broken in (b"\x00\xff" * 100, b"{}", b"[1, 2]", b"{" * 100_000):
        (folder / "mesh.json").write_bytes(broken)
        res = runner.invoke(cli, ["--bundle", str(folder), "lineage"])
        assert res.exit_code == 1 and "is not a mesh description" in res.output, (broken[:10], res.output)
    res = runner.invoke(cli, ["--bundle", str(tmp_path), "lineage"])
    assert res.exit_code == 1 and "has no mesh.json" in res.output
    res = runner.invoke(cli, ["--bundle", str(tmp_path / "missing"), "lineage"])
    assert res.exit_code == 1 and "is not a directory" in res.output


def test_a_folders_commands_show_only_its_partys_view(tmp_path: Path) -> None:
    """Issue 18: `--bundle FOLDER policy show` printed every domain's policy, and `lineage` every domain's private
    products; from a folder they show the folder's party (`render/policy.party_view`)."""
    mesh = _mesh(tmp_path)
    render_bundle(mesh, tmp_path / "out", party="leaf-domain-b")
    folder = tmp_path / "out" / mesh.domain("leaf-domain-b").folder
    runner = CliRunner()
    policy_ = runner.invoke(cli, ["--bundle", str(folder), "policy", "show", "--json"])
    assert policy_.exit_code == 0, policy_.output
    assert list(json.loads(policy_.stdout)) == ["leaf-domain-b"]
    drawn = runner.invoke(cli, ["--bundle", str(folder), "lineage"])
    assert drawn.exit_code == 0, drawn.output
    assert "leaf-domain-a/ORDERS (product)" in drawn.stdout and "leaf-domain-b/ORDERS" in drawn.stdout
    assert "leaf-domain-a/CUSTOMERS" not in drawn.stdout  # a's own, not shared with b
    from natsmesh.render.lineage import lineage

    assert "leaf-domain-a/CUSTOMERS" in lineage(mesh, "text")  # the platform sees it all
