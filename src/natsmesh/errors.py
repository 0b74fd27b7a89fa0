"""Errors a user can cause. Each says what is wrong and what to do; the CLI prints it without a traceback."""

from __future__ import annotations


class NatsmeshError(Exception):
    """Base of every error caused by input or environment rather than by a bug."""


class SpecError(NatsmeshError):
    """A mesh spec that does not validate. Holds one line per problem: file, path, line, what was expected."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        head = f"invalid mesh spec {source}: {len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__("\n".join([head, *(f"  - {p}" for p in problems)]))


class ServerBinaryError(NatsmeshError):
    """The nats-server binary is missing, does not run, or is too old."""


class PreflightError(NatsmeshError):
    """Something that would stop the mesh from starting: a port in use, an unwritable data dir."""


class AlreadyRunningError(NatsmeshError):
    """A second `up` on a mesh whose supervisor is already running."""


class NotRunningError(NatsmeshError):
    """A command that needs a running mesh found none."""


class NotReadyError(NatsmeshError):
    """The mesh did not become ready in time; names the conditions still unmet."""
