"""`natsmesh serve`: metrics for Prometheus, and the mesh's health as JSON, over HTTP."""

from __future__ import annotations

import click

from natsmesh.cli.app import cli
from natsmesh.cli.output import load, spec_option


@cli.command()
@spec_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=9470, show_default=True, help="Port to listen on.")
@click.option(
    "--cache",
    type=click.FloatRange(0.5, 300),
    default=5.0,
    show_default=True,
    help="Seconds one round of system requests answers scrapes for (set it to the scrape interval).",
)
@click.option(
    "--heal", is_flag=True, help="Also run the heal watch (for a mesh no supervisor heals), counting its nudges."
)
def serve(spec_path: str | None, host: str, port: int, cache: float, heal: bool) -> None:
    """Serve the data portal (/), /metrics (Prometheus) and /api/health (each copy's lag and state) until Ctrl-C.

    Each scrape is answered from at most one bounded round of system requests per --cache seconds; a server that
    does not answer shows as natsmesh_server_up 0. With --bundle, one party's own view from its folder.
    """
    from natsmesh.local.secrets import load_credentials
    from natsmesh.serve.app import serve as run

    mesh = load(spec_path)
    creds = load_credentials(mesh, create=False)

    def ready(url: str) -> None:
        click.echo(f"natsmesh serve: mesh {mesh.name!r} at {url}/metrics and {url}/api/health (Ctrl-C stops)")

    run(mesh, creds, host, port, cache, on_ready=ready, heal=heal)
    click.echo("natsmesh serve: stopped")


@cli.command()
@click.argument("domain", required=False)
@spec_option
def gate(domain: str | None, spec_path: str | None) -> None:
    """Run DOMAIN's contract gate until Ctrl-C or SIGTERM: the only writer of its products with `enforce: gate`.

    Producers send to the products' ingress subjects (natsmesh.ingress.SUBJECT; MeshClient and `natsmesh pub` do
    so); valid messages are written with their headers and message ids, invalid ones go to the domain's
    natsmesh_deadletter stream with the reason, and the producer gets an error naming the field. `natsmesh up`
    runs one per gated domain; with --bundle, DOMAIN defaults to the folder's own.
    """
    import asyncio
    import signal

    from natsmesh.errors import NatsmeshError
    from natsmesh.local.secrets import load_credentials
    from natsmesh.serve.gate import Gate, run_gate

    mesh = load(spec_path)
    creds = load_credentials(mesh, create=False)
    name = domain or creds.holder
    if name is None:
        raise NatsmeshError(f"name the domain whose gate to run (gated domains: {', '.join(mesh.gated_domains)})")

    def ready(g: Gate) -> None:
        refs = ", ".join(p.ref for p in g.products)
        click.echo(f"natsmesh gate: {name} ready, writing {refs}", err=False)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        stats = await run_gate(mesh, creds, name, stop, on_ready=ready)
        click.echo(f"natsmesh gate: {name} stopped ({stats.written} written, {stats.refused} refused)")

    asyncio.run(main())
