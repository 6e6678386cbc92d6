"""The background sync's one run, in this process: whatever fails is shown in its health
section and logged, never raised (it runs beside the proxy)."""

from __future__ import annotations

import logging

from meterfox_cli.keys.provider_keys import choose_store, env_passphrase
from meterfox_cli.sync.background import BackgroundSync
from meterfox_cli.sync.sources import SOURCES


def test_a_database_that_cannot_be_opened_is_shown_and_logged_not_raised(tmp_path, caplog):
    not_a_file = tmp_path / "meterfox.db"
    not_a_file.mkdir()
    background = BackgroundSync(
        not_a_file,
        every_s=3600,
        base_urls={},
        store_choice=lambda: choose_store(tmp_path, env_passphrase()),
        providers=[SOURCES["openai"]],
    )
    with caplog.at_level(logging.WARNING, logger="meterfox.sync"):
        background.run_once()
    health = background.health()
    assert "cannot open the database" in health["last_error"]
    assert health["running"] is False and health["last_run_at"] is not None
    assert health["providers"] == {}
    assert [r.getMessage() for r in caplog.records] == [
        f"background sync failed: {health['last_error']}"
    ]


def test_a_provider_without_an_admin_key_is_its_own_error(conn, meterfox_home, monkeypatch):
    monkeypatch.delenv("OPENAI_ADMIN_KEY", raising=False)
    background = BackgroundSync(
        meterfox_home / "meterfox.db",
        every_s=3600,
        base_urls={"openai": "http://127.0.0.1:9"},
        store_choice=lambda: choose_store(meterfox_home, env_passphrase()),
        providers=[SOURCES["openai"]],
    )
    background.run_once()
    openai = background.health()["providers"]["openai"]
    assert openai["last_ok_at"] is None
    assert openai["last_error"] == (
        "openai: no openai-admin key (`meterfox keys set openai-admin` or OPENAI_ADMIN_KEY)"
    )
    assert background.health()["last_error"] is None
