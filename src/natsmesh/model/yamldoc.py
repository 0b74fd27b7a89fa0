"""Reading a YAML document that anyone may have written: bounded, strict, and with a line for every path. Pure.

A spec file may hold any bytes, be of any size, nest without end or expand through aliases exponentially;
`read_yaml` turns each of those into a `SpecError` naming the file (and the line where there is one) in bounded
time and memory, before PyYAML builds anything. It also refuses a key given twice in one mapping, which YAML
itself would silently let the last one win, and maps every path into the document to its line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from natsmesh.errors import SpecError

MAX_BYTES = 2 * 1024 * 1024  # a spec for thousands of domains is a few hundred KiB
MAX_DEPTH = 32  # the spec's own nesting is 6 deep
MAX_NODES = 200_000  # values in the document once every alias is expanded

Path = tuple[Any, ...]
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML has it: much faster


@dataclass(frozen=True)
class YamlDocument:
    """The document's value (plain Python data) and the line where each path into it starts."""

    value: Any
    lines: dict[Path, int] = field(default_factory=dict)


def decode(data: bytes, source: str, what: str = "a mesh spec is a YAML text file", limit: int = MAX_BYTES) -> str:
    """DATA as UTF-8 text of at most LIMIT bytes; a `SpecError` with the line of the first bad byte (and WHAT the
    file should be) otherwise."""
    if len(data) > limit:
        raise SpecError(source, [f"file is larger than {limit:,} bytes: {what}, and small"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SpecError(source, [f"line {line}: not UTF-8 text (byte {exc.start}); {what}"]) from None


@dataclass
class _Frame:
    """One open mapping or sequence during the event scan."""

    path: Path
    mapping: bool
    index: int = 0  # sequences: the next item's index
    key: Any = None  # mappings: the key whose value comes next, or None while a key is expected
    keys: dict[Any, int] = field(default_factory=dict)  # mappings: key -> its line
    anchor: str | None = None


class _Scan:
    """Walks the event stream once: depth, expanded size, duplicate keys, and the line of every path."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.stack: list[_Frame] = []
        self.lines: dict[Path, int] = {}
        self.nodes = 0
        self.sizes: dict[str, int] = {}  # anchor -> values it stands for
        self.open: dict[str, int] = {}  # anchors whose node has not ended yet -> node count at its start

    def fail(self, line: int, why: str) -> SpecError:
        return SpecError(self.source, [f"line {line}: {why}"])

    def _place(self, event: Any, line: int) -> Path | None:
        """Where a node event goes; None for a mapping key (recorded, not descended into)."""
        if not self.stack:
            return ()
        top = self.stack[-1]
        if not top.mapping:
            top.index += 1
            return (*top.path, top.index - 1)
        if top.key is None:
            if not isinstance(event, yaml.ScalarEvent):
                raise self.fail(line, "a key must be a plain value, not a list, mapping or alias")
            key = event.value
            if key in top.keys and key != "<<":
                raise self.fail(line, f"key {key!r} is given twice in one mapping (first at line {top.keys[key]})")
            top.keys[key] = line
            top.key = key
            self.lines[(*top.path, key)] = line
            return None
        path = (*top.path, top.key)
        top.key = None
        return path

    def _count(self, n: int, line: int) -> None:
        self.nodes += n
        if self.nodes > MAX_NODES:
            raise self.fail(line, f"the document holds more than {MAX_NODES:,} values (aliases expanded)")

    def event(self, event: Any) -> None:
        line = event.start_mark.line + 1 if event.start_mark else 0
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self.open:
                raise self.fail(line, f"alias *{event.anchor} refers to the value it is part of")
            self._place(event, line)
            self._count(self.sizes.get(event.anchor or "", 1), line)
        elif isinstance(event, yaml.ScalarEvent | yaml.SequenceStartEvent | yaml.MappingStartEvent):
            path = self._place(event, line)
            self._count(1, line)
            if path is not None and path not in self.lines:
                self.lines[path] = line
            if event.anchor:
                self.open[event.anchor] = self.nodes - 1
                if isinstance(event, yaml.ScalarEvent):
                    self._close(event.anchor)
            if not isinstance(event, yaml.ScalarEvent):
                if len(self.stack) >= MAX_DEPTH:
                    raise self.fail(line, f"values nested more than {MAX_DEPTH} levels deep")
                mapping = isinstance(event, yaml.MappingStartEvent)
                self.stack.append(_Frame(path if path is not None else (), mapping, anchor=event.anchor))
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            frame = self.stack.pop()
            if frame.anchor:
                self._close(frame.anchor)

    def _close(self, anchor: str) -> None:
        start = self.open.pop(anchor)
        self.sizes[anchor] = self.nodes - start


def read_yaml(text: str, source: str) -> YamlDocument:
    """The one document in TEXT with its lines; `SpecError` for anything that is not a small, sane document."""
    if len(text) > MAX_BYTES:
        raise SpecError(source, [f"file is {len(text):,} characters, more than {MAX_BYTES:,}: a mesh spec is small"])
    scan = _Scan(source)
    try:
        for event in yaml.parse(text, Loader=_LOADER):
            scan.event(event)
        value = yaml.load(text, Loader=_LOADER)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, such as NUL
        line = text.count("\n", 0, exc.position) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise SpecError(source, [f"line {line}: not valid YAML: character U+{code:04X} is not allowed"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(source, [f"not valid YAML at {where}: {problem}"]) from None
    except (ValueError, OverflowError, RecursionError) as exc:  # e.g. an integer of more than 4300 digits
        raise SpecError(source, [f"a value cannot be read: {exc}"]) from None
    return YamlDocument(value, scan.lines)
