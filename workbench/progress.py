"""Progress and cancellation for long work, independent of who watches it.

The engine names its stages and advances through them; a sink (the job row, a terminal bar)
sees the overall fraction. Cancellation is cooperative: `check()` raises `Cancelled` at the
layer and batch boundaries where the engine calls it.
"""

from __future__ import annotations

import time


class Cancelled(Exception):
    """The work was asked to stop; nothing it was writing may remain."""


class Progress:
    """Tracks stages (each with a weight in the whole) and the time each took.

    Subclasses override `emit` to show progress and `cancel_requested` to stop work.
    """

    def __init__(self, weights: dict[str, float] | None = None) -> None:
        self.weights = weights or {}
        self.stage_seconds: dict[str, float] = {}
        self.name = ""
        self._done_weight = 0.0
        self._done_seconds = 0.0  # spent on the weighted stages finished
        self._total = 0
        self._count = 0
        self._started = time.perf_counter()
        self._counting_since = self._started

    def stage(self, name: str, total: int = 0, message: str = "") -> None:
        """Finish the current stage (if any) and begin `name`, with `total` steps."""
        self._close_stage()
        self.name, self._total, self._count = name, total, 0
        self._started = self._counting_since = time.perf_counter()
        self.check()
        self.emit(name, self.fraction, message or name)

    def set_total(self, total: int, message: str = "") -> None:
        """Give the running stage its step count once it is known (lm-eval knows how many requests
        a task makes only after building them); counting starts again from zero."""
        self._total, self._count = total, 0
        self._counting_since = time.perf_counter()
        self.emit(self.name, self.fraction, message)
        self.check()

    def advance(self, steps: int = 1, message: str = "") -> None:
        self._count = min(self._count + steps, self._total) if self._total else self._count
        self.emit(self.name, self.fraction, message)
        self.check()

    def finish(self) -> None:
        self._close_stage()
        self.name = ""
        self.emit("done", 1.0, "done")

    @property
    def fraction(self) -> float:
        total_weight = sum(self.weights.values()) or 1.0
        within = self._count / self._total if self._total else 0.0
        current = self.weights.get(self.name, 0.0) * within
        return min(1.0, (self._done_weight + current) / total_weight)

    @property
    def eta_seconds(self) -> float | None:
        """Seconds the whole work still needs: the running stage at its own pace so far, the stages
        after it at the pace (seconds per unit of weight) of the work done, this stage's projected end
        included. None until there is a pace to go by."""
        now = time.perf_counter()
        weight = self.weights.get(self.name, 0.0)
        spent, done = self._done_seconds, self._done_weight
        left_here = None
        if self._total and self._count:
            counting = now - self._counting_since
            left_here = counting * (self._total - self._count) / self._count
            spent, done = spent + (now - self._started) + left_here, done + weight
        if done <= 0:
            return left_here if not self.weights else None
        pace = spent / done
        if left_here is None:
            left_here = max(0.0, weight * pace - (now - self._started))
        after = sum(self.weights.values()) - self._done_weight - weight
        return left_here + max(0.0, after) * pace

    def seconds_so_far(self) -> dict[str, float]:
        """Time per stage, the running stage included up to now."""
        seconds = dict(self.stage_seconds)
        if self.name:
            seconds[self.name] = seconds.get(self.name, 0.0) + time.perf_counter() - self._started
        return seconds

    def check(self) -> None:
        if self.cancel_requested():
            raise Cancelled("cancelled")

    def _close_stage(self) -> None:
        if self.name:
            elapsed = time.perf_counter() - self._started
            self.stage_seconds[self.name] = self.stage_seconds.get(self.name, 0.0) + elapsed
            if self.weights.get(self.name):
                self._done_weight += self.weights[self.name]
                self._done_seconds += elapsed

    # -- what a sink overrides --------------------------------------------------------------
    def emit(self, stage: str, fraction: float, message: str, eta_seconds: float | None = None) -> None:
        """Show where the work stands; the base class shows nothing. `eta_seconds`: the time the whole
        work still needs, where the caller has that estimate (a job's, for a bar that echoes it)."""

    def cancel_requested(self) -> bool:
        return False
