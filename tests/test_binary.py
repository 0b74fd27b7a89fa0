"""Finding nats-server, and refusing one that is missing, broken or older than 2.10."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import run_cli
from natsmesh.errors import ServerBinaryError
from natsmesh.local import binary


def fake_server(tmp_path: Path, output: str, code: int = 0, executable: bool = True) -> Path:
    path = tmp_path / "nats-server"
    path.write_text(f"#!/bin/sh\necho '{output}'\nexit {code}\n")
    path.chmod(0o755 if executable else 0o644)
    return path


def test_wheel_binary_is_found_and_recent() -> None:
    server = binary.resolve()
    assert Path(server.path).name == "nats-server"
    assert server.version >= (2, 10, 0)


def test_env_var_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(binary.ENV_VAR, str(fake_server(tmp_path, "nats-server: v2.11.3")))
    assert binary.resolve().version == (2, 11, 3)


def test_a_spec_cannot_name_a_program_to_run(tmp_path: Path) -> None:
    """`server:` was a way for whoever writes a line of the spec to make the platform's `up` run any program: it is
    refused by validation, with where the platform chooses the binary instead, and the program never runs."""
    ran = tmp_path / "ran"
    program = tmp_path / "evil"
    program.write_text(f"#!/bin/sh\ntouch {ran}\necho 'nats-server: v2.12.0'\n")
    program.chmod(0o755)
    spec = tmp_path / "mesh.yaml"
    spec.write_text(f"name: m\nserver: {program}\ndomains: [{{name: a, nodes: 1}}]\nhub: {{nodes: 1}}\n")
    for args in (("validate",), ("up", "--detach"), ("render", "--out", str(tmp_path / "out"))):
        res = run_cli(*args, "-f", str(spec), cwd=tmp_path)
        assert res.returncode == 1 and "Traceback" not in res.stderr, res
        assert "server (line 2): a spec may not name a program for natsmesh to run" in res.stderr, res.stderr
        assert "NATSMESH_SERVER" in res.stderr
    assert not ran.exists() and not (tmp_path / "out").exists() and not (tmp_path / ".natsmesh").exists()


def test_missing_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(binary.ENV_VAR, "/nonexistent/nats-server")
    with pytest.raises(ServerBinaryError, match=r"not found at '/nonexistent/nats-server' \(from \$NATSMESH_SERVER\)"):
        binary.resolve()


def test_too_old(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(binary.ENV_VAR, str(fake_server(tmp_path, "nats-server: v2.9.15")))
    with pytest.raises(ServerBinaryError, match=r"2\.9\.15 .* is too old: natsmesh needs 2\.10 or newer"):
        binary.resolve()


def test_not_a_nats_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(binary.ENV_VAR, str(fake_server(tmp_path, "hello", code=3)))
    with pytest.raises(ServerBinaryError, match="does not look like nats-server"):
        binary.resolve()


def test_not_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(binary.ENV_VAR, str(fake_server(tmp_path, "nats-server: v2.12.0", executable=False)))
    with pytest.raises(ServerBinaryError, match="does not run"):
        binary.resolve()
