"""A CLI request (`prune`, `eval`) as a job: in the foreground with a progress bar, or --detach.

Foreground: the job is queued, then left to the host's worker when one runs (its job process is
warm: torch and the engine imported, which would take this process seconds), else run in this
process when this host has a free slot (one at a time by default), else left to a job process
(`ensure_worker`), this one showing its progress from the job row. After running a job itself, it
starts a worker that stays warm for the next command ($WORKBENCH_WARM_S, see workbench.jobs.worker).
A host of several GPUs is the exception: a job run here takes them all (a model may spread over
them), a worker's job one slot, so there the job runs here and no worker is started for it.
Ctrl-C (or SIGTERM) cancels the job either way (a second one, while a worker's job stops, stops
waiting). A job running here survives its terminal closing: on SIGHUP its
output goes nowhere and the job finishes and records its outcome.

--detach: queue, make sure a worker runs, print the job id, return.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from store import jobs
from store.db import Store, StoreError
from store.jobs import JobInfo
from workbench.cli.common import TerminalProgress
from workbench.errors import UserError
from workbench.jobs import ensure_worker, submit, worker_running
from workbench.jobs.gpus import HostGpus, visible_gpus

log = logging.getLogger("workbench.jobs")

WATCH_EVERY_S = 0.25


class JobEnded(UserError):
    """The job did not finish `done`: one line, and an exit status that says how it ended."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_detach_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--detach",
        action="store_true",
        help="queue the job, start a job process if none runs, print the job id and return "
        "(follow it with `workbench jobs log ID --follow`)",
    )


def run_as_job(
    args: argparse.Namespace,
    store: Store,
    kind: str,
    request: dict[str, Any],
    *,
    data: Path | None,
    out: Path | None = None,
    bar: bool = True,
) -> JobInfo | None:
    """Queue the request; with --detach print the job id and return None, else see it through
    and return the job, done (JobEnded when it ends any other way)."""
    job_id = submit(store, kind, request, data_dir=data, out=out)
    if args.detach:
        ensure_worker(store)
        if getattr(args, "json", False):
            print(json.dumps({"job_id": job_id, "status": "queued"}))
        else:
            print(job_id)
        if sys.stderr.isatty():
            print(f"job {job_id} queued: `workbench jobs log {job_id} --follow` shows it", file=sys.stderr)
        return None
    try:
        with _terminate_interrupts(), TerminalProgress(enabled=bar) as progress:
            # Only on an idle host; then the job takes every GPU (it may spread a model over them).
            gpus = HostGpus.whole(visible_gpus())
            several_gpus = len(gpus.visible) > 1
            job = None
            if several_gpus or not worker_running(store):
                job = jobs.claim(store, os.getpid(), job_id=job_id, max_running=1,
                                 place=gpus.place if gpus.slots else None)
            if job is not None:
                job = _run_here(store, job, progress)
                if not several_gpus and job.status != "cancelled":
                    ensure_worker(store, warm=True)
            else:
                ensure_worker(store)
                job = _watch(store, job_id, progress)
    except KeyboardInterrupt:  # between the steps above: the job must not run on unwatched
        with suppress(StoreError):
            jobs.request_cancel(store, job_id)
        job = jobs.get_job(store, job_id)
        if not job.finished:
            raise JobEnded(f"job {job_id} is stopping: `workbench jobs show {job_id}` tells how it ends", 130) from None
    return _outcome(store, job)


def _run_here(store: Store, job: JobInfo, progress: TerminalProgress) -> JobInfo:
    from transformers.utils import logging as transformers_logging

    from workbench.jobs.execution import execute

    # The job's bar shows its progress, as a job process's log shows no library's bars: transformers'
    # own (loading, "Writing model shards") stay off the terminal; lm-eval's are off while it runs
    # (workbench.evaluation.harness.quiet).
    transformers_logging.disable_progress_bar()
    with _hangup_detaches():
        try:
            return execute(store, job, echo=progress)
        except KeyboardInterrupt:  # a Ctrl-C that landed outside the job's own handling
            jobs.finish(store, job.id, "cancelled", "cancelled")
            return jobs.get_job(store, job.id)


def _watch(store: Store, job_id: int, progress: TerminalProgress) -> JobInfo:
    """Show a job another process runs until it ends."""
    cancelling = False
    while True:
        try:
            job = jobs.get_job(store, job_id)
            if job.status == "queued":
                running = jobs.count_jobs(store, "running")
                progress.emit("queued", 0.0, f"waiting for {running} running job{'s' * (running != 1)}")
            else:
                progress.emit(job.stage or job.status, job.progress, job.message, job.eta_seconds)
            if job.finished:
                return job
            time.sleep(WATCH_EVERY_S)
        except KeyboardInterrupt:
            if cancelling:
                raise JobEnded(f"job {job_id} is still stopping: `workbench jobs show {job_id}` tells how it ends",
                               130) from None
            cancelling = True
            with suppress(StoreError):  # it may have just finished
                jobs.request_cancel(store, job_id)
            print(f"cancelling job {job_id} (Ctrl-C again to stop waiting)", file=sys.stderr)


def _outcome(store: Store, job: JobInfo) -> JobInfo:
    if job.status == "done":
        return job
    where = f" (log: {store.root / job.log_path})" if job.log_path else ""
    if job.status == "failed":
        code = 2 if job.result.get("error_type") == "UserError" else 1
        raise JobEnded(f"job {job.id} failed: {job.error}{where}", code)
    if job.status == "cancelled":
        raise JobEnded(f"job {job.id} cancelled", 130)
    raise JobEnded(f"job {job.id} {job.status}: {job.error}{where}; `workbench jobs retry {job.id}` queues it again", 1)


@contextmanager
def _terminate_interrupts() -> Iterator[None]:
    """SIGTERM (`kill PID`, a scheduler stopping the command) cancels the job as Ctrl-C does,
    rather than ending the process with the job row left running."""

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _hangup_detaches() -> Iterator[None]:
    """While a job runs here, a closed terminal (SIGHUP) does not end it: from then on its
    output goes nowhere, and it finishes and records its outcome."""

    def detach(_signum: int, _frame: Any) -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        log.warning("the terminal closed: the job goes on, and its outcome is in the store")

    previous = signal.signal(signal.SIGHUP, detach)
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, previous)
