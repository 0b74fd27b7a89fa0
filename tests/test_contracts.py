"""Data contracts (issue 14), without servers: each rule of the compatibility check, a contract in the spec
(checked at validate time), and a contract's change as apply judges it."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from natsmesh.errors import SpecError
from natsmesh.local.specfile import load_spec, parse_spec
from natsmesh.model.contracts import MODES, breaks, change_problem
from natsmesh.model.mesh import Mesh
from natsmesh.model.odcs import OdcsError, from_odcs, to_odcs
from natsmesh.model.templates import init_spec_text
from natsmesh.model.yamldoc import MAX_BYTES

ORDER: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "id": {"type": "string", "minLength": 1},
        "amount": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "enum": ["EUR", "USD"]},
        "lines": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}},
        "note": {"type": "string", "maxLength": 200},
    },
    "required": ["id", "amount"],
}


def changed(**edits: Any) -> dict[str, Any]:
    """ORDER with EDITS applied: `path=value` where path is `a__b` for ["properties"]["a"]["b"]."""
    doc = copy.deepcopy(ORDER)
    for path, value in edits.items():
        keys = path.split("__")
        target = doc
        for k in keys[:-1]:
            target = target["properties"][k] if k in target.get("properties", {}) else target[k]
        if value is None:
            target.pop(keys[-1], None)
        else:
            target[keys[-1]] = value
    return doc


def paths(found: list[Any]) -> list[tuple[str, str]]:
    return [(b.path, b.what.split(":")[0].split(" (")[0]) for b in found]


def test_the_same_schema_is_compatible_in_every_mode() -> None:
    assert all(breaks(ORDER, copy.deepcopy(ORDER), m) == [] for m in MODES)


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        (changed(amount__type="integer"), [("amount", "type narrowed")]),
        (changed(currency__enum=["EUR"]), [("currency", "enum values removed")]),
        (changed(required=["id", "amount", "currency"]), [("currency", "new required field without a default")]),
        (changed(required=["id"]), [("amount", "required field removed or renamed")]),
        (changed(amount__minimum=10), [("amount", "minimum raised to 10")]),
        (changed(note__maxLength=20), [("note", "maxLength lowered to 20")]),
        (changed(id__pattern="^ORD-"), [("id", "pattern now '^ORD-'")]),
        (changed(additionalProperties=False), [("$", "additional properties no longer allowed")]),
        (changed(currency__const="EUR"), [("currency", "const set to 'EUR'")]),
        (
            changed(lines__items={"type": "object", "properties": {"sku": {"type": "integer"}}}),
            [("lines[].sku", "type narrowed")],
        ),
        (changed(oneOf=[{"required": ["id"]}]), [("$", "oneOf changed")]),
    ],
    ids=[
        "narrowed type",
        "enum value removed",
        "new required field",
        "required field removed",
        "minimum raised",
        "maxLength lowered",
        "pattern added",
        "closed to new fields",
        "const set",
        "nested item type",
        "unjudged keyword",
    ],
)
def test_backward_refuses_each_break_by_its_path(new: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    found = breaks(ORDER, new, "backward")
    assert paths(found) == expected, [str(b) for b in found]
    assert all("new major version" in b.hint for b in found)


@pytest.mark.parametrize(
    "new",
    [
        changed(currency__enum=["EUR", "USD", "GBP"]),  # a value added
        changed(amount__type=["number", "string"]),  # widened
        changed(note__maxLength=500),  # loosened
        changed(amount__minimum=None),  # bound removed
        changed(required=["id", "amount", "currency"], currency__default="EUR"),  # new required with a default
        changed(properties={**ORDER["properties"], "channel": {"type": "string"}}),  # a new optional field
        changed(description="orders as placed"),  # documentation
    ],
    ids=[
        "enum value added",
        "type widened",
        "max loosened",
        "bound removed",
        "required with default",
        "new optional field",
        "description",
    ],
)
def test_backward_allows_what_accepts_every_old_message(new: dict[str, Any]) -> None:
    assert breaks(ORDER, new, "backward") == []


def test_forward_is_backward_the_other_way_and_full_is_both() -> None:
    widened = changed(currency__enum=["EUR", "USD", "GBP"])
    assert breaks(ORDER, widened, "backward") == []
    fwd = breaks(ORDER, widened, "forward")
    assert paths(fwd) == [("currency", "enum values removed")]  # old consumers refuse GBP
    narrowed = changed(amount__type="integer")
    assert breaks(ORDER, narrowed, "forward") == []  # every new message is valid under the old schema
    assert paths(breaks(ORDER, widened, "full")) == paths(fwd)
    assert paths(breaks(ORDER, narrowed, "full")) == [("amount", "type narrowed")]
    assert breaks(ORDER, changed(type="array"), "none") == []


# ---------------------------------------------------------------------------------------------------------------
# A contract in the spec: checked at validate time, with file, path and line


def _spec_with(tmp_path: Path, contract: dict[str, Any], files: dict[str, bytes] | None = None) -> Path:
    doc = yaml.safe_load(init_spec_text(name="contracts", domains=2, nodes=1, hub_nodes=1))
    doc["domains"][0]["products"] = [{"name": "ORDERS", "subjects": ["leaf-domain-a.orders.>"], "contract": contract}]
    for name, data in (files or {}).items():
        (tmp_path / name).write_bytes(data)
    path = tmp_path / "mesh.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(SpecError) as exc:
        parse_spec(path.read_text(), source=str(path), base_dir=path.parent, cache=False)
    assert exc.value.source == str(path)
    return exc.value.problems


def test_a_contract_inline_or_in_a_file_next_to_the_spec_becomes_the_products(tmp_path: Path) -> None:
    inline = _spec_with(tmp_path, {"schema": ORDER, "version": "1.2.0", "examples": [{"id": "a", "amount": 1}]})
    mesh = load_spec(inline)
    c = mesh.product("leaf-domain-a/ORDERS").contract
    assert (
        c is not None
        and c.schema == ORDER
        and (c.version, c.compatibility, c.enforce) == ("1.2.0", "backward", "client")
    )
    assert Mesh.from_json(mesh.to_json(), mesh.source, mesh.base_dir).product("leaf-domain-a/ORDERS").contract == c

    other = tmp_path / "b"
    other.mkdir()
    in_file = _spec_with(
        other,
        {"schema": "orders.schema.json", "compatibility": "full"},
        {"orders.schema.json": json.dumps(ORDER).encode()},
    )
    c2 = load_spec(in_file).product("leaf-domain-a/ORDERS").contract
    assert (
        c2 is not None and c2.schema == ORDER and c2.schema_file == "orders.schema.json" and c2.compatibility == "full"
    )


def test_a_changed_schema_file_is_read_again_though_the_spec_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NATSMESH_CACHE_DIR", str(tmp_path / "cache"))
    path = _spec_with(tmp_path, {"schema": "s.json"}, {"s.json": json.dumps(ORDER).encode()})
    assert load_spec(path).product("leaf-domain-a/ORDERS").contract.schema == ORDER  # type: ignore[union-attr]
    (tmp_path / "s.json").write_text('{"type": "objekt"}')
    assert "not a valid JSON Schema" in _problems(path)[0]


@pytest.mark.parametrize(
    ("contract", "files", "expected"),
    [
        ({"schema": {"type": "objekt"}}, {}, r"contract\.schema \(line \d+\): not a valid JSON Schema"),
        (
            {"schema": {"properties": {"id": {"type": "string", "minLength": -1}}}},
            {},
            r"contract\.schema \(line \d+\): not a valid JSON Schema",
        ),
        (
            {"schema": ORDER, "examples": [{"id": "a", "amount": 1}, {"id": "b", "amount": -1}]},
            {},
            r"contract\.examples\[1\] \(line \d+\): this example does not satisfy its own schema: "
            r"amount: -1 is less than the minimum of 0",
        ),
        (
            {"schema": ORDER, "examples": [{"amount": 1}]},
            {},
            r"examples\[0\] \(line \d+\): .*\$: \"id\" is a required property",
        ),
        ({"schema": "missing.json"}, {}, r"contract\.schema \(line \d+\): schema file 'missing.json': file not found"),
        (
            {"schema": "bin.json"},
            {"bin.json": b"\x00\xff\xfe"},
            r"schema file 'bin.json': line 1: not UTF-8 text .*JSON Schema",
        ),
        (
            {"schema": "list.json"},
            {"list.json": b"[1, 2]"},
            r"schema file 'list.json' holds list; a JSON Schema is a mapping",
        ),
        ({"schema": "bad.json"}, {"bad.json": b'{"type": '}, r"schema file 'bad.json': not valid YAML"),
        ({"schema": ORDER, "version": "2"}, {}, r"contract\.version \(line \d+\): a version is MAJOR\.MINOR\.PATCH"),
        ({"schema": ORDER, "compatibility": "sideways"}, {}, r"contract\.compatibility"),
        ({"schema": ORDER, "enforce": "proxy"}, {}, r"contract\.enforce"),
        ({"version": "1.0.0"}, {}, r"contract\.schema.*required key is missing"),
    ],
)
def test_a_bad_contract_is_refused_at_validate_time_naming_file_path_and_line(
    tmp_path: Path, contract: dict[str, Any], files: dict[str, bytes], expected: str
) -> None:
    problems = _problems(_spec_with(tmp_path, contract, files))
    assert any(re.search(expected, p) for p in problems), problems


def test_a_schema_file_that_is_a_directory_or_huge_gives_an_error(tmp_path: Path) -> None:
    (tmp_path / "dir.json").mkdir()
    assert "a directory" in _problems(_spec_with(tmp_path, {"schema": "dir.json"}))[0]
    huge = _spec_with(tmp_path, {"schema": "huge.json"}, {"huge.json": b" " * (MAX_BYTES + 10)})
    assert "larger than" in _problems(huge)[0]


# ---------------------------------------------------------------------------------------------------------------
# A contract's change, as apply judges it (the running contract in the catalog against the spec's)


def _c(schema: dict[str, Any], version: str = "1.0.0", compatibility: str = "backward") -> dict[str, Any]:
    return {"schema": schema, "version": version, "compatibility": compatibility, "enforce": "client"}


def test_a_change_is_judged_by_version_and_the_running_mode() -> None:
    ref = "a/ORDERS"
    assert change_problem(ref, None, _c(ORDER)) is None  # added
    assert change_problem(ref, _c(ORDER), None) is None  # taken off
    assert change_problem(ref, _c(ORDER), _c(ORDER, "1.0.0", "full")) is None  # only the mode
    assert "version is still 1.0.0" in (change_problem(ref, _c(ORDER), _c(changed(note__maxLength=300))) or "")
    assert "goes back from 1.2.0 to 1.1.0" in (change_problem(ref, _c(ORDER, "1.2.0"), _c(ORDER, "1.1.0")) or "")
    optional_field = copy.deepcopy(ORDER)
    optional_field["properties"]["extra"] = {"type": "string"}
    assert change_problem(ref, _c(ORDER), _c(optional_field, "1.1.0")) is None
    why = change_problem(ref, _c(ORDER), _c(changed(required=["id"]), "2.0.0")) or ""
    assert "1.0.0 -> 2.0.0 is not backward-compatible" in why and "amount: required field removed or renamed" in why
    assert "new major version" in why
    # judged by the running mode: switching to none in the same change does not let a break through
    assert change_problem(ref, _c(ORDER), _c(changed(required=["id"]), "2.0.0", "none")) is not None
    assert change_problem(ref, _c(ORDER, "1.0.0", "none"), _c(changed(required=["id"]), "2.0.0")) is None


# ---------------------------------------------------------------------------------------------------------------
# ODCS v3: the export validates against the standard's own JSON Schema (from its package), and reads back


def _odcs_validator() -> Any:
    import jsonschema_rs
    import open_data_contract_standard

    schema = json.loads((Path(open_data_contract_standard.__file__).parent / "schema.json").read_text())
    return jsonschema_rs.validator_for(schema)


def _product_mesh(tmp_path: Path) -> Mesh:
    nested = copy.deepcopy(ORDER)
    nested["properties"]["customer"] = {
        "type": "object",
        "description": "who ordered",
        "properties": {"id": {"type": "string"}, "tier": {"type": ["string", "null"]}},
        "required": ["id"],
    }
    return load_spec(_spec_with(tmp_path, {"schema": nested, "version": "1.3.0", "compatibility": "full"}))


def test_the_odcs_export_validates_against_the_standards_schema_and_names_the_nats_stream(tmp_path: Path) -> None:
    mesh = _product_mesh(tmp_path)
    doc = to_odcs(mesh, mesh.product("leaf-domain-a/ORDERS"))
    errors = [e.message for e in _odcs_validator().iter_errors(doc)]
    assert errors == []
    [server] = doc["servers"]
    custom = {p["property"]: p["value"] for p in server["customProperties"]}
    assert server["type"] == "custom" and custom["natsStream"] == "ORDERS"
    assert custom["natsSubjects"] == ["leaf-domain-a.orders.>"] and custom["jetstreamDomain"] == "leaf-domain-a"
    props = {p["name"]: p for p in doc["schema"][0]["properties"]}
    assert props["id"]["required"] and props["id"]["logicalType"] == "string" and not props["note"]["required"]
    assert {p["name"] for p in props["customer"]["properties"]} == {"id", "tier"}
    assert props["lines"]["logicalType"] == "array" and props["lines"]["items"]["logicalType"] == "object"
    broken = copy.deepcopy(doc) | {"apiVersion": "v9"}
    assert list(_odcs_validator().iter_errors(broken))  # the validator does check


def test_an_odcs_document_reads_back_into_the_spec_form(tmp_path: Path) -> None:
    mesh = _product_mesh(tmp_path)
    product = mesh.product("leaf-domain-a/ORDERS")
    entry = from_odcs(to_odcs(mesh, product))
    assert product.contract is not None
    assert entry["name"] == "ORDERS" and entry["subjects"] == ["leaf-domain-a.orders.>"]
    assert entry["contract"] == {"version": "1.3.0", "schema": product.contract.schema, "compatibility": "full"}
    # a document from another tool (no natsmesh property): the JSON Schema is made from its properties
    foreign = to_odcs(mesh, product)
    foreign.pop("customProperties")
    schema = from_odcs(foreign)["contract"]["schema"]
    assert set(schema["required"]) == {"id", "amount"} and schema["properties"]["amount"] == {"type": "number"}
    assert schema["properties"]["customer"]["required"] == ["id"]
    for bad, why in ((["x"], "kind: DataContract"), ({"kind": "DataContract", "apiVersion": "v2.2.2"}, "v3")):
        with pytest.raises(OdcsError, match=why):
            from_odcs(bad)


def test_contract_import_prints_a_products_entry_and_refuses_what_is_not_odcs(tmp_path: Path) -> None:
    from helpers import run_cli

    mesh = _product_mesh(tmp_path)
    path = tmp_path / "orders.odcs.json"
    path.write_text(json.dumps(to_odcs(mesh, mesh.product("leaf-domain-a/ORDERS"))))
    res = run_cli("contract", "import", str(path))
    assert res.returncode == 0, res.stderr
    [entry] = yaml.safe_load(res.stdout)
    assert entry["name"] == "ORDERS" and entry["contract"]["version"] == "1.3.0"
    exported = run_cli("contract", "export", "leaf-domain-a/ORDERS", "-f", str(tmp_path / "mesh.yaml"))
    assert exported.returncode == 0 and json.loads(exported.stdout)["id"] == "contracts.leaf-domain-a.ORDERS"
    (tmp_path / "bin.json").write_bytes(b"\x00\xff")
    (tmp_path / "list.json").write_text("[1]")
    for name in ("bin.json", "list.json", "missing.json"):
        res = run_cli("contract", "import", str(tmp_path / name))
        assert res.returncode == 1 and "Traceback" not in res.stderr and name in res.stderr, res.stderr
