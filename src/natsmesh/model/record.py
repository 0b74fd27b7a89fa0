"""A frozen record that prints itself as JSON: the base of the results the library returns. Pure."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Record:
    """A frozen record that prints as JSON: its fields as `dataclasses.asdict` gives them (nested records as
    dicts too), except those its class names in JSON_OMIT."""

    JSON_OMIT: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for name in self.JSON_OMIT:
            del out[name]
        return out
