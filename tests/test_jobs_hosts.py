"""Job processes on several hosts sharing one queue, as separate processes (tests/jobs_helper.py
`work`, each standing for a job process on the host it names): every job runs exactly once, a
host never runs more than its limit at once, and a process killed mid-job leaves that job
interrupted, the others unharmed, and the job retryable from another host."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import jobs_helper
import pytest
from sqlalchemy import func, select
from store_fixtures import add_model

from store import jobs
from store.db import Store, host_name
from store.tables import Evaluation, Job

pytestmark = pytest.mark.backends("sqlite", "postgresql")
LIMIT_S = 240  # generous: the machine may be busy; nothing here asserts on speed


def start(location, folder: Path, hosts: list[str], hang: Path | None = None, first: int = 0):
    """One `work` process per host named (a host may be named twice), numbered from `first`; they
    start on one signal. With `hang`, the first of them hangs in its first job."""
    go = folder / f"go-{first}"
    processes = [
        jobs_helper.run("work", str(location), str(go), str(folder / f"out-{first + i}"), host,
                        *([str(hang)] if hang and i == 0 else []))
        for i, host in enumerate(hosts)
    ]  # fmt: skip
    go.touch()
    return processes


def finished(processes, folder: Path, first: int = 0) -> list[dict]:
    outputs = []
    for i, process in enumerate(processes):
        _, err = process.communicate(timeout=LIMIT_S)
        assert process.returncode == 0, err
        outputs.append(json.loads((folder / f"out-{first + i}").read_text()))
    return outputs


def evaluations_by_job(store: Store) -> dict[int, int]:
    with store.session() as session:
        return dict(session.execute(select(Evaluation.job_id, func.count()).group_by(Evaluation.job_id)).all())


def test_four_processes_on_two_hosts_run_200_jobs_each_exactly_once_within_each_hosts_limit(
    location, backend, tmp_path
):
    with Store.open(location) as store:
        add_model(store, "base")
        ids = [jobs.add_job(store, "prune", {}) for _ in range(200)]
    outputs = finished(start(location, tmp_path, ["gpu-a", "gpu-a", "gpu-b", "gpu-b"]), tmp_path)

    claimed = [i for out in outputs for i in out["ids"]]
    assert sorted(claimed) == ids  # none lost, none twice
    seconds = max(out["seconds"] for out in outputs)
    print(f"\n4 processes on 2 hosts ran 200 jobs in {seconds:.2f} s: {200 / seconds:.0f} jobs/s "
          f"({backend}; per process {[len(out['ids']) for out in outputs]})")
    with Store.open(location) as store:
        assert evaluations_by_job(store) == {i: 1 for i in ids}  # each job's row, once
        done = jobs.list_jobs(store)
        assert {j.status for j in done} == {"done"} and {j.host for j in done} == {"gpu-a", "gpu-b"}
        # One job at a time per host: each claim there began after the one before it finished.
        for host in ("gpu-a", "gpu-b"):
            mine = sorted((j for j in done if j.host == host), key=lambda j: j.started_at)
            assert all(b.started_at >= a.finished_at for a, b in zip(mine, mine[1:], strict=False)), host


def test_a_process_killed_mid_job_leaves_it_interrupted_the_others_done_and_it_retries_elsewhere(location, tmp_path):
    with Store.open(location) as store:
        add_model(store, "base")
        ids = [jobs.add_job(store, "prune", {}) for _ in range(40)]
    hanging = tmp_path / "hanging"
    # The one killed runs on this host, where its job is judged by its pid once its heartbeat is old;
    # it claims its job before the others start.
    [victim_process] = start(location, tmp_path, [host_name()], hang=hanging)
    deadline = time.monotonic() + LIMIT_S
    while not hanging.exists():
        assert victim_process.poll() is None, victim_process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    victim = int(hanging.read_text())
    others = start(location, tmp_path, ["gpu-a", "gpu-a", "gpu-b"], first=1)
    os.kill(victim_process.pid, signal.SIGKILL)  # mid-job (its row flushed, not committed), the others busy
    victim_process.wait()
    outputs = finished(others, tmp_path, first=1)
    assert sorted(i for out in outputs for i in out["ids"]) == [i for i in ids if i != victim]

    while True:  # interrupted once its heartbeat is no longer fresh (FRESH_S) and its pid is gone
        with Store.open(location) as store:
            job = jobs.get_job(store, victim)
        if job.status != "running":
            break
        assert time.monotonic() < deadline, "never declared dead"
        time.sleep(0.5)
    assert job.status == "interrupted" and f"pid {victim_process.pid}" in job.error
    with Store.open(location) as store:
        assert evaluations_by_job(store) == {i: 1 for i in ids if i != victim}  # its row went with it
        assert {j.status for j in jobs.list_jobs(store) if j.id != victim} == {"done"}
        again = jobs.retry(store, victim)

    elsewhere = tmp_path / "retry"
    elsewhere.mkdir()
    retried = finished(start(location, elsewhere, ["gpu-b"]), elsewhere)
    assert retried[0]["ids"] == [again]
    with Store.open(location) as store:
        assert jobs.get_job(store, again).host == "gpu-b" and jobs.get_job(store, again).status == "done"
        with store.session() as session:
            assert session.scalar(select(func.count(Job.id)).where(Job.status == "running")) == 0
