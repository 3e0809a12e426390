"""The Jobs screen and launching work: live progress, ETA and log, cancel, retry, errors in the
job's row; where each job runs (GPU and host) and which job each GPU of this host runs; a job
process started for work left queued; a pruning run launched from the form, run by a real job
process, whose run then opens with its retention table; a model imported from the form the same
way; and a heal of a tiny cut launched from the Heal form, whose detail then shows its loss curve."""

from __future__ import annotations

import os
import time

import pytest
from textual.widgets import Input, Log, Select
from tui_helpers import anyio_backend, app_on, filled_fixture, notices, screen_text, settle, wait_for  # noqa: F401

from store import jobs as job_rows
from store.db import Store, host_name
from store.tables import Job
from tui.chart import Chart
from tui.confirm import Confirm
from tui.forms.heal import HealForm
from tui.records import RecordTable
from tui.screens.heal_detail import HealDetailScreen
from tui.screens.jobs import POLL_S, JobsScreen
from tui.screens.model_detail import ModelDetailScreen
from tui.screens.run_detail import RunDetailScreen
from workbench import jobs

pytestmark = pytest.mark.anyio
REQUEST = {"model": "llama-base", "scorer": "ppm", "percent": 50.0}


async def test_jobs_show_progress_eta_log_and_errors_in_their_row(store, filled, monkeypatch):
    monkeypatch.setattr(jobs, "ensure_worker", lambda store: False)  # this test plays the job process
    job_id = jobs.submit(store, "prune", REQUEST)
    app = app_on(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("j")
        await wait_for(pilot, lambda: job_id in app.screen.jobs)
        assert "queued" in screen_text(app) and "no worker on this host" in screen_text(app)
        # A job process would do this: claim it, report progress, write its log.
        job = job_rows.claim(store, os.getpid(), job_id=job_id)
        job_rows.update_running(store, job_id, stage="score", progress=0.4, eta_seconds=75, message="layer 2/3")
        (store.root / job.log_path).write_text("loading llama-base\nscoring layer 0\n")
        shown = ("████░░░░░░  40%", "1m 15s", "layer 2/3", "scoring layer 0")  # the row, then its log: two polls
        await wait_for(pilot, lambda: all(s in screen_text(app) for s in shown))
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


# GPUs no machine has (as tests/test_gpus.py names them): this host then counts three.
FAKE_GPUS = ",".join(f"GPU-00000000-0000-0000-0000-00000000000{i}" for i in range(3))


async def test_jobs_show_each_jobs_gpu_and_host_and_which_job_each_gpu_of_this_host_runs(store, filled, monkeypatch):
    monkeypatch.setattr(jobs, "ensure_worker", lambda store: False)
    with store.write() as s:
        s.add(Job(kind="prune", spec={"request": REQUEST}, status="running", progress=0.5, device="cuda:0+1",
                  host=host_name()))  # fmt: skip
        s.add(Job(kind="prune", spec={"request": REQUEST}, status="running", progress=0.2, device="cuda:2",
                  host="gpu-node-b"))  # fmt: skip  (another host's GPU 2: not this host's)
        s.add(Job(kind="prune", spec={"request": REQUEST}, status="queued"))
    app = app_on(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.switch_mode("jobs")
        await wait_for(pilot, lambda: len(app.screen.jobs) == 3)
        table = app.screen.query_one("#jobs-table")
        assert [str(table.get_cell(str(i), "device")) for i in (1, 2, 3)] == ["cuda:0+1", "cuda:2", ""]
        assert [str(table.get_cell(str(i), "host")) for i in (1, 2, 3)] == [host_name(), "gpu-node-b", ""]
        assert not app.screen.query_one("#gpus").display  # no GPUs here: no line for them
        assert table.export_table().records()[1]["host"] == "gpu-node-b"

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", FAKE_GPUS)
    app = app_on(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.switch_mode("jobs")
        await wait_for(pilot, lambda: len(app.screen.jobs) == 3)
        text = screen_text(app)
        assert f"GPUs of {host_name()}:  0 job 1  1 job 1  2 free" in text
        assert "2 running · 1 queued · no worker on this host" in text
        assert "device" in text and "host" in text  # beside the progress, in sight at 80 columns
        app.screen.show_job(2)
        await wait_for(pilot, lambda: "Log of job 2 · cuda:2 on gpu-node-b" in screen_text(app))


async def test_the_jobs_screen_starts_a_job_process_for_work_left_queued(store, tiny_model_dirs, monkeypatch):
    """A job queued with no job process to run it (the last one killed, say) is taken up while the
    screen watches, as the CLI's reading commands take it up; and it says so even when starting it
    took longer than a poll (a loaded machine: the next poll cancels the slow one)."""
    from workbench.model_io import import_model

    ensure_worker = jobs.ensure_worker

    def slow_ensure_worker(store: Store) -> bool:
        started = ensure_worker(store)
        time.sleep(2 * POLL_S if started else 0)
        return started

    monkeypatch.setattr(jobs, "ensure_worker", slow_ensure_worker)
    import_model(store, str(tiny_model_dirs["llama"]), name="tiny-llama")
    job_id = jobs.submit(store, "prune", {"model": "tiny-llama", "scorer": "ppm", "percent": 25.0, "device": "cpu"})
    assert not jobs.worker_running(store)
    app = app_on(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.switch_mode("jobs")
        await wait_for(pilot, lambda: "started a job process for the queued jobs" in notices(app))
        await wait_for(pilot, lambda: job_id in app.screen.jobs and app.screen.jobs[job_id].finished)
        assert app.screen.jobs[job_id].status == "done", app.screen.jobs[job_id].error
    end = time.monotonic() + 60
    while jobs.worker_running(store):  # it finds nothing more to do and leaves
        assert time.monotonic() < end
        time.sleep(0.2)


async def test_a_heal_launched_from_the_form_runs_and_opens_with_its_loss_curve_and_lineage(store, tiny_model_dirs):
    from workbench.model_io import import_model
    from workbench.pruning import prune
    from workbench.spec import PruneSpec

    import_model(store, str(tiny_model_dirs["llama"]), name="tiny-llama")
    prune(PruneSpec(model="tiny-llama", scorer="ppm", percent=50.0, device="cpu", name="tiny-cut"), store)
    app = app_on(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.open_heal_form("tiny-cut")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, HealForm)
        for field, value in (("tokens", "512"), ("seq-len", "32"), ("batch-size", "2"), ("name", "tiny-healed")):
            form.query_one(f"#{field}", Input).value = value
        form.query_one("#device", Select).value = "cpu"
        await settle(pilot)
        assert form.plan is not None and form.plan.models.teacher.name == "tiny-llama"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen) and app.screen.jobs)
        screen = app.screen
        job_id = max(screen.jobs)
        job = screen.jobs[job_id]
        assert job.kind == "heal" and screen.current.id == job_id
        assert {k: job.request[k] for k in ("model", "teacher", "data", "tokens", "seq_len", "batch_size", "device",
                                            "name")} == {"model": "tiny-cut", "teacher": None, "data": "wikitext2",
                                                         "tokens": 512, "seq_len": 32, "batch_size": 2,
                                                         "device": "cpu", "name": "tiny-healed"}  # fmt: skip
        await wait_for(pilot, lambda: screen.jobs[job_id].finished, timeout=300)
        assert screen.jobs[job_id].status == "done", screen.jobs[job_id].error
        await pilot.press("enter")  # the job's result: the heal
        await settle(pilot)
        detail = app.screen
        assert isinstance(detail, HealDetailScreen) and detail.heal is not None and len(detail.heal.loss_curve) == 8
        text = screen_text(app)
        assert "lineage: tiny-llama → tiny-cut → tiny-healed" in text and "KL " in text
        assert "512 tokens of wikitext2" in text and "in 8 steps" in text
        chart = detail.query_one(Chart)
        assert chart.series[0].points[-1][0] == 512 and any(chr(c) in text for c in range(0x2801, 0x2900))
        lineage = detail.query_one("#heal-lineage-table", RecordTable).table.records()
        assert [(r["role"], r["name"]) for r in lineage] == [("base", "tiny-llama"), ("pruned", "tiny-cut"),
                                                             ("healed", "tiny-healed")]  # fmt: skip
