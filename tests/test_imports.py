"""A fast command line (issue 21): a command imports what it needs. `natsmesh --help` and `report` load none of the
portal (Starlette, uvicorn), Prometheus, the contract validator or the fault proxies; `--help` not even the spec's
validation (pydantic) or YAML."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from natsmesh.model.templates import init_spec_text

DUMP = """
import atexit, sys
out = sys.argv[1]
atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
from natsmesh.cli import main
sys.argv = ["natsmesh", *sys.argv[2:]]
main()
"""
OPTIONAL = ("starlette", "uvicorn", "prometheus_client", "jsonschema_rs", "playwright")
OURS = ("natsmesh.serve", "natsmesh.faults", "natsmesh.render.dashboard", "natsmesh.render.monitoring")


def _loaded(tmp_path: Path, *args: str) -> set[str]:
    out = tmp_path / "modules.txt"
    subprocess.run([sys.executable, "-c", DUMP, str(out), *args], capture_output=True, text=True, timeout=60)
    return set(out.read_text().split())


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in OPTIONAL or m.startswith(OURS))


def test_help_and_report_load_no_portal_prometheus_validator_or_proxies(tmp_path: Path) -> None:
    helped = _loaded(tmp_path, "--help")
    assert "natsmesh.cli" in helped and _heavy(helped) == []
    assert not {"pydantic", "yaml", "nats", "rich.table"} & helped, sorted({"pydantic", "yaml", "nats"} & helped)
    spec = tmp_path / "mesh.yaml"
    spec.write_text(init_spec_text(name="imports", domains=1, nodes=1, hub_nodes=1) + f"data_dir: {tmp_path}/d\n")
    for args in (("report", "jetstream"), ("report", "lag"), ("status",)):
        reported = _loaded(tmp_path, *args, "-f", str(spec))  # not running: it says so, after its imports
        assert "natsmesh.cli" in reported and _heavy(reported) == [], (args, _heavy(reported))


BLOCKED = """
import sys
class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}")
        return None
sys.meta_path.insert(0, Missing())
from natsmesh.cli import main
sys.argv = ["natsmesh", *sys.argv[1:]]
main()
"""


def test_help_works_without_the_optional_parts_installed() -> None:
    code = BLOCKED.format(blocked=set(OPTIONAL))
    for args in (["--help"], ["report", "--help"], ["serve", "--help"], ["user", "--help"]):
        res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0 and "Usage: natsmesh" in res.stdout, (args, res.stderr[-500:])
