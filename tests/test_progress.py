"""Progress: the fraction over weighted stages, and one estimate of the time left, from the work left.

The clock is the test's, so that the arithmetic is checked exactly (never a wall time)."""

from __future__ import annotations

import pytest

from workbench import progress as progress_module
from workbench.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "perf_counter", clock)
    return clock


def test_the_time_left_is_the_running_stage_at_its_pace_and_the_rest_at_the_pace_so_far(clock):
    # An evaluation of two tasks: loading weighs 0.5, each task 1.
    p = Progress({"load": 0.5, "arc": 1.0, "piqa": 1.0})
    p.stage("load")
    assert p.eta_seconds is None  # nothing to go by yet
    clock.now = 2.0
    p.stage("arc", total=10)
    assert p.eta_seconds == pytest.approx(2.0 / 0.5 * 2.0)  # only the loading's pace: 4 s a unit of weight
    clock.now = 6.0
    p.advance()  # 1 of 10 requests in 4 s: 36 s more for this task, which then took 40 s
    # The rest (piqa, weight 1) at the pace of all the work, this task's projected end included:
    # (2 s + 40 s) over 1.5 units of weight, 28 s a unit.
    assert p.eta_seconds == pytest.approx(36.0 + 28.0)
    clock.now = 42.0
    p.advance(9)
    p.stage("piqa", total=4)  # arc took 40 s, as projected
    assert p.eta_seconds == pytest.approx(1.0 * (42.0 / 1.5))
    clock.now = 52.0
    p.advance(2)  # half of piqa in 10 s
    assert p.eta_seconds == pytest.approx(10.0)
    p.finish()
    assert p.fraction == 1.0


def test_without_weights_the_time_left_is_the_stage_at_its_pace(clock):
    p = Progress()
    p.stage("windows", total=4)
    clock.now = 3.0
    p.advance()
    assert p.eta_seconds == pytest.approx(9.0)


def test_the_terminal_bar_shows_the_one_estimate_of_the_job_it_echoes(clock, store):
    """A foreground command's bar echoes its job: the time left it shows is the job's own estimate
    (per-task "X left" messages are gone), from the work left."""
    import io

    from rich.console import Console

    from store import jobs
    from workbench.cli.common import TerminalProgress
    from workbench.jobs import submit
    from workbench.jobs.execution import Heartbeat, JobProgress

    job_id = submit(store, "prune", {"model": "m", "scorer": "ppm", "percent": 50.0})
    jobs.claim(store, 1, job_id=job_id)
    shown = io.StringIO()
    bar = TerminalProgress(console=Console(file=shown, force_terminal=True, width=120))
    job = JobProgress(store, job_id, Heartbeat(store, job_id), lambda: None, echo=bar)
    job.weights = {"arc": 1.0}
    with bar:
        job.stage("arc", total=10, message="arc_easy")
        clock.now = 6.0
        job.advance(message="arc_easy: 1/10 requests")  # 6 s a request: 54 s for the 9 left
    assert job.eta_seconds == pytest.approx(54.0)
    assert "0:54 left" in shown.getvalue() and "arc_easy: 1/10 requests" in shown.getvalue()

    shown = io.StringIO()
    with TerminalProgress(console=Console(file=shown, force_terminal=True, width=120)) as watching:
        watching.emit("heal", 0.25, "step 10/40", 3725.0)  # a job another process runs: its row's estimate
    assert "1:02:05 left" in shown.getvalue()
