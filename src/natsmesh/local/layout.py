"""Where a mesh keeps everything on this machine: one name for each file and folder of its data dir.

```
<data_dir>/
  secrets.json          generated identities (0600)
  tls/                  the mesh CA and server certificate (`natsmesh.local.certs`)
  <cluster folder>/     rendered configs and Procfile; data/<node>/ is each node's JetStream store
  logs/<node>.log       each node's output
  run/                  what a running supervisor leaves for other processes:
    supervisor.lock       held (flock) for the supervisor's whole life
    state.json            its pid and every node's (`natsmesh.local.state`)
    supervisor.log        its own events
    shares.json           the shares the running servers were given (`natsmesh.local.records`)
    faults.json           the fault proxies of `up --chaos`
    faults.sock           their control socket
    members.json          the mesh the supervisor is to run, when `apply` adds or removes a cluster live
```
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import overload

from natsmesh.model.mesh import Mesh
from natsmesh.model.topology import Cluster, Node
from natsmesh.render.servers import store_dir

SOCKET_PATH_MAX = 100  # a unix socket path longer than about 107 bytes cannot be bound


class _Below:
    """A path below a mesh's data dir, as a `MeshDirs` attribute: `_Below("run", "state.json")` is
    `<root>/run/state.json`."""

    def __init__(self, *parts: str) -> None:
        self.parts = parts

    @overload
    def __get__(self, dirs: None, owner: type[MeshDirs]) -> _Below: ...
    @overload
    def __get__(self, dirs: MeshDirs, owner: type[MeshDirs] | None = None) -> Path: ...
    def __get__(self, dirs: MeshDirs | None, owner: type[MeshDirs] | None = None) -> Path | _Below:
        return self if dirs is None else dirs.root.joinpath(*self.parts)


@dataclass(frozen=True)
class MeshDirs:
    """Every path of one mesh's data dir."""

    root: Path
    tls: Path

    run = _Below("run")
    logs = _Below("logs")
    secrets = _Below("secrets.json")
    lock = _Below("run", "supervisor.lock")
    state = _Below("run", "state.json")
    supervisor_log = _Below("run", "supervisor.log")
    shares = _Below("run", "shares.json")
    faults = _Below("run", "faults.json")
    members = _Below("run", "members.json")

    @classmethod
    def of(cls, mesh: Mesh) -> MeshDirs:
        return cls(mesh.data_dir, mesh.tls_dir)

    @property
    def control_socket(self) -> Path:
        """The supervisor's fault-control socket (in the temp dir when the run dir's path is too long)."""
        path = self.run / "faults.sock"
        if len(str(path)) < SOCKET_PATH_MAX:
            return path
        digest = hashlib.sha1(str(self.root.resolve()).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"natsmesh-{digest}.sock"

    def log(self, node: str) -> Path:
        return self.logs / f"{node}.log"

    def cluster(self, cluster: Cluster) -> Path:
        """The folder a cluster's nodes run in (their configs, Procfile and stores)."""
        return self.root / cluster.folder

    def store(self, cluster: Cluster, node: Node) -> Path:
        return self.cluster(cluster) / store_dir(node)


def own_operator_problems(mesh: Mesh, running: bool) -> list[str]:
    """Why domains whose users `service_users` moves (into or out of an operator of their own) cannot be started
    or changed as the spec says: RUNNING, a running mesh (its nodes cannot reload into or out of operator mode); in
    any case, stores that hold streams under the other mode's account, which the new one would not see."""
    out = []
    for c in mesh.domains:
        wants = c.name in mesh.service_users
        for n in c.nodes:
            config = mesh.data_dir / c.folder / f"{n.name}.conf"
            runs_own = config.is_file() and "own-operator.jwt" in config.read_text(errors="replace")
            if running and config.is_file() and runs_own != wants:
                out.append(
                    f"{c.name} runs with its users {'under its own operator' if runs_own else 'in its configs'} "
                    f"and the spec {'turns on' if wants else 'turns off'} service_users: its nodes would have to "
                    "restart (nats-server cannot reload into or out of operator mode), which `apply` does not do"
                )
                break
            accounts = mesh.data_dir / c.folder / store_dir(n) / "jetstream"
            held = {p.name for p in accounts.iterdir() if p.is_dir()} if accounts.is_dir() else set()
            keyed = any(len(a) == 56 and a.startswith("A") for a in held)  # an account under an operator
            if (wants and c.name in held) or (not wants and keyed):
                out.append(
                    f"{c.name}'s stores ({accounts}) hold streams of its account as it ran "
                    f"{'with its users in its configs' if wants else 'under its own operator'}, which the "
                    f"account service_users: {str(wants).lower()} makes would not see: turning it "
                    f"{'on' if wants else 'off'} for a domain with data is not supported yet"
                )
                break
    return out
