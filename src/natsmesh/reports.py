"""Reports from system-account replies: plain data for `--json`, and rich tables for people.

The three reports follow the seed's natscli output: the JetStream Summary with totals plus one RAFT meta-group
table per domain, the Server and Cluster Overviews, and a table of leaf links. `build_*` are pure (replies in,
dict out); `tables_*` only format those dicts.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from rich import box
from rich.table import Table

from natsmesh.observe import Replies
from natsmesh.spec import Mesh

_DUR = re.compile(r"([\d.]+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(text: str | None) -> float | None:
    """Seconds from a Go duration string such as `612µs`, `16.5ms` or `1m2s`."""
    if not text:
        return None
    parts = _DUR.findall(text)
    return sum(float(v) * _UNIT[u] for v, u in parts) if parts else None


def _iso(text: str | None) -> datetime | None:
    if not text:
        return None
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?", text)
    if not m:
        return None
    frac = (m.group(2) or ".0")[:7]
    tz = "+00:00" if (m.group(3) or "Z") == "Z" else m.group(3)
    return datetime.fromisoformat(m.group(1) + frac + tz)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1:
        return f"{s * 1000:.2f}ms"
    if s < 120:
        return f"{s:.2f}s"
    minutes, sec = divmod(int(s), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return (f"{days}d" if days else "") + (f"{hours}h" if hours or days else "") + f"{minutes}m{sec}s"


def _table(title: str, columns: str, left: int) -> Table:
    """A report table; COLUMNS separated by `|`, the first LEFT of them left-aligned, the rest numbers."""
    t = Table(box=box.SIMPLE_HEAD, title=title)
    for i, col in enumerate(columns.split("|")):
        t.add_column(col, justify="left" if i < left else "right")
    return t


def _order(mesh: Mesh) -> dict[str, int]:
    return {n.name: i for i, n in enumerate(mesh.nodes())}


def _sorted(mesh: Mesh, names: Any) -> list[str]:
    order = _order(mesh)
    return sorted(names, key=lambda n: (order.get(n, len(order)), n))


def _identity(mesh: Mesh, name: str, server: dict[str, Any]) -> dict[str, Any]:
    try:
        cluster = mesh.cluster_of(name).name
    except KeyError:
        cluster = server.get("cluster") or ""
    return {"name": name, "cluster": server.get("cluster") or cluster, "domain": server.get("domain") or cluster}


# ---------------------------------------------------------------------------------------------------------------
# report jetstream


def build_jetstream(mesh: Mesh, jsz: Replies) -> dict[str, Any]:
    servers = []
    totals = dict.fromkeys(
        ("streams", "consumers", "messages", "bytes", "memory", "storage", "api_requests", "api_errors"), 0
    )
    for name in _sorted(mesh, jsz.replies):
        rep = jsz.replies[name]
        data = rep.get("data") or {}
        meta = data.get("meta_cluster") or {}
        row = _identity(mesh, name, rep.get("server") or {}) | {
            "meta_leader": meta.get("leader") == name or (not meta and bool(data)),
            "streams": int(data.get("streams") or 0),
            "consumers": int(data.get("consumers") or 0),
            "messages": int(data.get("messages") or 0),
            "bytes": int(data.get("bytes") or 0),
            "memory": int(data.get("memory") or 0),
            "storage": int(data.get("storage") or 0),
            "api_requests": int((data.get("api") or {}).get("total") or 0),
            "api_errors": int((data.get("api") or {}).get("errors") or 0),
        }
        for k in totals:
            totals[k] += row[k]
        servers.append(row)

    groups = []
    for cluster in mesh.clusters:
        names = [n.name for n in cluster.nodes]
        views = {n: (jsz.replies.get(n, {}).get("data") or {}).get("meta_cluster") or {} for n in names}
        leader = next((v.get("leader") for v in views.values() if v.get("leader")), None)
        if len(names) == 1 and names[0] in jsz.replies:
            leader = names[0]
        lview = views.get(leader or "", {})
        peers = []
        replicas = {r.get("name"): r for r in lview.get("replicas") or []}
        for n in names:
            if n == leader:
                peers.append(
                    {
                        "name": n,
                        "id": lview.get("peer", ""),
                        "leader": True,
                        "current": True,
                        "online": True,
                        "active_seconds": 0.0,
                        "lag": 0,
                    }
                )
            elif n in replicas:
                r = replicas[n]
                peers.append(
                    {
                        "name": n,
                        "id": r.get("peer", ""),
                        "leader": False,
                        "current": bool(r.get("current")),
                        "online": not r.get("offline", False),
                        "active_seconds": (r.get("active") or 0) / 1e9,
                        "lag": int(r.get("lag") or 0),
                    }
                )
            else:
                peers.append(
                    {
                        "name": n,
                        "id": "",
                        "leader": False,
                        "current": False,
                        "online": n in jsz.replies,
                        "active_seconds": None,
                        "lag": None,
                    }
                )
        groups.append(
            {
                "domain": cluster.domain,
                "cluster": cluster.name,
                "leader": leader,
                "cluster_size": lview.get("cluster_size", len(names)),
                "peers": peers,
            }
        )
    return {
        "report": "jetstream",
        "servers": servers,
        "totals": totals,
        "meta_groups": groups,
        "missing": jsz.missing,
        "seconds": round(jsz.seconds, 4),
    }


def tables_jetstream(rep: dict[str, Any]) -> list[Table]:
    t = _table(
        "JetStream Summary",
        "Server|Cluster|Domain|Streams|Consumers|Messages|Bytes|Memory|File|API Req|API Err",
        left=3,
    )
    for s in rep["servers"]:
        t.add_row(
            s["name"] + ("*" if s["meta_leader"] else ""),
            s["cluster"],
            s["domain"],
            f"{s['streams']:,}",
            f"{s['consumers']:,}",
            f"{s['messages']:,}",
            human_bytes(s["bytes"]),
            human_bytes(s["memory"]),
            human_bytes(s["storage"]),
            f"{s['api_requests']:,}",
            f"{s['api_errors']:,}",
        )
    tot = rep["totals"]
    t.add_section()
    t.add_row(
        f"{len(rep['servers'])} servers",
        f"{len({s['cluster'] for s in rep['servers']})} clusters",
        f"{len({s['domain'] for s in rep['servers']})} domains",
        f"{tot['streams']:,}",
        f"{tot['consumers']:,}",
        f"{tot['messages']:,}",
        human_bytes(tot["bytes"]),
        human_bytes(tot["memory"]),
        human_bytes(tot["storage"]),
        f"{tot['api_requests']:,}",
        f"{tot['api_errors']:,}",
    )
    out = [t]
    for g in rep["meta_groups"]:
        mt = _table(f"RAFT Meta Group Information: domain {g['domain']}", "Name|ID|Leader|Current|Online|Active|Lag", 7)
        for p in g["peers"]:
            mt.add_row(
                p["name"],
                p["id"],
                "yes" if p["leader"] else "",
                str(p["current"]).lower(),
                str(p["online"]).lower(),
                human_seconds(p["active_seconds"]),
                "-" if p["lag"] is None else f"{p['lag']:,}",
            )
        out.append(mt)
    return out


# ---------------------------------------------------------------------------------------------------------------
# report servers


def build_servers(mesh: Mesh, statsz: Replies) -> dict[str, Any]:
    servers = []
    for name in _sorted(mesh, statsz.replies):
        rep = statsz.replies[name]
        info = rep.get("server") or {}
        st = rep.get("statsz") or {}
        start, now = _iso(st.get("start")), _iso(info.get("time"))
        servers.append(
            _identity(mesh, name, info)
            | {
                "host": info.get("host", ""),
                "version": info.get("ver", ""),
                "jetstream": bool(info.get("jetstream")),
                "connections": int(st.get("connections") or 0),
                "subscriptions": int(st.get("subscriptions") or 0),
                "routes": len({r.get("name") for r in st.get("routes") or []}),
                "gateways": len(st.get("gateways") or []),
                "memory": int(st.get("mem") or 0),
                "cpu": float(st.get("cpu") or 0),
                "cores": int(st.get("cores") or 0),
                "slow_consumers": int(st.get("slow_consumers") or 0),
                "uptime_seconds": (now - start).total_seconds() if start and now else None,
                "rtt_ms": round(statsz.rtt.get(name, 0) * 1000, 3),
            }
        )
    clusters = []
    for cluster in mesh.clusters:
        rows = [s for s in servers if s["cluster"] == cluster.name]
        clusters.append(
            {
                "cluster": cluster.name,
                "nodes": len(rows),
                "expected_nodes": len(cluster.nodes),
                "gateways_out": 0,
                "gateways_in": 0,
                "connections": sum(s["connections"] for s in rows),
            }
        )
    totals = {
        "servers": len(servers),
        "connections": sum(s["connections"] for s in servers),
        "subscriptions": sum(s["subscriptions"] for s in servers),
        "memory": sum(s["memory"] for s in servers),
    }
    return {
        "report": "servers",
        "servers": servers,
        "clusters": clusters,
        "totals": totals,
        "missing": statsz.missing,
        "seconds": round(statsz.seconds, 4),
    }


def tables_servers(rep: dict[str, Any]) -> list[Table]:
    t = _table(
        "Server Overview", "Name|Cluster|Host|Version|JS|Conns|Subs|Routes|GWs|Mem|CPU %|Cores|Slow|Uptime|RTT", left=5
    )
    for s in rep["servers"]:
        t.add_row(
            s["name"],
            s["cluster"],
            s["host"],
            s["version"],
            s["domain"] if s["jetstream"] else "no",
            f"{s['connections']:,}",
            f"{s['subscriptions']:,}",
            str(s["routes"]),
            str(s["gateways"]),
            human_bytes(s["memory"]),
            f"{s['cpu']:.0f}",
            str(s["cores"]),
            str(s["slow_consumers"]),
            human_seconds(s["uptime_seconds"]),
            f"{s['rtt_ms']:.2f}ms",
        )
    tot = rep["totals"]
    t.add_section()
    t.add_row(
        f"{tot['servers']} servers",
        f"{len(rep['clusters'])} clusters",
        "",
        "",
        "",
        f"{tot['connections']:,}",
        f"{tot['subscriptions']:,}",
        "",
        "",
        human_bytes(tot["memory"]),
        "",
        "",
        "",
        "",
        "",
    )
    c = _table("Cluster Overview", "Cluster|Node Count|Outgoing Gateways|Incoming Gateways|Connections", left=1)
    for row in rep["clusters"]:
        c.add_row(
            row["cluster"],
            str(row["nodes"]),
            str(row["gateways_out"]),
            str(row["gateways_in"]),
            f"{row['connections']:,}",
        )
    return [t, c]


# ---------------------------------------------------------------------------------------------------------------
# report leafnodes


def build_leafnodes(mesh: Mesh, leafz: Replies) -> dict[str, Any]:
    hub_names = {n.name for n in mesh.hub.nodes}
    links = []
    servers = []
    for name in _sorted(mesh, leafz.replies):
        rep = leafz.replies[name]
        data = rep.get("data") or {}
        servers.append(_identity(mesh, name, rep.get("server") or {}) | {"leafnodes": int(data.get("leafnodes") or 0)})
        if name not in hub_names:
            continue
        for lf in data.get("leafs") or []:
            remote = lf.get("name", "")
            try:
                domain = mesh.cluster_of(remote).domain
            except KeyError:
                domain = "?"
            rtt = go_duration(lf.get("rtt"))
            links.append(
                {
                    "domain": domain,
                    "leaf_server": remote,
                    "account": lf.get("account", ""),
                    "hub_server": name,
                    "rtt_ms": None if rtt is None else round(rtt * 1000, 3),
                    "in_msgs": int(lf.get("in_msgs") or 0),
                    "out_msgs": int(lf.get("out_msgs") or 0),
                    "in_bytes": int(lf.get("in_bytes") or 0),
                    "out_bytes": int(lf.get("out_bytes") or 0),
                    "subscriptions": int(lf.get("subscriptions") or 0),
                }
            )
    order = _order(mesh)
    links.sort(key=lambda x: (order.get(x["leaf_server"], 1 << 30), x["account"]))
    seen = {(x["leaf_server"], x["account"]) for x in links}
    expected_missing = [
        f"{n.name}/{acct}"
        for d in mesh.domains
        for n in d.nodes
        for acct in ("SYS", d.name)
        if (n.name, acct) not in seen and set(hub_names) <= leafz.replies.keys()
    ]
    return {
        "report": "leafnodes",
        "servers": servers,
        "links": links,
        "missing_links": expected_missing,
        "missing": leafz.missing,
        "seconds": round(leafz.seconds, 4),
    }


def tables_leafnodes(rep: dict[str, Any]) -> list[Table]:
    t = _table(
        "Leafnode Links", "Domain|Leaf Server|Account|Hub Server|RTT|Msgs In|Msgs Out|Bytes In|Bytes Out|Subs", left=4
    )
    for x in rep["links"]:
        t.add_row(
            x["domain"],
            x["leaf_server"],
            x["account"],
            x["hub_server"],
            "-" if x["rtt_ms"] is None else f"{x['rtt_ms']:.2f}ms",
            f"{x['in_msgs']:,}",
            f"{x['out_msgs']:,}",
            human_bytes(x["in_bytes"]),
            human_bytes(x["out_bytes"]),
            f"{x['subscriptions']:,}",
        )
    t.add_section()
    t.add_row(
        f"{len({x['domain'] for x in rep['links']})} domains",
        f"{len(rep['links'])} links",
        "",
        "",
        "",
        f"{sum(x['in_msgs'] for x in rep['links']):,}",
        f"{sum(x['out_msgs'] for x in rep['links']):,}",
        human_bytes(sum(x["in_bytes"] for x in rep["links"])),
        human_bytes(sum(x["out_bytes"] for x in rep["links"])),
        "",
    )
    return [t]


# ---------------------------------------------------------------------------------------------------------------
# apply, lag, catalog

ACTION_STYLE = {
    "create": "green",
    "update": "yellow",
    "delete": "red",
    "would-delete": "magenta",
    "refused": "bold red",
}


def tables_plan(plan: Any) -> Table:
    """The plan of `natsmesh apply`: one row per stream or catalog entry."""
    t = _table(f"Plan for mesh {plan.mesh}", "Action|Domain|Kind|Name|Detail", 5)
    for c in plan.changes:
        style = ACTION_STYLE.get(c.action, "")
        t.add_row(f"[{style}]{c.action}[/]" if style else c.action, c.domain, c.kind, c.name, c.detail)
    return t


def tables_lag(rows: list[Any]) -> list[Table]:
    t = _table("Mirror and Source Lag", "Domain|Stream|Mode|Upstream|Upstream Last|Local Last|Lag|Last Active|Error", 4)
    for r in rows:
        t.add_row(
            r.domain,
            r.stream,
            r.mode,
            r.upstream,
            "-" if r.upstream_last_seq is None else f"{r.upstream_last_seq:,}",
            "-" if r.local_last_seq is None else f"{r.local_last_seq:,}",
            "-" if r.lag is None else f"{r.lag:,}",
            human_seconds(r.active_seconds),
            r.error or "",
        )
    return [t]


def tables_catalog(entries: list[dict[str, Any]]) -> Table:
    t = _table("Data Product Catalog", "Product|Owner|Subjects|Tags|Replicas|Consumed By|Description", 7)
    for e in entries:
        consumers = ", ".join(f"{c['domain']}/{c['stream']} ({c['mode']})" for c in e.get("consumed_by") or [])
        t.add_row(
            e["ref"],
            e.get("owner", ""),
            " ".join(e.get("subjects") or []),
            ",".join(e.get("tags") or []),
            str(e.get("replicas", "")),
            consumers,
            e.get("description", ""),
        )
    return t


REPORTS = {
    "jetstream": ("JSZ", build_jetstream, tables_jetstream),
    "servers": ("STATSZ", build_servers, tables_servers),
    "leafnodes": ("LEAFZ", build_leafnodes, tables_leafnodes),
}
