"""Processes that act on a store's job queue with the store layer alone, for tests/test_jobs*.py.

    jobs_helper.py claim-all STORE GO OUT     once file GO exists, claim queued jobs one by one,
                                              finishing each at once, until none is left; write
                                              the claimed ids to OUT, one a line
    jobs_helper.py write-and-hang STORE MARK  claim the oldest queued job and, like a job process
                                              saving a model, start writing a folder under
                                              artifacts/tmp; then write MARK and wait to be killed
    jobs_helper.py work STORE GO OUT HOST [HANG]
                                              as a job process on host HOST (one job at a time
                                              there): once GO exists, claim jobs until none is
                                              queued, each recorded as an evaluation row of model
                                              "base" before it is done; write to OUT the ids and
                                              the seconds from GO to the last. With HANG, write
                                              HANG once the first job is claimed and its row
                                              flushed, and wait to be killed

Imported by the tests: `claim_at_once` starts three claim-all processes together.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from store import jobs
from store.db import Store

REPO = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.Popen[str]:
    """This script in a new process, on the repository's packages."""
    env = os.environ | {"PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, __file__, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def claim_at_once(location: Path, folder: Path, processes: int = 3) -> list[int]:
    """Start `processes` claim-all processes on one go signal; every id they claimed, in order of process."""
    go = folder / "go"
    claimers = [run("claim-all", str(location), str(go), str(folder / f"out-{i}")) for i in range(processes)]
    go.touch()
    for process in claimers:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    return [int(line) for i in range(processes) for line in (folder / f"out-{i}").read_text().split()]


def claim_all(location: str, go: str, out: str) -> None:
    _wait_for(go)
    store = Store.open(location, create=False)
    claimed = []
    while (job := jobs.claim(store, os.getpid())) is not None:
        claimed.append(job.id)
        jobs.finish(store, job.id, "done", "done")
    Path(out).write_text("".join(f"{i}\n" for i in claimed))


def work(location: str, go: str, out: str, host: str, hang: str | None = None) -> None:
    from store_fixtures import eval_row

    import store.jobs
    from store import queries

    store.jobs.host_name = lambda: host  # this process stands for a job process on that host
    _wait_for(go)
    began = time.time()
    store_ = Store.open(location, create=False)
    base = queries.get_model(store_, "base")
    claimed = []
    while jobs.count_jobs(store_, "queued"):
        job = jobs.claim(store_, os.getpid(), max_running=1)
        if job is None:  # the host's one slot is taken (or the last jobs were just claimed)
            time.sleep(0.005)
            continue
        claimed.append(job.id)
        with store_.write() as session:
            queries.add_evaluations(session, [eval_row(base.id, job_id=job.id, value=float(job.id))])
            if hang:
                _mark(hang, job.id)
                time.sleep(600)
        jobs.finish(store_, job.id, "done", "done")
    Path(out).write_text(json.dumps({"ids": claimed, "seconds": time.time() - began}))


def _mark(path: str, job_id: int) -> None:
    """Tell the test which job hangs: written aside and renamed, so the test never reads it half written."""
    Path(path + ".part").write_text(str(job_id))
    os.replace(path + ".part", path)


def _wait_for(go: str) -> None:
    deadline = time.monotonic() + 60
    while not Path(go).exists():
        if time.monotonic() > deadline:
            raise SystemExit("no go signal")
        time.sleep(0.005)


def write_and_hang(location: str, mark: str) -> None:
    store = Store.open(location, create=False)
    job = jobs.claim(store, os.getpid())
    assert job is not None
    with store.new_artifact("models") as artifact:
        (artifact.path / "model.safetensors").write_bytes(b"\0" * 4096)
        _mark(mark, job.id)
        time.sleep(600)


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    if command == "claim-all":
        claim_all(*rest)
    elif command == "work":
        work(*rest)
    elif command == "write-and-hang":
        write_and_hang(*rest)
    else:
        raise SystemExit(f"unknown command {command}")
