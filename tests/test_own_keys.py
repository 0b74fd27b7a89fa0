"""A domain that brings its own account key (operator mode): the platform never holds that account's seeds.

The team makes its keys (`natsmesh keys init`), the platform's spec names their public halves (`account_key`),
the team signs its own leaf link (`natsmesh keys link`). Checked on real servers: the domain links and takes
copies; nothing anywhere in the platform's data dir holds a seed of its account; a copy of its product waits
for its signature (the platform cannot sign one), and `report lag` says so.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import MeshRunner, run_cli, servers_under
from natsmesh.client import MeshClient, run
from natsmesh.local.secrets import load_credentials
from natsmesh.local.specfile import load_spec
from natsmesh.model.mesh import Mesh
from natsmesh.model.topology import block_size, plan_ports
from natsmesh.render import trust
from natsmesh.run.ports import free_port_base

OWN, PLAIN = "sales", "billing"  # OWN brings its own account key; PLAIN lets natsmesh make its keys


def _doc(data_dir: Path, own_key: dict[str, Any]) -> dict[str, Any]:
    block = block_size(1)
    base = free_port_base(block * 3)
    clusters: list[dict[str, Any]] = [
        {"name": "hub", "nodes": 1},
        {
            "name": OWN,
            "nodes": 1,
            "products": [{"name": "ORDERS", "subjects": [f"{OWN}.orders.>"]}],
            "consumes": [{"product": f"{PLAIN}/INVOICES"}],
            **own_key,
        },
        {
            "name": PLAIN,
            "nodes": 1,
            "products": [{"name": "INVOICES", "subjects": [f"{PLAIN}.invoices.>"]}],
            "consumes": [{"product": f"{OWN}/ORDERS"}],
        },
    ]
    for k, c in enumerate(clusters):
        c["ports"] = plan_ports(base, block, k, 1, k == 0).as_spec()
    return {"name": "own", "trust": "operator", "data_dir": str(data_dir), "hub": clusters[0], "domains": clusters[1:]}


async def _count(mesh: Mesh, domain: str, stream: str) -> int:
    async with MeshClient(mesh, name="counter") as mc:
        return int((await (await mc.jetstream(domain)).stream_info(stream)).state.messages)


async def _publish(mesh: Mesh, ref: str, subject: str, n: int) -> None:
    async with MeshClient(mesh, name="producer") as mc:
        for i in range(n):
            await mc.publish(ref, json.dumps({"i": i}).encode(), subject=subject)


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.integration
def test_a_domain_with_its_own_key_links_and_the_platform_holds_none_of_its_seeds(tmp_path: Path) -> None:
    keys = tmp_path / "team" / "sales-keys.json"  # the team's own place, outside the platform's data dir
    made = run_cli("keys", "init", OWN, "--out", str(keys), "--json")
    assert made.returncode == 0, made.stderr
    snippet = json.loads(made.stdout)["account_key"]
    held = json.loads(keys.read_text())
    seeds = [held["account"]["seed"], held["signing"]["seed"]]
    assert (keys.stat().st_mode & 0o777) == 0o600
    assert run_cli("keys", "init", OWN, "--out", str(keys)).returncode != 0  # never replaced

    data = tmp_path / "data"
    spec = tmp_path / "own.yaml"
    spec.write_text(yaml.safe_dump(_doc(data, {"account_key": snippet}), sort_keys=False))
    runner = MeshRunner(tmp_path)
    try:
        refused = run_cli("up", "--detach", "-f", str(spec))  # its link is not signed yet: nothing starts
        assert refused.returncode != 0 and "keys link" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr and not servers_under(tmp_path)

        other = tmp_path / "team" / "other.json"  # keys the spec does not name are refused
        assert run_cli("keys", "init", OWN, "--out", str(other)).returncode == 0
        wrong = run_cli("keys", "link", OWN, "--keys", str(other), "-f", str(spec))
        assert wrong.returncode != 0 and "not the ones the spec names" in wrong.stderr, wrong.stderr
        signed = run_cli("keys", "link", OWN, "--keys", str(keys), "-f", str(spec), "--json")
        assert signed.returncode == 0, signed.stderr

        mesh = runner.up(load_spec(spec))
        res = run_cli("apply", "-f", str(spec), "--json")
        assert res.returncode == 0, res.stderr

        # its leaf linked (with the user its own key signed) and it takes a copy the platform's keys granted
        run(_publish(mesh, f"{PLAIN}/INVOICES", f"{PLAIN}.invoices.x", 20))
        run(_publish(mesh, f"{OWN}/ORDERS", f"{OWN}.orders.x", 20))
        deadline = time.monotonic() + 30
        while run(_count(mesh, OWN, "INVOICES")) < 20:
            assert time.monotonic() < deadline, "the copy into the domain with its own key never completed"
            time.sleep(0.2)

        # a copy of its product needs its signature, which the platform cannot give: nothing flows, and lag
        # says why instead of showing a silent copy
        time.sleep(2.0)
        assert run(_count(mesh, PLAIN, "ORDERS")) == 0
        lag = json.loads(run_cli("report", "lag", "-f", str(spec), "--json").stdout)["rows"]
        row = next(r for r in lag if r["domain"] == PLAIN and r["stream"] == "ORDERS")
        assert "waiting for the owner's signature" in (row["error"] or ""), row

        # no seed of its account anywhere in the platform's data dir; its link user only in its own folder
        creds = load_credentials(mesh, create=False)
        assert not creds.trust_keys[f"account:{OWN}"].seed and not creds.trust_keys[f"account-signing:{OWN}"].seed
        stored = json.loads((data / "secrets.json").read_text())
        assert OWN not in stored["links"]
        assert not any(k.endswith(f":{OWN}") for k in stored.get("trust_keys", {}))
        folder = data / mesh.domain(OWN).folder
        for path in _files_under(data):
            blob = path.read_bytes()
            for seed in seeds:
                assert seed.encode() not in blob, f"{path} holds a seed of {OWN}'s account"
        link = (folder / trust.LINK_CREDS).read_text()
        link_seed = next(line for line in link.splitlines() if line.startswith("SU"))
        holders = [p for p in _files_under(data) if link_seed.encode() in p.read_bytes()]
        assert holders == [folder / trust.LINK_CREDS], holders

        # the platform cannot revoke or issue its link: only the domain's key signs its users
        denied = run_cli("link", "issue", OWN, "-f", str(spec))
        assert denied.returncode != 0 and "brought its own account key" in denied.stderr, denied.stderr

        # the team grants the declared copy itself, from its folder with its own keys file (issue 20): the
        # platform's next apply carries the team's activations and the copy completes
        spec_id = f"spec:{PLAIN}/ORDERS"
        listed = json.loads(run_cli("--bundle", str(folder), "access", "list", "--json").stdout)
        assert any(r["id"] == spec_id and r["status"] == "pending" for r in listed["requests"]), listed
        unsigned = run_cli("--bundle", str(folder), "access", "grant", spec_id)  # the folder holds no seed of it
        assert unsigned.returncode != 0 and "--keys" in unsigned.stderr, unsigned.stderr
        granted = run_cli("--bundle", str(folder), "access", "grant", spec_id, "--keys", str(keys))
        assert granted.returncode == 0, granted.stderr
        res = run_cli("apply", "-f", str(spec), "--json")
        assert res.returncode == 0, res.stderr
        deadline = time.monotonic() + 60
        while run(_count(mesh, PLAIN, "ORDERS")) < 20:
            assert time.monotonic() < deadline, "the copy the team granted never completed"
            time.sleep(0.2)
    finally:
        runner.close()
        assert not servers_under(tmp_path)


def test_own_keys_in_the_spec_are_checked(tmp_path: Path) -> None:
    """An account_key that is not an account's public key, the same key twice, one on the hub, or one in config
    mode: each a clear error naming the place."""
    from natsmesh.errors import SpecError
    from natsmesh.local.secrets import new_nkey
    from natsmesh.local.specfile import parse_spec

    a, b = new_nkey("account").public, new_nkey("account").public
    user = new_nkey("user").public
    cases: list[tuple[dict[str, Any], str]] = [
        ({"account_key": {"account": user, "signing": b}}, "starting with A"),
        ({"account_key": {"account": a[:-1] + ("A" if a[-1] != "A" else "B"), "signing": b}}, "nkey"),
        ({"account_key": {"account": a, "signing": a}}, "two keys"),
        ({"account_key": {"account": a}}, "signing"),
    ]
    for extra, words in cases:
        doc = _doc(tmp_path / "d", extra)
        with pytest.raises(SpecError) as err:
            parse_spec(yaml.safe_dump(doc), "own.yaml", tmp_path, cache=False)
        assert words in str(err.value) and "domains[0].account_key" in str(err.value).replace("domains.0", "domains[0]")
    doc = _doc(tmp_path / "d", {"account_key": {"account": a, "signing": b}}) | {"trust": "config"}
    with pytest.raises(SpecError, match="needs trust: operator"):
        parse_spec(yaml.safe_dump(doc), "own.yaml", tmp_path, cache=False)
    doc = _doc(tmp_path / "d", {"account_key": {"account": a, "signing": b}})
    doc["hub"]["account_key"] = {"account": new_nkey("account").public, "signing": new_nkey("account").public}
    with pytest.raises(SpecError, match="the platform's own"):
        parse_spec(yaml.safe_dump(doc), "own.yaml", tmp_path, cache=False)
    doc = _doc(tmp_path / "d", {"account_key": {"account": a, "signing": b}})
    doc["domains"][1]["account_key"] = {"account": a, "signing": new_nkey("account").public}
    with pytest.raises(SpecError, match="already sales's account key"):
        parse_spec(yaml.safe_dump(doc), "own.yaml", tmp_path, cache=False)


def test_the_keys_file_is_checked(tmp_path: Path) -> None:
    """A keys file that is not one (binary, huge, another domain's, a seed that is not its key's) is refused
    with the file named, never a traceback."""
    good = tmp_path / "k.json"
    assert run_cli("keys", "init", OWN, "--out", str(good)).returncode == 0
    doc = json.loads(good.read_text())
    bad = {
        "binary.json": b"\x00\xff" * 10,
        "huge.json": b" " * (65 * 1024),
        "mismatch.json": json.dumps(doc | {"signing": doc["account"] | {"public": doc["signing"]["public"]}}).encode(),
    }
    for name, blob in bad.items():
        (tmp_path / name).write_bytes(blob)
        res = run_cli("keys", "link", OWN, "--keys", str(tmp_path / name), "--folder", str(tmp_path / "f"))
        assert res.returncode != 0 and name in res.stderr and "Traceback" not in res.stderr, (name, res.stderr)
    res = run_cli("keys", "link", "billing", "--keys", str(good), "--folder", str(tmp_path / "f"))
    assert res.returncode != 0 and "not of billing" in res.stderr
    res = run_cli("keys", "link", OWN, "--keys", str(good), "--folder", str(tmp_path / "f"))
    assert res.returncode == 0 and (tmp_path / "f" / "link.creds").is_file()
