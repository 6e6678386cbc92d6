"""When the dashboard rests: `Rest` calls its `rest` once `after_s` pass with no dashboard
request under way or begun (the config's `[server] rest_after`), and its `wake` at the next
one; web/routes.py stops the read worker and its keeper there, and starts the keeper again on
waking (the worker starts with the first read, as it did before the warm start)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator


class Rest:
    """Counts the requests under way and when the last one began or ended; `run` is the task
    that rests (never, with `after_s` None)."""

    def __init__(
        self,
        after_s: float | None,
        rest: Callable[[], Awaitable[None]],
        wake: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.after_s = after_s
        self._rest = rest
        self._wake = wake
        self._clock = clock
        self._busy = 0
        self._last = clock()
        self._state = "awake"  # "resting": `rest` under way; "rested": done, until a request
        self._woken = asyncio.Event()

    @property
    def rested(self) -> bool:
        return self._state == "rested"

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Around one request (all of it: an open Live stream keeps the dashboard awake)."""
        self._busy += 1
        self._last = self._clock()
        if self._state == "rested":
            self._state = "awake"
            self._wake()
        self._woken.set()
        try:
            yield
        finally:
            self._busy -= 1
            self._last = self._clock()

    async def run(self) -> None:
        if self.after_s is None:
            return
        while True:
            left = self._last + self.after_s - self._clock()
            if self._busy or left > 0:
                await asyncio.sleep(self.after_s if self._busy else left)
                continue
            self._state = "resting"
            self._woken.clear()
            await self._rest()
            if self._woken.is_set():  # a request came while resting: it found no keeper
                self._state = "awake"
                self._wake()
                continue
            self._state = "rested"
            await self._woken.wait()
