"""natsmesh: a NATS/JetStream hub & spoke leafnode mesh as data-mesh infrastructure, from one spec file.

The library is the product; the `natsmesh` command (`natsmesh.cli`) is a thin layer over it::

    from natsmesh import load_spec
    from natsmesh.run import lifecycle
    mesh = load_spec("mesh.yaml")          # or load_spec() for ./mesh.yaml / the seed topology
    lifecycle.up_detached(mesh)            # start under a supervisor, wait until ready
    lifecycle.down(mesh)

The packages are floors; each imports only from its own floor or lower ones (tests/test_layers.py):
`natsmesh.model` (the spec as typed data; pure) → `natsmesh.render` (configs, stream configs, policy, lineage;
pure text) → `natsmesh.local` (the data dir: layout, state, secrets, certs, records) → `natsmesh.observe`
(connecting, typed server replies, system requests, readiness, lag, reports) → `natsmesh.client` (publish and
consume by product) → `natsmesh.reconcile` (plan and apply, catalog, policy sync, heal) beside `natsmesh.faults`
(fault proxies, chaos, the loss checker) → `natsmesh.run` (binary, ports, supervisor, lifecycle) →
`natsmesh.cli`. `natsmesh.errors` holds every error a user can cause.
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
    "Cluster": "natsmesh.model.topology",
    "Mesh": "natsmesh.model.mesh",
    "Node": "natsmesh.model.topology",
    "default_mesh": "natsmesh.local.specfile",
    "load_spec": "natsmesh.local.specfile",
    "parse_spec": "natsmesh.local.specfile",
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
