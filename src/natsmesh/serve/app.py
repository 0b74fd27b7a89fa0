"""The `natsmesh serve` process: a Starlette app on uvicorn serving the data portal (`natsmesh.serve.portal`:
`/`, `/catalog`, `/products/DOMAIN/NAME`, `/health`, and `/api/state` for its page script), `/metrics`
(Prometheus), `/api/health` (each copy's state as JSON) and `/healthz` (the process itself), against a mesh seen
with the platform's secrets or from one party's folder.

Every request that needs the mesh awaits the one shared `Scraper`, so however many scrapers and browsers ask,
the servers get at most one bounded round of system requests per cache interval.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from natsmesh.errors import NatsmeshError
from natsmesh.model.access import Ledger, with_access
from natsmesh.model.identities import Credentials
from natsmesh.model.mesh import Mesh
from natsmesh.observe.access import ProductAccess, product_access
from natsmesh.observe.snapshot import Snapshot, copies, links
from natsmesh.serve import portal
from natsmesh.serve.metrics import CACHE_SECONDS, Scraper, SnapshotCollector

DEFAULT_PORT = 9470
ACCESS_TIMEOUT = 3.0  # reading who holds or asked for a product, for its page


def health_doc(mesh: Mesh, snap: Snapshot) -> dict[str, Any]:
    """`/api/health`: every copy's lag and state, the servers that did not answer, the links missing."""
    return {
        "mesh": mesh.name,
        "taken": snap.taken,
        "missing_servers": list(snap.missing),
        "copies": [
            {
                "copy": cs.consumption.ref,
                "upstream": cs.source.ref,
                "mode": cs.consumption.mode,
                "lag": cs.lag,
                "last_seen_seconds": cs.seen_seconds,
                "stalled": cs.stalled,
                "critical": cs.critical,
            }
            for cs in copies(mesh, snap)
        ],
        "links_down": [f"{ls.server} ({ls.account})" for ls in links(mesh, snap) if ls.link is None],
    }


class Handlers:
    """Every route of the app, over one shared `Scraper` (and the collector that renders its snapshots)."""

    def __init__(self, mesh: Mesh, creds: Credentials, cache: float, heal: bool = False) -> None:
        self.mesh, self.creds, self.cache, self.heal = mesh, creds, cache, heal
        self.scraper = Scraper(mesh, creds, cache)
        self.collector = SnapshotCollector(mesh)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self.lock = asyncio.Lock()  # one render of the registry at a time: the collector holds its snapshot

    async def metrics(self, _: Request) -> Response:
        async with self.lock:
            self.collector.snap = await self.scraper.snapshot()
            self.collector.previous = self.scraper.previous
            body = generate_latest(self.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def health(self, _: Request) -> Response:
        return JSONResponse(health_doc(self.mesh, await self.scraper.snapshot()))

    async def alive(self, _: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def latest(self) -> Snapshot | None:
        try:
            return await self.scraper.recent()
        except NatsmeshError:
            return None

    async def topology(self, _: Request) -> Response:
        return HTMLResponse(portal.topology(self.mesh, await self.latest()))

    async def catalog(self, request: Request) -> Response:
        return HTMLResponse(portal.catalog(self.mesh, request.query_params.get("q", "")[:200]))

    async def product(self, request: Request) -> Response:
        ref = f"{request.path_params['domain']}/{request.path_params['name']}"
        try:
            p = self.mesh.product(ref)
        except KeyError:
            return HTMLResponse(portal.catalog(self.mesh, ref), status_code=404)
        access = await self.access(ref)
        mesh = self.mesh if access is None else with_access(self.mesh, Ledger({a.id: a for a in access.requests}))
        return HTMLResponse(portal.product_page(mesh, p, await self.latest(), access))

    async def access(self, ref: str) -> ProductAccess | None:
        """Who holds or asked for product REF and its recent audit entries; None if that cannot be read now."""
        try:
            return await asyncio.wait_for(product_access(self.mesh, ref), ACCESS_TIMEOUT)
        except Exception:  # the hub away, a stream unread: the page shows the rest
            return None

    async def health_page(self, _: Request) -> Response:
        return HTMLResponse(portal.health(self.mesh, await self.latest()))

    async def state(self, _: Request) -> Response:
        return JSONResponse(portal.state(self.mesh, await self.scraper.snapshot()))

    async def healing(self) -> None:
        """The heal watch in this process (`--heal`: for a mesh no supervisor heals), its nudges counted."""
        from natsmesh.observe.connect import Connections
        from natsmesh.reconcile.heal import Healer

        async with Connections(self.mesh, self.creds, name="natsmesh-serve-heal") as conns:
            healer = Healer(self.mesh, conns)
            self.collector.nudges = healer.counts
            while True:
                with contextlib.suppress(Exception):  # a round that fails is tried again next interval
                    await healer.round()
                await asyncio.sleep(max(1.0, self.cache))

    @contextlib.asynccontextmanager
    async def lifespan(self, _: Starlette) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(self.healing()) if self.heal else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.scraper.close()


def create_app(mesh: Mesh, creds: Credentials, cache: float = CACHE_SECONDS, heal: bool = False) -> Starlette:
    """The app for MESH, seen with CREDS (the platform's, or one party's folder: then only what that party may
    read, `natsmesh.render.policy.party_view`); HEAL runs the heal watch too."""
    if creds.holder is not None:
        from natsmesh.render.policy import party_view

        mesh = party_view(mesh, creds.holder)
    h = Handlers(mesh, creds, cache, heal)
    routes = [
        Route("/", h.topology),
        Route("/catalog", h.catalog),
        Route("/products/{domain}/{name}", h.product),
        Route("/health", h.health_page),
        Route("/api/state", h.state),
        Route("/metrics", h.metrics),
        Route("/api/health", h.health),
        Route("/healthz", h.alive),
        Mount("/static", StaticFiles(directory=str(Path(__file__).with_name("static"))), name="static"),
    ]
    return Starlette(routes=routes, lifespan=h.lifespan)


def serve(
    mesh: Mesh,
    creds: Credentials,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    cache: float = CACHE_SECONDS,
    on_ready: Callable[[str], None] | None = None,
    heal: bool = False,
) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM stop it cleanly); ON_READY gets the URL once it listens."""
    import uvicorn

    config = uvicorn.Config(create_app(mesh, creds, cache, heal), host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started and on_ready is not None:
            on_ready(f"http://{host}:{port}")
        await task

    with contextlib.suppress(KeyboardInterrupt):  # uvicorn stopped on the signal, then raised it again
        asyncio.run(run())
    if not server.started:
        from natsmesh.errors import PreflightError

        raise PreflightError(f"natsmesh serve could not listen on {host}:{port} (in use, or not an address here?)")
