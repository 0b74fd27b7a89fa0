"""Finding nats-server, and refusing one that is missing, broken or older than 2.10."""

from __future__ import annotations

from pathlib import Path

import pytest

from natsmesh.errors import ServerBinaryError
from natsmesh.run import binary


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
    assert binary.resolve("ignored-when-env-is-set").version == (2, 11, 3)


def test_spec_field_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(binary.ENV_VAR, raising=False)
    assert binary.resolve(str(fake_server(tmp_path, "nats-server: v2.12.0"))).version == (2, 12, 0)


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
