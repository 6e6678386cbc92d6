"""`meterfox serve`."""

from __future__ import annotations

import click

from meterfox_cli.cli.common import load_settings, parse_upstreams, price_book


@click.command()
@click.option("--host", default=None, help="Interface to bind (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to listen on (default 8787).")
@click.option(
    "--upstream",
    "upstreams",
    multiple=True,
    metavar="NAME=URL",
    help="Send provider NAME to URL instead of its public API (repeatable).",
)
def serve(host: str | None, port: int | None, upstreams: tuple[str, ...]) -> None:
    """Run the proxy in the foreground until Ctrl-C (or SIGTERM).

    Every call passes through unchanged; MeterFox records only metadata: provider, model,
    tokens, latency, status, cost and your tags. Prompts and responses are never stored.
    """
    import asyncio
    import logging

    from meterfox_cli.proxy.app import make_app
    from meterfox_cli.proxy.server import serve as run_server
    from meterfox_cli.store.writer import RecordWriter

    settings = load_settings(parse_upstreams(upstreams))
    config = settings.config
    host = host or config.host
    port = port if port is not None else config.port
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings.paths.ensure()
    book = price_book(settings)
    book.warm()  # load the price data now, not while the first requests are in flight
    app = make_app(
        registry=settings.registry,
        writer=RecordWriter(settings.paths.database, pricer=book),
        timeouts=config.timeouts,
        max_body_bytes=config.max_body_bytes,
    )

    def ready(base: str) -> None:
        click.echo(f"MeterFox {base}  (database: {settings.paths.database})")
        for provider in settings.registry:
            click.echo(f"  {provider.slug:<12} {base}/{provider.slug}{provider.sdk_path}")
        click.echo("Press Ctrl-C to stop.", err=True)

    asyncio.run(run_server(app, host, port, on_ready=ready))


COMMANDS = [serve]
