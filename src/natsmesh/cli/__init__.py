"""The `natsmesh` command: the face of the library. Each command loads the spec, calls one library function and
prints its result (`to_json()` for `--json`, `natsmesh.cli.tables` for people). Only this package imports
click and rich.

Commands by group: `natsmesh.cli.mesh` (init, validate, render, up, down, status, info, link), `natsmesh.cli.report`
(report ...), `natsmesh.cli.data` (apply, catalog, lineage, pub, tail, policy, contract ...), `natsmesh.cli.chaos`
(chaos ..., heal), `natsmesh.cli.serve` (serve, gate).
"""

from __future__ import annotations

from natsmesh.cli import access, chaos, data, mesh, report, serve, users  # noqa: F401 - each registers its commands
from natsmesh.cli.app import NatsmeshGroup, cli


def main() -> None:
    cli(prog_name="natsmesh")


__all__ = ["NatsmeshGroup", "cli", "main"]
