"""Test hosts on one machine: network namespaces on a bridge the test creates, each with its own address, and
the platform in the root namespace with an address on the same bridge. Everything is removed on exit.

Nodes start inside their host's namespace exactly as their folder's Procfile says (`<node>: <command>`, run from
the folder). A host's link is cut with iptables inside its namespace (both directions, or inbound only).
"""

from __future__ import annotations

import contextlib
import os
import random
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(args), capture_output=True, text=True, timeout=300)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {res.stderr.strip()}")
    return res


def _free_subnet() -> str:
    """A 10.x.y.0/24 no route of this machine touches."""
    routes = sh("ip", "-4", "route", "show", "table", "all").stdout
    for _ in range(200):
        net = f"10.{random.randrange(100, 250)}.{random.randrange(0, 250)}"
        if f"{net}." not in routes:
            return net
    raise RuntimeError("no free 10.x.y.0/24 subnet for the test hosts")


@dataclass
class Host:
    name: str  # the namespace
    address: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.name, *args, check=check)

    def cut(self, inbound: bool = True, outbound: bool = True) -> None:
        """Drop this host's traffic on its link (loopback stays up)."""
        if inbound:
            self.run("iptables", "-A", "INPUT", "!", "-i", "lo", "-j", "DROP")
        if outbound:
            self.run("iptables", "-A", "OUTPUT", "!", "-o", "lo", "-j", "DROP")

    def heal(self) -> None:
        self.run("iptables", "-F", "INPUT")
        self.run("iptables", "-F", "OUTPUT")


class Network:
    """COUNT test hosts on a fresh bridge; `with Network(3) as net:` removes them all on exit."""

    def __init__(self, count: int) -> None:
        tag = f"{os.getpid() % 10000}{random.randrange(100):02d}"
        self.bridge = f"nmb{tag}"
        self.subnet = _free_subnet()
        self.platform = f"{self.subnet}.254"
        self.hosts = [Host(f"natsmesh-{tag}-{k}", f"{self.subnet}.{k + 1}") for k in range(count)]
        self._veths = [f"nmv{tag}{k}" for k in range(count)]

    def __enter__(self) -> Network:
        try:
            sh("ip", "link", "add", self.bridge, "type", "bridge")
            sh("ip", "addr", "add", f"{self.platform}/24", "dev", self.bridge)
            sh("ip", "link", "set", self.bridge, "up")
            for host, veth in zip(self.hosts, self._veths, strict=True):
                sh("ip", "netns", "add", host.name)
                sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", host.name)
                sh("ip", "link", "set", veth, "master", self.bridge, "up")
                sh("ip", "-n", host.name, "addr", "add", f"{host.address}/24", "dev", "eth0")
                sh("ip", "-n", host.name, "link", "set", "eth0", "up")
                sh("ip", "-n", host.name, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def start(self, host: Host, folder: Path, node: str, replace: dict[str, str] | None = None) -> None:
        """Start NODE inside HOST as FOLDER's Procfile line for it says, from that folder."""
        lines = dict(line.split(": ", 1) for line in (folder / "Procfile").read_text().splitlines() if line)
        command = lines[node]
        for old, new in (replace or {}).items():
            command = command.replace(old, new)
        log = open(folder / f"{node}.log", "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(
            ["ip", "netns", "exec", host.name, *shlex.split(command)], cwd=folder, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        host.procs.append(proc)

    def reload(self, host: Host) -> None:
        """What a unit's `ExecReload` does: SIGHUP to every server the host runs."""
        for p in host.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGHUP)

    def stop(self, host: Host, timeout: float = 40.0) -> None:
        for p in host.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in host.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        host.procs.clear()

    def close(self) -> None:
        for host in self.hosts:
            self.stop(host, timeout=10.0)
            left = sh("ip", "netns", "pids", host.name, check=False).stdout.split()
            for pid in left:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", host.name, check=False)
        sh("ip", "link", "del", self.bridge, check=False)

    @staticmethod
    def leftovers(tag: str = "natsmesh-") -> list[str]:
        """Namespaces whose names start with TAG (none should outlive a test)."""
        return [line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines() if line.startswith(tag)]
