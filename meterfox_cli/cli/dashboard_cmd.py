"""`meterfox dashboard`: opens the running daemon's dashboard in the browser, or prints its URL
(with the login token when the daemon listens beyond loopback), or says how to start it."""

from __future__ import annotations

import ssl

import click


@click.command()
@click.option("--url", "url_only", is_flag=True, help="Print the URL only (no browser).")
@click.option("--port", type=int, default=None, help="The daemon's port (default: the config's).")
def dashboard(url_only: bool, port: int | None) -> None:
    """Open the dashboard of the running `meterfox serve` in your browser.

    Where the money goes, live, in one page: spend and its trend, Explore (any report, as a
    bookmarkable URL), Live requests, and proxy keys. With no browser, the URL is printed.
    """
    import webbrowser

    from meterfox_cli.cli.common import daemon_tls, default_base, load_settings
    from meterfox_cli.web.login import read_login

    settings = load_settings()
    base = default_base(settings)
    if port is not None:
        base = base.rsplit(":", 1)[0] + f":{port}"
    login = read_login(settings.paths.state_dir)
    url = f"{base}/_meterfox/" + (f"?login={login}" if login else "")
    if url_only:
        click.echo(url)
        return
    if not _running(base, daemon_tls(settings)):
        click.echo(f"MeterFox is not running at {base}.", err=True)
        click.echo("Start it with `meterfox serve` (in another terminal), then run", err=True)
        click.echo(f"`meterfox dashboard` again, or open {url}", err=True)
        raise SystemExit(1)
    if not webbrowser.open(url):
        click.echo(url)
        return
    click.echo(f"Opened {base}/_meterfox/ in your browser.", err=True)


def _running(base: str, tls: ssl.SSLContext | None) -> bool:
    """Whether a MeterFox daemon answers its health check at `base` (within a second)."""
    import json
    import urllib.request
    from urllib.error import URLError

    try:
        health = f"{base}/_meterfox/health"
        with urllib.request.urlopen(health, timeout=1.0, context=tls) as response:
            return response.status == 200 and "version" in json.loads(response.read())
    except (URLError, OSError, ValueError):
        return False


COMMANDS = [dashboard]
