"""`workbench jobs list|show|cancel|retry|log|work`: background jobs."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime

from store import jobs
from store.db import Store
from store.jobs import JobInfo
from workbench.cli.common import clock, open_store, print_json, take_up_queued
from workbench.errors import UserError
from workbench.jobs import KINDS, ensure_worker, log_file, worker_running
from workbench.jobs.worker import RECOVER_EVERY_S, log_path
from workbench.tabular import Column, Table, fixed, size

FOLLOW_EVERY_S = 0.25


def register(subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("jobs", parents=[common], help="background jobs: list, cancel, retry, logs, run them")
    sub = p.add_subparsers(dest="jobs_command", metavar="COMMAND", required=True)

    p = sub.add_parser("list", parents=[common], help="jobs, newest first, with where each stands")
    p.add_argument("--status", choices=jobs.STATUSES)
    p.add_argument("--limit", type=int, metavar="N", help="at most N jobs")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=list_)

    p = sub.add_parser("show", parents=[common], help="one job: its request, progress, outcome")
    p.add_argument("job", type=int, metavar="ID")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=show)

    p = sub.add_parser(
        "cancel",
        parents=[common],
        help="cancel a job: a queued one at once, a running one at its next layer or batch boundary",
    )
    p.add_argument("job", type=int, metavar="ID")
    p.add_argument("--wait", action="store_true", help="wait until the job has stopped")
    p.set_defaults(func=cancel)

    p = sub.add_parser("retry", parents=[common], help="queue a failed, cancelled or interrupted job again (new id)")
    p.add_argument("job", type=int, metavar="ID")
    p.set_defaults(func=retry)

    p = sub.add_parser("log", parents=[common], help="print a job's log")
    p.add_argument("job", type=int, metavar="ID")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    p.set_defaults(func=log)

    p = sub.add_parser(
        "work",
        parents=[common],
        help="run queued jobs, each in a process of its own, until the queue is empty",
        description="Claims queued jobs and runs each in a child process; exits when the queue is empty "
        "(with --follow, keeps waiting for work). The TUI and --detach (`prune`, `models import`) start one "
        "when needed.",
    )
    p.add_argument("--follow", action="store_true", help="stay and wait for new jobs")
    p.add_argument(
        "--warm", type=float, default=0.0, metavar="SECONDS",
        help="once the queue is empty, keep a job process ready (torch and the engine imported, one per "
        "GPU) and wait this long for more work before exiting, so that the next job starts at once "
        "(default 0; the job processes the workbench starts itself wait $WORKBENCH_WARM_S, default 600)",
    )
    p.add_argument(
        "--gpus", default="all", metavar="LIST",
        help="the GPUs to run jobs on, one job per GPU at once: all (default: every GPU of the host), none, "
        "or numbers such as 0,2; join GPUs with + to give one job several (0+1,2+3) for a model larger than one",
    )
    p.add_argument(
        "--max-parallel", type=int, metavar="N",
        help="at most N jobs at once on this host, other workers' included (default: one per GPU, or 1 "
        "without GPUs)",
    )
    p.set_defaults(func=work)


def summary(job: JobInfo) -> str:
    """What the job does, in a few words."""
    kind = KINDS.get(job.kind)
    try:
        return kind.summarize(job.request) if kind else ""
    except (KeyError, TypeError, ValueError):  # a request written by another version
        return ""


def _elapsed(job: JobInfo) -> float | None:
    if job.started_at is None:
        return None
    return ((job.finished_at or datetime.now(UTC)) - job.started_at).total_seconds()


def _row(job: JobInfo) -> dict:
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "what": summary(job),
        "stage": job.stage,
        "progress": 100 * job.progress,
        "elapsed": _elapsed(job),
        "eta_seconds": job.eta_seconds if job.status == "running" else None,
        "host": job.host,
        "device": job.device,
        "peak_memory_bytes": job.peak_memory_bytes,
        "created_at": job.created_at,
        "note": job.error or job.message,
    }


JOB_COLUMNS = [
    Column("id", numeric=True),
    Column("kind"),
    Column("status"),
    Column("what"),
    Column("stage"),
    Column("progress", "%", fixed(0), numeric=True),
    Column("elapsed", fmt=clock, numeric=True),
    Column("eta_seconds", "eta", clock, numeric=True),
    Column("host"),
    Column("device"),
    Column("peak_memory_bytes", "peak mem", size, numeric=True),
    Column("created_at", "queued"),
    Column("note"),
]


def list_(args: argparse.Namespace) -> int:
    store = open_store(args)
    take_up_queued(store)
    found = jobs.list_jobs(store, status=args.status, limit=args.limit)
    if args.json:
        print_json([asdict(j) for j in found])
        return 0
    if not found:
        print("no jobs match" if args.status else "no jobs in the store yet")
        return 0
    Table.of("jobs", JOB_COLUMNS, [_row(j) for j in found]).render()
    return 0


def show(args: argparse.Namespace) -> int:
    store = open_store(args)
    take_up_queued(store)
    job = jobs.get_job(store, args.job)
    if args.json:
        print_json(asdict(job) | {"log_file": str(log_file(store, job) or "")})
        return 0
    result = ""
    if job.kind in ("prune", "import") and job.status == "done":
        r = job.result
        made_by = f"run {r.get('run_id')}, " if job.kind == "prune" else ""
        result = f"{made_by}model {r.get('model_name')!r} (id {r.get('model_id')})"
    pairs = [
        ("kind", job.kind),
        ("status", job.status + (" (cancel requested)" if job.cancel_requested and not job.finished else "")),
        ("what", summary(job)),
        ("waits for", f"job {job.after_job_id}" if job.after_job_id is not None and job.status == "queued" else ""),
        ("error", job.error or ""),
        ("result", result),
        ("retried as", f"job {retried}" if (retried := jobs.retried_by(job)) is not None else ""),
        ("stage", job.stage),
        ("progress", f"{100 * job.progress:.0f}%" if job.started_at else ""),
        ("message", job.message),
        ("eta", clock(job.eta_seconds) if job.status == "running" else ""),
        ("elapsed", clock(_elapsed(job))),
        ("device", job.device or ""),
        ("peak memory", size(job.peak_memory_bytes)),
        ("process", f"pid {job.pid} on {job.host}" if job.pid else ""),
        ("queued", job.created_at),
        ("started", job.started_at or ""),
        ("finished", job.finished_at or ""),
        ("heartbeat", job.heartbeat_at if not job.finished and job.heartbeat_at else ""),
        ("folder", job.spec.get("cwd", "")),
        ("data", job.spec.get("data_dir") or ""),
        ("request", " ".join(f"{k}={v}" for k, v in job.request.items() if v is not None)),
        ("log", str(log_file(store, job) or "")),
    ]
    Table.of_pairs(f"job {job.id}", [(k, v) for k, v in pairs if v != ""]).render()
    return 0


def cancel(args: argparse.Namespace) -> int:
    store = open_store(args)
    job = jobs.request_cancel(store, args.job)
    if job.finished:
        print(f"job {job.id} cancelled (it had not started)")
        return 0
    print(f"cancelling job {job.id}: it stops at its next layer or batch boundary")
    if args.wait:
        while not job.finished:
            time.sleep(FOLLOW_EVERY_S)
            job = jobs.get_job(store, job.id)
        print(f"job {job.id} {job.status}")
    return 0


def retry(args: argparse.Namespace) -> int:
    store = open_store(args)
    new = jobs.retry(store, args.job)
    ensure_worker(store)
    print(new)
    return 0


def log(args: argparse.Namespace) -> int:
    store = open_store(args)
    job = jobs.get_job(store, args.job)
    if job.status == "queued" and not args.follow:
        raise UserError(f"job {job.id} is queued: it has no log yet")
    watch = _Watch(store, job.id)
    while job.log_path is None:  # queued: no log yet
        job = watch.next()
    path = log_file(store, job)
    assert path is not None
    if not path.is_file():
        raise UserError(f"job {job.id}: its log {path} is missing")
    with path.open(encoding="utf-8", errors="replace") as f:
        while True:
            chunk = f.read()
            if chunk:
                sys.stdout.write(chunk)
                sys.stdout.flush()
            elif not args.follow or job.finished:
                break
            else:
                job = watch.next()  # read once more after it ends: its last lines
    if args.follow and job.status not in ("done", "running"):
        print(f"job {job.id} {job.status}" + (f": {job.error}" if job.error else ""), file=sys.stderr)
    return 0


class _Watch:
    """A followed job, read again every FOLLOW_EVERY_S. Nothing is left to run it unseen: queued
    with no job process, it gets one (once more if that one ends at once, then it says so); running
    in a process that died, it is marked interrupted within RECOVER_EVERY_S."""

    STARTS = 2  # job processes started for a queued job before saying that none will run it

    def __init__(self, store: Store, job_id: int) -> None:
        self.store, self.job_id = store, job_id
        self.starts = 0
        self.checked_at = 0.0

    def next(self) -> JobInfo:
        time.sleep(FOLLOW_EVERY_S)
        if time.monotonic() - self.checked_at > RECOVER_EVERY_S / 4:
            self.checked_at = time.monotonic()
            if not self.store.read_only:
                jobs.recover(self.store)
            if jobs.get_job(self.store, self.job_id).status == "queued" and not worker_running(self.store):
                self._start_worker()
        return jobs.get_job(self.store, self.job_id)

    def _start_worker(self) -> None:
        why = f"the store {self.store.root} {self.store.read_only}" if self.store.read_only else ""
        if not why and self.starts >= self.STARTS:
            why = f"the job processes started for it ended at once (their output: {log_path(self.store)})"
        if why:
            raise UserError(f"job {self.job_id} is queued and nothing runs it: {why}")
        if ensure_worker(self.store):
            self.starts += 1
            print(f"job {self.job_id} is queued and no job process ran: started one", file=sys.stderr)


def work(args: argparse.Namespace) -> int:
    if args.max_parallel is not None and args.max_parallel < 1:
        raise UserError(f"--max-parallel must be at least 1, got {args.max_parallel}")
    if not 0 <= args.warm < float("inf"):
        raise UserError(f"--warm must be seconds (0 or more), got {args.warm:g}")
    from workbench.jobs.gpus import HostGpus, parse_slots, visible_gpus
    from workbench.jobs.worker import work as run_worker

    visible = visible_gpus()
    gpus = HostGpus(visible, parse_slots(args.gpus, len(visible)))

    def say(line: str) -> None:
        print(f"{datetime.now().astimezone():%Y-%m-%d %H:%M:%S} {line}", flush=True)

    store = open_store(args)
    store.require_writable()  # (a worker claims jobs: writes)
    say(f"worker pid {os.getpid()}" + (f", one job at a time on each of {', '.join(s.label for s in gpus.slots)}"
                                        if gpus.slots else ""))
    ran = run_worker(store, follow=args.follow, warm=args.warm, max_parallel=args.max_parallel, gpus=gpus, say=say)
    idle = f" and {args.warm:g} s without work" if args.warm else ""
    say(f"queue empty after {ran} job{'s' * (ran != 1)}{idle}: worker exits")
    return 0
