"""Shell completion: `meterfox completion bash|zsh|fish` prints click's own script, and the
callbacks that complete provider slugs, proxy key names and `--by` dimensions from the live
config and database. A callback is cheap and never fails loudly: on any error it offers
nothing. Only click is imported at module level (filters.py and the commands attach these)."""

from __future__ import annotations

from collections.abc import Callable

import click
from click.shell_completion import CompletionItem, get_completion_class

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_METERFOX_COMPLETE"
PROG_NAME = "meterfox"
_TAG_NAMES_LIMIT = 50


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the completion script for SHELL. Load it in your shell's startup file:

    \b
      bash:  eval "$(meterfox completion bash)"     (~/.bashrc)
      zsh:   eval "$(meterfox completion zsh)"      (~/.zshrc)
      fish:  meterfox completion fish | source      (~/.config/fish/config.fish)
    """
    root = click.get_current_context().find_root().command
    script_class = get_completion_class(shell)
    assert script_class is not None  # the Choice lets only click's own shells through
    click.echo(script_class(root, {}, PROG_NAME, COMPLETE_VAR).source())


def _quiet(values: Callable[[], list[str]], incomplete: str) -> list[CompletionItem]:
    """The values starting with `incomplete`; none if reading them fails in any way."""
    try:
        found = values()
    except Exception:  # a completion must never print a traceback into the prompt
        return []
    return [CompletionItem(value) for value in sorted(set(found)) if value.startswith(incomplete)]


def complete_providers(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Provider slugs (and aliases) of the registry the user's config builds."""
    return _quiet(_provider_slugs, incomplete)


def complete_key_names(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Proxy key names in the database."""
    return _quiet(lambda: _names("SELECT DISTINCT name FROM proxy_keys"), incomplete)


def complete_dimensions(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """`--by` dimensions, comma-separated: the last one is completed after those typed, with
    `tag:NAME` for each tag name recorded."""
    done, _, last = incomplete.rpartition(",")
    prefix = f"{done}," if done else ""
    items = _quiet(_dimension_names, last)
    return [CompletionItem(prefix + item.value) for item in items]


def _provider_slugs() -> list[str]:
    from meterfox_cli.config import load_config
    from meterfox_cli.paths import resolve_paths
    from meterfox_cli.providers.registry import build_registry

    registry = build_registry(load_config(resolve_paths().config_file).providers)
    return [*(provider.slug for provider in registry), *registry.aliases]


def _dimension_names() -> list[str]:
    from meterfox_cli.store.dimensions import DIMENSION_NAMES

    names = list(DIMENSION_NAMES)
    try:
        sql = f"SELECT DISTINCT name FROM request_tags LIMIT {_TAG_NAMES_LIMIT}"
        names += [f"tag:{name}" for name in _names(sql)]
    except Exception:
        pass  # the fixed names still complete
    return names


def _names(sql: str) -> list[str]:
    """One column of names from the local database, read without writing to it."""
    from meterfox_cli.paths import resolve_paths
    from meterfox_cli.store.db import open_untouched

    path = resolve_paths().database
    if not path.exists():
        return []
    conn = open_untouched(path, timeout_s=0.2)
    try:
        return [str(row[0]) for row in conn.execute(sql)]
    finally:
        conn.close()


COMMANDS = [completion]
