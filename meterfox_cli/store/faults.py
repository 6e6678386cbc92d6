"""How a writer says the database refuses its writes: the first failure, a reminder every
minute while it lasts, and the recovery, in the log; and since when and why, for `health`.
The record writer and the outbox's drain each keep one."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

REMINDER_S = 60.0  # while records cannot be written, the log says so again this often


class Faults:
    """The state of one writer's trouble: `failing_since` (monotonic) and `last_error` are
    None while writes succeed."""

    def __init__(
        self, log: logging.Logger, what: str, again: str, waiting: Callable[[], int]
    ) -> None:
        """`what` and `again`: the writes, as the log names them when they fail ("write
        records") and when they work again ("writing records again"); `waiting`: how many
        records wait."""
        self._log = log
        self._what = what
        self._again = again
        self._waiting = waiting
        self._next_reminder = 0.0
        self.failing_since: float | None = None
        self.last_error: str | None = None
        self._last_kind: type[BaseException] | None = None

    def failing(self, exc: BaseException) -> None:
        # A fault of another kind is said at once (the server back, but its schema behind).
        changed = self.last_error is not None and type(exc) is not self._last_kind
        self.last_error = str(exc)
        self._last_kind = type(exc)
        now = time.monotonic()
        if self.failing_since is None or changed:
            if self.failing_since is None:
                self.failing_since = now
            self._log.error(
                "cannot %s (%s); %d waiting, forwarding continues, retrying",
                self._what,
                exc,
                self._waiting(),
            )
            self._next_reminder = now + REMINDER_S
        elif now >= self._next_reminder:
            self._log.error(
                "still cannot %s after %.0fs (%s); %d waiting",
                self._what,
                now - self.failing_since,
                exc,
                self._waiting(),
            )
            self._next_reminder = now + REMINDER_S

    def recovered(self) -> None:
        if self.failing_since is not None:
            self._log.warning(
                "%s after %.1fs (%d waiting)",
                self._again,
                time.monotonic() - self.failing_since,
                self._waiting(),
            )
            self.failing_since = None
            self.last_error = None
