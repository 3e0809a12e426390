"""Snapshots of the main screens at 80x24 on stores with fixed names and timestamps, long names
among them (the columns that matter stay in sight), and of a form's focus in each theme
(pytest-textual-snapshot; `pytest --snapshot-update` rewrites them after a deliberate change: look
at what changed first, e.g. rendered to PNG)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from study_store import NAME, fill_study
from textual.pilot import Pilot
from tui_helpers import app_on, filled_fixture, settle  # noqa: F401  (fixtures)
from tui_store import T0, add_long_names, add_recovery

from store.tables import Job
from tui.app import ANSI_THEME, WorkbenchApp
from workbench import jobs

SIZE = (80, 24)


def before(*steps: Callable[[WorkbenchApp], object]) -> Callable[[Pilot[None]], Awaitable[None]]:
    """Run each step on the app, letting its workers land after each; the store's path (a temporary
    folder) is replaced in the header."""

    async def run(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, WorkbenchApp)
        await settle(pilot)  # the store opens
        app.sub_title = "demo store"
        for step in steps:
            step(app)
            await settle(pilot)
        await pilot.pause(0.1)

    return run


@pytest.fixture
def demo(store, filled):
    return store, filled


@pytest.fixture(autouse=True)
def no_job_processes(monkeypatch):
    """The Jobs screen starts a job process for queued work: not for these made-up jobs."""
    monkeypatch.setattr(jobs, "ensure_worker", lambda store: False)


def test_models(snap_compare, demo):
    store, _ = demo
    assert snap_compare(app_on(store), terminal_size=SIZE, run_before=before())


def test_models_in_the_ansi_theme(snap_compare, demo):
    store, _ = demo
    assert snap_compare(WorkbenchApp(store, theme=ANSI_THEME), terminal_size=SIZE, run_before=before())


def test_runs(snap_compare, demo):
    store, _ = demo
    assert snap_compare(app_on(store), terminal_size=SIZE, run_before=before(lambda app: app.switch_mode("runs")))


def test_run_detail(snap_compare, demo):
    store, ids = demo
    assert snap_compare(app_on(store), terminal_size=SIZE, run_before=before(lambda app: app.open_run(ids["ppm_run"])))


def test_model_detail_lineage(snap_compare, demo):
    store, ids = demo
    run_before = before(lambda app: app.open_model(ids["ppm"]), lambda app: app.screen.action_tab(1))
    assert snap_compare(app_on(store), terminal_size=SIZE, run_before=run_before)


def test_compare_metrics(snap_compare, demo):
    store, ids = demo
    run_before = before(lambda app: app.open_compare([ids["base"], ids["ppm"], ids["wanda"]]),
                        lambda app: app.screen.action_tab(1))  # fmt: skip
    assert snap_compare(app_on(store), terminal_size=SIZE, run_before=run_before)


def test_tradeoff(snap_compare, demo):
    store, ids = demo
    assert snap_compare(app_on(store), terminal_size=SIZE, run_before=before(lambda app: app.open_tradeoff(ids["ppm"])))


def test_jobs(snap_compare, demo):
    store, _ = demo
    with store.write() as s:
        request = {"request": {"model": "llama-base", "scorer": "wanda", "percent": 30.0}}
        s.add(Job(kind="prune", spec=request, status="done", progress=1.0, message="done", created_at=T0))
        s.add(Job(kind="prune", spec=request, status="running", stage="score", progress=0.35, eta_seconds=95,
                  message="layer 11/30", device="cuda:0", peak_memory_bytes=3 * 2**30,
                  created_at=T0 + timedelta(minutes=5)))  # fmt: skip
    assert snap_compare(app_on(store), terminal_size=SIZE, run_before=before(lambda app: app.switch_mode("jobs")))


def test_prune_form(snap_compare, demo):
    store, _ = demo
    run_before = before(lambda app: app.open_prune_form("llama-base"))
    assert snap_compare(app_on(store), terminal_size=SIZE, run_before=run_before)


def test_eval_form(snap_compare, demo):
    store, ids = demo
    run_before = before(lambda app: app.open_eval_form([ids["ppm"], ids["wanda"]]))
    assert snap_compare(app_on(store), terminal_size=SIZE, run_before=run_before)


def test_import_form(snap_compare, demo):
    store, _ = demo
    assert snap_compare(app_on(store), terminal_size=SIZE, run_before=before(lambda app: app.open_import_form()))


@pytest.fixture
def study(store):
    fill_study(store)
    return store


def test_studies(snap_compare, study):
    assert snap_compare(app_on(study), terminal_size=SIZE, run_before=before(lambda app: app.switch_mode("studies")))


def test_study_tradeoff(snap_compare, study):
    run_before = before(lambda app: app.open_study(NAME), lambda app: app.screen.action_tab(1))
    assert snap_compare(app_on(study), terminal_size=SIZE, run_before=run_before)


def test_study_chart(snap_compare, study):
    run_before = before(lambda app: app.open_study(NAME), lambda app: app.screen.action_tab(2))
    assert snap_compare(app_on(study), terminal_size=SIZE, run_before=run_before)


@pytest.fixture
def long_names(store):
    return store, add_long_names(store)


def test_models_with_long_names(snap_compare, long_names):
    """Name, parameters, width, expansion, evaluations and parent in sight; a long name cut in its middle."""
    store, _ = long_names
    assert snap_compare(app_on(store), terminal_size=SIZE, run_before=before())


def test_jobs_with_long_names(snap_compare, long_names):
    """Status, progress and ETA first; what each job is gives way."""
    store, _ = long_names
    assert snap_compare(app_on(store), terminal_size=SIZE, run_before=before(lambda app: app.switch_mode("jobs")))


def test_jobs_with_hosts_and_gpus(snap_compare, long_names, monkeypatch):
    """Each job's GPU and host in sight beside its progress; the line of this host's GPUs (three fake
    ones, as tests/test_gpus.py makes them), each with the job it runs or free."""
    store, _ = long_names
    monkeypatch.setattr("tui.screens.jobs.host_name", lambda: "gpu-box-1")  # this host, named the same everywhere
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", ",".join(f"GPU-{i:032}" for i in range(3)))  # none a machine has
    with store.write() as s:
        running = s.get(Job, 3)
        running.host, running.device = "gpu-box-1", "cuda:1"
        s.add(Job(kind="prune", spec={"request": {"model": "smollm2-135m-instruct-base", "scorer": "wanda",
                                                  "percent": 40.0}}, status="running", stage="calibrate",
                  progress=0.15, eta_seconds=1510, message="batch 3/64", device="cuda:0+2", host="gpu-node-b",
                  created_at=T0 + timedelta(hours=4)))  # fmt: skip
    assert snap_compare(app_on(store), terminal_size=SIZE, run_before=before(lambda app: app.switch_mode("jobs")))


@pytest.fixture
def recovered(store, filled):
    return store, filled | add_recovery(store, filled)


def test_heal_form(snap_compare, recovered):
    store, _ = recovered
    run_before = before(lambda app: app.open_heal_form("llama-wanda-25"))
    assert snap_compare(app_on(store), terminal_size=SIZE, run_before=run_before)


def test_heal_detail(snap_compare, recovered):
    """The loss curve as a chart under where it started and ended, what it read and cost, and the lineage."""
    store, ids = recovered
    assert snap_compare(app_on(store), terminal_size=SIZE, run_before=before(lambda app: app.open_heal(ids["heal"])))


def test_tradeoff_of_a_healed_model_against_the_base(snap_compare, recovered):
    store, ids = recovered
    run_before = before(lambda app: app.open_tradeoff(ids["healed"]), lambda app: app.screen.action_switch_baseline())
    assert snap_compare(app_on(store), terminal_size=SIZE, run_before=run_before)


def test_tradeoff_with_long_names(snap_compare, long_names):
    """Metric keys whole; the names above the table, not in its headers."""
    store, ids = long_names
    run_before = before(lambda app: app.open_tradeoff(ids["cut"]))
    assert snap_compare(app_on(store), terminal_size=SIZE, run_before=run_before)


def focused_dropdown(app: WorkbenchApp) -> None:
    app.open_prune_form("llama-base")
    app.call_after_refresh(lambda: app.screen.query_one("#target-kind").focus())


@pytest.mark.parametrize("theme", ["textual-dark", "textual-light", ANSI_THEME])
def test_focus_shows_in_every_theme(snap_compare, demo, theme):
    """The focused field (a dropdown here) is marked on its left, its label lit and its value shaded."""
    store, _ = demo
    app = WorkbenchApp(store, theme=theme)
    assert snap_compare(app, terminal_size=SIZE, run_before=before(focused_dropdown))
