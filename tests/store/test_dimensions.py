"""Dimension names as people type them after --by: normalised, and refused when unknown."""

from __future__ import annotations

import pytest

from meterfox_cli.errors import MeterFoxError
from meterfox_cli.store.dimensions import parse_dimensions


@pytest.mark.parametrize(
    ("text", "dims"),
    [
        ("model", ("model",)),
        (" Provider , MODEL ", ("provider", "model")),
        ("tag:Feature", ("tag:feature",)),
        ("key_name", ("key",)),
        ("day,tag:team", ("day", "tag:team")),
    ],
)
def test_parse_dimensions(text, dims):
    assert parse_dimensions(text) == dims


@pytest.mark.parametrize("text", ["colour", "tag:", "model,model", ""])
def test_parse_dimensions_rejects_what_it_cannot_group_by(text):
    with pytest.raises(MeterFoxError):
        parse_dimensions(text)
