"""The reconcile table for people: names from an admin API are shown as they are."""

from __future__ import annotations

from rich.console import Console

from meterfox_cli.report.reconcile import render
from meterfox_cli.sync.reconcile import Row


def test_a_billed_model_name_that_looks_like_rich_markup_is_shown_as_it_is():
    """Model names in billed usage come from the provider's admin API: "[/x]" made rich raise
    and "[red]…" styled the cell."""
    names = ("[/oops]", "[red]billed[/red]")
    rows = [
        Row("2026-11-28", "openai", name, 1, 10, 5, 1_000, 1, 10, 5, 1_000, None, "match")
        for name in names
    ]
    console = Console(record=True, width=300, color_system=None)
    render(rows, console, "Proxied vs billed")
    text = console.export_text()
    for name in names:
        assert name in text
    assert "match" in text
