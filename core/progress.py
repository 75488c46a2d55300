"""The pace of one stage of a run: time at work (paused time left out), rate and time left.

A :class:`StageClock` is started when a stage begins, paused and resumed with the run, and asked
for the rate and the estimated time left after each photo. Paused time never counts, so a run
that was paused for an hour does not show a tenth of its real speed afterwards, and while paused
there is no estimate (``None``) rather than one that goes stale.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["StageClock"]


class StageClock:
    """Seconds at work in one stage, and the rate and time left they give.

    Parameters
    ----------
    clock
        Seconds from an arbitrary start that never go back (default :func:`time.monotonic`);
        tests pass a fake one.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started = clock()
        self._paused_at: float | None = None
        self._paused_s = 0.0

    @property
    def paused(self) -> bool:
        """Whether the stage is paused now."""
        return self._paused_at is not None

    def pause(self) -> None:
        """Stop counting time (no effect when already paused)."""
        if self._paused_at is None:
            self._paused_at = self._clock()

    def resume(self) -> None:
        """Count time again from now (no effect unless paused)."""
        if self._paused_at is not None:
            self._paused_s += self._clock() - self._paused_at
            self._paused_at = None

    def active_s(self) -> float:
        """Seconds at work since the stage began, paused time left out."""
        now = self._paused_at if self._paused_at is not None else self._clock()
        return max(0.0, now - self._started - self._paused_s)

    def rate(self, done: int) -> float:
        """Items per second at work; 0.0 until the first item is done."""
        active = self.active_s()
        return done / active if done > 0 and active > 0 else 0.0

    def eta(self, done: int, total: int) -> float | None:
        """Seconds left for ``total - done`` items at the rate so far; None while paused,
        before the first item, or when the total is not known."""
        rate = self.rate(done)
        if self.paused or rate <= 0 or total <= 0:
            return None
        return max(0, total - done) / rate
