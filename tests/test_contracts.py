"""Data contracts (issue 14, first part): each rule of the compatibility check, without servers."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from natsmesh.model.contracts import MODES, breaks

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
