"""The document floor against hostile input: any bytes, any size, any nesting, any alias structure ends in a clear
`SpecError` naming the file (and the line where there is one), never a traceback, a hang or a memory blow-up.
A property-based test (hypothesis) keeps it that way; anything that does validate must also render."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import run_cli, with_keys
from natsmesh.client import checker
from natsmesh.errors import ContractSchemaError, SpecError
from natsmesh.local.secrets import new_credentials
from natsmesh.local.specfile import load_spec, parse_spec, read_spec_text
from natsmesh.model.contracts import Checker, SchemaError
from natsmesh.model.mesh import Mesh
from natsmesh.model.products import Contract
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


# ---------------------------------------------------------------------------------------------------------------
# Hostile contracts: a spec is written by many teams, and a contract may name a file or a reference. Whatever it
# names, natsmesh reads nothing outside the spec's folder, retrieves nothing, and says what is wrong where.

SHADOW = "root:$6$Qm9vYmFy$abcdefghijklmnop:19700:0:99999:7:::\ndaemon:*:19700:0:99999:7:::\n"
DEEP_JSON = '{"items": ' * 10_000 + "{}" + "}" * 10_000
MIB = 1024 * 1024


def _contract_spec(schema: object, examples: list[object] | None = None) -> str:
    """A one-domain spec whose product ORDERS has SCHEMA as its contract (a file name or an inline schema)."""
    contract: dict[str, object] = {"schema": schema}
    if examples is not None:
        contract["examples"] = examples
    doc = yaml.safe_load(VALID)
    doc["domains"][0]["products"] = [
        {"name": "ORDERS", "subjects": [f"{doc['domains'][0]['name']}.orders.>"], "contract": contract}
    ]
    return yaml.safe_dump(doc, sort_keys=False, width=10_000)


def _shadow(folder: Path) -> str:
    (folder / "shadow").write_text(SHADOW)
    return "shadow"


def _symlink_out(folder: Path) -> str:
    outside = folder.parent / f"{folder.name}-outside"
    outside.mkdir()
    (outside / "secrets.json").write_text('{"type": "object", "title": "the platform secret"}')
    (folder / "schema.json").symlink_to(outside / "secrets.json")
    return "schema.json"


def _directory(folder: Path) -> str:
    (folder / "schemas").mkdir()
    return "schemas"


def _fifo(folder: Path) -> str:
    os.mkfifo(folder / "schema.json")  # reading it would block until a writer came
    return "schema.json"


def _oversized(folder: Path) -> str:
    (folder / "schema.json").write_text('{"description": "' + "x" * MIB + '"}')
    return "schema.json"


def _binary(folder: Path) -> str:
    (folder / "schema.json").write_bytes(bytes(range(256)) * 8)
    return "schema.json"


def _deep_file(folder: Path) -> str:
    (folder / "schema.json").write_text(DEEP_JSON)
    return "schema.json"


# (name, the `schema:` value, or a function making files in the spec's folder and returning it; examples; what the
# one problem must say)
HOSTILE_CONTRACTS: list[tuple[str, Any, list[object] | None, str]] = [
    ("relative-escape", "../../secrets.json", None, "is outside the spec's folder"),
    ("platform-secrets", ".natsmesh/fuzz/../../../secrets.json", None, "is outside the spec's folder"),
    ("absolute", "/etc/passwd", None, "is outside the spec's folder"),
    ("home", "~/.ssh/id_rsa", None, "is outside the spec's folder"),
    ("symlink-out", _symlink_out, None, "leads outside the spec's folder"),
    ("shadow-like", _shadow, None, "is not a JSON Schema keyword"),
    ("directory", _directory, None, "a directory; a JSON Schema is a JSON or YAML text file"),
    ("fifo", _fifo, None, "not a regular file; a JSON Schema is a JSON or YAML text file"),
    ("oversized", _oversized, None, f"larger than {MIB:,} bytes"),
    ("binary", _binary, None, "not UTF-8 text"),
    ("deep-file", _deep_file, None, "nested more than 32 levels deep"),
    ("ref-http", {"$ref": "http://127.0.0.1:9/schema.json"}, None, "points outside the schema document"),
    ("ref-https", {"$ref": "https://json-schema.example/orders.json"}, None, "points outside the schema document"),
    ("ref-file", {"$ref": "file:///etc/passwd"}, None, "points outside the schema document"),
    ("ref-relative", {"properties": {"a": {"$ref": "other.json#/x"}}}, None, "points outside the schema document"),
    ("ref-nested-id", {"$id": "http://127.0.0.1:9/", "items": {"$ref": "b.json"}}, None, "points outside"),
    ("meta-http", {"$schema": "http://127.0.0.1:9/meta", "type": "object"}, None, "unknown meta-schema"),
    ("ref-missing-pointer", {"$ref": "#/$defs/nothing"}, None, "'/$defs/nothing' does not exist"),
    ("self-reference", {"$ref": "#"}, None, "leads back to itself"),
    (
        "reference-loop",
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}]}}, "$ref": "#/$defs/a"},
        None,
        "leads back to itself",
    ),
    ("catastrophic-pattern", {"type": "string", "pattern": "^(a+)+$"}, ["a" * 50_000 + "!"], "does not match"),
    ("backtracking-pattern", {"type": "string", "pattern": "^(a|a)*\\1b$"}, ["a" * 64 + "!"], "backtracking"),
    ("huge-pattern", {"type": "string", "pattern": "((a{100}){100}){100}"}, None, 'is not a "regex"'),
]


def _hostile_contract(folder: Path, schema: Any, examples: list[object] | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "mesh.yaml"
    spec.write_text(_contract_spec(schema(folder) if callable(schema) else schema, examples))
    return spec


@pytest.mark.parametrize(
    ("name", "schema", "examples", "expected"), HOSTILE_CONTRACTS, ids=[h[0] for h in HOSTILE_CONTRACTS]
)
def test_a_hostile_contract_is_refused_naming_the_file_the_path_and_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, schema: Any, examples: Any, expected: str
) -> None:
    monkeypatch.delenv("NATSMESH_ALLOWED_DIRS", raising=False)
    spec = _hostile_contract(tmp_path / "spec", schema, examples)
    before = sorted(p.name for p in spec.parent.iterdir())
    with pytest.raises(SpecError) as err:
        load_spec(spec)
    assert err.value.source == str(spec)
    problem = next((p for p in err.value.problems if expected in p), None)
    assert problem is not None, err.value.problems
    assert problem.startswith("domains[0].products[0].contract."), problem  # the path ...
    assert "(line " in problem  # ... and its line
    assert "the platform secret" not in str(err.value)  # nothing read outside the folder is echoed
    assert sorted(p.name for p in spec.parent.iterdir()) == before  # nothing written


def test_the_cli_refuses_every_hostile_contract_in_bounded_time_without_a_traceback(tmp_path: Path) -> None:
    """As a platform runs it on a team's change: exit 1, one error naming the file, within 20 s and 2 GiB each."""
    for name, schema, examples, expected in HOSTILE_CONTRACTS:
        spec = _hostile_contract(tmp_path / name, schema, examples)
        res = subprocess.run(
            [str(Path(sys.executable).parent / "natsmesh"), "validate", "-f", str(spec)],
            capture_output=True,
            text=True,
            timeout=20,
            preexec_fn=_limit_memory,
            env={k: v for k, v in os.environ.items() if k != "NATSMESH_ALLOWED_DIRS"},
            stdin=subprocess.DEVNULL,
            cwd=spec.parent,
        )
        assert res.returncode == 1, (name, res.stdout, res.stderr[-2000:])
        assert "Traceback" not in res.stderr, (name, res.stderr[-2000:])
        assert res.stderr.startswith(f"error: invalid mesh spec {spec}"), (name, res.stderr[:500])
        assert expected in res.stderr, (name, res.stderr[:800])
        assert not (spec.parent / ".natsmesh").exists()


def test_schema_files_beside_the_spec_keep_working(tmp_path: Path) -> None:
    schema = {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}
    (tmp_path / "schemas").mkdir()
    (tmp_path / "orders.schema.json").write_text(json.dumps(schema))
    (tmp_path / "schemas" / "orders.yaml").write_text(yaml.safe_dump(schema))
    (tmp_path / "link.json").symlink_to(tmp_path / "schemas" / "orders.yaml")  # a link that stays inside: fine
    for name in ("orders.schema.json", "schemas/orders.yaml", "./schemas/orders.yaml", "link.json"):
        spec = tmp_path / "mesh.yaml"
        spec.write_text(_contract_spec(name, [{"id": 1}]))
        product = load_spec(spec).product(f"{yaml.safe_load(VALID)['domains'][0]['name']}/ORDERS")
        assert product.contract is not None and product.contract.schema == schema
        assert product.contract.to_json() == {  # the catalog keeps the schema validated and the file's name only
            "version": "1.0.0",
            "compatibility": "backward",
            "enforce": "client",
            "schema": schema,
            "file": name,
        }


def test_a_recursive_schema_that_enters_a_field_is_fine(tmp_path: Path) -> None:
    tree = {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#"}}}}
    spec = tmp_path / "mesh.yaml"
    spec.write_text(_contract_spec(tree, [{"children": [{"children": []}]}]))
    assert load_spec(spec).products[0].contract is not None


def test_a_checker_built_from_elsewhere_refuses_what_validation_refuses() -> None:
    """A contract can come back from a folder's mesh.json or the catalog, not only from a spec: the compiled
    checker (the gate, `pub`, `contract test`) refuses the same schemas, and JSON nested beyond any bound."""
    for schema in ({"$ref": "http://127.0.0.1:9/x"}, {"$schema": "http://127.0.0.1:9/m"}, {"$ref": "#"}):
        with pytest.raises(SchemaError):
            Checker(json.dumps(schema))
    for text in (DEEP_JSON, "[" * 100_000 + "]" * 100_000):
        with pytest.raises(SchemaError, match=r"nested more than"):
            Checker(text)
    with pytest.raises(ContractSchemaError, match=r"contract 1\.0\.0 cannot be checked: .*points outside"):
        checker(Contract(json.dumps({"$ref": "https://example.com/x.json"})))


# ---------------------------------------------------------------------------------------------------------------
# Every string as the servers will read it: one domain's line must not leave the hub unable to restart.


def _doc() -> dict[str, Any]:
    doc = yaml.safe_load(VALID)
    a, b = doc["domains"]
    a["products"] = [{"name": "ORDERS", "subjects": [f"{a['name']}.orders.>"], "public": True}]
    b["consumes"] = [{"product": f"{a['name']}/ORDERS", "as": "ORDERS_COPY"}]
    return doc


def _set(path: tuple[Any, ...], value: Any) -> Any:
    def change(doc: dict[str, Any]) -> None:
        node: Any = doc
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return change


PRODUCT = ("domains", 0, "products", 0)
COPY = ("domains", 1, "consumes", 0)
STRINGS: list[tuple[str, Any, str]] = [
    ("product-newline", _set((*PRODUCT, "name"), "ORDERS\n"), "domains[0].products[0].name (line"),
    ("product-tab", _set((*PRODUCT, "name"), "OR\tDERS"), "domains[0].products[0].name (line"),
    ("copy-newline", _set((*COPY, "as"), "ORDERS_COPY\n"), "domains[1].consumes[0].as (line"),
    ("copy-escape", _set((*COPY, "as"), "COPY\x1b[2J"), "domains[1].consumes[0].as (line"),
    ("domain-newline", _set(("domains", 1, "name"), "billing\n"), "domains[1].name (line"),
    ("cluster-bell", _set(("domains", 1, "clusters"), [{"name": "more\x07", "nodes": 1}]), "domains[1].clusters[0]"),
    ("subject-newline", _set((*PRODUCT, "subjects"), ["leaf-domain-a.orders.>\n"]), "subjects[0] (line"),
    ("subject-control", _set((*PRODUCT, "subjects"), ["leaf-domain-a.or\x00ders.>"]), "subjects[0] (line"),
    ("filter-control", _set((*COPY, "filter"), "leaf-domain-a.orders.\x7f"), "domains[1].consumes[0]"),
    ("mesh-name", _set(("name",), "fuzz\n"), "name (line"),
    ("namespace", _set(("domains", 0, "namespace"), "sales\n"), "domains[0].namespace (line"),
    ("host-newline", _set(("host",), "127.0.0.1\n"), "host (line"),
    ("duration-newline", _set(("pings",), {"interval": "4s\n"}), "pings.interval (line"),
    ("owner-escape", _set((*PRODUCT, "owner"), "\x1b]52;c;cHduZWQ=\x07ops@example.com"), "owner (line"),
    ("tag-bidi", _set((*PRODUCT, "tags"), ["pii\u202e"]), "tags[0] (line"),
    ("tag-comma", _set((*PRODUCT, "tags"), ["a,b"]), "without ','"),
    ("description-escape", _set((*PRODUCT, "description"), "orders \x1b]0;PWNED\x07"), "description (line"),
    ("description-4097", _set((*PRODUCT, "description"), "x" * 4097), "at most 4,096 bytes"),
    ("description-bytes", _set((*PRODUCT, "description"), "é" * 2049), "this one is 4,098"),
    ("copy-description", _set((*COPY, "description"), "y" * 5000), "at most 4,096 bytes"),
    ("owner-long", _set((*PRODUCT, "owner"), "o" * 300), "at most 256 characters"),
]


@pytest.mark.parametrize(("name", "change", "expected"), STRINGS, ids=[s[0] for s in STRINGS])
def test_every_string_is_checked_the_way_the_servers_read_it(name: str, change: Any, expected: str) -> None:
    doc = _doc()
    change(doc)
    with pytest.raises(SpecError) as err:
        parse_spec(yaml.safe_dump(doc, sort_keys=False, width=10_000), source="team.yaml", cache=False)
    assert any(expected in p for p in err.value.problems), err.value.problems
    assert "\x1b" not in str(err.value) and "\x07" not in str(err.value)  # the message itself is inert


def test_text_that_is_fine_stays_fine() -> None:
    doc = _doc()
    product = doc["domains"][0]["products"][0]
    product["description"] = "Orders, one per event.\n\tSecond line: café ✓ — 注文"
    product["owner"] = "Vertrieb <sales@example.com>"
    product["tags"] = ["pii", "gdpr:restricted", "ünïcode tag"]
    product["description"] = product["description"] + "x" * (4096 - len(product["description"].encode()))
    mesh = parse_spec(yaml.safe_dump(doc, sort_keys=False, width=10_000), cache=False)
    assert len(mesh.products[0].description.encode()) == 4096


def _hosted(domain_hosts: list[Any]) -> dict[str, Any]:
    return {
        "name": "wide",
        "tls": {"enabled": True},
        "hub": {"nodes": 2, "ports": {"client": 4222, "leafnode": 7422}, "hosts": ["10.9.0.1", "hub.example.net"]},
        "domains": [
            {"name": "a", "nodes": 1, "ports": {"client": 5222}, "hosts": ["10.9.1.1"]},
            {"name": "b", "nodes": 1, "ports": {"client": 5322}, "hosts": domain_hosts},
        ],
    }


@pytest.mark.parametrize(
    ("hosts", "expected"),
    [
        (["HUB.Example.NET"], "domains[1].hosts[0].address (line"),  # the hub's name, however it is spelled
        (["10.9.0.1"], "'10.9.0.1' is an address of 'hub'"),
        (["10.9.1.1"], "'10.9.1.1' is an address of 'a'"),
        ([{"address": "10.9.2.1", "bind": "10.9.0.1"}], "domains[1].hosts[0].bind (line"),
    ],
)
def test_a_party_may_not_take_another_partys_address(hosts: list[Any], expected: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(yaml.safe_dump(_hosted(hosts), sort_keys=False), source="wide.yaml", cache=False)
    assert any(expected in p and "may not take another party's address" in p for p in err.value.problems), err.value


def test_parties_sharing_one_machine_or_loopback_are_fine() -> None:
    parse_spec(yaml.safe_dump(_hosted(["10.9.2.1"]), sort_keys=False), cache=False)
    local = _hosted(["127.0.0.1"])
    local["domains"][0]["hosts"] = ["localhost"]
    parse_spec(yaml.safe_dump(local, sort_keys=False), cache=False)
    parse_spec(VALID, cache=False)  # every cluster on the mesh's one host


# ---------------------------------------------------------------------------------------------------------------
# Where a spec can make natsmesh read and write: its own folder, unless the platform allows more.


@pytest.mark.parametrize(
    ("key", "value", "where"),
    [
        ("data_dir", "/etc/natsmesh", "data_dir (line"),
        ("data_dir", "../other-mesh/.natsmesh/prod", "data_dir (line"),
        ("data_dir", "~/.natsmesh", "data_dir (line"),
        ("tls", {"enabled": True, "dir": "/srv/platform-ca"}, "tls.dir (line"),
        ("tls", {"enabled": True, "dir": "link-out/ca"}, "tls.dir (line"),
    ],
)
def test_a_spec_keeps_natsmesh_in_its_own_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, value: Any, where: str
) -> None:
    monkeypatch.delenv("NATSMESH_ALLOWED_DIRS", raising=False)
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "link-out").symlink_to(tmp_path)
    spec = folder / "mesh.yaml"
    spec.write_text(with_keys(VALID, **{key: value}))
    with pytest.raises(SpecError) as err:
        load_spec(spec)
    assert any(p.startswith(where) and "leads outside the spec's folder" in p for p in err.value.problems), err.value
    assert "NATSMESH_ALLOWED_DIRS" in str(err.value)
    res = run_cli("up", "--detach", "-f", str(spec), cwd=tmp_path)
    assert res.returncode == 1 and "leads outside the spec's folder" in res.stderr and "Traceback" not in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["specs"] and sorted(os.listdir(folder)) == [
        "link-out",
        "mesh.yaml",
    ]


def test_the_platform_may_allow_a_data_dir_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tmp_path / "specs" / "mesh.yaml"
    spec.parent.mkdir()
    spec.write_text(with_keys(VALID, data_dir=str(tmp_path / "var" / "mesh"), tls={"enabled": True, "dir": "pki"}))
    monkeypatch.setenv("NATSMESH_ALLOWED_DIRS", f"/nonexistent{os.pathsep}{tmp_path / 'var'}")
    mesh = load_spec(spec)
    assert mesh.data_dir == tmp_path / "var" / "mesh" and mesh.tls_dir == (spec.parent / "pki").resolve()
    monkeypatch.delenv("NATSMESH_ALLOWED_DIRS")
    with pytest.raises(SpecError, match="data_dir"):
        load_spec(spec)  # the cached verdict does not outlive the platform's allowance


class _Listener:
    """A local TCP listener that counts who connects (a reference must never make natsmesh connect)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def test_no_natsmesh_process_connects_anywhere_for_a_reference(tmp_path: Path) -> None:
    import jsonschema_rs

    listener = _Listener()
    try:
        url = f"127.0.0.1:{listener.port}"
        schemas = [
            {"$ref": f"http://{url}/orders.json"},
            {"$ref": f"https://{url}/orders.json"},
            {"$schema": f"http://{url}/meta", "type": "object"},
            {"$id": f"http://{url}/root.json", "properties": {"a": {"$ref": "a.json"}}},
            {"properties": {"enum": {"$ref": f"http://{url}/x"}}},
        ]
        for k, schema in enumerate(schemas):
            spec = tmp_path / f"s{k}" / "mesh.yaml"
            spec.parent.mkdir()
            spec.write_text(_contract_spec(schema))
            res = run_cli("validate", "-f", str(spec), timeout=30)
            assert res.returncode == 1 and "Traceback" not in res.stderr, res
            odcs = {"apiVersion": "v3.0.2", "kind": "DataContract", "name": "ORDERS"}
            odcs["customProperties"] = [{"property": "natsmeshJsonSchema", "value": schema}]
            (spec.parent / "odcs.json").write_text(json.dumps(odcs))
            res = run_cli("contract", "import", str(spec.parent / "odcs.json"), timeout=30)
            assert res.returncode == 1 and "cannot be a contract" in res.stderr and "Traceback" not in res.stderr, res
            with pytest.raises(SchemaError):
                Checker(json.dumps(schema))  # as the gate, `pub` and `contract test` compile a contract
        time.sleep(0.3)
        assert listener.connections == 0
        # The control: the validator library itself, as natsmesh used to call it, does connect.
        with contextlib.suppress(Exception):
            jsonschema_rs.validator_for({"$ref": f"http://{url}/orders.json"})
        deadline = time.monotonic() + 5
        while listener.connections == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert listener.connections >= 1
    finally:
        listener.close()


@pytest.mark.parametrize(
    ("data_dir", "schema", "expected"),
    [
        (None, ".natsmesh/fuzz/secrets.json", "is in a hidden folder or file"),
        ("data", "data/secrets.json", "leads into the mesh's private folder 'data'"),
        (None, "schemas/orders.json", "leads into the hidden '.natsmesh'"),  # a link into the data dir
        ("data", "schemas/orders.json", "leads into the mesh's private folder 'data'"),
    ],
)
def test_a_contract_cannot_name_the_platforms_secrets_inside_the_folder(
    tmp_path: Path, data_dir: str | None, schema: str, expected: str
) -> None:
    """The mesh's own data dir (secrets.json, the CA key) is usually inside the spec's folder: a schema file may not
    be read there, by name or through a link."""
    secrets = tmp_path / (data_dir or ".natsmesh/fuzz") / "secrets.json"
    secrets.parent.mkdir(parents=True)
    secrets.write_text('{"type": "object", "title": "every party\'s passwords"}')  # a "valid schema", even
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "orders.json").symlink_to(secrets)
    doc = yaml.safe_load(_contract_spec(schema))
    if data_dir:
        doc["data_dir"] = data_dir
    spec = tmp_path / "mesh.yaml"
    spec.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(SpecError) as err:
        load_spec(spec)
    assert any(expected in p for p in err.value.problems), err.value.problems
    assert "passwords" not in str(err.value)
