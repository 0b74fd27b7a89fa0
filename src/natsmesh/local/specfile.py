"""Loading a spec file, with a cache of validated specs so that most commands never load pydantic.

`load_spec` reads at most `MAX_BYTES` of a regular file and hands the text to `parse_spec`, which serves a mesh
validated before from the cache (keyed by the text and the code that validates it) or validates it with
`natsmesh.model.mesh.parse_mesh` and keeps the result (mode 0600: it may hold fixed passwords).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from natsmesh.errors import SpecError, WouldOverwriteError
from natsmesh.local.certs import ensure_certs
from natsmesh.model.contracts import canonical
from natsmesh.model.mesh import Mesh, parse_mesh
from natsmesh.model.templates import init_spec_text, seed_spec_text
from natsmesh.model.yamldoc import MAX_BYTES, decode, read_yaml

SPEC_FILENAME = "mesh.yaml"
CACHE_ENV = "NATSMESH_CACHE_DIR"
TRUST_ENV = "NATSMESH_TRUST"  # the trust mode of specs that name none (`default_trust`)
# Where a spec's `data_dir` and `tls.dir` may lead besides the spec's own folder: the platform's choice (a list
# of directories, separated like PATH), never the spec's. Unset: only inside the spec's folder.
ALLOWED_DIRS_ENV = "NATSMESH_ALLOWED_DIRS"
_MODEL_DIR = Path(__file__).parent.parent / "model"


def cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "natsmesh" / "specs"


def _cache_key(text: str) -> str:
    # The code that validates is part of the key, so a new natsmesh never trusts an old verdict.
    h = hashlib.sha256()
    for module in sorted(_MODEL_DIR.glob("*.py")):
        h.update(module.read_bytes())
    h.update(text.encode())
    return h.hexdigest()


def _cache_read(text: str, source: str, base_dir: Path) -> Mesh | None:
    try:
        data = json.loads((cache_dir() / f"{_cache_key(text)}.json").read_text())
        mesh = Mesh.from_json(data, source, base_dir)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return mesh if _schema_files_unchanged(mesh, base_dir) else None


def _schema_files_unchanged(mesh: Mesh, base_dir: Path) -> bool:
    """Whether every contract's schema file still holds the schema MESH was validated with."""
    for p in mesh.products:
        if p.contract is None or p.contract.schema_file is None:
            continue
        try:
            private = tuple(d for d in (str(mesh.data_dir), str(mesh.tls_dir)) if d)
            doc = read_yaml(schema_reader(base_dir)(p.contract.schema_file, private), p.contract.schema_file).value
        except SpecError:
            return False
        if not isinstance(doc, dict) or canonical(doc) != p.contract.schema_json:
            return False
    return True


MAX_SCHEMA_BYTES = 1024 * 1024  # a contract's schema file; a data contract's schema is a few KiB


def inside(base_dir: Path, name: str, private: tuple[str, ...] = ()) -> Path:
    """Where NAME (a path a spec names, relative to it) lies once every symlink is followed; `SpecError` unless
    that is inside BASE_DIR's tree, in no hidden folder (natsmesh's data dirs, `.git`, ...) and in none of the
    PRIVATE folders (the mesh's data and TLS dirs, relative to BASE_DIR or absolute): a spec is input from many
    teams, and what it names stays in its own folder, away from the platform's secrets."""
    root = base_dir.resolve()
    target = (root / name).resolve()
    if Path(name).is_absolute() or not target.is_relative_to(root):
        raise SpecError(
            name, [f"leads outside the spec's folder {root} (to {target}); a file a spec names must be inside it"]
        )
    hidden = next((p for p in target.relative_to(root).parts if p.startswith(".")), None)
    secret = next((d for d in private if target.is_relative_to((root / Path(d).expanduser()).resolve())), None)
    if hidden is not None or secret is not None:
        why = f"the hidden {hidden!r}" if hidden is not None else f"the mesh's private folder {secret!r}"
        raise SpecError(
            name,
            [
                f"leads into {why} (to {target}), where natsmesh keeps secrets and keys; a file a spec names "
                "must be one of the spec's own"
            ],
        )
    return target


def schema_reader(base_dir: Path) -> Callable[[str, tuple[str, ...]], str]:
    """Reads a contract's schema file by its name in a spec whose directory is BASE_DIR: a regular file of at
    most `MAX_SCHEMA_BYTES` inside BASE_DIR's tree and outside the mesh's private folders (`inside`)."""

    def read(name: str, private: tuple[str, ...] = ()) -> str:
        path = inside(base_dir, name, private)
        return read_text_file(path, "a JSON Schema is a JSON or YAML text file", MAX_SCHEMA_BYTES)

    return read


def _cache_write(text: str, mesh: Mesh) -> None:
    try:
        d = cache_dir()
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = d / f"{_cache_key(text)}.json"
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # may hold fixed passwords
        with os.fdopen(fd, "w") as f:
            json.dump(mesh.to_json(), f)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs time


def allowed_dirs() -> list[Path]:
    """The directories the platform lets a spec's `data_dir` and `tls.dir` lead into (`NATSMESH_ALLOWED_DIRS`)."""
    raw = os.environ.get(ALLOWED_DIRS_ENV, "")
    return [Path(p).expanduser().resolve() for p in raw.split(os.pathsep) if p.strip()]


def _dir_problems(mesh: Mesh, text: str, source: str) -> list[str]:
    """Each of the spec's `data_dir` and `tls.dir` that leads outside the spec's folder and every directory the
    platform allows: natsmesh reads secrets and a CA key there, and writes configs and stores."""
    roots = [mesh.base_dir.resolve(), *allowed_dirs()]
    out = []
    for key, setting in (("data_dir",), mesh.data_dir_setting), (("tls", "dir"), mesh.tls_dir_setting):
        if not setting:
            continue
        p = Path(setting).expanduser()
        target = (p if p.is_absolute() else mesh.base_dir / p).resolve()
        if not any(target.is_relative_to(r) for r in roots):
            line = read_yaml(text, source).lines.get(key)
            out.append(
                f"{'.'.join(key)}{f' (line {line})' if line else ''}: {setting!r} leads outside the spec's folder "
                f"({target}); natsmesh keeps a mesh's secrets, keys and stores only inside the spec's folder or "
                f"where the platform allows ({ALLOWED_DIRS_ENV}={target.parent} to allow it)"
            )
    return out


def default_trust() -> Literal["config", "operator"]:
    """The trust mode of a spec that names none and fixes no credentials: `$NATSMESH_TRUST` (config or operator),
    else operator."""
    value = os.environ.get(TRUST_ENV, "").strip() or "operator"
    if value not in ("config", "operator"):
        raise SpecError(f"${TRUST_ENV}", [f"the default trust mode is config or operator, not {value!r}"])
    return "config" if value == "config" else "operator"


def parse_spec(text: str, source: str = "<spec>", base_dir: Path | None = None, *, cache: bool = True) -> Mesh:
    """Validate a YAML document into a `Mesh`; raise `SpecError` listing every problem."""
    base = base_dir or Path.cwd()
    trust = default_trust()
    key = f"{text}\n# trust default: {trust}"  # the same text is another mesh under another default
    if cache and (hit := _cache_read(key, source, base)) is not None:
        mesh = hit
    else:
        mesh = parse_mesh(text, source, base, schema_reader(base), trust)
        if cache:
            _cache_write(key, mesh)
    if problems := _dir_problems(mesh, text, source):
        raise SpecError(source, problems)
    return mesh


def read_text_file(path: Path, what: str, limit: int = MAX_BYTES) -> str:
    """The text of PATH: a regular file of at most LIMIT bytes of UTF-8; `SpecError` (saying WHAT the file should
    be) otherwise."""
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):  # a directory, a FIFO that would block, a device that never ends
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise SpecError(str(path), [f"{kind}; {what}"])
        # Non-blocking: a FIFO put in the file's place after the check must not hang the read.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise SpecError(str(path), [f"not a regular file; {what}"])
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise SpecError(str(path), ["file not found"]) from None
    except OSError as exc:
        raise SpecError(str(path), [f"cannot read file: {exc.strerror or exc}"]) from None
    return decode(data, str(path), what, limit)


def read_spec_text(path: Path) -> str:
    """The text of spec file PATH: a regular file of at most `MAX_BYTES` of UTF-8; `SpecError` otherwise."""
    try:
        return read_text_file(path, "a mesh spec is a YAML text file")
    except SpecError as exc:
        if exc.problems == ["file not found"]:
            raise SpecError(str(path), ["file not found; create one with `natsmesh init`"]) from None
        raise


def load_spec(path: str | Path | None = None) -> Mesh:
    """The mesh from PATH; without one, `./mesh.yaml` if present, else the embedded default (the seed)."""
    if path is None:
        local = Path(SPEC_FILENAME)
        if local.is_file():
            path = local
        else:
            return default_mesh()
    p = Path(path)
    return parse_spec(read_spec_text(p), source=str(p), base_dir=p.resolve().parent)


def default_mesh() -> Mesh:
    """The embedded default: the seed's topology with generated credentials, data under ./.natsmesh/seed."""
    return parse_spec(seed_spec_text(), source="<embedded default: the seed topology>")


@dataclass(frozen=True)
class InitResult:
    path: Path
    mesh: Mesh
    certs: Path | None  # where the CA and certificates were generated (`--tls`)


def default_mesh_name(path: Path) -> str:
    """The name `init` gives the mesh of a spec at PATH: its folder's, and for a spec not called mesh.yaml the
    file's too (`fg.yaml` in `shop/` is `shop-fg`), so two specs written in one folder are two meshes, with two
    data dirs."""

    def clean(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9_-]", "-", text).strip("-_")

    folder = clean(path.resolve().parent.name) or "natsmesh"
    stem = clean(path.stem) if path.name != SPEC_FILENAME else ""
    return f"{folder}-{stem}" if stem else folder


def init_spec(
    path: Path,
    *,
    domains: int = 5,
    nodes: int = 3,
    hub_nodes: int = 3,
    name: str | None = None,
    base: int | None = None,
    tls: bool = False,
    force: bool = False,
) -> InitResult:
    """Write a commented spec to PATH (`natsmesh.model.templates.init_spec_text`; NAME defaults to
    `default_mesh_name`), and for TLS the mesh's CA. ValueError for a plan that does not fit below the ephemeral
    ports."""
    if path.exists() and not force:
        raise WouldOverwriteError(f"{path} already exists; use --force to overwrite it")
    mesh_name = name or default_mesh_name(path)
    text = init_spec_text(
        name=mesh_name, domains=domains, nodes=nodes, hub_nodes=hub_nodes, base=base, tls=tls, require_owner=True
    )
    mesh = parse_spec(text, source=str(path), base_dir=path.resolve().parent)  # the template always validates
    path.write_text(text)
    return InitResult(path, mesh, ensure_certs(mesh).ca.parent if tls else None)


def placed_text(text: str, source: str, ref: str, cluster: str) -> str:
    """Spec TEXT with product REF's `cluster:` set to CLUSTER (`natsmesh move`): that one line changed or added,
    the rest as written; `SpecError` if the product is not in it or its entry cannot be edited in place."""
    doc = read_yaml(text, source)
    team, _, name = ref.partition("/")
    domains = doc.value.get("domains") if isinstance(doc.value, dict) else None
    for i, d in enumerate(domains or []):
        for j, p in enumerate((d.get("products") or []) if isinstance(d, dict) and d.get("name") == team else []):
            if isinstance(p, dict) and p.get("name") == name:
                return _placed(text, source, doc.lines, ("domains", i, "products", j), cluster, "cluster" in p)
    raise SpecError(source, [f"{ref} is not a product of this spec; set its `cluster: {cluster}` by hand"])


def _placed(
    text: str, source: str, lines: dict[tuple[object, ...], int], at: tuple[object, ...], cluster: str, has: bool
) -> str:
    rows = text.splitlines(keepends=True)
    key = "cluster" if has else "name"
    n = lines[(*at, key)] - 1
    row = rows[n]
    col = row.find(f"{key}:")
    if has:
        rows[n] = re.sub(r"(cluster:\s*)[^,}\s#]+", lambda m: m.group(1) + cluster, row, count=1)
    elif "{" in row[:col]:  # a flow mapping: `- {name: X, ...}`
        rows[n] = re.sub(r"(name:\s*[^,}\s#]+)", lambda m: f"{m.group(1)}, cluster: {cluster}", row, count=1)
    else:
        rows.insert(n + 1, " " * col + f"cluster: {cluster}\n")
    out = "".join(rows)
    placed = read_yaml(out, source).value
    product = placed["domains"][at[1]]["products"][at[3]]
    if col < 0 or not isinstance(product, dict) or product.get("cluster") != cluster:
        raise SpecError(source, [f"line {n + 1}: cannot set `cluster: {cluster}` here; set it by hand"])
    return out
