"""The floors of the code, checked: what each package may import, what the pure floors may not do, and where
raw JSON may be read. Every import counts, including those inside functions and under TYPE_CHECKING (a lazy
import is how a circle hides)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import natsmesh

SRC = Path(natsmesh.__file__).parent

# Lowest first. A module imports only from its own floor or a lower one; `errors` is below everything.
FLOORS = {
    "errors": 0,
    "model": 0,
    "render": 1,
    "local": 2,
    "observe": 3,
    "client": 4,
    "reconcile": 5,
    "faults": 5,
    "run": 6,
    "serve": 6,
    "cli": 7,
}
# Modules below their package's floor: the supervisor runs processes and whatever background tasks it is handed;
# it does not know what they are (`natsmesh.run.lifecycle`, at the package's floor, composes them).
MODULE_FLOORS = {"natsmesh.run.supervisor": 4, "natsmesh.run.ports": 4}
SIBLINGS = {
    frozenset({"reconcile", "faults"}),
    frozenset({"run", "serve"}),
}  # the same floor, and still never each other
PURE = {"model", "render"}  # no socket, no process, no file written
PURE_BANNED_MODULES = (
    "asyncio",
    "fcntl",
    "http",
    "multiprocessing",
    "nats",
    "os",
    "shutil",
    "signal",
    "socket",
    "ssl",
    "subprocess",
    "tempfile",
    "threading",
    "urllib.request",
)
WRITING_CALLS = {"open", "write_text", "write_bytes", "mkdir", "unlink", "touch", "chmod", "rmdir", "rename"}
PRESENTATION = ("click", "rich")  # only the cli package
# Where raw JSON (server replies, the state file, records) is decoded into types; nowhere else.
JSON_EDGES = {
    "natsmesh.observe.wire",  # system and monitoring replies
    "natsmesh.observe.monitor",  # http_json: monitoring endpoints into wire types
    "natsmesh.observe.streams",  # STREAM.LIST pages into nats.py's StreamInfo
    "natsmesh.local.state",  # the supervisor's state file
    "natsmesh.local.registry",  # which spec a data dir belongs to, and the meshes running here
    "natsmesh.local.records",  # fault proxies and shares of a running mesh
    "natsmesh.local.secrets",  # generated identities
    "natsmesh.local.ownkeys",  # a domain's own keys file
    "natsmesh.local.folder",  # a party folder's mesh.json
    "natsmesh.local.specfile",  # the validated-spec cache
    "natsmesh.reconcile.catalog",  # catalog descriptors (natsmesh's own documents)
    "natsmesh.faults.proxy",  # its control protocol
    "natsmesh.faults.losscheck",  # the loss checker's own payloads
    "natsmesh.model.contracts",  # message payloads checked against a product's JSON Schema
    "natsmesh.model.products",  # a contract's schema, kept as canonical JSON text
    "natsmesh.model.jwt",  # JWT claims (the operator mode's accounts, users and activations)
}


def unit(module: str) -> str | None:
    """The floor-bearing part of a natsmesh module name (`natsmesh.run.supervisor` -> `run`), None for others."""
    parts = module.split(".")
    if parts[0] != "natsmesh" or len(parts) < 2:
        return None
    return parts[1]


def floor(module: str) -> int:
    """The floor of MODULE: its own, or its package's."""
    for name, f in MODULE_FLOORS.items():
        if module == name or module.startswith(name + "."):
            return f
    return FLOORS[unit(module) or ""]


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, str]:
    return {module_name(p): p.read_text() for p in sorted(SRC.rglob("*.py"))}


def imports(tree: ast.AST) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
            out += [f"{node.module}.{a.name}" for a in node.names]  # `from natsmesh.run import lifecycle`
        elif isinstance(node, ast.ImportFrom) and node.level:
            out.append("<relative>")
    return out


def _called(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            names.add(f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else "")
    return names


def _refers(tree: ast.AST, name: str) -> bool:
    return any(
        (isinstance(n, ast.Name) and n.id == name) or (isinstance(n, ast.Attribute) and n.attr == name)
        for n in ast.walk(tree)
    )


def violations(modules: dict[str, str]) -> list[str]:
    """Every broken rule in MODULES (module name -> source)."""
    out = []
    graph: dict[str, set[str]] = {}
    for name, text in modules.items():
        tree = ast.parse(text)
        me = unit(name)
        if me is None:  # natsmesh/__init__.py: lazy exports by name only
            continue
        if me not in FLOORS:
            out.append(f"{name}: package {me!r} has no floor; add it to FLOORS")
            continue
        for target in imports(tree):
            if target == "<relative>":
                out.append(f"{name}: relative import; name modules in full")
                continue
            other = unit(target)
            if other is not None and other in FLOORS and floor(target) > floor(name):
                out.append(f"{name} imports {target}: floor {floor(target)} is above {name}'s ({floor(name)})")
            if other is not None and other != me and other in FLOORS:
                graph.setdefault(me, set()).add(other)
                if frozenset({me, other}) in SIBLINGS:
                    out.append(
                        f"{name} imports {target}: {me} and {other} stand side by side and never import each other"
                    )
            top = target.split(".")[0]
            if top in PRESENTATION and me != "cli":
                out.append(f"{name} imports {target}: only natsmesh.cli draws for people")
            if me in PURE and any(target == b or target.startswith(b + ".") for b in PURE_BANNED_MODULES):
                out.append(f"{name} imports {target}: floor {me} is pure (no socket, process or file written)")
        if me in PURE and (writes := _called(tree) & WRITING_CALLS):
            out.append(f"{name} calls {', '.join(sorted(writes))}: floor {me} writes no file")
        if name not in JSON_EDGES and _refers(tree, "loads"):
            out.append(f"{name} decodes JSON itself: convert at the edge (JSON_EDGES) and pass typed objects")
        if unit(name) != "observe" and _refers(tree, "http_json"):
            out.append(f"{name} reads a monitoring endpoint's raw JSON: ask natsmesh.observe for a typed answer")
    out += [f"packages import each other in a circle: {' -> '.join(c)}" for c in cycles(graph)]
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle through the package graph, each once (as found by a depth-first walk)."""
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def walk(node: str, path: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                cyc = [*path[path.index(nxt) :], nxt]
                if frozenset(cyc) not in seen:
                    seen.add(frozenset(cyc))
                    found.append(cyc)
            else:
                walk(nxt, [*path, nxt])

    for start in sorted(graph):
        walk(start, [start])
    return found


def test_the_code_keeps_its_floors() -> None:
    assert violations(sources()) == []


def test_every_package_has_a_floor() -> None:
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in SRC.glob("*.py") if p.stem != "__init__"}
    assert packages | modules == set(FLOORS)


@pytest.mark.parametrize(
    ("module", "line", "expected"),
    [
        ("natsmesh.run.supervisor", "from natsmesh.reconcile.heal import watch", "floor 5 is above"),
        ("natsmesh.run.supervisor", "from natsmesh.faults.proxy import FaultProxy", "floor 5 is above"),
        ("natsmesh.observe.lag", "from natsmesh.client import MeshClient", "floor 4 is above"),
        ("natsmesh.local.state", "from natsmesh.run.supervisor import Supervisor", "floor 4 is above"),
        ("natsmesh.reconcile.apply", "from natsmesh.faults.chaos import kill", "stand side by side"),
        ("natsmesh.model.mesh", "import socket", "floor model is pure"),
        ("natsmesh.render.servers", "import subprocess", "floor render is pure"),
        ("natsmesh.observe.reports", "from rich.table import Table", "only natsmesh.cli draws"),
        ("natsmesh.model.topology", "open('x', 'w').write('y')", "writes no file"),
        ("natsmesh.run.lifecycle", "import json\njson.loads('{}')", "decodes JSON itself"),
        ("natsmesh.reconcile.policy_sync", "from natsmesh.observe.monitor import http_json\nhttp_json", "raw JSON"),
    ],
)
def test_breaking_a_rule_is_caught(module: str, line: str, expected: str) -> None:
    mods = sources()
    mods[module] += f"\n\ndef _broken() -> None:\n    {line.replace(chr(10), chr(10) + '    ')}\n"
    found = violations(mods)
    assert any(expected in v and module in v for v in found), found


def test_a_circle_between_packages_is_caught() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
