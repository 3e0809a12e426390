"""Background jobs as rows: queueing, claiming, progress, outcomes, and the jobs of dead processes.

A job moves queued -> running -> done | failed | cancelled | interrupted; a queued job can also be
cancelled before it starts. Every change a job process makes to its row is conditional on the
row still being `running`, so a job that was cancelled or declared dead is never brought back.

Claiming moves the oldest claimable row with `UPDATE ... WHERE status = 'queued'`, so two
processes never claim the same job. On SQLite the claim holds the write lock (BEGIN IMMEDIATE),
which makes the per-host limit on running jobs exact too. On PostgreSQL, where processes on many
hosts claim at once, the claim locks the candidate row with `SELECT ... FOR UPDATE SKIP LOCKED`
(a row another claim holds is passed over, not waited for), and claims on one host take turns
on a transaction-scoped advisory lock named after the host, which keeps its limit exact
(`_host_has_room`, the one place that counts a host's running jobs).

A job may wait for another (`after_job_id`: an evaluation for the pruning that makes its model).
It is claimed only once that one is done; when that one ends any other way, the waiting job
fails, saying so in one line, and so in turn do the jobs waiting for it.

A job is dead, and becomes `interrupted`, when it is `running` but its heartbeat is not fresh
and its process is gone: looked up by pid on this host (a pid reused by a younger process does
not count), judged by a long silence on another host (OTHER_HOST_SILENCE_S: a host that died, or
lost the database, for that long). `recover` runs on every `Store.open` and in every worker, on
any host; an interrupted job is retried from any host.
The dead process's temporary folders (artifacts/tmp/<pid>.*.<host>) go with it; its log stays.

Light: the TUI lists, cancels and retries jobs through this module (no torch, no workbench).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import psutil
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import aliased
from sqlmodel import Session

from store.db import ARTIFACTS, TMP, NotFoundError, Store, StoreError, host_name
from store.tables import Job, utcnow

STATUSES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
FINISHED = ("done", "failed", "cancelled", "interrupted")
RETRYABLE = ("failed", "cancelled", "interrupted")
HEARTBEAT_S = 1.0  # how often a job process marks its job alive (and reads the cancel flag)
FRESH_S = 10.0  # a heartbeat younger than this says the job is alive, whatever its pid says
OTHER_HOST_SILENCE_S = 120.0  # a job on another host (no pid to look up) is dead after this long unheard
LOGS = "logs"  # artifacts/logs/job-<id>.log; `store check` counts a log as its job's


@dataclass(frozen=True)
class JobInfo:
    id: int
    kind: str  # prune | eval
    spec: dict[str, Any]  # {"request": the request's to_dict(), "cwd", "data_dir", "out"}
    status: str
    stage: str
    progress: float  # 0..1 over the whole job
    message: str
    eta_seconds: float | None
    cancel_requested: bool
    pid: int | None
    host: str | None
    device: str | None
    peak_memory_bytes: int | None
    heartbeat_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None  # why it failed, in one line
    log_path: str | None  # relative to the store folder
    result: dict[str, Any]  # a done job's report; {"error_type": ...} for a failed one
    after_job_id: int | None  # claimed only once that job is done

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def request(self) -> dict[str, Any]:
        return self.spec.get("request", {})


_COLUMNS = [getattr(Job, f.name) for f in fields(JobInfo)]


@contextmanager
def _reading(source: Store | Session) -> Iterator[Session]:
    if isinstance(source, Session):
        yield source
    else:
        with source.session() as session:
            yield session


def get_job(source: Store | Session, job_id: int) -> JobInfo:
    with _reading(source) as session:
        row = session.connection().execute(select(*_COLUMNS).where(Job.id == job_id)).first()
    if row is None:
        raise NotFoundError(f"no job {job_id}")
    return JobInfo(*row)


def list_jobs(
    source: Store | Session, *, status: str | None = None, limit: int | None = None, offset: int = 0
) -> list[JobInfo]:
    """Jobs, newest first."""
    stmt = select(*_COLUMNS).order_by(Job.id.desc()).limit(limit).offset(offset)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    with _reading(source) as session:
        return [JobInfo(*row) for row in session.connection().execute(stmt)]


def jobs_by_id(source: Store | Session, ids: Iterable[int]) -> dict[int, JobInfo]:
    """These jobs (those that exist), by id."""
    stmt = select(*_COLUMNS).where(Job.id.in_(list(ids)))
    with _reading(source) as session:
        return {row.id: JobInfo(*row) for row in session.connection().execute(stmt)}


def count_jobs(source: Store | Session, status: str) -> int:
    with _reading(source) as session:
        return session.scalar(select(func.count(Job.id)).where(Job.status == status)) or 0


def add_job(target: Store | Session, kind: str, spec: dict[str, Any], *, after: int | None = None) -> int:
    """Queue a job (in a transaction of its own, or in the caller's, a session from
    `store.write()`), to be claimed only once job `after`, if given, is done; its id."""
    with _writing(target) as session:
        job = Job(kind=kind, spec=spec, after_job_id=after, message=f"waits for job {after}" if after else "")
        session.add(job)
        session.flush()
        assert job.id is not None
        return job.id


@contextmanager
def _writing(target: Store | Session) -> Iterator[Session]:
    if isinstance(target, Session):
        yield target
    else:
        with target.write() as session:
            yield session


def claim(
    store: Store,
    pid: int,
    *,
    job_id: int | None = None,
    max_running: int | None = None,
    place: Callable[[list[str | None]], str | None] | None = None,
) -> JobInfo | None:
    """Move the oldest queued job (or job `job_id`, if still queued) to running for process `pid`,
    unless `max_running` jobs already run on this host. With `place`, the job's device is what it
    answers given the devices of the jobs running on this host (None: no room, nothing claimed),
    decided under the same lock (see workbench.jobs.gpus). Its log file exists when this returns."""
    host = host_name()
    with store.write() as session:
        if max_running is not None and not _host_has_room(session, host, max_running):
            return None  # (first: a busy host asks nothing more)
        fail_orphans(session)
        device = None
        if place is not None:  # (under the host's lock that _host_has_room took, on PostgreSQL too)
            device = place(list(session.scalars(select(Job.device).where(Job.status == "running", Job.host == host))))
            if device is None:
                return None
        waited = aliased(Job)
        queued = (
            select(Job.id)
            .outerjoin(waited, waited.id == Job.after_job_id)
            .where(Job.status == "queued", or_(Job.after_job_id.is_(None), waited.status == "done"))
            .order_by(Job.id)
            .limit(1)
            .with_for_update(of=Job, skip_locked=True)  # (SQLite: nothing; its write lock is held)
        )
        if job_id is not None:
            queued = queued.where(Job.id == job_id)
        # The candidate is locked for this transaction; the loop only guards against a database
        # that would let a concurrent claim move it first (then the next one is tried).
        while (candidate := session.scalar(queued)) is not None:
            now = utcnow()
            log = log_relpath(candidate)
            moved = session.execute(
                update(Job)
                .where(Job.id == candidate, Job.status == "queued")
                .values(status="running", pid=pid, host=host, started_at=now, heartbeat_at=now, log_path=log,
                        stage="", progress=0.0, message="starting", device=device)
            )
            if moved.rowcount:
                path = store.root / log
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
                return get_job(session, candidate)
    return None


def _host_has_room(session: Session, host: str, max_running: int) -> bool:
    """Whether fewer than `max_running` jobs run on `host`; true, the caller's transaction keeps
    the room until it ends: on PostgreSQL it holds a lock named after the host (SQLite's write
    lock already serialises every claim)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(f"workbench claim on {host}", 0))))
    running = session.scalar(select(func.count(Job.id)).where(Job.status == "running", Job.host == host))
    return (running or 0) < max_running


def log_relpath(job_id: int) -> str:
    """Where job `job_id` logs, relative to the store folder (Job.log_path)."""
    return f"{ARTIFACTS}/{LOGS}/job-{job_id}.log"


def fail_orphans(session: Session) -> list[int]:
    """Fail the queued jobs that wait for a job which ended other than done, and those waiting for
    them in turn, in the caller's write transaction; their ids."""
    failed: list[int] = []
    waited = aliased(Job)
    while True:
        orphans = session.execute(
            select(Job.id, waited.id, waited.status)
            .join(waited, waited.id == Job.after_job_id)
            .where(Job.status == "queued", waited.status.in_(RETRYABLE))
            .order_by(Job.id)  # concurrent claims lock the rows in one order: no deadlock
        ).all()
        if not orphans:
            return failed
        now = utcnow()
        for id_, after, status in orphans:
            how = "failed" if status == "failed" else f"was {status}"
            session.execute(
                update(Job)
                .where(Job.id == id_, Job.status == "queued")
                .values(status="failed", message="failed", error=f"waits for job {after}, which {how}",
                        result={"error_type": "DependencyFailed"}, finished_at=now)
            )  # fmt: skip
            failed.append(id_)


def update_running(store: Store, job_id: int, **values: Any) -> bool:
    """Set columns of a running job (progress, pid, device, peak memory), refreshing its
    heartbeat; False when it no longer runs (finished, cancelled, or declared dead)."""
    with store.write() as session:
        changed = session.execute(
            update(Job).where(Job.id == job_id, Job.status == "running").values(heartbeat_at=utcnow(), **values)
        )
        return bool(changed.rowcount)


def beat(store: Store, job_id: int) -> bool | None:
    """Mark a running job alive; whether it was asked to cancel (None when it no longer runs)."""
    with store.write() as session:
        session.execute(update(Job).where(Job.id == job_id, Job.status == "running").values(heartbeat_at=utcnow()))
        row = session.execute(select(Job.status, Job.cancel_requested).where(Job.id == job_id)).first()
    if row is None or row.status != "running":
        return None
    return row.cancel_requested


def finish(
    store: Store,
    job_id: int,
    status: str,
    message: str,
    *,
    error: str | None = None,
    result: dict[str, Any] | None = None,
    peak_memory_bytes: int | None = None,
) -> bool:
    """Record a running job's outcome; False when it was no longer running."""
    assert status in FINISHED
    now = utcnow()
    values: dict[str, Any] = dict(status=status, message=message, error=error, eta_seconds=None, finished_at=now,
                                  heartbeat_at=now)
    if status == "done":
        values["progress"] = 1.0
    if result is not None:
        values["result"] = result
    if peak_memory_bytes is not None:
        values["peak_memory_bytes"] = peak_memory_bytes
    with store.write() as session:
        changed = session.execute(update(Job).where(Job.id == job_id, Job.status == "running").values(**values))
        return bool(changed.rowcount)


def request_cancel(store: Store, job_id: int) -> JobInfo:
    """Cancel a queued job at once; ask a running one to stop (its process sees the flag within a
    heartbeat and stops at the next layer or batch boundary). The job as it is now."""
    with store.write() as session:
        session.execute(select(Job.id).where(Job.id == job_id).with_for_update())  # a claim waits for this
        job = get_job(session, job_id)
        if job.finished:
            raise StoreError(f"job {job_id} has already finished ({job.status}): nothing to cancel")
        values: dict[str, Any] = {"cancel_requested": True}
        if job.status == "queued":
            values |= dict(status="cancelled", finished_at=utcnow(), message="cancelled before it started")
        session.execute(update(Job).where(Job.id == job_id, Job.status == job.status).values(**values))
        return get_job(session, job_id)


def retry(store: Store, job_id: int) -> int:
    """Queue a failed, cancelled or interrupted job again as a new job (the old row stays as
    history, with its log, and names the new one: result["retry"]["job_id"]), waiting for what it waited
    for; the new job's id. A job whose last retry has not failed is not retried again (two people
    sharing a store, or a key pressed twice, would otherwise run the same work twice)."""
    with store.write() as session:
        session.execute(select(Job.id).where(Job.id == job_id).with_for_update())  # a second retry waits
        job = get_job(session, job_id)
        if job.status not in RETRYABLE:
            raise StoreError(f"job {job_id} is {job.status}: only failed, cancelled or interrupted jobs are retried")
        retried_as = retried_by(job)
        last = session.get(Job, retried_as) if retried_as is not None else None
        if last is not None and last.status not in RETRYABLE:
            raise StoreError(f"job {job_id} was retried already, as job {retried_as} ({last.status})")
        if job.after_job_id is not None:
            waited = get_job(session, job.after_job_id)
            if waited.status in RETRYABLE:
                raise StoreError(
                    f"job {job_id} waits for job {waited.id}, which {waited.status} (its request names that job): "
                    "run again what queued them both (e.g. the sweep)"
                )
        new = Job(kind=job.kind, spec=job.spec, after_job_id=job.after_job_id, message=f"retry of job {job_id}")
        session.add(new)
        session.flush()
        assert new.id is not None
        # Under a "job_id" key, which a store copy renumbers as it renumbers the jobs.
        session.execute(update(Job).where(Job.id == job_id).values(result=job.result | {"retry": {"job_id": new.id}}))
        return new.id


def retried_by(job: JobInfo) -> int | None:
    """The job that last retried this one, if any."""
    return (job.result.get("retry") or {}).get("job_id")


def remove_temp_folders(store: Store, pid: int, host: str) -> list[str]:
    """Remove the temporary folders a (dead) process left under artifacts/tmp; their names."""
    removed = []
    for folder in sorted((store.artifacts / TMP).glob(f"{pid}.*.{host}")):
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
    return removed


def recover(store: Store) -> list[int]:
    """Mark the running jobs whose process died `interrupted` and remove their temporary folders;
    their ids. Costs one indexed query when no job runs."""
    with store.session() as session:
        running = session.connection().execute(
            select(Job.id, Job.pid, Job.host, Job.heartbeat_at).where(Job.status == "running")
        ).all()
    if not running or not any(_dead(pid, host, beat_) for _, pid, host, beat_ in running):
        return []
    dead: list[tuple[int, int | None, str | None]] = []
    with store.write() as session:
        # Again with the rows locked: a row may have moved on (or beaten) since the read above. A
        # row another transaction holds is beating or finishing right now: alive, passed over.
        for id_, pid, host, beat_ in session.execute(
            select(Job.id, Job.pid, Job.host, Job.heartbeat_at)
            .where(Job.status == "running")
            .order_by(Job.id)
            .with_for_update(skip_locked=True)
        ).all():
            if _dead(pid, host, beat_):
                where = f"pid {pid} on {host}" if host != host_name() else f"pid {pid}"
                session.execute(
                    update(Job)
                    .where(Job.id == id_)
                    .values(status="interrupted", finished_at=utcnow(), eta_seconds=None,
                            error=f"its process ({where}) died without finishing: killed, out of memory or "
                            "power lost")
                )
                dead.append((id_, pid, host))
    for _, pid, host in dead:
        if pid is not None and host:
            remove_temp_folders(store, pid, host)
    return [id_ for id_, _, _ in dead]


def _dead(pid: int | None, host: str | None, heartbeat: datetime | None) -> bool:
    silence = (utcnow() - heartbeat).total_seconds() if heartbeat is not None else float("inf")
    if host != host_name():
        return silence > OTHER_HOST_SILENCE_S
    return silence > FRESH_S and not process_alive(pid, heartbeat)


def process_alive(pid: int | None, since: datetime | None) -> bool:
    """Whether process `pid` on this host still runs and is the one that beat at `since` (a
    process started after that beat merely reuses the number)."""
    if pid is None:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return since is None or process.create_time() <= since.timestamp() + 1.0  # create_time is coarse
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
