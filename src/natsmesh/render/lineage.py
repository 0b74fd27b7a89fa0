"""The lineage graph of products and consumptions, as text, Mermaid or Graphviz DOT. Pure."""

from __future__ import annotations

from natsmesh.model.mesh import Mesh
from natsmesh.model.products import lineage_edges

FORMATS = ("text", "mermaid", "dot")


def _label(ref: str, away: dict[str, str]) -> str:
    return f"{ref} @ {away[ref]}" if ref in away else ref


def lineage(mesh: Mesh, fmt: str = "text") -> str:
    """The graph of products and consumptions as `text`, `mermaid` or `dot`."""
    edges = lineage_edges(mesh.consumptions)
    products = [p.ref for p in mesh.products]
    derived = [c.ref for c in mesh.consumptions]
    # where a product lives when that is not its domain's own cluster (`clusters` in the spec)
    away = {p.ref: p.domain for p in mesh.products if p.domain != p.owner_domain}
    if fmt == "text":
        lines = []
        for ref in products + derived:
            outs = [(dst, how) for src, dst, how in edges if src == ref]
            kind = "product" if ref in products else "stream"
            lines.append(f"{ref} ({kind}{f', on cluster {away[ref]}' if ref in away else ''})")
            lines += [f"  -> {dst} ({how})" for dst, how in outs]
        return "\n".join(lines) + "\n"
    ids = {ref: f"n{i}" for i, ref in enumerate(products + derived)}
    if fmt == "mermaid":
        lines = ["flowchart LR"]
        lines += [f'  {ids[r]}["{_label(r, away)}"]' for r in products]
        lines += [f'  {ids[r]}(["{r}"])' for r in derived]
        lines += [f"  {ids[s]} -->|{how}| {ids[d]}" for s, d, how in edges]
        return "\n".join(lines) + "\n"
    if fmt == "dot":
        lines = ["digraph lineage {", "  rankdir=LR;"]
        lines += [f'  {ids[r]} [label="{_label(r, away)}", shape=box];' for r in products]
        lines += [f'  {ids[r]} [label="{r}", shape=ellipse];' for r in derived]
        lines += [f'  {ids[s]} -> {ids[d]} [label="{how}"];' for s, d, how in edges]
        lines.append("}")
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown lineage format {fmt!r}: use {', '.join(FORMATS)}")
