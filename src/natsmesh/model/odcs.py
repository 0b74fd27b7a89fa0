"""A product's contract as an Open Data Contract Standard (ODCS v3) document, and back. Pure.

ODCS has no NATS server type, so the stream is a server of type `custom` whose custom properties name the NATS
stream, its subjects and its JetStream domain. The schema is given twice: as ODCS properties (logical types,
required, descriptions, nested objects and arrays) for ODCS tools, and whole as the contract's JSON Schema in a
custom property, so `from_odcs` gives back exactly what was exported. A document without that property (written
by another tool) is turned into a JSON Schema from its properties.
"""

from __future__ import annotations

from typing import Any

from natsmesh.model.contracts import schema_problem
from natsmesh.model.mesh import Mesh
from natsmesh.model.products import Product

API_VERSION = "v3.0.2"  # accepted by the ODCS 3.0.2 to 3.2 schemas
JSON_SCHEMA_PROPERTY = "natsmeshJsonSchema"
COMPATIBILITY_PROPERTY = "natsmeshCompatibility"
LOGICAL = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean"}
LOGICAL |= {"object": "object", "array": "array"}


class OdcsError(ValueError):
    """A document that is not an ODCS data contract natsmesh can read."""


def _logical(schema: dict[str, Any]) -> str | None:
    t = schema.get("type")
    kinds = [t] if isinstance(t, str) else [k for k in t or [] if k != "null"]
    return LOGICAL.get(kinds[0]) if len(kinds) == 1 else None


def _property(name: str, schema: dict[str, Any], required: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "required": required}
    if (logical := _logical(schema)) is not None:
        out["logicalType"] = logical
        out["physicalType"] = str(schema.get("type"))
    if schema.get("description"):
        out["description"] = schema["description"]
    if logical == "object" and schema.get("properties"):
        out["properties"] = _properties(schema)
    if logical == "array" and isinstance(schema.get("items"), dict):
        out["items"] = _property("item", schema["items"], False) | {"name": "item"}
        out["items"].pop("required")
    return out


def _properties(schema: dict[str, Any]) -> list[dict[str, Any]]:
    required = set(schema.get("required") or [])
    return [_property(n, s, n in required) for n, s in (schema.get("properties") or {}).items()]


def to_odcs(mesh: Mesh, product: Product) -> dict[str, Any]:
    """The ODCS v3 document of PRODUCT's contract in MESH."""
    if product.contract is None:
        raise OdcsError(f"{product.ref} has no contract")
    c = product.contract
    server = {
        "server": f"{mesh.name}-{product.domain}",
        "type": "custom",
        "description": f"NATS JetStream stream {product.name} in JetStream domain {product.domain}",
        "customProperties": [
            {"property": "natsStream", "value": product.name},
            {"property": "natsSubjects", "value": list(product.subjects)},
            {"property": "jetstreamDomain", "value": product.domain},
            {"property": "jetstreamApi", "value": f"$JS.{product.domain}.API"},
        ],
    }
    doc: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "DataContract",
        "id": f"{mesh.name}.{product.domain}.{product.name}",
        "name": product.name,
        "version": c.version,
        "status": "active",
        "domain": product.domain,
        "dataProduct": product.name,
        "servers": [server],
        "schema": [
            {
                "name": product.name,
                "logicalType": "object",
                "physicalType": "json",
                "properties": _properties(c.schema),
            }
        ],
        "customProperties": [
            {"property": JSON_SCHEMA_PROPERTY, "value": c.schema},
            {"property": COMPATIBILITY_PROPERTY, "value": c.compatibility},
        ],
    }
    if product.description:
        doc["description"] = {"purpose": product.description}
    if product.owner:
        doc["team"] = [{"username": product.owner, "role": "owner"}]
    if product.tags:
        doc["tags"] = list(product.tags)
    return doc


def _custom(items: Any) -> dict[str, Any]:
    return {p["property"]: p.get("value") for p in items or [] if isinstance(p, dict) and "property" in p}


def _json_schema(prop: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema of one ODCS property (or schema object)."""
    out: dict[str, Any] = {}
    logical = prop.get("logicalType")
    if logical in LOGICAL.values():
        out["type"] = logical
    elif logical in ("date", "timestamp", "time"):
        out["type"] = "string"
    if prop.get("description"):
        out["description"] = prop["description"]
    if prop.get("properties"):
        out["type"] = "object"
        out["properties"] = {p["name"]: _json_schema(p) for p in prop["properties"]}
        if required := [p["name"] for p in prop["properties"] if p.get("required")]:
            out["required"] = required
    if isinstance(prop.get("items"), dict):
        out["items"] = _json_schema(prop["items"])
    return out


def _contract_schema(custom: dict[str, Any], schemas: list[Any]) -> dict[str, Any]:
    """The contract's JSON Schema: natsmesh's own custom property, else one made from the first schema object;
    refused (never retrieved) if it reaches outside itself."""
    schema = custom.get(JSON_SCHEMA_PROPERTY)
    if not isinstance(schema, dict):
        if not isinstance(schemas, list) or not schemas or not isinstance(schemas[0], dict):
            raise OdcsError("the document has no schema object to make a JSON Schema of")
        try:
            schema = _json_schema(schemas[0] | {"logicalType": "object"})
        except (KeyError, TypeError, AttributeError):
            raise OdcsError("a schema property has no name, or is not a mapping") from None
    if (why := schema_problem(schema)) is not None:
        raise OdcsError(f"its JSON Schema cannot be a contract: {why}")
    return schema


def from_odcs(doc: Any) -> dict[str, Any]:
    """The spec form (`products:` entry) of an ODCS v3 document: name, subjects, description, owner, tags and
    the contract; `OdcsError` saying what is missing otherwise."""
    if not isinstance(doc, dict) or doc.get("kind") != "DataContract":
        raise OdcsError("not an ODCS data contract (expected a mapping with `kind: DataContract`)")
    if not str(doc.get("apiVersion", "")).startswith("v3"):
        raise OdcsError(f"apiVersion {doc.get('apiVersion')!r}: natsmesh reads ODCS v3 documents")
    custom = _custom(doc.get("customProperties"))
    schemas = doc.get("schema") or []
    schema = _contract_schema(custom, schemas)
    servers = [s for s in doc.get("servers") or [] if isinstance(s, dict)]
    nats = next(
        (_custom(s.get("customProperties")) for s in servers if "natsSubjects" in _custom(s.get("customProperties"))),
        {},
    )
    first = schemas[0] if isinstance(schemas, list) and schemas and isinstance(schemas[0], dict) else {}
    name = nats.get("natsStream") or doc.get("dataProduct") or doc.get("name") or first.get("name")
    if not name:
        raise OdcsError("the document names no product (dataProduct, name or a schema object's name)")
    out: dict[str, Any] = {"name": str(name)}
    if nats.get("natsSubjects"):
        out["subjects"] = list(nats["natsSubjects"])
    if isinstance(doc.get("description"), dict) and doc["description"].get("purpose"):
        out["description"] = doc["description"]["purpose"]
    owners = [t.get("username") for t in doc.get("team") or [] if isinstance(t, dict) and t.get("role") == "owner"]
    if owners and owners[0]:
        out["owner"] = owners[0]
    if doc.get("tags"):
        out["tags"] = list(doc["tags"])
    contract: dict[str, Any] = {"version": str(doc.get("version") or "1.0.0"), "schema": schema}
    if custom.get(COMPATIBILITY_PROPERTY):
        contract["compatibility"] = custom[COMPATIBILITY_PROPERTY]
    out["contract"] = contract
    return out
