"""Shared fixtures: meshes in temporary directories on free ports, a private spec cache, and a check that no
nats-server outlives the test that started it. What tests import lives in helpers.py."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import MeshRunner, seed_on_free_ports, servers_under
from natsmesh.local.registry import STATE_ENV
from natsmesh.local.specfile import ALLOWED_DIRS_ENV, CACHE_ENV
from natsmesh.model.mesh import Mesh


@pytest.fixture(autouse=True, scope="session")
def _private_spec_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Validated-spec cache in a temporary dir, for this run and the CLI processes it starts."""
    old = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("spec-cache"))
    yield
    if old is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = old


@pytest.fixture(autouse=True, scope="session")
def _private_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The list of running meshes (`natsmesh.local.registry`) in a temporary dir, for this run and its CLIs."""
    old = os.environ.get(STATE_ENV)
    os.environ[STATE_ENV] = str(tmp_path_factory.mktemp("running-meshes"))
    yield
    if old is None:
        os.environ.pop(STATE_ENV, None)
    else:
        os.environ[STATE_ENV] = old


@pytest.fixture(autouse=True, scope="session")
def _data_dirs_in_temporary_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests put a mesh's data where pytest keeps temporary dirs, outside the spec's folder: allowed, as the platform
    allows it (`NATSMESH_ALLOWED_DIRS`), for this run and the CLI processes it starts."""
    old = os.environ.get(ALLOWED_DIRS_ENV)
    os.environ[ALLOWED_DIRS_ENV] = str(tmp_path_factory.getbasetemp())
    yield
    if old is None:
        os.environ.pop(ALLOWED_DIRS_ENV, None)
    else:
        os.environ[ALLOWED_DIRS_ENV] = old


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[MeshRunner]:
    r = MeshRunner(tmp_path)
    try:
        yield r
    finally:
        r.close()
        leftovers = servers_under(tmp_path)
        for pid in leftovers:
            os.kill(pid, signal.SIGKILL)
        assert not leftovers, f"nats-server processes left running: {leftovers}"


@pytest.fixture(scope="module")
def seed_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """The seed topology (18 servers) running on free ports, shared by a module's read-mostly tests."""
    tmp = tmp_path_factory.mktemp("seed")
    r = MeshRunner(tmp)
    mesh = r.load(seed_on_free_ports(tmp / "data"))
    r.up(mesh)
    try:
        yield mesh
    finally:
        r.close()
        assert not servers_under(tmp)
