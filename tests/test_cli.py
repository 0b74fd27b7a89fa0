"""The CLI without servers: help everywhere, docs in step, clear errors that change nothing."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from helpers import run_cli
from natsmesh.cli import cli

README = (Path(__file__).parent.parent / "README.md").read_text()


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in group.commands.items():
        out.append((*prefix, name))
        if isinstance(cmd, click.Group):
            out += _commands(cmd, (*prefix, name))
    return out


ALL_COMMANDS = _commands(cli)


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=[" ".join(p) for p in ALL_COMMANDS])
def test_every_command_has_help_and_is_documented(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    cmd: click.Command = cli
    for part in path:
        assert isinstance(cmd, click.Group)
        cmd = cmd.commands[part]
    assert cmd.help, f"`natsmesh {' '.join(path)}` has no help text"
    assert f"natsmesh {' '.join(path)}" in README, f"`natsmesh {' '.join(path)}` is missing from README.md"
    table = README[README.index("## Commands") : README.index("\n## ", README.index("## Commands") + 5)]
    assert f"`natsmesh {path[0]}" in table, f"`natsmesh {path[0]}` is missing from README.md's command table"


def test_the_init_templates_hints_are_true(tmp_path: Path) -> None:
    """What the spec `natsmesh init` writes tells its reader to run, and the keys it shows commented out, work."""
    import re

    from natsmesh.local.specfile import parse_spec
    from natsmesh.model.templates import init_spec_text

    text = init_spec_text(name="hints", domains=2, nodes=1, hub_nodes=1)
    commands = set(re.findall(r"`natsmesh ([a-z]+)", text))
    assert {"validate", "up"} <= commands
    for name in commands:
        assert name in cli.commands, f"the template names `natsmesh {name}`, which does not exist"
    assert not re.search(r"^#? ?server:", text, re.M)  # a spec may not name a binary: no hint offers the key
    commented = [ln for ln in text.splitlines() if re.match(r"^# [a-z_]+: ", ln)]
    assert commented, text
    for line in commented:  # each key shown commented out validates when uncommented
        key = line[2:].split(":", 1)[0]
        doc = text.replace(line, line[2:].split("  #")[0], 1)
        parse_spec(doc, source=f"uncommented {key}", base_dir=tmp_path, cache=False)


def test_bad_spec_exits_nonzero_without_traceback(tmp_path: Path) -> None:
    spec = tmp_path / "mesh.yaml"
    spec.write_text("domains:\n  - name: bad.name\n")
    for args in (["validate"], ["render", "--out", str(tmp_path / "out")], ["up", "--detach"], ["info"]):
        res = run_cli(*args, "-f", str(spec), cwd=tmp_path)
        assert res.returncode == 1, (args, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr
        assert f"invalid mesh spec {spec}" in res.stderr
        assert "domains[0].name (line 2)" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mesh.yaml"]  # nothing written


def test_init_writes_a_valid_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(cli, ["init", "--domains", "100", "--nodes", "3", "--name", "big"])
    assert res.exit_code == 0, res.output
    assert "303 servers" in res.output
    res = runner.invoke(cli, ["validate", "--json"])  # picks up ./mesh.yaml
    doc = json.loads(res.output)
    assert doc["mesh"] == "big" and len(doc["clusters"]) == 101
    again = runner.invoke(cli, ["init"])
    assert again.exit_code != 0 and "already exists" in again.output


@pytest.mark.parametrize("trust", ["config", "operator"])
def test_render_writes_the_seed_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trust: str) -> None:
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NATSMESH_TRUST", trust)
    res = runner.invoke(cli, ["render", "--out", "out", "--json"])
    assert res.exit_code == 0, res.output
    files = json.loads(res.output)["files"]
    # per folder: its configs, a Procfile, the party's own secrets, a unit per node, a README for its hosts and
    # the mesh its party acts on; in operator mode the hub's operator and its users' creds, each domain's link
    operator = {"out/hub-cluster/operator.jwt", "out/hub-cluster/system.creds", "out/hub-cluster/client.creds"}
    operator |= {f"out/leaf-cluster-{x}/link.creds" for x in "abcde"}
    assert len(files) == 18 + 6 + 6 + 18 + 6 + 6 + len(operator) * (trust == "operator")
    assert operator <= set(files) if trust == "operator" else not operator & set(files)
    assert Path("out/leaf-cluster-e/Procfile").read_text().count("\n") == 3


@pytest.mark.parametrize("trust", ["config", "operator"])
def test_info_json_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trust: str) -> None:
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NATSMESH_TRUST", trust)
    res = runner.invoke(cli, ["info", "--json", "--nats-contexts", "ctx", "--show-secrets"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    if trust == "operator":  # the hub's users are JWTs: a plain URL and the creds file natscli takes
        assert doc["system"]["url"] == "nats://127.0.0.1:4222"
        creds = Path(doc["system"]["creds"])
        assert stat.S_IMODE(creds.stat().st_mode) == 0o600 and "BEGIN NATS USER JWT" in creds.read_text()
        assert json.loads(Path("ctx/seed-system.json").read_text())["creds"] == str(creds)
    else:
        assert doc["system"]["url"].startswith("nats://admin:") and doc["system"]["url"].endswith("@127.0.0.1:4222")
    assert list(doc["domains"]) == ["hub", *(f"leaf-domain-{x}" for x in "abcde")]
    a = doc["domains"]["leaf-domain-a"]
    assert a["url"].startswith("nats://app:") and a["url"].endswith("@127.0.0.1:4111")
    assert [u.rsplit(":", 1)[1] for u in a["servers"]] == ["4111", "4112", "4113"]
    secrets = Path(".natsmesh/seed/secrets.json")
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert stat.S_IMODE(secrets.parent.stat().st_mode) == 0o700
    stored = json.loads(secrets.read_text())
    if trust == "config":
        assert stored["system_passwords"]["hub"] in doc["system"]["url"]  # the platform's own system identity
        assert stored["system_passwords"]["hub"] != "password"
    ctx = json.loads(Path("ctx/seed-leaf-domain-b.json").read_text())
    assert ctx["jetstream_domain"] == "leaf-domain-b"
    assert stored["client_passwords"]["leaf-domain-b"] in ctx["url"]  # a context needs the secret


@pytest.mark.parametrize("trust", ["config", "operator"])
def test_info_masks_every_secret_unless_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trust: str) -> None:
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NATSMESH_TRUST", trust)
    for args in (["info"], ["info", "--json"]):
        res = runner.invoke(cli, args)
        assert res.exit_code == 0, res.output
        stored = json.loads(Path(".natsmesh/seed/secrets.json").read_text())
        secrets = [*stored["system_passwords"].values(), *stored["client_passwords"].values()]
        secrets += [k["seed"] for k in (stored.get("trust_keys") or {}).values()]
        assert secrets and not any(s in res.stdout for s in secrets), res.stdout
        shown = json.dumps(json.loads(res.stdout), ensure_ascii=False) if "--json" in args else res.stdout
        system = "nats://admin:…@127.0.0.1:4222" if trust == "config" else "nats://127.0.0.1:4222"
        assert system in shown and "nats://app:…@127.0.0.1:4111" in shown


def test_secrets_are_stable_across_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)
    first = json.loads(runner.invoke(cli, ["info", "--json", "--show-secrets"]).stdout)
    second = json.loads(runner.invoke(cli, ["info", "--json", "--show-secrets"]).stdout)
    assert first["system"]["url"] == second["system"]["url"]


@pytest.mark.parametrize("args", [["down"], ["status"], ["report", "jetstream"]])
def test_commands_on_a_mesh_that_is_not_running(tmp_path: Path, args: list[str]) -> None:
    res = run_cli(*args, cwd=tmp_path)
    assert res.returncode == 1, res
    assert "Traceback" not in res.stderr
    assert "not running" in res.stderr or "never been started" in res.stderr
    assert list(tmp_path.iterdir()) == []  # nothing created


@pytest.mark.parametrize("args", [["status"], ["report", "jetstream"], ["catalog", "list"]])
def test_commands_on_a_mesh_whose_servers_are_all_gone_answer_at_once(tmp_path: Path, args: list[str]) -> None:
    """Secrets exist (rendered) but nothing listens: each command says what it could not reach, within seconds
    (nats-py's first connect with no retries allowed kept trying every server forever, 2 s apart)."""
    assert run_cli("render", "--out", "out", cwd=tmp_path).returncode == 0  # makes the secrets, starts nothing
    res = run_cli(*args, cwd=tmp_path, timeout=30)
    assert res.returncode != 0 and "Traceback" not in res.stderr, res
    assert "cannot reach" in res.stderr or "is not running" in res.stderr, res


@pytest.mark.parametrize(("kind", "expected"), [("old", "too old"), ("missing", "nats-server not found")])
def test_bad_binary_refused_before_anything_is_written(tmp_path: Path, kind: str, expected: str) -> None:
    fake = tmp_path / "old-nats-server"
    if kind == "old":
        fake.write_text("#!/bin/sh\necho 'nats-server: v2.9.15'\n")
        fake.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    res = run_cli("up", "--detach", cwd=work, env={"NATSMESH_SERVER": str(fake)})
    assert res.returncode == 1
    assert expected in res.stderr and "Traceback" not in res.stderr
    assert list(work.iterdir()) == []


def test_text_from_the_mesh_reaches_the_terminal_inert() -> None:
    """Issue 17: a table cell or message built from spec text, the catalog, a server's answer or a payload is never
    markup (rich's MarkupError crashed `catalog list` on `[/x]`; `[link=…]` made links) and never a terminal
    escape (written out as `\\x1b`); styled cells natsmesh makes itself keep their style."""
    import io

    from rich.console import Console
    from rich.text import Text

    from natsmesh.cli.tables import CATALOG, inert, table
    from natsmesh.model.units import visible

    hostile = "Orders [link=https://evil.example/]click[/link] [/nonsense] \x1b]0;PWNED\x07 \x1b[2J \u202eevil"
    assert visible(hostile) == (
        "Orders [link=https://evil.example/]click[/link] [/nonsense] \\x1b]0;PWNED\\x07 \\x1b[2J \\u202eevil"
    )
    assert visible("a\nb\tc") == "a\nb\\tc" and visible("café ✓ 注文") == "café ✓ 注文"
    entry = {"ref": "a/ORDERS", "owner": "[b]x[/b]", "subjects": ["a.>"], "tags": ["[i]t"], "description": hostile}
    out = io.StringIO()
    console = Console(file=out, width=400, force_terminal=True, color_system="truecolor")
    console.print(table("Data Product Catalog [red]x[/red] \x07", CATALOG, [entry], 7))
    printed = out.getvalue()
    assert "\x07" not in printed and "\x1b]" not in printed and "\x1b[2J" not in printed
    assert "[link=https://evil.example/]click[/link]" in printed and "[/nonsense]" in printed and "[b]x[/b]" in printed
    assert "\\x1b]0;PWNED\\x07" in printed and "\x1b]8;" not in printed  # no OSC 8 hyperlink either
    styled = inert(Text("create", style="green"))
    assert styled.style == "green"


def test_a_node_is_signalled_only_if_it_is_the_process_the_supervisor_started(tmp_path: Path) -> None:
    """A dead node's recorded pid may belong to anyone by now: `apply` and `chaos` signal a pid only if the process
    started when the supervisor recorded, and say the node is not running otherwise."""
    import os
    import subprocess

    from natsmesh.errors import NotRunningError
    from natsmesh.local.specfile import parse_spec
    from natsmesh.local.state import NodeRecord, SupervisorState, node_process, process_start
    from natsmesh.model.templates import init_spec_text

    mesh = parse_spec(init_spec_text(domains=1, nodes=1, hub_nodes=1) + f"data_dir: {tmp_path}\n", cache=False)
    node = mesh.nodes()[0].name
    other = subprocess.Popen(["sleep", "30"])  # stands for an unrelated process that took the pid
    try:
        started = process_start(other.pid)
        assert started is not None and started == process_start(other.pid)
        for record, ok in (
            (NodeRecord(pid=other.pid, state="running", started=started), True),
            (NodeRecord(pid=other.pid, state="running", started=started - 1), False),  # another process now
            (NodeRecord(pid=2**22 + 7, state="running", started=1), False),  # ended: no such process
            (NodeRecord(pid=other.pid, state="failed", started=started), False),
        ):
            SupervisorState(pid=os.getpid(), nodes={node: record}).write(mesh)
            if ok:
                assert node_process(mesh, node) == other.pid
            else:
                with pytest.raises(NotRunningError, match=f"node {node} is not running"):
                    node_process(mesh, node)
        assert other.poll() is None  # nothing was signalled
    finally:
        other.kill()
        other.wait()
