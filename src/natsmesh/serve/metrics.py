"""The mesh as Prometheus metrics, from one `natsmesh.observe.snapshot.Snapshot` per scrape interval.

natsmesh's own series carry what a data mesh means (mesh, domain, product, upstream, the copy's thresholds);
where a series means what prometheus-nats-exporter's does (`jetstream_stream_*`), it has that name and those
labels, so dashboards built on the exporter keep working. A server that did not answer has no series of its own
but `natsmesh_server_up 0`; a copy whose leader did not answer has no lag or last-contact series, and counts as
stalled. Nothing here waits on a server: `Scraper` takes at most one bounded round per interval.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from natsmesh.model.identities import Credentials
from natsmesh.model.mesh import Mesh
from natsmesh.observe.snapshot import Snapshot, copies, links, products, take
from natsmesh.observe.system import SystemPool
from natsmesh.observe.wire import Upstream

CACHE_SECONDS = 5.0  # a scrape within this long of the last round is answered from it
ROUND_TIMEOUT = 2.0  # the longest one round waits for servers


class Scraper:
    """The newest snapshot, taken again when it is older than CACHE seconds; concurrent scrapes share a round."""

    def __init__(self, mesh: Mesh, creds: Credentials, cache: float = CACHE_SECONDS, timeout: float = ROUND_TIMEOUT):
        self.mesh, self.creds, self.cache, self.timeout = mesh, creds, cache, timeout
        self.last: Snapshot | None = None
        self.previous: Snapshot | None = None
        self._lock = asyncio.Lock()
        self._pool = SystemPool(mesh, creds)  # one system connection per cluster, kept between rounds

    async def snapshot(self) -> Snapshot:
        async with self._lock:
            if self.last is None or time.time() - self.last.taken >= self.cache:
                fresh = await take(self.mesh, self.creds, self.timeout, self._pool)
                self.previous, self.last = self.last, fresh
            return self.last

    async def recent(self) -> Snapshot:
        """The newest snapshot without waiting for a fresh round when there is one (pages: their script
        refreshes the figures as soon as the next round is in)."""
        if self.last is not None and not self._lock.locked():
            if time.time() - self.last.taken >= self.cache:
                asyncio.get_running_loop().create_task(self.snapshot())
            return self.last
        return await self.snapshot()

    async def close(self) -> None:
        await self._pool.close()


def _g(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def families(
    mesh: Mesh, snap: Snapshot, previous: Snapshot | None = None, nudges: dict[str, int] | None = None
) -> list[Metric]:
    """Every metric family of MESH as SNAP shows it (PREVIOUS, an earlier snapshot, gives ingest rates; NUDGES,
    the heal nudges this process sent by copy, when it heals)."""
    took = _g("natsmesh_scrape_seconds", "how long this round of system requests took", ["mesh"])
    took.add_metric([mesh.name], snap.seconds)
    gone = _g("natsmesh_scrape_missing_servers", "servers that did not answer this round", ["mesh"])
    gone.add_metric([mesh.name], len(snap.missing))
    return [
        *_servers(mesh, snap),
        *_copies(mesh, snap, nudges),
        *_products(mesh, snap, previous),
        *_links(mesh, snap),
        *_exporter_families(mesh, snap),
        took,
        gone,
    ]


SERVER_GAUGES = (
    ("memory_bytes", "JetStream memory in use"),
    ("memory_limit_bytes", "JetStream memory the server may use"),
    ("storage_bytes", "JetStream file storage in use"),
    ("storage_limit_bytes", "JetStream file storage the server may use"),
    ("streams", "streams (replicas included) on the server"),
)


def _servers(mesh: Mesh, snap: Snapshot) -> list[Metric]:
    labels = ["mesh", "cluster", "server"]
    up = _g("natsmesh_server_up", "1 if the server answered this round's system requests, else 0", labels)
    js = {k: _g(f"natsmesh_server_jetstream_{k}", doc, labels) for k, doc in SERVER_GAUGES}
    for cluster in (c for c in mesh.clusters if snap.shows(c.name)):
        for n in cluster.nodes:
            at = [mesh.name, cluster.name, n.name]
            up.add_metric(at, 1.0 if snap.up(n.name) else 0.0)
            j = snap.jsz.get(n.name)
            if j is None:
                continue
            values = (j.memory, j.max_memory, j.storage, j.max_storage, j.streams)
            for (k, _), v in zip(SERVER_GAUGES, values, strict=True):
                js[k].add_metric(at, v)
    return [up, *js.values()]


def _copies(mesh: Mesh, snap: Snapshot, nudges: dict[str, int] | None) -> list[Metric]:
    labels = ["mesh", "domain", "stream", "mode", "upstream", "upstream_domain"]
    lag = _g(
        "natsmesh_copy_lag_messages",
        "messages the copy is behind its upstream (a mirror: by sequence; a source: by the owner's consumer for it)",
        labels,
    )
    seen = _g("natsmesh_copy_last_seen_seconds", "seconds since the copy last heard from its upstream", labels)
    stalled = _g("natsmesh_copy_stalled", "1 if the copy heard nothing for longer than its seen-critical", labels)
    lag_crit = _g(
        "natsmesh_copy_lag_critical_messages", "the copy's lag threshold (io.nats.monitor.lag-critical)", labels
    )
    seen_crit = _g(
        "natsmesh_copy_seen_critical_seconds", "its silence threshold (io.nats.monitor.seen-critical)", labels
    )
    up_last = _g("natsmesh_copy_upstream_last_seq", "the upstream's last sequence, as its leader reports it", labels)
    healed = CounterMetricFamily(
        "natsmesh_copy_heal_nudges", "heal nudges this process sent the copy (serve --heal)", labels=labels
    )
    for cs in copies(mesh, snap):
        c, s = cs.consumption, cs.source
        at = [mesh.name, c.domain, c.stream, c.mode, s.ref, s.domain]
        if nudges is not None:
            healed.add_metric(at, nudges.get(f"{c.ref} <- {s.ref}", 0))
        for family, value in ((lag, cs.lag), (seen, cs.seen_seconds), (up_last, cs.upstream_last_seq)):
            if value is not None:
                family.add_metric(at, value)
        stalled.add_metric(at, 1.0 if cs.stalled else 0.0)
        lag_crit.add_metric(at, c.lag_critical)
        seen_crit.add_metric(at, c.seen_critical)
    return [lag, seen, stalled, lag_crit, seen_crit, up_last, *([healed] if nudges is not None else [])]


PRODUCT_GAUGES = (
    ("messages", "messages the product holds"),
    ("bytes", "bytes the product holds"),
    ("last_seq", "the product's last sequence"),
    ("consumers", "consumers on the product (one per copy, and readers)"),
)


def _products(mesh: Mesh, snap: Snapshot, previous: Snapshot | None) -> list[Metric]:
    labels = ["mesh", "domain", "product", "ref", "owner"]
    pm = {k: _g(f"natsmesh_product_{k}", doc, labels) for k, doc in PRODUCT_GAUGES}
    rate = _g("natsmesh_product_ingest_rate", "messages per second into the product since the previous round", labels)
    before = {p.ref: p.detail for p in products(mesh, previous)} if previous is not None else {}
    owners = {p.ref: p.owner for p in mesh.products}
    for ps in products(mesh, snap):
        d = ps.detail
        if d is None:
            continue
        at = [mesh.name, ps.domain, ps.name, ps.ref, owners.get(ps.ref, "")]
        for (k, _), v in zip(PRODUCT_GAUGES, (d.messages, d.bytes, d.last_seq, d.consumers), strict=True):
            pm[k].add_metric(at, v)
        old = before.get(ps.ref)
        if old is not None and previous is not None and snap.taken > previous.taken:
            rate.add_metric(at, max(0, d.last_seq - old.last_seq) / (snap.taken - previous.taken))
    return [*pm.values(), rate]


def _links(mesh: Mesh, snap: Snapshot) -> list[Metric]:
    labels = ["mesh", "domain", "server", "account"]
    up = _g("natsmesh_leaf_link_up", "1 if the leaf server has its link in this account at the hub", labels)
    rtt = _g("natsmesh_leaf_link_rtt_seconds", "the link's round-trip time as the hub measures it", labels)
    names = ("in_messages", "out_messages", "in_bytes", "out_bytes")
    traffic = {
        k: CounterMetricFamily(
            f"natsmesh_leaf_link_{k}", f"{k.replace('_', ' ')} on the link at the hub", labels=labels
        )
        for k in names
    }
    for ls in links(mesh, snap):
        at = [mesh.name, ls.domain, ls.server, ls.account]
        up.add_metric(at, 1.0 if ls.link is not None else 0.0)
        if ls.link is None:
            continue
        if ls.link.rtt_seconds is not None:
            rtt.add_metric(at, ls.link.rtt_seconds)
        lf = ls.link
        for k, v in zip(names, (lf.in_msgs, lf.out_msgs, lf.in_bytes, lf.out_bytes), strict=True):
            traffic[k].add_metric(at, v)
    return [up, rtt, *traffic.values()]


class _UpstreamGauges:
    """prometheus-nats-exporter's series of the upstreams of one KIND (`mirror` or `source`): lag, last contact."""

    def __init__(self, kind: str, base: list[str]) -> None:
        labels = [*base, f"{kind}_name", f"{kind}_api"]
        self.lag = _g(f"jetstream_stream_{kind}_lag", f"Number of messages a stream {kind} is behind", labels)
        self.active = _g(
            f"jetstream_stream_{kind}_active_duration_ns",
            f"Stream {kind} active duration in nanoseconds (-1 indicates inactive)",
            labels,
        )

    def add(self, stream: list[str], up: Upstream) -> None:
        """UP, an upstream of the stream whose labels are STREAM."""
        at = [*stream, up.name, up.api]
        self.lag.add_metric(at, up.lag)
        self.active.add_metric(at, up.active_seconds * 1e9 if up.active_seconds is not None else -1)


def _exporter_families(mesh: Mesh, snap: Snapshot) -> list[Metric]:
    """prometheus-nats-exporter's JetStream stream series (its names and labels), for every stream a server
    leads."""
    base = ["server_name", "cluster", "account", "stream_name", "stream_leader", "is_stream_leader"]
    total = _g("jetstream_stream_total_messages", "Total number of messages from a stream", base)
    size = _g("jetstream_stream_total_bytes", "Total stored bytes from a stream", base)
    last = _g("jetstream_stream_last_seq", "Last sequence from a stream", base)
    consumers = _g("jetstream_stream_consumer_count", "Total number of consumers from a stream", base)
    mirror, source = _UpstreamGauges("mirror", base), _UpstreamGauges("source", base)
    cluster_of = {n.name: c.name for c in mesh.clusters for n in c.nodes}
    for server, j in sorted(snap.jsz.items()):
        for d in j.details:
            labels = [server, cluster_of.get(server, ""), d.account, d.name, d.leader, "true"]
            total.add_metric(labels, d.messages)
            size.add_metric(labels, d.bytes)
            last.add_metric(labels, d.last_seq)
            consumers.add_metric(labels, d.consumers)
            if d.mirror is not None:
                mirror.add(labels, d.mirror)
            for s in d.sources:
                source.add(labels, s)
    return [total, size, last, consumers, mirror.lag, mirror.active, source.lag, source.active]


class SnapshotCollector(Collector):
    """A prometheus-client collector serving the families of a snapshot taken beforehand (the ASGI handler
    awaits `Scraper.snapshot`, then renders the registry)."""

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.snap: Snapshot | None = None
        self.previous: Snapshot | None = None
        self.nudges: dict[str, int] | None = None  # the heal watch's counts, when this process heals

    def collect(self) -> Iterator[Metric]:
        if self.snap is not None:
            yield from families(self.mesh, self.snap, self.previous, self.nudges)
