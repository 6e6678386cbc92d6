"""The test launcher in tests/cli/conftest.py: what later tests rely on when they start from it."""

from __future__ import annotations

import os

import pytest

from tests.cli.conftest import launch_serve


async def test_serve_output_is_readable_while_it_runs_and_it_is_stopped_when_the_block_fails():
    with pytest.raises(RuntimeError, match="the test failed"):
        async with launch_serve() as served:
            await served.expect("Press Ctrl-C to stop.")  # on stderr
            assert f"MeterFox {served.url}" in served.stdout
            assert (await served.health())["status"] == "ok"
            raise RuntimeError("the test failed")
    assert served.returncode == 0  # SIGTERM, then a clean exit
    with pytest.raises(ProcessLookupError):
        os.kill(served.pid, 0)


async def test_env_adds_to_the_tests_environment(tmp_path, meterfox_home):
    other = tmp_path / "other-home"
    async with launch_serve(env={"METERFOX_HOME": str(other)}) as served:
        assert str(other / "meterfox.db") in served.stdout
    assert (other / "meterfox.db").exists() and not meterfox_home.exists()


async def test_a_serve_that_cannot_start_fails_with_its_own_message():
    async with launch_serve() as first:
        with pytest.raises(AssertionError, match=f"port {first.port} on 127.0.0.1 is in use"):
            async with launch_serve(port=first.port):
                pass
