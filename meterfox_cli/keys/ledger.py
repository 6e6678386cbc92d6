"""A running daemon's spend per budgeted key: what the database says, plus what it cannot say yet.

The key watcher reads each key's recorded spend every poll. Between a request's admission and
the watcher reading its record, the ledger counts it itself: first its reservation (a worst-case
estimate, taken at admission), then, the moment the response ends, its real cost. The watcher
asks the database which of those requests it now holds, in the snapshot it read the spend
from, and the ledger stops counting those: every request counts once, from admission on (for
at most one poll twice, never less). Thread-safe: the event loop reserves and settles, the
watcher's thread reports; every operation is a few dict updates under one lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class _Uncounted:
    key_name: str
    started_at: float
    nanousd: int


class Ledger:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recorded: Mapping[str, int] = {}  # as the watcher last read it
        self._reserved: dict[str, int] = {}
        self._holds = 0
        self._uncounted: dict[str, _Uncounted] = {}  # request id -> its settled cost
        self._uncounted_sum: dict[str, int] = {}

    def spent(self, key_name: str) -> int:
        """Recorded spend this period, plus settled costs not read yet, plus reservations."""
        with self._lock:
            return self._spent(key_name)

    def reserve(self, key_name: str, budget_nanousd: int, nanousd: int) -> int | None:
        """Reserve `nanousd` for one request if the key stays within its budget; else leave
        everything as it is and return what the key has spent (with reservations)."""
        with self._lock:
            spent = self._spent(key_name)
            if spent + nanousd > budget_nanousd:
                return spent
            self._reserved[key_name] = self._reserved.get(key_name, 0) + nanousd
            self._holds += 1
            return None

    def settle(
        self, key_name: str, reserved: int, request_id: str, started_at: float, cost: int
    ) -> None:
        """Replace a reservation with the request's real cost (0 when it billed nothing), which
        counts until the watcher reads the request's record."""
        with self._lock:
            left = self._reserved.get(key_name, 0) - reserved
            if left > 0:
                self._reserved[key_name] = left
            else:
                self._reserved.pop(key_name, None)
            self._holds -= 1
            self._forget(request_id)  # a request settles once; a repeated id replaces it
            if cost > 0:
                self._uncounted[request_id] = _Uncounted(key_name, started_at, cost)
                self._uncounted_sum[key_name] = self._uncounted_sum.get(key_name, 0) + cost

    def recorded(
        self, spend: Mapping[str, int], read_ids: Iterable[str], starts: Mapping[str, float]
    ) -> None:
        """The watcher's new reading: `spend` per budgeted key since its period `starts`,
        which now includes the records `read_ids`. Costs from before a key's period, or of a
        key no longer budgeted, are forgotten too."""
        with self._lock:
            self._recorded = spend
            for request_id in read_ids:
                self._forget(request_id)
            for request_id, entry in list(self._uncounted.items()):
                start = starts.get(entry.key_name)
                if start is None or entry.started_at < start:
                    self._forget(request_id)

    def uncounted_ids(self) -> tuple[str, ...]:
        """The requests whose settled cost this ledger still counts itself: the watcher asks
        the database which of them it now holds."""
        with self._lock:
            return tuple(self._uncounted)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"reserved_requests": self._holds, "uncounted_costs": len(self._uncounted)}

    def _spent(self, key_name: str) -> int:
        return (
            self._recorded.get(key_name, 0)
            + self._uncounted_sum.get(key_name, 0)
            + self._reserved.get(key_name, 0)
        )

    def _forget(self, request_id: str) -> None:
        entry = self._uncounted.pop(request_id, None)
        if entry is None:
            return
        left = self._uncounted_sum[entry.key_name] - entry.nanousd
        if left > 0:
            self._uncounted_sum[entry.key_name] = left
        else:
            del self._uncounted_sum[entry.key_name]
