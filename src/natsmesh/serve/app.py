"""The `natsmesh serve` process: a Starlette app on uvicorn serving the data portal (`natsmesh.serve.portal`:
`/`, `/catalog`, `/products/DOMAIN/NAME`, `/health`, and `/api/state` for its page script), `/metrics`
(Prometheus), `/api/health` (each copy's state as JSON) and `/healthz` (the process itself), against a mesh seen
with the platform's secrets or from one party's folder.

Every request that needs the mesh awaits the one shared `Scraper`, so however many scrapers and browsers ask,
the servers get at most one bounded round of system requests per cache interval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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
from natsmesh.model.identities import Credentials
from natsmesh.model.mesh import Mesh
from natsmesh.observe.snapshot import Snapshot, copies, links
from natsmesh.serve import portal
from natsmesh.serve.metrics import CACHE_SECONDS, Scraper, SnapshotCollector

DEFAULT_PORT = 9470


def create_app(mesh: Mesh, creds: Credentials, cache: float = CACHE_SECONDS) -> Starlette:
    """The app for MESH, seen with CREDS (the platform's, or one party's folder)."""
    scraper = Scraper(mesh, creds, cache)
    collector = SnapshotCollector(mesh)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    lock = asyncio.Lock()

    async def metrics(_: Request) -> Response:
        async with lock:  # one render of the registry at a time: the collector holds the snapshot it renders
            collector.snap = await scraper.snapshot()
            collector.previous = scraper.previous
            body = generate_latest(registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def health(_: Request) -> Response:
        snap = await scraper.snapshot()
        doc: dict[str, Any] = {
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
        return JSONResponse(doc)

    async def alive(_: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def latest() -> Snapshot | None:
        try:
            return await scraper.snapshot()
        except NatsmeshError:
            return None

    async def topology(_: Request) -> Response:
        return HTMLResponse(portal.topology(mesh, await latest()))

    async def catalog(request: Request) -> Response:
        return HTMLResponse(portal.catalog(mesh, request.query_params.get("q", "")[:200]))

    async def product(request: Request) -> Response:
        ref = f"{request.path_params['domain']}/{request.path_params['name']}"
        try:
            p = mesh.product(ref)
        except KeyError:
            return HTMLResponse(portal.catalog(mesh, ref), status_code=404)
        return HTMLResponse(portal.product_page(mesh, p, await latest()))

    async def health_page(_: Request) -> Response:
        return HTMLResponse(portal.health(mesh, await latest()))

    async def state(_: Request) -> Response:
        return JSONResponse(portal.state(mesh, await scraper.snapshot()))

    routes = [
        Route("/", topology),
        Route("/catalog", catalog),
        Route("/products/{domain}/{name}", product),
        Route("/health", health_page),
        Route("/api/state", state),
        Route("/metrics", metrics),
        Route("/api/health", health),
        Route("/healthz", alive),
        Mount("/static", StaticFiles(directory=str(Path(__file__).with_name("static"))), name="static"),
    ]
    return Starlette(routes=routes)


def serve(
    mesh: Mesh,
    creds: Credentials,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    cache: float = CACHE_SECONDS,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM stop it cleanly); ON_READY gets the URL once it listens."""
    import uvicorn

    config = uvicorn.Config(create_app(mesh, creds, cache), host=host, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started and on_ready is not None:
            on_ready(f"http://{host}:{port}")
        await task

    asyncio.run(run())
    if not server.started:
        from natsmesh.errors import PreflightError

        raise PreflightError(f"natsmesh serve could not listen on {host}:{port} (in use, or not an address here?)")
