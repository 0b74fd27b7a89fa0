"""Data contracts: when a new JSON Schema for a product breaks its consumers. Pure.

A product's contract is a JSON Schema its messages must satisfy, a version and a compatibility mode:

- **backward** (the default): everything valid under the running schema stays valid under the new one (no message
  already stored, or sent by a producer not yet updated, is refused), and no field consumers were promised is taken
  away: a required field removed or renamed is a break too;
- **forward**: everything valid under the new schema is valid under the running one (consumers still on the old
  schema read new messages);
- **full**: both; **none**: anything goes.

`breaks(old, new, mode)` names each break by its JSON path, what changed and what to do instead. The rules cover
the keywords a data contract uses (type, properties and required, enum and const, the numeric and length bounds,
pattern, items, additionalProperties); a change to anything else (a `$ref`, `oneOf`, ...) is reported as a break
unless the two subschemas are equal, since it cannot be judged here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

Mode = Literal["backward", "forward", "full", "none"]
MODES: tuple[Mode, ...] = ("backward", "forward", "full", "none")
HINT = "publish it as a new major version: a new product, or versioned subjects (`orders.v2.>`)"
JUDGED = {
    "type", "properties", "required", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minLength", "maxLength", "minItems", "maxItems", "pattern", "items", "additionalProperties", "default",
    "description", "title", "examples", "$schema", "$id", "format",
}  # fmt: skip
LOWER = ("minimum", "exclusiveMinimum", "minLength", "minItems")  # raising one refuses what was valid
UPPER = ("maximum", "exclusiveMaximum", "maxLength", "maxItems")  # lowering one refuses what was valid


@dataclass(frozen=True)
class Break:
    """One change that breaks consumers or producers: where (a JSON path), what, and what to do instead."""

    path: str
    what: str
    hint: str = HINT

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"


def _types(schema: dict[str, Any]) -> set[str] | None:
    """The JSON types SCHEMA allows (None: any); `integer` is a kind of `number`."""
    t = schema.get("type")
    if t is None:
        return None
    kinds = {t} if isinstance(t, str) else set(t)
    return kinds | ({"integer"} if "number" in kinds else set())


def _narrower(old: dict[str, Any], new: dict[str, Any], path: str) -> list[Break]:
    """Where NEW refuses something OLD accepted (what backward forbids), here and in every nested field."""
    out = _narrower_here(old, new, path or "$")
    oprops, nprops = old.get("properties") or {}, new.get("properties") or {}
    for name in sorted(set(new.get("required") or []) - set(old.get("required") or [])):
        if "default" not in nprops.get(name, {}):
            out.append(Break(f"{path}.{name}" if path else name, "new required field without a default"))
    for name in sorted(set(oprops) & set(nprops)):
        out += _narrower(oprops[name], nprops[name], f"{path}.{name}" if path else name)
    if isinstance(old.get("items"), dict) and isinstance(new.get("items"), dict):
        out += _narrower(old["items"], new["items"], f"{path}[]")
    return out


def _narrower_here(old: dict[str, Any], new: dict[str, Any], path: str) -> list[Break]:
    """Where NEW's own keywords (not its fields') refuse a value OLD accepted."""
    out: list[Break] = []
    told, tnew = _types(old), _types(new)
    if tnew is not None and (told is None or not told <= tnew):
        lost = sorted((told or {"any"}) - tnew)
        out.append(Break(path, f"type narrowed: {', '.join(lost)} no longer allowed"))
    if "enum" in new:
        removed = [v for v in old.get("enum", []) if v not in new["enum"]] if "enum" in old else ["(any value)"]
        if removed:
            out.append(Break(path, f"enum values removed: {', '.join(map(repr, removed))}"))
    if "const" in new and old.get("const", object()) != new["const"]:
        out.append(Break(path, f"const set to {new['const']!r}"))
    for key in LOWER:
        if key in new and (key not in old or new[key] > old[key]):
            out.append(Break(path, f"{key} raised to {new[key]}"))
    for key in UPPER:
        if key in new and (key not in old or new[key] < old[key]):
            out.append(Break(path, f"{key} lowered to {new[key]}"))
    if "pattern" in new and new["pattern"] != old.get("pattern"):
        out.append(Break(path, f"pattern now {new['pattern']!r}"))
    if new.get("additionalProperties") is False and old.get("additionalProperties") is not False:
        out.append(Break(path, "additional properties no longer allowed"))
    return out


def _promised(old: dict[str, Any], new: dict[str, Any], path: str) -> list[Break]:
    """Required fields of OLD that NEW no longer requires (removed or renamed): consumers relied on them."""
    out: list[Break] = []
    for name in sorted(set(old.get("required") or []) - set(new.get("required") or [])):
        out.append(Break(f"{path}.{name}" if path else name, "required field removed or renamed"))
    oprops, nprops = old.get("properties") or {}, new.get("properties") or {}
    for name in sorted(set(oprops) & set(nprops)):
        out += _promised(oprops[name], nprops[name], f"{path}.{name}" if path else name)
    return out


def _unjudged(old: dict[str, Any], new: dict[str, Any], path: str) -> list[Break]:
    """Keywords these rules do not judge, changed: a break, since it cannot be shown not to be one."""
    out = [
        Break(path or "$", f"{key} changed (not judged: make it a new major version, or keep it as it is)")
        for key in sorted((set(old) | set(new)) - JUDGED)
        if old.get(key) != new.get(key)
    ]
    oprops, nprops = old.get("properties") or {}, new.get("properties") or {}
    for name in sorted(set(oprops) & set(nprops)):
        out += _unjudged(oprops[name], nprops[name], f"{path}.{name}" if path else name)
    if isinstance(old.get("items"), dict) and isinstance(new.get("items"), dict):
        out += _unjudged(old["items"], new["items"], f"{path}[]")
    return out


def breaks(old: dict[str, Any], new: dict[str, Any], mode: Mode = "backward") -> list[Break]:
    """Every way NEW breaks what OLD promised under MODE (empty: compatible)."""
    if mode == "none":
        return []
    out = _unjudged(old, new, "")
    if mode in ("backward", "full"):
        out += _narrower(old, new, "") + _promised(old, new, "")
    if mode in ("forward", "full"):
        out += [
            Break(b.path, f"{b.what} (read by consumers still on the running contract)")
            for b in _narrower(new, old, "")
        ]
    seen: set[str] = set()
    unique = []
    for b in out:
        if str(b) not in seen:
            seen.add(str(b))
            unique.append(b)
    return unique


def canonical(schema: dict[str, Any]) -> str:
    """SCHEMA as canonical JSON text: the same schema is the same text, whatever its key order."""
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def schema_problem(schema: Any) -> str | None:
    """Why SCHEMA is not a JSON Schema (checked against its meta-schema), or None."""
    import jsonschema_rs  # the validator chosen by measurement (docs/benchmarks.md)

    try:
        jsonschema_rs.meta.validate(schema)
    except jsonschema_rs.ValidationError as exc:
        return f"not a valid JSON Schema: {exc.message}"
    except Exception as exc:  # an unknown draft, a bad $ref
        return f"not a valid JSON Schema: {exc}"
    return None


class Checker:
    """One contract's compiled validator: `problem(doc)` is None for a valid message, else the first failing
    field's path and why."""

    def __init__(self, schema_json: str) -> None:
        import jsonschema_rs

        self._validator = jsonschema_rs.validator_for(json.loads(schema_json))

    def problem(self, doc: Any) -> str | None:
        """None if DOC (a decoded message) satisfies the schema, else where and why not."""
        if self._validator.is_valid(doc):
            return None
        error = next(iter(self._validator.iter_errors(doc)))
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.instance_path)
        return f"{path.lstrip('.') or '$'}: {error.message}"

    def payload_problem(self, data: bytes) -> str | None:
        """None if DATA (a message's payload) is JSON that satisfies the schema, else where and why not."""
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as exc:
            return f"$: not JSON ({exc})"
        return self.problem(doc)


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split("."))
    except ValueError:
        return (0,)


def change_problem(ref: str, running: dict[str, Any] | None, wanted: dict[str, Any] | None) -> str | None:
    """Why product REF's contract may not go from RUNNING to WANTED (each as the catalog keeps it: version,
    compatibility, schema), with every break and what to do instead; None if it may. The change is judged by
    the running contract's mode (the promise its consumers hold); a new mode applies from the next change. A
    contract added to a product, or taken off one, is never refused (`natsmesh contract test` checks what is
    already stored)."""
    if running is None or wanted is None:
        return None
    old_v, new_v = str(running.get("version", "")), str(wanted.get("version", ""))
    same_schema = running.get("schema") == wanted.get("schema")
    if _version(new_v) < _version(old_v):
        return f"{ref}: the contract's version goes back from {old_v} to {new_v}; versions only rise"
    if same_schema:
        return None
    if new_v == old_v:
        return (
            f"{ref}: the contract's schema changed but its version is still {old_v}; raise the version "
            "(the minor for a compatible change) so consumers can tell the schemas apart"
        )
    mode = running.get("compatibility", "backward")
    found = breaks(running.get("schema") or {}, wanted.get("schema") or {}, mode)
    if not found:
        return None
    lines = "\n      ".join(f"{b}" for b in found)
    hints = sorted({b.hint for b in found})
    return (
        f"{ref}: contract {old_v} -> {new_v} is not {mode}-compatible; nothing was changed. Breaks:\n      {lines}\n"
        f"    instead: {'; '.join(hints)}"
    )
