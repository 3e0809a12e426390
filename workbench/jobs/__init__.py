"""Background jobs: pruning and evaluation run outside the UI and survive a dropped SSH session.

What a front end (the TUI, the CLI) calls; all of it light (no torch):

    job_id = submit(store, "prune", spec.to_dict(), data_dir=...)   # checks the request, queues it
    ensure_worker(store)                                            # a detached `jobs work` runs it
    list_jobs(store) / get_job(store, id) -> JobInfo                # progress, ETA, device, peak
    request_cancel(store, id); retry(store, id) -> new id           # then ensure_worker again
    log_file(store, job) -> Path | None                             # the job's log

Who does what:
- store.jobs: the rows (claim, progress, outcome, recovery of jobs whose process died).
- workbench.jobs.worker: `workbench jobs work`, the supervisor, and `ensure_worker`.
- workbench.jobs.child / execution: the process that runs one job, and running a job here.
- workbench.jobs.kinds: the registry of job kinds (prune, eval, import) and `submit`.
"""

from __future__ import annotations

from pathlib import Path

from store.db import Store
from store.jobs import FINISHED, STATUSES, JobInfo, get_job, list_jobs, recover, request_cancel, retry
from workbench.jobs.kinds import KINDS, JobContext, JobKind, submit
from workbench.jobs.worker import ensure_worker, worker_running


def log_file(store: Store, job: JobInfo) -> Path | None:
    """The job's log (None while it is queued)."""
    return store.root / job.log_path if job.log_path else None


__all__ = [
    "FINISHED",
    "KINDS",
    "STATUSES",
    "JobContext",
    "JobInfo",
    "JobKind",
    "ensure_worker",
    "get_job",
    "list_jobs",
    "log_file",
    "recover",
    "request_cancel",
    "retry",
    "submit",
    "worker_running",
]
