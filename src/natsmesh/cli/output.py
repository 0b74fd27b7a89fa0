"""What every command shares: the spec and `--json` options, loading the spec, and printing (JSON or rich)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import click

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from natsmesh.model.mesh import Mesh

SPEC_HELP = (
    "Mesh spec file. Default: $NATSMESH_SPEC, else ./mesh.yaml, else the mesh `natsmesh up` started from this "
    "directory (if it runs), else the embedded seed topology."
)
PALETTE = [
    "cyan",
    "green",
    "yellow",
    "magenta",
    "blue",
    "bright_red",
    "bright_cyan",
    "bright_green",
    "bright_yellow",
    "bright_magenta",
    "bright_blue",
    "red",
]
F = TypeVar("F", bound=Callable[..., Any])


class HasJson(Protocol):
    def to_json(self) -> Any: ...


def spec_option(f: F) -> F:
    return click.option("-f", "--file", "spec_path", type=click.Path(dir_okay=False), default=None, help=SPEC_HELP)(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of tables.")(f)


FOLDER_COMMANDS = (
    "access request",
    "access grant",
    "access deny",
    "access revoke",
    "access list",
    "user add",
    "user list",
    "user revoke",
    "logs",
    "audit",
    "pub",
    "tail",
    "catalog list",
    "catalog show",
    "report lag",
    "lineage",
    "policy show",
    "serve",
    "gate",
)


def load(spec_path: str | None, secrets: bool = True) -> Mesh:
    """The mesh of SPEC_PATH (or the default), its warnings said on stderr; with `--bundle`, the mesh of that
    party's folder, for the commands a party can run with its own keys only (`FOLDER_COMMANDS`)."""
    from natsmesh.errors import NotHeldError

    ctx = click.get_current_context()
    folder = ctx.find_root().obj
    if folder is not None:
        from natsmesh.local.folder import load_folder

        command = ctx.command_path.split(" ", 1)[1] if " " in ctx.command_path else ctx.command_path
        if spec_path is not None:
            raise click.UsageError("--bundle and -f/--file each name a mesh: give one")
        if command not in FOLDER_COMMANDS:
            raise NotHeldError(
                f"`natsmesh {command}` needs the platform's spec and secrets; from a party's folder ({folder}) "
                f"only these run: {', '.join(FOLDER_COMMANDS)}"
            )
        return load_folder(folder, secrets)
    from natsmesh.local.registry import check_identity
    from natsmesh.local.specfile import load_spec

    mesh = load_spec(spec_path or default_spec())
    for w in mesh.warnings:
        click.secho(f"warning: {w}", fg="yellow", err=True)
    check_identity(mesh)  # a spec whose data dir is another spec's mesh: refused before anything is done
    return mesh


def default_spec() -> str | None:
    """The spec a command without `-f` means: $NATSMESH_SPEC, else ./mesh.yaml, else the one mesh `natsmesh up`
    started from this directory that still runs (said on stderr), else None (the embedded seed)."""
    import os
    from pathlib import Path

    from natsmesh.local.registry import EMBEDDED, started_here
    from natsmesh.local.specfile import SPEC_FILENAME

    if env := os.environ.get("NATSMESH_SPEC"):
        return env
    if Path(SPEC_FILENAME).is_file():
        return SPEC_FILENAME
    here = started_here()
    if len(here) > 1:
        listed = "; ".join(f"{r.mesh} ({r.spec_shown})" for r in here)
        raise click.UsageError(f"several meshes were started from this directory and run: {listed}; name one with -f")
    if not here or here[0].spec == EMBEDDED:
        return None
    click.secho(
        f"(mesh {here[0].mesh!r}, {here[0].spec_shown}: the one `natsmesh up` started here; -f names another)",
        fg="bright_black",
        err=True,
    )
    return here[0].spec


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    out = Console(stderr=stderr, highlight=False)
    if not out.is_terminal:
        out.width = 200  # pipes and files get whole tables, not 80 squeezed columns
    return out


def print_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, default=str))


def say(text: str, err: bool = False, nl: bool = True, fg: str | None = None) -> None:
    """Print TEXT built from spec text, the catalog, a server or a payload: control characters and terminal
    escapes written out (`\\x1b`), line breaks kept; never markup."""
    from natsmesh.model.units import visible

    click.secho(visible(text), err=err, nl=nl, fg=fg)


def show(result: HasJson, as_json: bool, tables: Callable[[Any], Iterable[RenderableType]]) -> None:
    """RESULT as its JSON document, or as the tables TABLES draws of it."""
    if as_json:
        print_json(result.to_json())
        return
    out = console()
    for t in tables(result):
        out.print(t)


def node_lines(mesh: Mesh) -> Callable[[str, str], None]:
    """A printer of (node, line) pairs as the foreground `up` and `logs` show them: the node's name padded and in
    its own colour, then the line with its control characters written out (a log line can quote a client)."""
    from rich.text import Text

    from natsmesh.model.units import visible

    out = console()
    width = max(len(n.name) for n in mesh.nodes())
    colours = {n.name: PALETTE[i % len(PALETTE)] for i, n in enumerate(mesh.nodes())}

    def echo(name: str, line: str) -> None:
        prefix = Text(f"{name:<{width}} | ", style=colours.get(name, "bold white"))
        out.print(prefix + Text(visible(line, keep="")), soft_wrap=True)

    return echo
