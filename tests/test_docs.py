"""Docs that cannot drift: the CLI reference is generated, every command and option the docs name exists, every
module a docstring or doc names is real, and the README's library example runs as written."""

from __future__ import annotations

import ast
import importlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from helpers import MeshRunner, servers_under, small_mesh_text
from natsmesh.cli import cli
from natsmesh.cli.docs import reference, walk
from natsmesh.model.mesh import Mesh

ROOT = Path(__file__).parent.parent
SRC = ROOT / "src" / "natsmesh"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
WRITTEN = [d for d in DOCS if d.name != "cli.md"]  # docs/cli.md is generated (and checked whole)
ALL = list(walk(cli, cli.make_context("natsmesh", [], resilient_parsing=True)))


def test_cli_reference_is_generated_and_current() -> None:
    assert (ROOT / "docs" / "cli.md").read_text() == reference(), "run `make docs`"


@pytest.mark.parametrize(("command", "ctx"), ALL, ids=[c.command_path for _, c in ALL])
def test_every_option_has_help(command: click.Command, ctx: click.Context) -> None:
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert param.help, f"`{ctx.command_path} {param.opts[0]}` has no help text"


def _code(text: str) -> Iterator[str]:
    """The code in a Markdown text: inline spans and the lines of fenced blocks."""
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            yield line.split(" #", 1)[0]  # not the comment
        else:
            yield from re.findall(r"`([^`]+)`", line)


# `natsmesh` as a command: not a path, a module, a package to install, nor the service user (`-o natsmesh -g natsmesh`)
MENTION = re.compile(
    r"(?<![\w./-])(?<!from )(?<!import )(?<!install )(?<!-o )(?<!-g )natsmesh((?:[ \t]+[^\s`|;&#…]+)*)"
)


def _check_mention(words: list[str], where: str) -> list[str]:
    """Problems with one `natsmesh WORDS...` mention: an unknown command, or an option the command lacks."""
    command: click.Command = cli
    path = ["natsmesh"]
    i = 0
    if words and not re.fullmatch(r"[a-z][a-z-]*|-.*", words[0]):
        return []  # `natsmesh pub/tail`, `natsmesh [OPTIONS]`: a shorthand, not one command
    top = {o: p for p in cli.params if isinstance(p, click.Option) for o in p.opts}
    while i < len(words) and (name := words[i].split("=", 1)[0]) in top:  # `natsmesh --bundle DIR pub ...`
        i += 1 if top[name].is_flag or "=" in words[i] else 2
    while isinstance(command, click.Group) and i < len(words) and re.fullmatch(r"[a-z][a-z-]*", words[i]):
        sub = command.commands.get(words[i])
        if sub is None:
            return [f"{where}: `{' '.join([*path, words[i]])}` is not a command"]
        command, path, i = sub, [*path, words[i]], i + 1
    options = {o: p for p in command.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}
    options.update({"-h": None, "--help": None})  # type: ignore[dict-item]
    out = []
    while i < len(words):
        word = words[i]
        if word.startswith("-") and not re.fullmatch(r"-+", word):
            name = word.split("=", 1)[0]
            if name not in options:
                out.append(f"{where}: `{' '.join(path)}` has no option {name}")
            elif options[name] is not None and not options[name].is_flag and "=" not in word:
                i += 1  # its value
        i += 1
    return out


def test_every_command_and_option_the_docs_name_exists() -> None:
    problems = []
    for doc in WRITTEN:
        for snippet in _code(doc.read_text()):
            for m in MENTION.finditer(snippet):
                problems += _check_mention(m.group(1).split(), doc.relative_to(ROOT).as_posix())
    assert problems == []


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:k]))
        except ImportError:
            continue
        for attr in parts[k:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def _texts() -> Iterator[tuple[str, str]]:
    """(where, text) for every docstring and comment of the code, and every doc."""
    for path in sorted(SRC.rglob("*.py")):
        source = path.read_text()
        where = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(source)):
            documented = isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            if documented and (doc := ast.get_docstring(node)) is not None:
                yield where, doc
        yield where, "\n".join(line.split("#", 1)[1] for line in source.splitlines() if "#" in line)
    for doc in DOCS:
        yield doc.relative_to(ROOT).as_posix(), doc.read_text()


def test_module_names_in_docstrings_and_docs_are_real() -> None:
    unknown = sorted(
        {
            f"{where}: {name}"
            for where, text in _texts()
            for name in re.findall(r"(?<![\w/.-])natsmesh(?:\.[A-Za-z_]\w*)+", text)
            if not _resolves(name) and not name.startswith(SUBJECT_ROOTS)
        }
    )
    assert unknown == []


SUBJECT_ROOTS = ("natsmesh.ingress.", "natsmesh.deadletter.", "natsmesh.access.", "natsmesh.audit.")  # NATS subjects


def _library_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## As a library", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_library_example_runs_as_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mesh.yaml").write_text(small_mesh_text(tmp_path / "data", domains=2))
    cwd = Path.cwd()
    os.chdir(tmp_path)
    runner = MeshRunner(tmp_path)
    namespace: dict[str, Any] = {}
    try:
        exec(compile(_library_example(), "README.md", "exec"), namespace)
    finally:
        os.chdir(cwd)
        if isinstance(namespace.get("mesh"), Mesh):
            runner.started.append(namespace["mesh"])  # down again if the example stopped half-way
        runner.close()
    printed = capsys.readouterr().out
    assert "'domain': 'hub'" in printed and "'leader': 'hub-server-0'" in printed
    assert not servers_under(tmp_path)


def test_a_stale_mention_is_caught() -> None:
    assert _check_mention(["report", "jetstrem"], "x") == ["x: `natsmesh report jetstrem` is not a command"]
    assert _check_mention(["up", "--detached"], "x") == ["x: `natsmesh up` has no option --detached"]
    assert _check_mention(["up", "-f", "--json"], "x") == []  # --json is -f's value here
    assert _check_mention(["apply", "-f", "examples/data-mesh.yaml", "--dry-run"], "x") == []
    assert not _resolves("natsmesh.run.supervise") and _resolves("natsmesh.run.supervisor.Supervisor")
