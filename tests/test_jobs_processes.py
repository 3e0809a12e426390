"""Real job processes running real pruning on tiny models: a worker runs a queued job, a job
killed with SIGKILL becomes interrupted (and is retried by a worker in a session of its own), a
cancel stops one mid-way, two workers share a queue, and a closed terminal does not end a job.

The tests of a job's whole life run on PostgreSQL too (tests/test_postgres_jobs.py has claims by
many processes there); cancelling and two workers, whose store side test_jobs.py covers on both,
on SQLite only.

A job slow enough to act on mid-way: a data-driven scorer with many calibration sequences on a
somewhat wider tiny model (seconds of calibration, a progress row per batch).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from conftest import DATA, tiny_model
from sqlalchemy import select

from store import jobs, queries
from store.check import check
from store.db import Store, host_name
from store.jobs import JobInfo
from store.tables import PruningRun
from workbench.cli.main import main
from workbench.jobs import submit, worker_running
from workbench.spec import PruneSpec

TERMINAL = Path(__file__).with_name("terminal.py")
BOTH = pytest.mark.backends("sqlite", "postgresql")
LIMIT_S = 240  # generous: the machine may be busy; nothing here asserts on speed


@pytest.fixture(scope="module")
def wide_model_dir(tmp_path_factory, tokenizer) -> Path:
    folder = tmp_path_factory.mktemp("wide-llama")
    model = tiny_model("llama", vocab_size=len(tokenizer), hidden_size=128, intermediate_size=512,
                       num_hidden_layers=4, head_dim=32)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def prune_request(model: Path | str, samples: int, scorer: str = "wanda", percent: float = 25) -> dict:
    """On the CPU, where calibrating thousands of sequences takes long enough to act on mid-way."""
    return PruneSpec(model=str(model), scorer=scorer, percent=percent, samples=samples, seq_len=64,
                     device="cpu").to_dict()


def cli(location: Path | str, *args: str, **popen) -> subprocess.Popen[str]:
    """`workbench --store STORE ARGS` in a process of its own."""
    return subprocess.Popen([sys.executable, "-m", "workbench", "--store", str(location), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def wait_for(location: Path | str, job_id: int, done: Callable[[JobInfo], bool], seen: list[JobInfo] | None = None,
             every_s: float = 0.05) -> JobInfo:
    """Poll the job row (opening the store each time, as any process would) until `done` holds;
    a job still being queued by another process counts as not there yet."""
    deadline = time.monotonic() + LIMIT_S
    while True:
        with Store.open(location) as store:
            found = jobs.list_jobs(store)
        job = next((j for j in found if j.id == job_id), None)
        if job is not None and seen is not None and (not seen or seen[-1] != job):
            seen.append(job)
        if job is not None and done(job):
            return job
        assert time.monotonic() < deadline, f"gave up waiting; the job is {job}"
        time.sleep(every_s)


def calibrating(job: JobInfo) -> bool:
    """A batch into calibration (which starts at 10% of the job)."""
    assert not job.finished, job
    return job.stage == "calibrate" and job.progress > 0.1


def in_a_job_process(job: JobInfo) -> bool:
    """Running, and its row names the child process of a worker (not yet the worker that claimed it)."""
    try:
        return job.status == "running" and "workbench.jobs.child" in psutil.Process(job.pid).cmdline()
    except psutil.Error:
        return False


def runs(store: Store) -> list[PruningRun]:
    with store.session() as session:
        return list(session.scalars(select(PruningRun)))


def assert_clean(store: Store) -> None:
    report = check(store)
    assert report.clean and report.in_progress == (), report
    assert not any((store.artifacts / "tmp").glob("*"))


@BOTH
def test_a_worker_runs_a_queued_job_in_its_own_process_and_records_its_run(store, wide_model_dir):
    job_id = submit(store, "prune", prune_request(wide_model_dir, samples=512), data_dir=DATA)
    worker = cli(store.location, "jobs", "work")
    seen: list[JobInfo] = []
    job = wait_for(store.location, job_id, lambda j: j.finished, seen)
    out, err = worker.communicate(timeout=LIMIT_S)
    assert worker.returncode == 0, err
    assert job.status == "done", job.error

    running = [j for j in seen if j.status == "running"]
    fractions = [j.progress for j in running]
    assert fractions == sorted(fractions) and len({f for f in fractions if 0 < f < 1}) >= 3
    assert {"load", "calibrate"} <= {j.stage for j in running}
    assert job.pid not in (None, worker.pid, os.getpid())  # a child of the worker ran it
    assert job.device == "cpu" and job.peak_memory_bytes > 0
    run = queries.run_detail(store, job.result["run_id"])
    assert run.job_id == job_id and run.result_model_id == job.result["model_id"]
    assert queries.get_model(store, job.result["model_id"]).name == job.result["model_name"]
    log = (store.root / job.log_path).read_text()
    # The log tells the job's story: what it was asked, each stage in words, what it made, how it ended.
    assert f"job {job_id} (prune): {wide_model_dir} wanda 25%" in log
    assert "calibrating on 512 sequences of 64 tokens" in log and "score: score" not in log
    assert f"made {job.result['model_name']} (model {job.result['model_id']}, run {job.result['run_id']})" in log
    assert log.rstrip().splitlines()[-1].split(" ", 1)[1].startswith("done after ")
    assert f"job {job_id} (prune) started" in out and "queue empty after 1 job" in out
    assert_clean(store)


@BOTH
def test_a_job_killed_with_its_worker_is_interrupted_on_the_next_open_and_retries(location, wide_model_dir):
    with Store.open(location) as store:
        job_id = submit(store, "prune", prune_request(wide_model_dir, samples=8192), data_dir=DATA)
    worker = cli(location, "jobs", "work", start_new_session=True)
    job = wait_for(location, job_id, calibrating)
    os.killpg(worker.pid, signal.SIGKILL)  # the worker and its job process at once, as a power cut would
    worker.communicate()

    job = wait_for(location, job_id, lambda j: j.status != "running", every_s=0.5)
    assert job.status == "interrupted" and "died without finishing" in job.error
    with Store.open(location) as store:
        assert runs(store) == []
        assert [m.source for m in queries.list_models(store)] == ["folder"]  # the base, imported before
        assert_clean(store)
        assert "calibrating on 8192 sequences" in (store.root / job.log_path).read_text()

    assert main(["--store", str(location), "jobs", "retry", str(job_id)]) == 0  # starts a worker too
    with Store.open(location) as store:
        again = jobs.list_jobs(store)[0]
    assert again.id != job_id and again.request == job.request
    running = wait_for(location, again.id, in_a_job_process)
    # The worker it started leads a session of its own, with no terminal: closing ours would not reach it.
    worker = psutil.Process(running.pid).parent()
    assert "jobs work" in " ".join(worker.cmdline())
    assert os.getsid(worker.pid) == worker.pid != os.getsid(0) and worker.terminal() is None
    # Cancelled as soon as it runs: this test is about retrying, not about 8192 sequences.
    assert main(["--store", str(location), "jobs", "cancel", str(again.id), "--wait"]) == 0
    assert jobs.get_job(Store.open(location), again.id).status == "cancelled"


def test_cancel_stops_a_running_job_at_a_batch_boundary_and_nothing_is_recorded(store, wide_model_dir, capsys):
    job_id = submit(store, "prune", prune_request(wide_model_dir, samples=8192), data_dir=DATA)
    worker = cli(store.location, "jobs", "work")
    wait_for(store.location, job_id, calibrating)
    assert main(["--store", store.location, "jobs", "cancel", str(job_id)]) == 0
    assert "stops at its next layer or batch boundary" in capsys.readouterr().out
    job = wait_for(store.location, job_id, lambda j: j.finished)
    out, err = worker.communicate(timeout=LIMIT_S)
    assert worker.returncode == 0, err
    assert job.status == "cancelled" and job.message == "cancelled during calibrate", job
    assert runs(store) == []
    assert [m.source for m in queries.list_models(store)] == ["folder"]
    assert "cancelled during calibrate after" in (store.root / job.log_path).read_text().splitlines()[-1]
    assert_clean(store)


def test_two_workers_on_one_queue_run_every_job_exactly_once(store, tiny_model_dirs):
    from workbench.model_io import import_model

    base = import_model(store, str(tiny_model_dirs["llama"]))  # so that no two jobs import it at once
    ids = [submit(store, "prune", prune_request(base.name, 0, "ppm", p)) for p in (10, 20, 30)]
    workers = [cli(store.location, "jobs", "work", "--max-parallel", "2") for _ in range(2)]
    outputs = []
    for worker in workers:
        out, err = worker.communicate(timeout=LIMIT_S)
        assert worker.returncode == 0, err
        outputs.append(out)
    assert [j.status for j in jobs.list_jobs(store)] == ["done"] * 3
    assert sorted(r.job_id for r in runs(store)) == ids
    started = [int(w.split()[0]) for out in outputs for w in out.split(" job ")[1:] if "started" in w]
    assert sorted(started) == ids
    assert_clean(store)


def _terminal(tmp_path: Path, *command: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(TERMINAL), str(tmp_path / "screen"), *command], text=True)


def test_closing_the_terminal_of_a_foreground_prune_does_not_end_its_job(tmp_path, wide_model_dir):
    location = tmp_path / "store"
    Store.open(location).close()
    terminal = _terminal(
        tmp_path, sys.executable, "-m", "workbench", "--store", str(location), "prune", str(wide_model_dir),
        "--scorer", "wanda", "--percent", "25", "--samples", "1024", "--seq-len", "64", "--device", "cpu",
    )
    job = wait_for(location, 1, calibrating, every_s=0.2)
    assert job.pid in [p.pid for p in psutil.Process(terminal.pid).children()]  # the CLI on the terminal runs it
    terminal.kill()  # the terminal goes away: the kernel hangs up its session
    terminal.wait()
    job = wait_for(location, 1, lambda j: j.finished, every_s=0.2)
    assert job.status == "done", job.error
    with Store.open(location) as store:
        assert [r.job_id for r in runs(store)] == [1]
        log = (store.root / job.log_path).read_text()
        assert "the terminal closed: the job goes on" in log
        assert_clean(store)


@BOTH
def test_a_foreground_prune_waits_while_the_host_is_busy_and_ctrl_c_cancels_its_job(store, tiny_model_dirs):
    busy = submit(store, "prune", prune_request("elsewhere", 0, "ppm"))
    assert jobs.claim(store, os.getpid()) is not None  # this process "runs" a job: the host's one slot is taken
    prune = cli(store.location, "prune", str(tiny_model_dirs["llama"]), "--scorer", "ppm", "--percent", "10")
    deadline = time.monotonic() + LIMIT_S
    while not (jobs.count_jobs(store, "queued") and worker_running(store)):  # queued, and left to a worker
        assert prune.poll() is None, prune.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    prune.send_signal(signal.SIGINT)
    out, err = prune.communicate(timeout=LIMIT_S)
    assert prune.returncode == 130 and out == ""
    assert err.strip().endswith(f"workbench: error: job {busy + 1} cancelled"), err
    job = jobs.get_job(store, busy + 1)
    assert (job.status, job.message, job.log_path) == ("cancelled", "cancelled before it started", None)
    while worker_running(store):  # the worker finds nothing left to do and leaves
        assert time.monotonic() < deadline
        time.sleep(0.1)
    jobs.finish(store, busy, "done", "done")
    assert runs(store) == [] and queries.list_models(store) == []


@pytest.mark.parametrize("reader", ["jobs list", "jobs log --follow"])
def test_work_queued_behind_a_killed_worker_is_taken_up_by_the_next_command_that_reads_jobs(
    tmp_path, wide_model_dir, reader
):
    location = tmp_path / "store"
    with Store.open(location) as store:
        first = submit(store, "prune", prune_request(wide_model_dir, samples=8192), data_dir=DATA)
    worker = cli(location, "jobs", "work", start_new_session=True)
    wait_for(location, first, calibrating)
    with Store.open(location) as store:
        second = submit(store, "prune", prune_request(wide_model_dir, 0, "ppm"), data_dir=DATA)
    os.killpg(worker.pid, signal.SIGKILL)  # the worker and its job process, as `kill -9 -PGID` does
    worker.communicate()
    with Store.open(location) as store:
        assert not worker_running(store) and jobs.get_job(store, second).status == "queued"

    if reader == "jobs list":
        reading = cli(location, "jobs", "list")
        out, err = reading.communicate(timeout=LIMIT_S)
        assert reading.returncode == 0 and f"\n {second}  prune  queued" in out
        worker_output = location / f"worker.{host_name()}.log"
        assert err == f"started a job process for the queued jobs (its output: {worker_output})\n"
        job = wait_for(location, second, lambda j: j.finished, every_s=0.5)
    else:
        follow = cli(location, "jobs", "log", str(second), "--follow")
        out, err = follow.communicate(timeout=LIMIT_S)
        assert follow.returncode == 0, err
        assert err == f"job {second} is queued and no job process ran: started one\n"
        assert " done after " in out.splitlines()[-1]  # the log's last line says how the job ended
        job = jobs.get_job(Store.open(location), second)
    assert job.status == "done", job.error
    with Store.open(location) as store:
        assert jobs.get_job(store, first).status == "interrupted"
        assert [r.job_id for r in runs(store)] == [second]
        deadline = time.monotonic() + LIMIT_S
        while worker_running(store):  # the worker it started leaves once the queue is empty
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert_clean(store)


def test_following_a_queued_job_that_nothing_can_run_says_so(tmp_path, capsys):
    from mounts import read_only

    location = tmp_path / "store"
    with Store.open(location) as store:
        queued = submit(store, "prune", prune_request("base", 0, "ppm"))
    with read_only(location):
        code = main(["--store", str(location), "jobs", "log", str(queued), "--follow"])
        out, err = capsys.readouterr()
        assert (code, out) == (2, "")
        assert err == (f"workbench: error: job {queued} is queued and nothing runs it: the store {location} is "
                       "read-only\n")


def test_a_model_a_running_or_queued_job_uses_cannot_be_removed(tmp_path, wide_model_dir, capsys):
    location = tmp_path / "store"
    with Store.open(location) as store:
        from workbench.model_io import import_model

        base = import_model(store, str(wide_model_dir), name="base")
        running = submit(store, "prune", prune_request("base", samples=8192), data_dir=DATA)
        queued = submit(store, "eval", {"models": [f"job:{running}", str(base.id)], "tasks": ["speed"]})
    worker = cli(location, "jobs", "work", start_new_session=True)
    wait_for(location, running, calibrating)
    folder = Store.open(location).model_path(base)
    before = sorted(p.name for p in folder.rglob("*"))

    code = main(["--store", str(location), "models", "rm", "base", "--force"])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err == (f"workbench: error: model 'base' is in use by job {running}, {queued} (queued or running): "
                   f"`workbench jobs cancel {running}` first, or wait for it to end\n")
    assert sorted(p.name for p in folder.rglob("*")) == before

    for job in (running, queued):
        assert main(["--store", str(location), "jobs", "cancel", str(job), "--wait"]) == 0
    worker.communicate(timeout=LIMIT_S)
    assert main(["--store", str(location), "models", "rm", "base", "--force"]) == 0
    capsys.readouterr()
    assert not folder.exists()
    with Store.open(location) as store:
        assert queries.list_models(store) == [] and runs(store) == []
        assert_clean(store)


def test_sigterm_to_a_foreground_prune_cancels_its_job_as_ctrl_c_does(tmp_path, wide_model_dir):
    location = tmp_path / "store"
    Store.open(location).close()
    prune = cli(location, "prune", str(wide_model_dir), "--scorer", "wanda", "--percent", "25", "--samples", "8192",
                "--seq-len", "64")
    job = wait_for(location, 1, calibrating, every_s=0.2)
    assert job.pid == prune.pid  # the CLI runs its job itself
    prune.send_signal(signal.SIGTERM)
    out, err = prune.communicate(timeout=LIMIT_S)
    assert prune.returncode == 130 and out == ""
    assert err.strip().splitlines()[-1] == "workbench: error: job 1 cancelled", err
    with Store.open(location) as store:
        job = jobs.get_job(store, 1)
        assert (job.status, job.message) == ("cancelled", "cancelled during calibrate")
        assert runs(store) == [] and [m.source for m in queries.list_models(store)] == ["folder"]
        assert_clean(store)
