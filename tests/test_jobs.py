"""Job rows without the engine: queueing, claiming under contention, cancel and retry, the rules
that declare a job dead, and the `jobs` commands that read them. (Job processes running real
pruning are in test_jobs_processes.py.)"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import timedelta

import jobs_helper
import psutil
import pytest
from jobs_helper import claim_at_once
from sqlalchemy import update
from store_fixtures import snapshot

from store import jobs, queries
from store.check import check
from store.db import Store, host_name
from store.tables import Job, utcnow
from workbench.cli.main import main
from workbench.errors import UserError
from workbench.jobs import submit, worker_running
from workbench.jobs.worker import log_path as worker_log
from workbench.spec import PruneSpec

pytestmark = pytest.mark.backends("sqlite", "postgresql")


def request(**overrides) -> dict:
    return PruneSpec(model="some-model", scorer="ppm", percent=25, **overrides).to_dict()


def set_running(store: Store, job_id: int, **values) -> None:
    """Make a job look claimed by some process (values override pid, host, heartbeat)."""
    row = dict(status="running", pid=os.getpid(), host=host_name(), heartbeat_at=utcnow(), started_at=utcnow())
    with store.write() as session:
        session.execute(update(Job).where(Job.id == job_id).values(**(row | values)))


def test_submit_checks_the_request_and_keeps_where_it_was_made(store, tmp_path):
    job_id = submit(store, "prune", request(samples=8), data_dir=tmp_path, cwd=tmp_path)
    job = jobs.get_job(store, job_id)
    assert (job.kind, job.status, job.log_path) == ("prune", "queued", None)
    assert job.request == PruneSpec.from_dict(request(samples=8)).to_dict()
    assert job.spec["cwd"] == str(tmp_path) and job.spec["data_dir"] == str(tmp_path) and job.spec["out"] is None
    before = snapshot(store.root)
    with pytest.raises(UserError, match="below 100"):
        submit(store, "prune", request() | {"percent": 100})
    with pytest.raises(UserError, match="unknown job kind 'train'"):
        submit(store, "train", request())
    assert [j.id for j in jobs.list_jobs(store)] == [job_id]
    assert {k: v for k, v in snapshot(store.root).items() if "sqlite" not in k} == {
        k: v for k, v in before.items() if "sqlite" not in k
    }


def test_claim_takes_the_oldest_queued_job_once_and_respects_the_host_limit(store):
    first, second = submit(store, "prune", request()), submit(store, "prune", request())
    claimed = jobs.claim(store, 1234, max_running=1)
    assert claimed is not None and claimed.id == first and claimed.status == "running"
    assert (claimed.pid, claimed.host, claimed.log_path) == (1234, host_name(), f"artifacts/logs/job-{first}.log")
    assert (store.root / claimed.log_path).is_file()
    assert jobs.claim(store, 1234, max_running=1) is None  # one runs on this host already
    assert jobs.claim(store, 1234, job_id=first) is None  # not queued any more
    assert jobs.claim(store, 1234, job_id=second, max_running=2).id == second
    assert jobs.claim(store, 1234) is None


def test_processes_claiming_at_once_claim_every_job_exactly_once(location, tmp_path):
    with Store.open(location) as store:
        ids = [submit(store, "prune", request()) for _ in range(60)]
    assert sorted(claim_at_once(location, tmp_path)) == ids
    with Store.open(location) as store:
        assert {j.status for j in jobs.list_jobs(store)} == {"done"}


def test_cancel_stops_a_queued_job_at_once_and_flags_a_running_one(store, capsys):
    queued, running = submit(store, "prune", request()), submit(store, "prune", request())
    set_running(store, running)
    assert main(["--store", store.location, "jobs", "cancel", str(queued)]) == 0
    assert "cancelled (it had not started)" in capsys.readouterr().out
    job = jobs.get_job(store, queued)
    assert job.status == "cancelled" and job.finished_at is not None
    assert jobs.request_cancel(store, running).status == "running"
    assert jobs.get_job(store, running).cancel_requested
    assert jobs.beat(store, running) is True  # what the job process's heartbeat reads
    assert main(["--store", store.location, "jobs", "cancel", str(queued)]) == 2
    assert capsys.readouterr().err.strip() == f"workbench: error: job {queued} has already finished (cancelled): " \
        "nothing to cancel"
    assert main(["--store", store.location, "jobs", "cancel", "99"]) == 2
    assert "no job 99" in capsys.readouterr().err


def test_retry_queues_a_new_job_with_the_same_request_and_only_for_jobs_that_did_not_finish_well(store, capsys):
    job_id = submit(store, "prune", request(samples=3))
    with pytest.raises(jobs.StoreError, match="only failed, cancelled or interrupted"):
        jobs.retry(store, job_id)
    jobs.request_cancel(store, job_id)
    again = jobs.retry(store, job_id)
    old, new = jobs.get_job(store, job_id), jobs.get_job(store, again)
    assert new.id != old.id and new.status == "queued" and new.spec == old.spec and new.kind == old.kind
    assert new.message == f"retry of job {job_id}" and old.status == "cancelled"
    assert old.result == {"retry": {"job_id": again}} and jobs.retried_by(old) == again
    # Retried already, by someone else sharing the store or by a key pressed twice: refused...
    with pytest.raises(jobs.StoreError, match=rf"job {job_id} was retried already, as job {again} \(queued\)"):
        jobs.retry(store, job_id)
    assert main(["--store", store.location, "jobs", "retry", str(job_id)]) == 2
    assert capsys.readouterr().err == f"workbench: error: job {job_id} was retried already, as job {again} (queued)\n"
    assert [j.id for j in jobs.list_jobs(store)] == [again, job_id]
    # ...until that retry has not gone well either.
    jobs.request_cancel(store, again)
    third = jobs.retry(store, job_id)
    assert jobs.retried_by(jobs.get_job(store, job_id)) == third and third not in (job_id, again)


def test_outcomes_are_written_only_while_the_job_runs(store):
    job_id = submit(store, "prune", request())
    assert not jobs.update_running(store, job_id, stage="load")  # still queued
    set_running(store, job_id)
    assert jobs.update_running(store, job_id, stage="load", progress=0.5, device="cpu", peak_memory_bytes=5 * 2**30)
    assert jobs.finish(store, job_id, "failed", "failed", error="OSError: disk full", result={"error_type": "OSError"})
    assert not jobs.finish(store, job_id, "done", "done")  # a finished job stays as it ended
    job = jobs.get_job(store, job_id)
    assert (job.status, job.error, job.peak_memory_bytes, job.device) == ("failed", "OSError: disk full", 5 * 2**30,
                                                                          "cpu")
    assert jobs.beat(store, job_id) is None


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


LONG_AGO = timedelta(seconds=jobs.OTHER_HOST_SILENCE_S + 60)
A_WHILE_AGO = timedelta(seconds=jobs.FRESH_S + 5)


@pytest.mark.parametrize(
    ("case", "interrupted"),
    [
        ("dead pid, silent", True),
        ("dead pid, fresh heartbeat", False),  # it may be on another machine of the same name
        ("live pid, silent", False),  # e.g. busy in a long call: its process says it lives
        ("pid reused by a younger process", True),
        ("other host, long silent", True),
        ("other host, silent a while", False),
    ],
)
def test_a_running_job_is_declared_dead_on_open_only_when_nothing_says_it_lives(location, case, interrupted):
    with Store.open(location) as store:
        job_id = submit(store, "prune", request())
        now = utcnow()
        values = {
            "dead pid, silent": dict(pid=_dead_pid(), heartbeat_at=now - A_WHILE_AGO),
            "dead pid, fresh heartbeat": dict(pid=_dead_pid()),
            "live pid, silent": dict(pid=1, heartbeat_at=now - A_WHILE_AGO),  # init: older than that beat
            # This process started long after that heartbeat: the pid now names someone else.
            "pid reused by a younger process": dict(
                heartbeat_at=now.fromtimestamp(psutil.Process().create_time() - 60, now.tzinfo)
            ),
            "other host, long silent": dict(host="elsewhere", pid=1, heartbeat_at=now - LONG_AGO),
            "other host, silent a while": dict(host="elsewhere", pid=1, heartbeat_at=now - A_WHILE_AGO),
        }[case]
        set_running(store, job_id, **values)
    with Store.open(location) as store:
        job = jobs.get_job(store, job_id)
    assert (job.status == "interrupted") is interrupted, job
    if interrupted:
        assert "died without finishing" in job.error and job.finished_at is not None


def test_a_process_killed_while_writing_leaves_an_interrupted_job_and_no_half_written_folder(location, tmp_path):
    with Store.open(location) as store:
        job_id = submit(store, "prune", request())
    mark = tmp_path / "writing"
    process = jobs_helper.run("write-and-hang", str(location), str(mark))
    deadline = time.monotonic() + 60
    while not mark.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with Store.open(location) as store:
        assert len(check(store).in_progress) == 1  # its folder under artifacts/tmp, claimed by a live writer
    process.kill()
    process.wait()
    deadline = time.monotonic() + 60  # dead once its heartbeat is no longer fresh
    while True:
        with Store.open(location) as store:
            job = jobs.get_job(store, job_id)
            if job.status != "running":
                break
        assert time.monotonic() < deadline, "never declared dead"
        time.sleep(0.5)
    assert job.status == "interrupted" and f"pid {process.pid}" in job.error
    with Store.open(location) as store:
        report = check(store)
        assert report.clean and report.in_progress == () and report.orphans == (), report
    assert list((tmp_path / "store" / "artifacts" / "tmp").iterdir()) == []


def test_jobs_list_show_and_log_read_the_rows(store, capsys):
    done, queued = submit(store, "prune", request(samples=5)), submit(store, "prune", request())
    claimed = jobs.claim(store, os.getpid())
    assert claimed is not None and claimed.id == done
    (store.root / claimed.log_path).write_text("line one\nline two\n")
    jobs.update_running(store, done, device="cpu", peak_memory_bytes=3 * 2**20)
    jobs.finish(store, done, "done", "done", result={"run_id": 7, "model_name": "small", "model_id": 3})
    root = store.location

    assert main(["--store", root, "jobs", "log", str(done)]) == 0
    assert capsys.readouterr().out == "line one\nline two\n"
    assert main(["--store", root, "jobs", "log", str(queued)]) == 2
    assert "has no log yet" in capsys.readouterr().err
    assert main(["--store", root, "jobs", "list", "--json"]) == 0
    out, err = capsys.readouterr()
    listed = json.loads(out)
    assert [(j["id"], j["status"]) for j in listed] == [(queued, "queued"), (done, "done")]
    assert listed[1]["device"] == "cpu" and listed[1]["result"]["run_id"] == 7
    # Queued, and no job process ran: listing started one (its job fails: there is no some-model).
    assert err == f"started a job process for the queued jobs (its output: {worker_log(store)})\n"
    deadline = time.monotonic() + 120
    while not jobs.get_job(store, queued).finished or worker_running(store):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert main(["--store", root, "jobs", "list"]) == 0
    out, err = capsys.readouterr()
    assert "some-model ppm 25%" in out and "3.0 MiB" in out and f" {host_name()} " in out and err == ""  # where it ran
    assert main(["--store", root, "jobs", "show", str(done)]) == 0
    text = capsys.readouterr().out
    assert "run 7, model 'small' (id 3)" in text and "job-1.log" in text
    assert check(store).clean  # the logs are their jobs', not orphans


def test_a_model_that_cannot_fit_fails_its_job_before_loading_and_says_the_numbers(tmp_path, capsys, tokenizer):
    from transformers import LlamaConfig

    folder = tmp_path / "huge"  # over 400 billion parameters in 8 very wide layers, and a tokenizer
    LlamaConfig(hidden_size=16384, intermediate_size=2**20, num_hidden_layers=8, num_attention_heads=128,
                num_key_value_heads=8, vocab_size=32000).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "pytorch_model.bin").write_bytes(b"")  # weights that are never read: refused before loading
    store_dir = tmp_path / "s"
    code = main(["--store", str(store_dir), "prune", str(folder), "--scorer", "ppm", "--percent", "10", "--device",
                 "cpu"])  # (on CUDA: tests/test_cuda.py)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert re.fullmatch(r"workbench: error: job 1 failed: the model needs [\d.]+ GiB \(4\d\d,[\d,]+ parameters x "
                        r"\d bytes\) but cpu has [\d.]+ GiB free \(log: \S+job-1.log\)\n", err), err
    with Store.open(store_dir) as store:
        job = jobs.get_job(store, 1)
        assert job.status == "failed" and job.result == {"error_type": "UserError"} and job.device is not None
        assert queries.list_models(store) == []  # refused before anything was read or imported


def test_the_worker_lock_is_per_host_so_hosts_sharing_a_folder_each_run_their_own(store):
    import fcntl

    from workbench.jobs.worker import lock_path

    assert lock_path(store) == store.root / f"worker.{host_name()}.lock"
    with (store.root / "worker.other-host.lock").open("a") as elsewhere:
        fcntl.flock(elsewhere, fcntl.LOCK_SH)  # a worker on another host that mounts the same folder
        assert not worker_running(store)
        with lock_path(store).open("a") as here:
            fcntl.flock(here, fcntl.LOCK_SH)
            assert worker_running(store)
