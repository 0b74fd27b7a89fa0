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

from natsmesh.model.units import shown

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


# What a schema may say about where its parts are: only places inside the document itself. Anything else would
# make the validator read a file or open a connection (jsonschema-rs retrieves external references by default).
REFERENCE_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")
DATA_KEYWORDS = frozenset({"enum", "const", "examples", "default"})  # their values are data, not subschemas
KEYWORDS = {  # every keyword of drafts 4 to 2020-12: anything else in a contract is a typo, or not a schema at all
    "$schema", "$id", "id", "$ref", "$anchor", "$dynamicRef", "$dynamicAnchor", "$recursiveRef", "$recursiveAnchor",
    "$vocabulary", "$comment", "$defs", "definitions", "allOf", "anyOf", "oneOf", "not", "if", "then", "else",
    "dependentSchemas", "prefixItems", "items", "additionalItems", "contains", "properties", "patternProperties",
    "additionalProperties", "propertyNames", "dependencies", "unevaluatedItems", "unevaluatedProperties", "type",
    "enum", "const", "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength",
    "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxContains", "minContains", "maxProperties",
    "minProperties", "required", "dependentRequired", "title", "description", "default", "deprecated", "readOnly",
    "writeOnly", "examples", "format", "contentEncoding", "contentMediaType", "contentSchema",
}  # fmt: skip
NAME_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})  # name -> schema
DRAFTS = ("draft-04/schema", "draft-06/schema", "draft-07/schema", "draft/2019-09/schema", "draft/2020-12/schema")
KNOWN_DRAFTS = frozenset(
    f"{scheme}://json-schema.org/{path}{tail}" for scheme in ("http", "https") for path in DRAFTS for tail in ("", "#")
)
MAX_SCHEMA_DEPTH = 64  # nesting of a schema document (a data contract's is rarely 10 deep)
MAX_SCHEMA_NODES = 100_000  # values in a schema document
BACKTRACK_LIMIT = 100_000  # steps a `pattern` with backreferences or lookaround may take on one value


class SchemaError(ValueError):
    """A schema natsmesh will not compile: not a JSON Schema, or one that reaches outside its own document."""


def _refuse_retrieval(uri: str) -> Any:
    raise SchemaError(f"{uri!r} is outside the schema document; natsmesh never retrieves references")


def _reference_problem(value: str, at: str) -> str | None:
    if value.startswith("#"):
        return None
    return (
        f"{at}: reference {value!r} points outside the schema document; natsmesh resolves only references inside "
        "it (`#/$defs/...`) and never reads a file or URL: copy the referenced schema into `$defs`"
    )


def _walk_problem(schema: Any) -> str | None:
    """Why SCHEMA reaches outside itself or is too big to walk: an external reference or meta-schema, nesting
    beyond `MAX_SCHEMA_DEPTH`, more than `MAX_SCHEMA_NODES` values. Iterative, so any nesting is safe."""
    stack: list[tuple[Any, str, int, bool, bool]] = [(schema, "$", 0, False, False)]  # ..., data, names
    nodes = 0
    while stack:
        value, at, depth, data, names = stack.pop()
        nodes += 1
        if nodes > MAX_SCHEMA_NODES:
            return f"the schema has more than {MAX_SCHEMA_NODES:,} values; a data contract is far smaller"
        if depth > MAX_SCHEMA_DEPTH:
            return f"{at}: the schema is nested more than {MAX_SCHEMA_DEPTH} levels deep"
        if isinstance(value, dict):
            for key, item in value.items():
                here = f"{at}.{key}"
                if names:  # a property's (or definition's) name, whatever it is; its value is a schema
                    stack.append((item, here, depth + 1, data, False))
                    continue
                if not data and (key not in KEYWORDS and not str(key).startswith("x-")):
                    return (
                        f"{at}: {shown(key)} is not a JSON Schema keyword (a typo? a contract's own annotations "
                        "start with `x-`)"
                    )
                if not data and isinstance(item, str):
                    if key in REFERENCE_KEYWORDS and (why := _reference_problem(item, here)):
                        return why
                    if key == "$schema" and item not in KNOWN_DRAFTS:
                        return (
                            f"{here}: unknown meta-schema {item!r}; natsmesh knows the JSON Schema drafts 4, 6, 7, "
                            "2019-09 and 2020-12 and never retrieves another"
                        )
                stack.append((item, here, depth + 1, data or key in DATA_KEYWORDS, not data and key in NAME_MAPS))
        elif isinstance(value, list):
            stack.extend((item, f"{at}[{k}]", depth + 1, data, False) for k, item in enumerate(value))
    return None


# Keywords whose subschemas apply to the same value as their parent (no field or item is entered on the way).
IN_PLACE = {"allOf": "list", "anyOf": "list", "oneOf": "list", "not": "one", "if": "one", "then": "one", "else": "one"}
IN_PLACE |= {"dependentSchemas": "map"}


def _pointer(ref: str) -> tuple[str, ...] | None:
    """The path a `#/a/b` reference names (None: an anchor like `#name`, which a loop check leaves alone)."""
    if ref == "#":
        return ()
    if not ref.startswith("#/"):
        return None
    return tuple(p.replace("~1", "/").replace("~0", "~") for p in ref[2:].split("/"))


def _at(schema: Any, path: tuple[str, ...]) -> Any:
    node = schema
    for part in path:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _in_place_refs(schema: Any, path: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Where references are met while checking one value against the subschema at PATH, before any of the
    value's fields or items is entered: PATH itself and its in-place subschemas (allOf, anyOf, not, ...)."""
    out: list[tuple[str, ...]] = []
    stack = [path]
    while stack and len(out) < MAX_SCHEMA_NODES:
        here = stack.pop()
        node = _at(schema, here)
        if not isinstance(node, dict):
            continue
        if isinstance(node.get("$ref"), str):
            out.append(here)
        for key, kind in IN_PLACE.items():
            sub = node.get(key)
            if kind == "one":
                stack.append((*here, key))
            elif kind == "list" and isinstance(sub, list):
                stack.extend((*here, key, str(k)) for k in range(len(sub)))
            elif kind == "map" and isinstance(sub, dict):
                stack.extend((*here, key, str(k)) for k in sub)
    return out


def _loop_problem(schema: Any) -> str | None:
    """A `$ref` that leads back to itself without entering any field or item of the value: a loop that never
    decides anything (`{"$ref": "#"}`, two `$defs` naming each other). A reference into a field is recursion, and
    fine (a tree's `children` items referring to the tree)."""
    edges: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    stack: list[tuple[tuple[str, ...], Any, bool]] = [((), schema, False)]
    while stack:  # every subschema holding a $ref, wherever it is, with the references its target meets in place
        path, node, names = stack.pop()
        if isinstance(node, dict):
            if not names and isinstance(node.get("$ref"), str):
                target = _pointer(node["$ref"])
                edges[path] = [] if target is None else _in_place_refs(schema, target)
            stack.extend(
                ((*path, str(k)), v, not names and k in NAME_MAPS)
                for k, v in node.items()
                if names or k not in DATA_KEYWORDS
            )
        elif isinstance(node, list):
            stack.extend(((*path, str(k)), v, False) for k, v in enumerate(node))
    state: dict[tuple[str, ...], int] = {}
    for start in edges:  # iterative depth-first search for a cycle
        if start in state:
            continue
        walk = [(start, iter(edges[start]))]
        state[start] = 1
        while walk:
            node, nexts = walk[-1]
            nxt = next(nexts, None)
            if nxt is None:
                state[node] = 2
                walk.pop()
            elif state.get(nxt) == 1:
                where = "$" + "".join(f".{p}" for p in nxt)
                return (
                    f"{where}.$ref: {_at(schema, nxt)['$ref']!r} leads back to itself without entering any field or "
                    "item of the value: a loop that can never accept or refuse anything; refer to a subschema instead"
                )
            elif nxt not in state and nxt in edges:
                state[nxt] = 1
                walk.append((nxt, iter(edges[nxt])))
    return None


def _compile(schema: Any) -> Any:
    """SCHEMA's validator, with every external reference refused and regular expressions bounded."""
    import jsonschema_rs  # the validator chosen by measurement (docs/benchmarks.md)

    if (why := _walk_problem(schema) or _loop_problem(schema)) is not None:
        raise SchemaError(why)
    try:
        jsonschema_rs.meta.validate(schema)
        return jsonschema_rs.validator_for(
            schema,
            retriever=_refuse_retrieval,
            pattern_options=jsonschema_rs.FancyRegexOptions(backtrack_limit=BACKTRACK_LIMIT),
        )
    except jsonschema_rs.ValidationError as exc:
        raise SchemaError(f"not a valid JSON Schema: {exc.message.splitlines()[0]}") from None
    except Exception as exc:  # a $ref to a missing pointer, a value JSON cannot hold, ReferencingError, ...
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise SchemaError(f"not a valid JSON Schema: {first}") from None


def schema_problem(schema: Any) -> str | None:
    """Why SCHEMA is not a JSON Schema natsmesh will use (checked against its meta-schema, every `$ref` inside the
    document and resolvable, bounded in size), or None."""
    try:
        _compile(schema)
    except SchemaError as exc:
        return str(exc)
    return None


class Checker:
    """One contract's compiled validator: `problem(doc)` is None for a valid message, else the first failing
    field's path and why. A schema that `schema_problem` refuses raises `SchemaError` (wherever it came from:
    a spec, a bundle's mesh.json, the catalog), so no checker ever retrieves anything."""

    def __init__(self, schema_json: str) -> None:
        try:
            schema = json.loads(schema_json)
        except RecursionError:
            raise SchemaError(f"the schema is nested more than {MAX_SCHEMA_DEPTH} levels deep") from None
        except ValueError as exc:
            raise SchemaError(f"the schema is not JSON: {exc}") from None
        self._validator = _compile(schema)

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
        try:
            return self.problem(doc)
        except ValueError as exc:  # jsonschema-rs: "Recursion limit reached" for a value nested too deep
            return f"$: cannot be checked ({(str(exc).splitlines() or ['?'])[0]})"


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
