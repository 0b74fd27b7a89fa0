"""The bare baseline: the same rendered configs started by a plain loop, polled until the same readiness.

Usage: python bare_up.py TARGETS_JSON BINARY. Prints `READY <seconds>` once ready, then waits for a line on
stdin (or its end) and stops every server. It imports only the readiness poll, not natsmesh's spec or
supervisor, so it pays for nothing natsmesh adds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from natsmesh.observe.readiness import Target, wait_ready


def main() -> None:
    start = time.monotonic()
    doc = json.loads(Path(sys.argv[1]).read_text())
    binary = sys.argv[2]
    procs = [
        subprocess.Popen([binary, "-c", n["conf"]], cwd=n["cwd"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for n in doc["nodes"]
    ]
    try:
        targets = [Target(**n["target"]) for n in doc["nodes"]]
        wait_ready(targets, timeout=60)
        print(f"READY {time.monotonic() - start:.4f} {' '.join(str(p.pid) for p in procs)}", flush=True)
        sys.stdin.readline()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


if __name__ == "__main__":
    main()
