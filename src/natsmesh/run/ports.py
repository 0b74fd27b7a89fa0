"""Listening ports on this machine: is one free, where the ephemeral range lies, where a free block is."""

from __future__ import annotations

import errno
import random
import socket
from pathlib import Path

SAFE_LOW, SAFE_HIGH = 10000, 32000  # a range below the usual ephemeral ports (32768+)


def ephemeral_range() -> tuple[int, int] | None:
    """The OS range for outgoing connections' local ports (Linux), or None where it cannot be read."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return None


def port_problem(host: str, port: int) -> str | None:
    """Why HOST:PORT cannot be listened on, or None. Binds the way nats-server does (SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "already in use"
            return exc.strerror or str(exc)
    return None


def free_port_base(count: int, host: str = "127.0.0.1", low: int = SAFE_LOW, high: int = SAFE_HIGH) -> int:
    """The first of COUNT consecutive ports on HOST that are all free right now (for tests and benchmarks)."""
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(low, high - count)
        if all(port_problem(host, p) is None for p in range(base, base + count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports found between {low} and {high}")
