"""The data portal's pages: HTML drawn from the mesh (what exists, who owns it, who takes it) and the newest
snapshot (how fresh each copy is). Pure functions of those two; `natsmesh.serve.app` serves them, and the page
script (`static/portal.js`) polls `/api/state` to keep every live figure current without a reload.

Pages: `/` the topology (the hub, every domain, their servers and links), `/catalog` the products with search
(name, owner, domain, tags, description), `/products/DOMAIN/NAME` one product (subjects, limits, owner, its
copies with lag and last contact, its lineage drawn as SVG), `/health` what is stalled or down, and why.
"""

from __future__ import annotations

from html import escape
from typing import Any

from natsmesh.model.audit import iso_time
from natsmesh.model.mesh import Mesh
from natsmesh.model.products import Consumption, Product
from natsmesh.model.units import human_bytes, human_seconds
from natsmesh.observe.access import ProductAccess
from natsmesh.observe.snapshot import CopyState, Snapshot, copies, links
from natsmesh.observe.wire import StreamDetail

NAV = (("/", "Topology"), ("/catalog", "Catalog"), ("/health", "Health"))


def _page(mesh: Mesh, title: str, body: str, active: str) -> str:
    nav = "".join(
        f'<a href="{href}"{" class=active" if href == active else ""}>{escape(label)}</a>' for href, label in NAV
    )
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)} · natsmesh {escape(mesh.name)}</title>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        '<link rel=stylesheet href="/static/portal.css"></head>'
        f'<body data-mesh="{escape(mesh.name)}"><header><strong>natsmesh</strong> '
        f"<span class=mesh>{escape(mesh.name)}</span><nav>{nav}</nav>"
        "<span id=updated class=muted></span></header>"
        f"<main><h1>{escape(title)}</h1>{body}</main>"
        '<script src="/static/portal.js"></script></body></html>\n'
    )


def _copy_id(c: Consumption, source: str) -> str:
    return f"{c.ref}<-{source}"


def _lag_cell(cs: CopyState | None, copy_id: str) -> str:
    lag = "–" if cs is None or cs.lag is None else str(cs.lag)
    seen = "–" if cs is None or cs.seen_seconds is None else human_seconds(cs.seen_seconds)
    state = "unknown" if cs is None else ("stalled" if cs.stalled else "critical" if cs.critical else "ok")
    ident = escape(copy_id)
    return (
        f'<td class="lag" data-copy="{ident}" data-field=lag>{lag}</td>'
        f'<td data-copy="{ident}" data-field=seen>{seen}</td>'
        f'<td><span class="state {state}" data-copy="{ident}" data-field=state>{state}</span></td>'
    )


def topology(mesh: Mesh, snap: Snapshot | None) -> str:
    """The hub and every domain: servers (up or not), leaf links, and what each domain owns and takes."""
    linked: dict[str, list[bool]] = {}
    for ls in links(mesh, snap) if snap else []:
        linked.setdefault(ls.domain, []).append(ls.link is not None)

    def servers(names: list[str]) -> str:
        dots = []
        for n in names:
            up = "unknown" if snap is None else ("up" if snap.up(n) else "down")
            dots.append(f'<li><span class="dot {up}" data-server="{escape(n)}"></span>{escape(n)}</li>')
        return f"<ul class=servers>{''.join(dots)}</ul>"

    cards = [
        f'<section class="cluster hub"><h2>{escape(mesh.hub.name)} <small>hub</small></h2>'
        f"{servers([n.name for n in mesh.hub.nodes])}</section>"
    ]
    for d in mesh.domains:
        state = linked.get(d.name)
        link = "unknown" if not state else "up" if all(state) else "down"
        owns = [p for p in mesh.products if p.domain == d.name]
        takes = [c for c in mesh.consumptions if c.domain == d.name]
        items = "".join(
            f'<li><a href="/products/{escape(p.domain)}/{escape(p.name)}">{escape(p.name)}</a></li>' for p in owns
        )
        taken = "".join(f"<li>{escape(c.stream)} ← {escape(', '.join(s.ref for s in c.sources))}</li>" for c in takes)
        cards.append(
            f'<section class=cluster data-domain="{escape(d.name)}"><h2>{escape(d.name)}</h2>'
            f'<p>link to the hub: <span class="state {link}" data-link="{escape(d.name)}">{link}</span></p>'
            f"{servers([n.name for n in d.nodes])}"
            f"<h3>owns</h3><ul>{items or '<li class=muted>nothing</li>'}</ul>"
            f"<h3>takes</h3><ul>{taken or '<li class=muted>nothing</li>'}</ul></section>"
        )
    body = f"<div class=topology>{''.join(cards)}</div>"
    return _page(mesh, "Topology", body, "/")


def matches(p: Product, query: str) -> bool:
    """Whether product P matches every word of QUERY (name, owner, domain, tags, description; any case)."""
    text = " ".join([p.ref, p.owner, p.description, *p.tags]).lower()
    return all(word in text for word in query.lower().split())


def catalog(mesh: Mesh, query: str = "") -> str:
    """The products, those matching QUERY."""
    found = [p for p in mesh.products if matches(p, query)]
    rows = "".join(
        f'<tr class=product><td><a href="/products/{escape(p.domain)}/{escape(p.name)}">{escape(p.ref)}</a></td>'
        f"<td>{escape(p.owner or p.domain)}</td><td>{escape(', '.join(p.tags))}</td>"
        f"<td>{escape(p.description)}</td>"
        f"<td>{sum(1 for c in mesh.consumptions for s in c.sources if s.ref == p.ref)}</td></tr>"
        for p in found
    )
    form = (
        '<form class=search action="/catalog"><input type=search name=q placeholder="name, owner, tag, words…" '
        f'value="{escape(query)}" aria-label="search the catalog"><button>Search</button></form>'
    )
    table = (
        "<table class=catalog><thead><tr><th>product</th><th>owner</th><th>tags</th><th>description</th>"
        f"<th>copies</th></tr></thead><tbody>{rows}</tbody></table>"
        if found
        else f'<p class="muted empty">no product matches “{escape(query)}”</p>'
    )
    count = f"<p class=muted>{len(found)} of {len(mesh.products)} products</p>"
    return _page(mesh, "Catalog", form + count + table, "/catalog")


def lineage_svg(mesh: Mesh, product: Product, snap: Snapshot | None) -> str:
    """PRODUCT and every copy of it, drawn left to right; each copy coloured by its state."""
    takers = [c for c in mesh.consumptions if any(s.ref == product.ref for s in c.sources)]
    states = {(cs.consumption.ref, cs.source.ref): cs for cs in copies(mesh, snap)} if snap else {}
    row, width = 56, 640
    height = max(1, len(takers)) * row + 24
    mid = height / 2
    parts = [
        f'<svg class=lineage xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role=img aria-label="lineage of {escape(product.ref)}">',
        f'<rect x=8 y="{mid - 18}" width=220 height=36 rx=6 class=node-product></rect>'
        f'<text x=118 y="{mid + 5}" text-anchor=middle>{escape(product.ref)}</text>',
    ]
    for i, c in enumerate(takers):
        y = 12 + i * row + row / 2
        cs = states.get((c.ref, product.ref))
        state = "unknown" if cs is None else ("stalled" if cs.stalled else "critical" if cs.critical else "ok")
        ident = escape(_copy_id(c, product.ref))
        parts.append(
            f'<path d="M228 {mid} C 300 {mid}, 320 {y}, 392 {y}" class=edge></path>'
            f'<text x=310 y="{(mid + y) / 2 - 6}" text-anchor=middle class=edge-label>{escape(c.mode)}</text>'
            f'<rect x=392 y="{y - 18}" width=240 height=36 rx=18 class="node-copy {state}" data-copy="{ident}" '
            f"data-field=node></rect>"
            f'<text x=512 y="{y + 5}" text-anchor=middle>{escape(c.ref)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _held(detail: StreamDetail | None) -> str:
    return (
        f"{detail.messages} messages, {human_bytes(detail.bytes)}, last sequence {detail.last_seq}" if detail else "–"
    )


def _when(t: int) -> str:
    return iso_time(t).replace("T", " ")[:16] + " UTC" if t else "–"


def access_section(access: ProductAccess | None) -> str:
    """Who holds access to the product and who asked (with each grant's expiry), and its recent audit entries.
    Requests are made and answered from a domain's folder with its own key (`natsmesh access ...`): the portal
    holds no domain's key, so it shows them and signs nothing."""
    if access is None:
        return ""
    rows = "".join(
        f'<tr class="access {escape(a.status)}"><td>{escape(a.requester)}</td><td>{escape(a.copy)}</td>'
        f'<td>{escape(a.mode)}</td><td><span class="state {escape(a.status)}">{escape(a.status)}</span></td>'
        f"<td>{escape(_when(a.expires) if a.expires else 'until revoked' if a.status == 'granted' else '–')}</td>"
        f"<td>{escape(a.reason)}</td><td>{escape(a.answer)}</td><td><code>{escape(a.id)}</code></td></tr>"
        for a in access.requests
    )
    requests = (
        "<table class=access><thead><tr><th>domain</th><th>copy</th><th>mode</th><th>status</th><th>expires</th>"
        f"<th>reason</th><th>answer</th><th>request</th></tr></thead><tbody>{rows}</tbody></table>"
        if rows
        else "<p class=muted>no domain has asked for it</p>"
    )
    events = "".join(
        f"<tr class=audit><td>{escape(_when(e.issued))}</td><td>{escape(e.actor)}</td><td>{escape(e.what)}</td>"
        f"<td>{escape(e.reason or e.refused)}</td><td>{'valid' if e.valid else 'INVALID'}</td></tr>"
        for e in access.entries
    )
    audit = (
        "<table class=audit><thead><tr><th>when</th><th>who</th><th>what</th><th>why</th><th>signature</th>"
        f"</tr></thead><tbody>{events}</tbody></table>"
        if events
        else "<p class=muted>no audit entries</p>"
    )
    how = (
        "<p class=muted>Ask with <code>natsmesh --bundle FOLDER access request</code> from your domain's folder; "
        "its owner answers with <code>access grant|deny|revoke</code>, signed with its own key.</p>"
    )
    return f"<h2>Access</h2>{requests}{how}<h2>Recent audit</h2>{audit}"


def product_page(mesh: Mesh, product: Product, snap: Snapshot | None, access: ProductAccess | None = None) -> str:
    """One product: what it is, its limits, its copies with their lag and last contact, who holds or asked for
    access (operator mode), its lineage."""
    limits = [
        ("max age", human_seconds(product.max_age) if product.max_age else "unlimited"),
        ("max bytes", human_bytes(product.max_bytes) if product.max_bytes > 0 else "unlimited"),
        ("max messages", str(product.max_msgs) if product.max_msgs > 0 else "unlimited"),
        ("replicas", str(product.replicas)),
        ("storage", product.storage),
    ]
    facts = [
        ("owner", product.owner or product.domain),
        ("domain", product.domain),
        ("subjects", ", ".join(product.subjects)),
        ("tags", ", ".join(product.tags) or "–"),
        ("public", "yes" if product.public else "no"),
        *limits,
    ]
    held = _held(snap.stream(product.domain, product.name, mesh) if snap else None)
    dl = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts)
    dl += f'<dt>holds</dt><dd data-product="{escape(product.ref)}" data-field=held>{escape(held)}</dd>'
    states = {(cs.consumption.ref, cs.source.ref): cs for cs in copies(mesh, snap)} if snap else {}
    takers = [c for c in mesh.consumptions if any(s.ref == product.ref for s in c.sources)]
    rows = "".join(
        f"<tr class=copy><td>{escape(c.ref)}</td><td>{escape(c.mode)}</td>"
        f"<td>{c.lag_critical} / {human_seconds(c.seen_critical)}</td>"
        f"{_lag_cell(states.get((c.ref, product.ref)), _copy_id(c, product.ref))}</tr>"
        for c in takers
    )
    copies_table = (
        "<table class=copies><thead><tr><th>copy</th><th>mode</th><th>critical at (lag / silence)</th><th>lag</th>"
        f"<th>last contact</th><th>state</th></tr></thead><tbody>{rows}</tbody></table>"
        if takers
        else "<p class=muted>no domain takes it yet</p>"
    )
    body = (
        f"<p class=description>{escape(product.description)}</p><dl class=facts>{dl}</dl>"
        f"<h2>Copies</h2>{copies_table}{access_section(access)}<h2>Lineage</h2>{lineage_svg(mesh, product, snap)}"
    )
    return _page(mesh, product.ref, body, "/catalog")


def health(mesh: Mesh, snap: Snapshot | None) -> str:
    """What is wrong now, and why: servers that did not answer, links missing at the hub, copies stalled or
    behind."""
    items: list[str] = []
    if snap is None:
        items.append("<li>no snapshot of the mesh yet</li>")
    else:
        items += [f"<li class=down>server {escape(s)} did not answer</li>" for s in snap.missing]
        items += [
            f"<li class=down>{escape(ls.server)} has no link in account {escape(ls.account)} at the hub</li>"
            for ls in links(mesh, snap)
            if ls.link is None
        ]
        for cs in copies(mesh, snap):
            c = cs.consumption
            if cs.upstream is None:
                why = "its leader did not answer, or it does not read this upstream (not applied?)"
            elif cs.stalled:
                silent, limit = human_seconds(cs.seen_seconds or 0), human_seconds(c.seen_critical)
                why = f"heard nothing for {silent} (critical at {limit})"
            elif cs.critical:
                why = f"{cs.lag} messages behind (critical at {c.lag_critical})"
            else:
                continue
            items.append(
                f'<li class=stalled data-copy="{escape(_copy_id(c, cs.source.ref))}">{escape(c.ref)} ← '
                f"{escape(cs.source.ref)}: {escape(why)}</li>"
            )
    body = (
        f"<ul class=health>{''.join(items)}</ul>"
        if items
        else "<p class=ok>everything answers and every copy is current</p>"
    )
    return _page(mesh, "Health", body, "/health")


def state(mesh: Mesh, snap: Snapshot) -> dict[str, Any]:
    """What the page script needs to refresh every live figure (`/api/state`)."""
    linked: dict[str, list[bool]] = {}
    for ls in links(mesh, snap):
        linked.setdefault(ls.domain, []).append(ls.link is not None)
    out_copies = {}
    for cs in copies(mesh, snap):
        out_copies[_copy_id(cs.consumption, cs.source.ref)] = {
            "lag": cs.lag,
            "seen": human_seconds(cs.seen_seconds) if cs.seen_seconds is not None else None,
            "state": "stalled" if cs.stalled else "critical" if cs.critical else "ok",
        }
    return {
        "mesh": mesh.name,
        "taken": snap.taken,
        "servers": {n.name: snap.up(n.name) for n in mesh.nodes()},
        "links": {d: all(v) for d, v in linked.items()},
        "copies": out_copies,
        "products": {p.ref: _held(snap.stream(p.domain, p.name, mesh)) for p in mesh.products},
    }
