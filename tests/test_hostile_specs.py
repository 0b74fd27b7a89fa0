"""The document floor against hostile input: any bytes, any size, any nesting, any alias structure ends in a clear
`SpecError` naming the file (and the line where there is one), never a traceback, a hang or a memory blow-up.
A property-based test (hypothesis) keeps it that way; anything that does validate must also render."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import run_cli
from natsmesh.errors import SpecError
from natsmesh.local.secrets import new_credentials
from natsmesh.local.specfile import load_spec, parse_spec, read_spec_text
from natsmesh.model.mesh import Mesh
from natsmesh.model.templates import init_spec_text
from natsmesh.model.yamldoc import MAX_BYTES
from natsmesh.render.servers import render_mesh
from natsmesh.render.streams import desired_streams

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(9)
)
VALID = init_spec_text(name="fuzz", domains=2, nodes=1, hub_nodes=1)

# (name, content, what the one problem must say). Content is bytes, or text (written as UTF-8).
HOSTILE: list[tuple[str, bytes | str, str]] = [
    ("binary", bytes(range(256)) * 4, "not UTF-8 text"),
    ("latin-1", "name: caf\u00e9\n".encode("latin-1"), "line 1: not UTF-8 text"),
    ("utf-16", "name: x\n".encode("utf-16"), "not UTF-8 text"),
    ("nul", "name: x\x00\n", "line 1: not valid YAML: character U+0000 is not allowed"),
    ("deep-flow-list", "[" * 100_000 + "]" * 100_000, "nesting"),
    ("deep-block-list", "- " * 20_000 + "x\n", "nested more than 32 levels deep"),
    ("deep-mapping", "".join("  " * i + "k:\n" for i in range(200)), "nested more than 32 levels deep"),
    ("alias-bomb", BOMB, "values (aliases expanded)"),
    ("recursive-alias", "domains: &d [*d]\n", "refers to the value it is part of"),
    ("duplicate-key", "name: a\nhost: 127.0.0.1\nname: b\n", "line 3: key 'name' is given twice"),
    ("duplicate-nested-key", "hub:\n  nodes: 1\n  nodes: 3\n", "line 3: key 'nodes' is given twice"),
    ("empty", "", "the spec is empty"),
    ("only-comments", "# nothing here\n# at all\n", "the spec is empty"),
    ("only-space", "   \n\n  \n", "the spec is empty"),
    ("scalar", "hello\n", "expected a mapping of keys, got str"),
    ("list", "- name: a\n", "expected a mapping of keys, got list"),
    ("two-documents", "name: a\n---\nname: b\n", "line 2"),
    ("python-tag", "name: !!python/object/apply:os.system [ls]\n", "could not determine a constructor"),
    ("unknown-tag", "name: !secret x\n", "could not determine a constructor"),
    ("huge-integer", "hub: {nodes: " + "9" * 5000 + "}\n", "a value cannot be read"),
    (
        "infinite-age",
        "domains: [{name: a, products: [{name: P, subjects: [a.>], limits: {max_age: .inf}}]}]\n",
        "finite",
    ),
    ("nan-age", "domains: [{name: a, products: [{name: P, subjects: [a.>], limits: {max_age: .nan}}]}]\n", "finite"),
    ("huge-size", "jetstream: {max_file: 99999999999TiB}\n", "larger than JetStream can hold"),
    ("nul-in-path", 'data_dir: "a\\0b"\n', "expected a file or directory path"),
    ("complex-key", "? [a, b]\n: 1\n", "line 1: a key must be a plain value"),
    ("tab-indent", "hub:\n\tnodes: 1\n", "not valid YAML"),
    ("too-large", "# " + "x" * (MAX_BYTES + 10) + "\n", f"larger than {MAX_BYTES:,}"),
    ("long-name", "name: " + "x" * 100_000 + "\n", "invalid mesh name"),
    ("many-problems", "domains:\n" + "".join(f"  - name: bad.{i}\n" for i in range(5000)), "more problems"),
]


def _write(tmp_path: Path, name: str, content: bytes | str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.mark.parametrize(("name", "content", "expected"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_spec_gives_a_clear_error(tmp_path: Path, name: str, content: bytes | str, expected: str) -> None:
    path = _write(tmp_path, name, content)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert err.value.source == str(path)
    assert any(expected in p for p in err.value.problems), err.value.problems
    assert len(str(err.value)) < 20_000  # readable: a long value or thousands of problems are cut short


def test_a_spec_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # reading it would block until a writer came
    for path, expected in ((fifo, "not a regular file"), (tmp_path, "a directory"), (Path("/dev/zero"), "regular")):
        with pytest.raises(SpecError, match=expected):
            read_spec_text(path)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # 2 GiB of address space


def test_the_cli_answers_every_hostile_spec_in_bounded_time_and_memory(tmp_path: Path) -> None:
    """As a user runs it: one line of error naming the file, exit 1, no traceback, within the subprocess limits
    (20 s, 2 GiB); the alias bomb used to run for minutes at 4 GB, deep nesting ended in RecursionError."""
    for name, content, expected in HOSTILE:
        path = _write(tmp_path, name, content)
        exe = Path(sys.executable).parent / "natsmesh"
        res = subprocess.run(
            [str(exe), "validate", "-f", str(path)],
            capture_output=True,
            text=True,
            timeout=20,
            preexec_fn=_limit_memory,
            env={**os.environ},
            stdin=subprocess.DEVNULL,
        )
        assert res.returncode == 1, (name, res.stdout, res.stderr[-2000:])
        assert "Traceback" not in res.stderr, (name, res.stderr[-2000:])
        assert res.stderr.startswith(f"error: invalid mesh spec {path}"), (name, res.stderr[:500])
        assert expected in res.stderr, (name, res.stderr[:500])
    assert len(HOSTILE) >= 22


def test_an_empty_spec_says_what_a_spec_needs(tmp_path: Path) -> None:
    res = run_cli("validate", "-f", str(_write(tmp_path, "empty", "")))
    assert res.returncode == 1 and "a mesh spec is a YAML mapping that names the mesh and its domains" in res.stderr
    assert "natsmesh init" in res.stderr


# ---------------------------------------------------------------------------------------------------------------
# Property-based: whatever the input, a Mesh or a SpecError; a Mesh that validates renders.

FUZZ = settings(
    max_examples=int(os.environ.get("NATSMESH_FUZZ_EXAMPLES", "150")),
    deadline=None,
    derandomize=os.environ.get("NATSMESH_FUZZ_RANDOM") != "1",  # CI replays the same examples; set 1 to explore
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

KEYS = [
    "name", "host", "server", "data_dir", "ports", "hub", "domains", "credentials", "jetstream", "leafnodes",
    "tls", "pings", "nodes", "server_prefix", "folder", "namespace", "products", "consumes", "client", "cluster",
    "http", "leafnode", "base", "block", "subjects", "description", "owner", "tags", "limits", "max_age",
    "max_bytes", "max_msgs", "max_consumers", "replicas", "storage", "public", "product", "as", "mode", "filter",
    "transform", "connections", "subscriptions", "payload", "streams", "consumers", "memory", "file",
    "max_memory", "max_file", "sync_interval", "reconnect", "system_bridge", "interval", "max_out", "enabled",
    "dir", "system", "data", "user", "password",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["a", "hub", "leaf-domain-a", "a.>", "a.*.b", "64MiB", "7d", "250ms", "mirror", "source",
                     "file", "memory", "auto", "always", "leaf-domain-a/P", "127.0.0.1", "", ">", "*"]),
    st.text(max_size=20),
)  # fmt: skip
DOCS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=6),
    ),
    max_leaves=40,
)


def _outcome(text: str) -> Mesh | None:
    """The mesh TEXT validates to (after checking that it renders), or None for a SpecError; anything else
    escapes and fails the test."""
    try:
        mesh = parse_spec(text, source="fuzz.yaml", cache=False)
    except SpecError as exc:
        assert exc.source == "fuzz.yaml" and exc.problems
        return None
    assert render_mesh(mesh, new_credentials(mesh, cost=4))
    desired_streams(mesh)
    mesh.describe()
    _ = mesh.data_dir, mesh.tls_dir
    return mesh


@FUZZ
@given(st.binary(max_size=2000))
def test_any_bytes_give_a_mesh_or_a_spec_error(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.yaml"
    path.write_bytes(data)
    try:
        text = read_spec_text(path)
    except SpecError:
        return
    _outcome(text)


@FUZZ
@given(DOCS)
def test_any_document_gives_a_mesh_or_a_spec_error(doc: object) -> None:
    _outcome(yaml.safe_dump(doc))


@FUZZ
@given(st.data())
def test_a_valid_spec_with_any_value_changed_gives_a_mesh_or_a_spec_error(data: st.DataObject) -> None:
    doc = yaml.safe_load(VALID)
    node = doc
    for _ in range(data.draw(st.integers(1, 4))):  # walk down to some mapping or list, then replace one entry
        if isinstance(node, dict) and node:
            key = data.draw(st.sampled_from(sorted(node, key=str)))
            if not isinstance(node[key], dict | list) or data.draw(st.booleans()):
                node[key] = data.draw(DOCS)
                break
            node = node[key]
        elif isinstance(node, list) and node:
            node = node[data.draw(st.integers(0, len(node) - 1))]
        else:
            break
    _outcome(yaml.safe_dump(doc))


@FUZZ
@given(st.text(max_size=300))
def test_any_text_appended_to_a_valid_spec_gives_a_mesh_or_a_spec_error(tail: str) -> None:
    _outcome(VALID + tail)


def test_fuzz_input_that_validates_is_rendered_and_covers_real_specs() -> None:
    """The property's positive side is exercised: a real spec passes `_outcome` as a Mesh."""
    assert isinstance(_outcome(VALID), Mesh)
