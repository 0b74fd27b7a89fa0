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
```
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from natsmesh.model.mesh import Mesh
from natsmesh.model.topology import Cluster, Node
from natsmesh.render.servers import store_dir

SOCKET_PATH_MAX = 100  # a unix socket path longer than about 107 bytes cannot be bound


@dataclass(frozen=True)
class MeshDirs:
    """Every path of one mesh's data dir."""

    root: Path
    tls: Path

    @classmethod
    def of(cls, mesh: Mesh) -> MeshDirs:
        return cls(mesh.data_dir, mesh.tls_dir)

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets.json"

    @property
    def lock(self) -> Path:
        return self.run / "supervisor.lock"

    @property
    def state(self) -> Path:
        return self.run / "state.json"

    @property
    def supervisor_log(self) -> Path:
        return self.run / "supervisor.log"

    @property
    def shares(self) -> Path:
        return self.run / "shares.json"

    @property
    def faults(self) -> Path:
        return self.run / "faults.json"

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
