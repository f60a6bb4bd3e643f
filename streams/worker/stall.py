"""Noticing a stuck worker: messages wait, yet none is consumed."""

from __future__ import annotations

import time
from collections.abc import Callable


class StallWatch:
    """Notices a consumer that owns waiting messages but makes no progress (a stuck worker).

    `observe(lag)` runs on a timer; a batch handled, or no lag at all, counts as progress.
    """

    def __init__(self, after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.after_s = after_s
        self.clock = clock
        self.lag = 0
        self._progress_at = clock()

    def progressed(self) -> None:
        self._progress_at = self.clock()

    def observe(self, lag: int) -> None:
        self.lag = lag
        if lag <= 0:
            self.progressed()

    def stalled_for(self) -> float | None:
        """Seconds without progress while messages wait, once that exceeds `after_s`."""
        idle = self.clock() - self._progress_at
        return idle if self.lag > 0 and idle >= self.after_s else None
