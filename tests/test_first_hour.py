"""The first hour, as a newcomer spends it (issue 18): which mesh a command means, growing a running mesh, and
the messages a user meets. Real servers, the CLI as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from helpers import natsmesh_exe, run_cli, servers_under
from natsmesh.model.topology import block_size
from natsmesh.run.ports import free_port_base

pytestmark = pytest.mark.integration


def _init(folder: Path, name: str, *extra: str) -> Path:
    """`natsmesh init` of a small mesh (a hub and two domains, one node each) on free ports, in FOLDER."""
    base = free_port_base(block_size(1) * 3)
    res = run_cli("init", name, "--domains", "2", "--nodes", "1", "--hub-nodes", "1", "--base-port", str(base), *extra,
                  cwd=folder)  # fmt: skip
    assert res.returncode == 0, res
    return folder / name


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    yield tmp_path
    for spec in tmp_path.glob("*.yaml"):
        run_cli("down", "-f", str(spec), cwd=tmp_path)
    leftovers = servers_under(tmp_path)
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    assert not leftovers, leftovers


def test_two_specs_in_one_folder_are_two_meshes_and_a_command_acts_only_on_its_own(folder: Path) -> None:
    my, fg = _init(folder, "my.yaml"), _init(folder, "fg.yaml")
    names = {yaml.safe_load(p.read_text())["name"] for p in (my, fg)}
    assert names == {f"{folder.name}-my", f"{folder.name}-fg"}  # `init` names each after its file
    for spec in (my, fg):
        res = run_cli("up", "-d", "-f", spec.name, cwd=folder)
        assert res.returncode == 0, res
    down = run_cli("down", "-f", "fg.yaml", cwd=folder)
    assert down.returncode == 0 and f"{folder.name}-fg" in down.stdout
    status = run_cli("status", "-f", "my.yaml", cwd=folder)
    assert status.returncode == 0, status  # the other one still runs, on its own stores
    assert (folder / ".natsmesh" / f"{folder.name}-my").is_dir() and (
        folder / ".natsmesh" / f"{folder.name}-fg"
    ).is_dir()


def test_a_spec_that_names_another_specs_mesh_is_refused_and_changes_nothing(folder: Path) -> None:
    """Two hand-written specs in one folder with one `name:` share a data dir: the second is refused by every
    command, so `down -f second.yaml` never stops the first and `up` never starts on its stores."""
    first = _init(folder, "first.yaml", "--name", "shop")
    second = folder / "second.yaml"
    doc = yaml.safe_load(first.read_text())
    doc["domains"][0]["products"] = [
        {"name": "EVENTS", "subjects": ["leaf-domain-a.events.>"], "replicas": 1, "owner": "a@example.com"}
    ]
    second.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert run_cli("up", "-d", "-f", "first.yaml", cwd=folder).returncode == 0
    for args in (("up", "-d"), ("down",), ("apply",), ("status",), ("report", "jetstream")):
        res = run_cli(*args, "-f", "second.yaml", cwd=folder)
        assert res.returncode == 1 and "Traceback" not in res.stderr, (args, res)
        assert "holds mesh 'shop' of spec first.yaml, not of spec second.yaml" in res.stderr, (args, res.stderr)
        assert "Nothing was done" in res.stderr
    assert run_cli("status", "-f", "first.yaml", cwd=folder).returncode == 0


def test_a_command_without_f_means_the_mesh_up_started_here_and_status_elsewhere_says_what_runs(
    folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    (folder / "specs").mkdir()
    spec = _init(folder / "specs", "shop.yaml")
    assert run_cli("up", "-d", "-f", "specs/shop.yaml", cwd=folder).returncode == 0
    name = yaml.safe_load(spec.read_text())["name"]
    here = run_cli("status", "--json", cwd=folder)
    assert here.returncode == 0, here
    assert f"(mesh '{name}', spec specs/shop.yaml: the one `natsmesh up` started here" in here.stderr
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    away = run_cli("status", cwd=elsewhere)
    assert away.returncode == 1 and "mesh 'seed' is not running" in away.stderr
    assert f"running on this machine: {name} (spec" in away.stderr and "shop.yaml" in away.stderr, away.stderr
    res = run_cli("down", cwd=folder)
    assert res.returncode == 0 and f"mesh '{name}' stopped" in res.stdout, res


@pytest.mark.parametrize("trust", ["config", "operator"])
def test_a_domain_added_to_a_running_meshs_spec_gets_a_true_answer(folder: Path, trust: str) -> None:
    spec = _init(folder, "grow.yaml")
    doc = yaml.safe_load(spec.read_text())
    doc["trust"] = trust
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert run_cli("up", "-d", "-f", spec.name, cwd=folder).returncode == 0
    ports = doc["domains"][-1].get("ports")
    doc["domains"].append({"name": "leaf-domain-new", "nodes": 1})
    if ports is not None:
        doc["domains"][-1]["ports"] = {k: v + 1000 for k, v in ports.items()}
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    if trust == "operator":  # the hub's configs name no domain: it joins the running mesh
        res = run_cli("apply", "-f", spec.name, cwd=folder)
        assert res.returncode == 0 and "leaf-domain-new" in res.stdout and "joins" in res.stdout, res
        report = run_cli("report", "jetstream", "--json", "-f", spec.name, cwd=folder)
        assert report.returncode == 0 and "leaf-domain-new-0" in report.stdout, report
        return
    for args in (("apply",), ("report", "jetstream"), ("up", "-d")):
        res = run_cli(*args, "-f", spec.name, cwd=folder)
        assert res.returncode != 0 and "Traceback" not in res.stderr, (args, res)
        assert "never been started" not in res.stderr, (args, res.stderr)
        assert "leaf-domain-new" in res.stderr and "natsmesh down" in res.stderr, (args, res.stderr)


def test_what_a_newcomer_meets_reads_as_sentences(folder: Path) -> None:
    spec = _init(folder, "meet.yaml")
    doc = yaml.safe_load(spec.read_text())
    doc["domains"][0]["products"] = [{"name": "ORDERS", "subjects": ["leaf-domain-a.orders.>"]}]
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    unowned = run_cli("up", "-d", "-f", spec.name, cwd=folder)  # `init` asks every product for an owner contact
    assert unowned.returncode == 1 and "governance rule owner-named, product leaf-domain-a/ORDERS" in unowned.stderr
    doc["domains"][0]["products"][0]["owner"] = "sales@example.com"
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert run_cli("up", "-d", "-f", spec.name, cwd=folder).returncode == 0
    never = run_cli("tail", "leaf-domain-a/ORDERS", "-f", spec.name, cwd=folder)  # not applied yet
    assert never.returncode == 1 and "NotFoundError" not in never.stderr and "Traceback" not in never.stderr
    assert "leaf-domain-a/ORDERS has no stream yet: is it applied? (natsmesh apply)" in never.stderr, never.stderr
    assert run_cli("apply", "-f", spec.name, cwd=folder).returncode == 0
    doc["domains"][0]["products"][0] |= {"description": "every order", "tags": ["core"]}
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    plan = run_cli("apply", "--dry-run", "-f", spec.name, "--json", cwd=folder)
    details = [c["detail"] for c in json.loads(plan.stdout)["changes"] if c["action"] == "update"]
    assert any("description: none -> 'every order'" in d for d in details), details
    assert any("metadata.natsmesh.tags: none -> 'core'" in d for d in details), details
    assert not any("{'" in d for d in details), details  # field names and values, not whole mappings
    helped = run_cli("help", "report", "lag")
    assert helped.returncode == 0 and "Usage: natsmesh report lag" in helped.stdout


def test_the_foreground_up_shows_no_start_up_noise(folder: Path) -> None:
    """No `[ERR]` line from the servers' start (peers dialling each other before they listen) reaches the screen;
    a note says where they are; Ctrl-C stops every node cleanly, with no restart in between."""
    from datetime import datetime

    spec = _init(folder, "fg.yaml")
    proc = subprocess.Popen(
        [natsmesh_exe(), "up", "-f", spec.name], cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    head: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "ready:" not in (head[-1] if head else ""):
            head.append(proc.stdout.readline())
        head.append(proc.stdout.readline())  # the line after ready: where the servers' lines went
        time.sleep(1.0)
        interrupted = time.time()
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        out, _ = proc.communicate(timeout=60)
    lines = [ln.rstrip("\n") for ln in head] + out.splitlines()

    def logged(line: str) -> float:
        stamp = line.split("] ", 1)[1][:26]
        return datetime.strptime(stamp, "%Y/%m/%d %H:%M:%S.%f").timestamp()

    running = [ln for ln in lines if "[ERR]" in ln and logged(ln) < interrupted]
    assert not running, running  # the stop's own goodbyes ("broken pipe" while peers go) are not a start's noise
    assert any("start-up lines are not shown" in ln and "--verbose" in ln for ln in lines), lines[:20]
    assert "stopped 3 nodes" in out and "restarting" not in out, lines[-10:]
    assert proc.returncode == 0
