"""The Jobs screen and launching work: live progress, ETA and log, cancel, retry, errors in the
job's row; a pruning run launched from the form, run by a real job process, whose run then opens
with its retention table; and a model imported from the form the same way."""

from __future__ import annotations

import os
import time

import pytest
from textual.widgets import Input, Log, Select
from tui_helpers import anyio_backend, app_on, filled_fixture, notices, screen_text, settle  # noqa: F401

from store import jobs as job_rows
from tui.confirm import Confirm
from tui.records import RecordTable
from tui.screens.jobs import JobsScreen
from tui.screens.model_detail import ModelDetailScreen
from tui.screens.run_detail import RunDetailScreen
from workbench import jobs

pytestmark = pytest.mark.anyio
REQUEST = {"model": "llama-base", "scorer": "ppm", "percent": 50.0}


async def wait_for(pilot, done, timeout: float = 120.0) -> None:
    """Let the app poll until `done()` holds."""
    end = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < end, "timed out"
        await pilot.pause(0.25)


async def test_jobs_show_progress_eta_log_and_errors_in_their_row(store, filled):
    job_id = jobs.submit(store, "prune", REQUEST)
    app = app_on(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("j")
        await wait_for(pilot, lambda: job_id in app.screen.jobs)
        assert "queued" in screen_text(app) and "no worker running" in screen_text(app)
        # A job process would do this: claim it, report progress, write its log.
        job = job_rows.claim(store, os.getpid(), job_id=job_id)
        job_rows.update_running(store, job_id, stage="score", progress=0.4, eta_seconds=75, message="layer 2/3")
        (store.root / job.log_path).write_text("loading llama-base\nscoring layer 0\n")
        await wait_for(pilot, lambda: app.screen.jobs[job_id].progress == 0.4)
        await pilot.pause(0.3)
        text = screen_text(app)
        assert "████░░░░░░  40%" in text and "1m 15s" in text and "layer 2/3" in text
        assert "scoring layer 0" in text  # the log of the job under the cursor
        job_rows.finish(store, job_id, "failed", "failed", error="RuntimeError: CUDA out of memory")
        await wait_for(pilot, lambda: app.screen.jobs[job_id].status == "failed")
        assert f"job {job_id} failed: RuntimeError: CUDA out of memory" in notices(app)
        message = app.screen.query_one("#jobs-table").get_cell(str(job_id), "message")
        assert str(message) == "RuntimeError: CUDA out of memory"  # in the row, never a traceback


async def test_cancel_a_queued_job_then_retry_it(store, filled, monkeypatch):
    started = []
    monkeypatch.setattr(jobs, "ensure_worker", lambda store: started.append(store) or True)
    job_id = jobs.submit(store, "prune", REQUEST)
    app = app_on(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.show_jobs(job_id)
        await wait_for(pilot, lambda: job_id in app.screen.jobs)
        screen = app.screen
        assert isinstance(screen, JobsScreen)
        await pilot.press("c")
        await wait_for(pilot, lambda: screen.jobs[job_id].status == "cancelled")
        assert f"job {job_id} cancelled" in notices(app)
        await pilot.press("c")  # a finished job has nothing to cancel: the key is off
        await pilot.press("R")
        await wait_for(pilot, lambda: len(screen.jobs) == 2)
        new = max(screen.jobs)
        assert screen.jobs[new].status == "queued" and screen.current.id == new and started
        assert f"job {job_id} queued again as job {new}" in notices(app)


async def test_cancelling_a_running_job_asks_first(store, filled):
    """c cancels a queued job at once (retry queues it again), but a running one would lose its work."""
    job_id = jobs.submit(store, "prune", REQUEST)
    job_rows.claim(store, os.getpid(), job_id=job_id)
    job_rows.update_running(store, job_id, stage="calibrate", progress=0.4, message="batch 3/8")
    app = app_on(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.show_jobs(job_id)
        await wait_for(pilot, lambda: job_id in app.screen.jobs)
        screen = app.screen
        await pilot.press("c")
        await settle(pilot)
        assert isinstance(app.screen, Confirm)
        asked = f"Cancel job {job_id} (llama-base ppm 50%, 40% done)? The work it has done is lost."
        assert app.screen.question == asked
        await pilot.press("enter")  # the focused answer keeps it running
        await settle(pilot)
        assert app.screen is screen and not job_rows.get_job(store, job_id).cancel_requested
        await pilot.press("c", "y")
        await wait_for(pilot, lambda: job_rows.get_job(store, job_id).cancel_requested)
        assert f"job {job_id} asked to stop at the next layer or batch" in notices(app)


async def test_a_pruning_run_launched_from_the_form_runs_and_opens_with_its_retention(store, tiny_model_dirs):
    from workbench.model_io import import_model

    import_model(store, str(tiny_model_dirs["llama"]), name="tiny-llama")
    app = app_on(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("p")  # the only model, under the cursor
        await settle(pilot)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen) and app.screen.jobs)
        screen = app.screen
        job_id = max(screen.jobs)
        assert screen.current.id == job_id
        await wait_for(pilot, lambda: screen.jobs[job_id].finished)
        assert screen.jobs[job_id].status == "done", screen.jobs[job_id].error
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, RunDetailScreen)
        retention = app.screen.query_one("#retention-table", RecordTable).table.formatted()
        assert [row[:3] for row in retention] == [["0", "96", "48"], ["1", "96", "48"], ["2", "96", "48"]]
        assert app.screen.query_one("#run-log", Log).line_count > 1  # the job's log, in its own tab


async def test_a_model_imported_from_the_form_runs_as_a_job_and_shows_on_the_models_screen(store, tiny_model_dirs):
    app = app_on(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert app.screen.table.total == 0  # an empty store
        await pilot.press("i")
        await settle(pilot)
        app.screen.query_one("#kind", Select).value = "folder"
        app.screen.query_one("#source", Input).value = str(tiny_model_dirs["qwen2"])
        app.screen.query_one("#name", Input).value = "tiny-qwen"
        await settle(pilot)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen) and app.screen.jobs)
        screen = app.screen
        job_id = max(screen.jobs)
        assert screen.current.id == job_id and screen.jobs[job_id].kind == "import"
        await wait_for(pilot, lambda: screen.jobs[job_id].finished)
        assert screen.jobs[job_id].status == "done", screen.jobs[job_id].error
        await pilot.press("enter")  # the job's result: the model
        await settle(pilot)
        assert isinstance(app.screen, ModelDetailScreen)
        await pilot.press("escape", "m")
        await settle(pilot)
        assert [m.name for m in app.screen.table.items] == ["tiny-qwen"]
        assert "tiny-qwen" in screen_text(app) and "qwen2" in screen_text(app)
