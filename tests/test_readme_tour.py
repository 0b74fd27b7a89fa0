"""The README's tour, run as printed (issue 18): every console block of "A short tour", "Data products and sharing
across domains" and "Faults" is run command by command, in one shell, in a network namespace of its own (so the
seed's fixed ports are free there, whatever this machine runs), from a folder holding the repository's examples;
each command's output must have the shape the README shows (the same lines in the same order, numbers, times,
ids and widths aside; `…` stands for lines left out).

`python tests/test_readme_tour.py` prints what each command of the tour printed, for updating the README."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SECTIONS = ("## A short tour", "## Data products and sharing across domains", "## Faults: what the mesh survives")
MARK = "@@natsmesh-tour@@"

Step = tuple[str, list[str]]  # a command, and the output lines the README shows for it


def tour() -> list[Step]:
    """Every command of the tour's console blocks, in order, with the output shown under it."""
    text = README.read_text()
    steps: list[Step] = []
    for heading in SECTIONS:
        start = text.index(heading)
        end = text.find("\n## ", start + len(heading))
        body = text[start : end if end >= 0 else len(text)]
        for block in re.findall(r"```console\n(.*?)```", body, flags=re.S):
            for line in block.splitlines():
                if line.startswith("$ "):
                    steps.append((line[2:], []))
                elif steps:
                    steps[-1][1].append(line)
    return steps


_ID = re.compile(r"^(?=.*[A-Za-z])(?=.*\d)[A-Za-z0-9]{8}$|^[0-9a-f]{12}$")  # a server id's head, a run id
_DURATION = re.compile(r"^[\d.]+(ns|µs|us|ms|s|m|h)$")  # 433.73ms, 1.25s: its unit follows its size
_SIZE_UNIT = re.compile(r"^(B|KiB|MiB|GiB)$")


def shape(line: str) -> re.Pattern[str]:
    """What a line the README shows stands for: the same words, any number where it shows one, any amount of space
    where it shows some, any width of table rule, any server or run id."""
    out = []
    for token in re.split(r"(\s+)", line.strip()):
        if not token:
            continue
        if token.isspace():
            out.append(r"\s+")
        elif set(token) == {"─"}:
            out.append("─+")
        elif token == "…" or "…" in token:
            out.append(".*")  # the README leaves something out here
        elif _ID.match(token.strip("(),:")):
            out.append(r"\S+")
        elif _DURATION.match(token) or token == "-":
            out.append(r"(?:[\d.]+(?:ns|µs|us|ms|s|m|h)|-)")  # a duration, or none yet
        elif _SIZE_UNIT.match(token):
            out.append("(?:B|KiB|MiB|GiB)")
        else:
            escaped = re.sub(r"\\?\d[\d,.]*", r"[\\d,.]+", re.escape(token.removesuffix("*")))
            out.append(escaped + r"\*?")  # a meta leader's mark moves from run to run
    return re.compile("^" + "".join(out) + "$")


def mismatch(expected: list[str], actual: list[str]) -> str | None:
    """Why ACTUAL does not have the shape EXPECTED shows (its lines, in order, `…` lines skipped), or None."""
    wanted = [e for e in expected if e.strip() and not e.strip().startswith("…")]
    lines = [a.strip() for a in actual if a.strip()]
    at = 0
    for e in wanted:
        pattern = shape(e)
        while at < len(lines) and not pattern.match(lines[at]):
            at += 1
        if at == len(lines):
            return f"no line like {e.strip()!r} (pattern {pattern.pattern}) in order in:\n" + "\n".join(actual)
        at += 1
    return None


def run_tour(work: Path, namespace: str) -> list[tuple[str, list[str], list[str]]]:
    """Run the tour in one bash inside NAMESPACE, from WORK; each command with the lines shown and printed."""
    steps = tour()
    script = "exec 2>&1\nset -o pipefail\n" + "".join(f"echo '{MARK} {i}'\n{cmd}\n" for i, (cmd, _) in enumerate(steps))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "COLUMNS": "200"}
    env.pop("NATSMESH_SPEC", None)
    res = subprocess.run(
        ["ip", "netns", "exec", namespace, "bash", "-c", script],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    printed: dict[int, list[str]] = {}
    current = -1
    for line in (res.stdout + "\n" + res.stderr).splitlines():
        if line.startswith(MARK):
            current = int(line.split()[1])
            continue
        printed.setdefault(current, []).append(line)
    return [(cmd, shown, printed.get(i, [])) for i, (cmd, shown) in enumerate(steps)]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _stop_everything(work: Path, namespace: str) -> None:
    for spec in ([], ["-f", "examples/data-mesh.yaml"]):
        subprocess.run(
            ["ip", "netns", "exec", namespace, str(Path(sys.executable).parent / "natsmesh"), "down", *spec],
            cwd=work,
            capture_output=True,
            timeout=60,
        )
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(work) in os.readlink(entry / "cwd"):
                    os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                continue


@pytest.mark.integration
def test_the_readme_tour_runs_as_printed(tmp_path: Path) -> None:
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.fail("the tour runs in a network namespace of its own: it needs root and iproute2")
    work = tmp_path / "tour"
    (work / "examples").mkdir(parents=True)
    for f in (ROOT / "examples").glob("*.yaml"):
        shutil.copy(f, work / "examples" / f.name)
    namespace = f"natsmesh-tour-{uuid.uuid4().hex[:8]}"
    _ip("netns", "add", namespace)
    try:
        _ip("-n", namespace, "link", "set", "lo", "up")
        ran = run_tour(work, namespace)
    finally:
        _stop_everything(work, namespace)
        _ip("netns", "del", namespace)
    assert len(ran) >= 12, [c for c, _, _ in ran]
    problems = [f"$ {cmd}\n{why}" for cmd, shown, printed in ran if (why := mismatch(shown, printed)) is not None]
    assert not problems, "\n\n".join(problems)


if __name__ == "__main__":  # print what the tour prints, to update the README
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "examples").mkdir()
        for f in (ROOT / "examples").glob("*.yaml"):
            shutil.copy(f, work / "examples" / f.name)
        ns = f"natsmesh-tour-{uuid.uuid4().hex[:8]}"
        _ip("netns", "add", ns)
        try:
            _ip("-n", ns, "link", "set", "lo", "up")
            for cmd, _, printed in run_tour(work, ns):
                print(f"$ {cmd}")
                print("\n".join(printed))
        finally:
            _stop_everything(work, ns)
            _ip("netns", "del", ns)
