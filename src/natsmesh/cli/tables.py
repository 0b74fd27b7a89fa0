"""Every table natsmesh prints, drawn from the library's results. The only module that knows rich tables.

The reports follow the seed's natscli output: one row per server with a totals row, a table per meta group.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from rich import box
from rich.table import Table
from rich.text import Text

from natsmesh.model.units import human_bytes, human_seconds, visible

if TYPE_CHECKING:
    from natsmesh.model.access import Ledger
    from natsmesh.model.mesh import Mesh
    from natsmesh.model.users import ServiceUser
    from natsmesh.observe.access import AuditLog
    from natsmesh.observe.lag import LagReport
    from natsmesh.observe.reports import JetStreamReport, LeafnodesReport, ServersReport
    from natsmesh.reconcile.catalog import Catalog
    from natsmesh.reconcile.plan import Plan
    from natsmesh.render.policy import Policy
    from natsmesh.run.lifecycle import MeshStatus

Cell = str | Text  # a str is shown as it is (no markup, control characters written out); a Text keeps its style
Column = tuple[str, Callable[[Any], Cell]]  # header, cell of a row


def inert(cell: Cell) -> Text:
    """CELL as a table shows it: text from the spec, the catalog or a server is never markup (`[link=…]` is shown,
    not followed) and never a terminal escape (written out as `\\x1b`)."""
    return cell if isinstance(cell, Text) else Text(visible(cell))


def _n(value: int) -> str:
    return f"{value:,}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}ms"


FORMATS: dict[str, Callable[[Any], str]] = {
    "#": lambda v: "-" if v is None else f"{v:,}",  # a count
    "@": human_bytes,  # a size
    "~": human_seconds,  # a duration
    "": lambda v: "" if v is None else str(v),
}


def columns(spec: str) -> list[Column]:
    """Columns from `Header=field|...`; a field marked `#` is a count, `@` a size, `~` a duration."""
    out: list[Column] = []
    for part in spec.split("|"):
        header, field = part.split("=")
        mark = field[0] if field[0] in "#@~" else ""
        name = field.removeprefix(mark)
        out.append((header, _cell(name, FORMATS[mark])))
    return out


def _cell(name: str, fmt: Callable[[Any], str]) -> Callable[[Any], str]:
    return lambda row: fmt(getattr(row, name))


def table(title: str, columns: Sequence[Column], rows: Sequence[Any], left: int, total: Sequence[str] = ()) -> Table:
    """A report table: the first LEFT columns left-aligned, the rest numbers; TOTAL, if given, as a last section."""
    t = Table(box=box.SIMPLE_HEAD, title=inert(title))
    for i, (header, _) in enumerate(columns):
        t.add_column(header, justify="left" if i < left else "right")
    for row in rows:
        t.add_row(*(inert(cell(row)) for _, cell in columns))
    if total:
        t.add_section()
        t.add_row(*(inert(c) for c in total), *([""] * (len(columns) - len(total))))
    return t


# ---------------------------------------------------------------------------------------------------------------
# The reports

JETSTREAM: list[Column] = [
    ("Server", lambda s: s.name + ("*" if s.meta_leader else "")),
    *columns(
        "Cluster=cluster|Domain=domain|Streams=#streams|Consumers=#consumers|Messages=#messages|Bytes=@bytes"
        "|Memory=@memory|File=@storage|API Req=#api_requests|API Err=#api_errors"
    ),
]
PEERS: list[Column] = [
    *columns("Name=name|ID=id"),
    ("Leader", lambda p: "yes" if p.leader else ""),
    ("Current", lambda p: str(p.current).lower()),
    ("Online", lambda p: str(p.online).lower()),
    *columns("Active=~active_seconds|Lag=#lag"),
]


def tables_jetstream(rep: JetStreamReport) -> list[Table]:
    tot = rep.totals
    total = [
        f"{len(rep.servers)} servers",
        f"{len({s.cluster for s in rep.servers})} clusters",
        f"{len({s.domain for s in rep.servers})} domains",
        *(_n(tot[k]) for k in ("streams", "consumers", "messages")),
        *(human_bytes(tot[k]) for k in ("bytes", "memory", "storage")),
        *(_n(tot[k]) for k in ("api_requests", "api_errors")),
    ]
    out = [table("JetStream Summary", JETSTREAM, rep.servers, 3, total)]
    for g in rep.meta_groups:
        out.append(table(f"RAFT Meta Group Information: domain {g.domain}", PEERS, g.peers, 7))
    return out


SERVERS: list[Column] = [
    *columns("Name=name|Cluster=cluster|Host=host|Version=version"),
    ("JS", lambda s: s.domain if s.jetstream else "no"),
    *columns("Conns=#connections|Subs=#subscriptions|Routes=routes|GWs=gateways|Mem=@memory"),
    ("CPU %", lambda s: f"{s.cpu:.0f}"),
    *columns("Cores=cores|Slow=slow_consumers|Uptime=~uptime_seconds"),
    ("RTT", lambda s: _ms(s.rtt_ms)),
]
CLUSTERS = columns(
    "Cluster=cluster|Node Count=nodes|Outgoing Gateways=gateways_out|Incoming Gateways=gateways_in"
    "|Connections=#connections"
)


def tables_servers(rep: ServersReport) -> list[Table]:
    tot = rep.totals
    total = [f"{tot['servers']} servers", f"{len(rep.clusters)} clusters", "", "", ""]
    total += [_n(tot["connections"]), _n(tot["subscriptions"]), "", "", human_bytes(tot["memory"])]
    return [
        table("Server Overview", SERVERS, rep.servers, 5, total),
        table("Cluster Overview", CLUSTERS, rep.clusters, 1),
    ]


LINKS: list[Column] = [
    *columns("Domain=domain|Leaf Server=leaf_server|Account=account|Hub Server=hub_server"),
    ("RTT", lambda x: _ms(x.rtt_ms)),
    *columns("Msgs In=#in_msgs|Msgs Out=#out_msgs|Bytes In=@in_bytes|Bytes Out=@out_bytes|Subs=#subscriptions"),
]


def tables_leafnodes(rep: LeafnodesReport) -> list[Table]:
    links = rep.links
    total = [f"{len({x.domain for x in links})} domains", f"{len(links)} links", "", "", ""]
    total += [_n(sum(x.in_msgs for x in links)), _n(sum(x.out_msgs for x in links))]
    total += [human_bytes(sum(x.in_bytes for x in links)), human_bytes(sum(x.out_bytes for x in links))]
    return [table("Leafnode Links", LINKS, links, 4, total)]


REPORT_TABLES: dict[str, Callable[[Any], list[Table]]] = {
    "jetstream": tables_jetstream,
    "servers": tables_servers,
    "leafnodes": tables_leafnodes,
}


# ---------------------------------------------------------------------------------------------------------------
# The other commands

ACTION_STYLE = {
    "create": "green",
    "update": "yellow",
    "delete": "red",
    "would-delete": "magenta",
    "refused": "bold red",
}


def _action(action: str) -> Text:
    return Text(action, style=ACTION_STYLE.get(action, ""))


PLAN: list[Column] = [
    ("Action", lambda c: _action(c.action)),
    *columns("Domain=domain|Kind=kind|Name=name|Detail=detail"),
]


def tables_plan(plan: Plan) -> list[Table]:
    """The plan of `natsmesh apply`: one row per stream or catalog entry."""
    return [table(f"Plan for mesh {plan.mesh}", PLAN, plan.changes, 5)]


LAG = columns(
    "Domain=domain|Stream=stream|Mode=mode|Upstream=upstream|Upstream Last=#upstream_last_seq"
    "|Local Last=#local_last_seq|Lag=#lag|Last Active=~active_seconds|Error=error"
)


def tables_lag(rep: LagReport) -> list[Table]:
    columns = LAG
    if any(r.access for r in rep.rows):  # copies made by request: what each owner said
        columns = [
            *LAG[:-1],
            ("Access", lambda r: Text(visible(r.access or ""), style="red" if r.stopped else "")),
            LAG[-1],
        ]
    return [table("Mirror and Source Lag", columns, rep.rows, 4)]


def _consumers(e: dict[str, Any]) -> str:
    return ", ".join(f"{c['domain']}/{c['stream']} ({c['mode']})" for c in e.get("consumed_by") or [])


CATALOG: list[Column] = [
    ("Product", lambda e: e["ref"]),
    ("Owner", lambda e: e.get("owner", "")),
    ("Subjects", lambda e: " ".join(e.get("subjects") or [])),
    ("Tags", lambda e: ",".join(e.get("tags") or [])),
    ("Replicas", lambda e: str(e.get("replicas", ""))),
    ("Consumed By", _consumers),
    ("Description", lambda e: e.get("description", "")),
]


def tables_catalog(catalog: Catalog) -> list[Table]:
    return [table("Data Product Catalog", CATALOG, catalog.products, 7)]


TOPOLOGY: list[Column] = [
    ("Cluster / domain", lambda cn: cn[0].name),
    ("Folder", lambda cn: cn[0].folder),
    ("Server", lambda cn: cn[1].name),
    ("Host", lambda cn: cn[1].host if cn[1].bind == cn[1].host else f"{cn[1].host} (binds {cn[1].bind})"),
    ("Client", lambda cn: str(cn[1].client_port)),
    ("Route", lambda cn: str(cn[1].cluster_port or "-")),
    ("HTTP", lambda cn: str(cn[1].http_port)),
    ("Leafnode", lambda cn: str(cn[1].leafnode_port or "-")),
]


def tables_topology(mesh: Mesh) -> list[Table]:
    rows = [(c, n) for c in mesh.clusters for n in c.nodes]
    return [table(f"mesh {mesh.name} ({mesh.source})", TOPOLOGY, rows, len(TOPOLOGY))]


STATUS: list[Column] = [
    *columns("Node=name|Cluster=cluster"),
    ("PID", lambda n: str(n.pid or "-")),
    *columns("State=state|Restarts=restarts"),
    ("Ready", lambda n: "yes" if n.ready else Text("no", style="red")),
    ("Problems", lambda n: "; ".join(n.problems)),
]


def tables_status(mesh_name: str, st: MeshStatus) -> list[Table]:
    where = f"supervisor pid {st.supervisor_pid}" if st.supervisor_pid else "nodes on their own hosts"
    return [table(f"mesh {mesh_name}: {where}", STATUS, st.nodes, len(STATUS))]


RULES: list[Column] = [
    ("Effect", lambda r: Text(r.effect, style="green" if r.effect == "allow" else "red")),
    *columns("Action=action|Target=target|Why=why"),
]


def tables_policy(policy: Policy) -> list[Table]:
    return [table(f"policy of {d}", RULES, rs, len(RULES)) for d, rs in policy.rules.items()]


def _when(t: int) -> str:
    from natsmesh.model.audit import iso_time

    return iso_time(t).replace("T", " ").rstrip("Z") if t else "-"


ACCESS_STYLE = {"granted": "green", "pending": "yellow", "denied": "red", "revoked": "red", "expired": "red"}
ACCESS: list[Column] = [
    *columns("Request=id|Requester=requester|Product=product|Copy=copy|Mode=mode"),
    ("Status", lambda a: Text(a.status, style=ACCESS_STYLE.get(a.status, ""))),
    ("Expires", lambda a: _when(a.expires) if a.expires else "-"),
    ("Reason", lambda a: a.reason),
    ("Answer", lambda a: a.answer),
]
REFUSED: list[Column] = [
    ("Document", lambda r: r.doc.id),
    ("By", lambda r: r.doc.domain),
    ("Kind", lambda r: r.doc.kind),
    ("Refused", lambda r: Text(visible(r.why), style="red")),
]


def tables_access(ledger: Ledger) -> list[Table]:
    rows = sorted(ledger.requests.values(), key=lambda a: (a.requested, a.id))
    out = [table("Access requests", ACCESS, rows, len(ACCESS))]
    if ledger.refused:
        out.append(table("Documents refused", REFUSED, ledger.refused, len(REFUSED)))
    return out


AUDIT: list[Column] = [
    ("Time", lambda e: _when(e.issued)),
    *columns("Actor=actor|What=what|About=about|Reason=reason"),
    ("Signature", lambda e: Text("valid", style="green") if e.valid else Text("INVALID", style="bold red")),
    ("Refused", lambda e: Text(visible(e.refused), style="red")),
]


def tables_audit(log: AuditLog) -> list[Table]:
    return [table(f"Audit trail ({log.scope})", AUDIT, log.entries, len(AUDIT))]


USERS: list[Column] = [
    *columns("Name=name|Role=role"),
    ("Streams", lambda u: ", ".join(u.streams) or "-"),
    ("Issued", lambda u: _when(u.issued)),
    ("Expires", lambda u: _when(u.expires)),
    ("Status", lambda u: Text(u.status(), style="green" if u.status() == "active" else "red")),
    ("Key", lambda u: u.key),
]


def tables_users(users: list[ServiceUser]) -> list[Table]:
    return [table("Users of the domain's own", USERS, users, len(USERS))]
