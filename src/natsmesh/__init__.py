"""natsmesh: a NATS/JetStream hub & spoke leafnode mesh as data-mesh infrastructure, from one spec file.

The library is the product; the `natsmesh` command is a thin layer over it::

    from natsmesh import load_spec, lifecycle
    mesh = load_spec("mesh.yaml")          # or load_spec() for ./mesh.yaml / the seed topology
    lifecycle.up_detached(mesh)            # start under a supervisor, wait until ready
    lifecycle.down(mesh)
"""

from __future__ import annotations

import importlib
from typing import Any

# Exported names, imported on first use so that `import natsmesh.<module>` stays cheap (pydantic is only
# loaded by the modules that need the spec).
_EXPORTS = {
    "AlreadyRunningError": "natsmesh.errors",
    "NatsmeshError": "natsmesh.errors",
    "NotReadyError": "natsmesh.errors",
    "NotRunningError": "natsmesh.errors",
    "PreflightError": "natsmesh.errors",
    "ServerBinaryError": "natsmesh.errors",
    "SpecError": "natsmesh.errors",
    "Cluster": "natsmesh.topology",
    "Mesh": "natsmesh.spec",
    "Node": "natsmesh.topology",
    "default_mesh": "natsmesh.spec",
    "load_spec": "natsmesh.spec",
    "parse_spec": "natsmesh.spec",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'natsmesh' has no attribute {name!r}")


__all__ = [
    "AlreadyRunningError",
    "Cluster",
    "Mesh",
    "NatsmeshError",
    "Node",
    "NotReadyError",
    "NotRunningError",
    "PreflightError",
    "ServerBinaryError",
    "SpecError",
    "default_mesh",
    "load_spec",
    "parse_spec",
]
