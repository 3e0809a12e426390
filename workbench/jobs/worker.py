"""`workbench jobs work`: the process that claims queued jobs and runs each in a child process.

The worker stays light (no torch) and supervises. Each job runs in a process of its own
(`python -m workbench.jobs.child`), so that its peak memory is the job's alone, a crash or an
out-of-memory kill ends only that job (the worker records it and goes on), and a cancel that
the job does not honour in time ends by terminating the process. The child beats and writes
progress itself; the worker watches for children that end without recording an outcome, and
escalates cancels: SIGTERM after TERMINATE_AFTER_S, SIGKILL after KILL_AFTER_S.

A job process spends seconds importing torch and transformers before its job starts. With `warm`
seconds (`jobs work --warm S`; the workers ensure_worker starts take $WORKBENCH_WARM_S, default
WARM_S), a worker whose queue is empty keeps a job process started ahead of its job, one per slot,
with the engine imported (`workbench.jobs.child --warm`), and hands the next job to it through
its stdin; it waits that long for more work before it exits. A foreground CLI leaves its job to such
a worker rather than importing the engine itself. A warm process ends with its worker (it reads the
end of its stdin), so none outlives the worker that started it.

Every worker holds a shared lock on <store>/worker.<host>.lock while it may still claim work.
`ensure_worker` probes that lock: when no worker on this host holds it and work is queued, it
starts one in a session of its own (no terminal: closing the one that asked does not end it). A
worker that finds the queue empty releases the lock and then looks once more, so a job queued
while it was leaving is never stranded. The lock (and the workers' log) is per host because a
store's folder may be one that several hosts mount (a PostgreSQL store's files): a worker on one
host must not stop another host from starting its own.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from store import jobs
from store.db import Store, StoreError, host_name
from store.jobs import JobInfo
from workbench.errors import UserError
from workbench.jobs.gpus import HostGpus

POLL_S = 0.5
RECOVER_EVERY_S = 10.0  # jobs of processes that died elsewhere (e.g. a killed foreground CLI)
TERMINATE_AFTER_S = 10.0  # after the cancel was asked, if the job has not stopped by itself
KILL_AFTER_S = 15.0
WARM_S = 600.0  # how long the workers ensure_worker starts stay warm for more work (WORKBENCH_WARM_S)

_started: list[subprocess.Popen[bytes]] = []  # workers this process started (reaped when done)


def lock_path(store: Store) -> Path:
    """The lock a worker on this host holds while it may claim work."""
    return store.root / f"worker.{host_name()}.lock"


def log_path(store: Store) -> Path:
    """The output of the workers ensure_worker starts on this host."""
    return store.root / f"worker.{host_name()}.log"


def warm_seconds() -> float:
    """How long the workers ensure_worker starts stay warm once their queue is empty: $WORKBENCH_WARM_S
    (0: they exit at once, and keep no job process ahead of its job), else WARM_S."""
    text = os.environ.get("WORKBENCH_WARM_S", "").strip()
    if not text:
        return WARM_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise UserError(f"WORKBENCH_WARM_S must be seconds (0 or more), got {text!r}")
    return seconds


def ensure_worker(store: Store, *, warm: bool = False) -> bool:
    """Start a detached `workbench jobs work` when jobs are queued (with `warm`, also when none is,
    if workers stay warm: for the next command) and no worker is running; whether it started one.
    Light and quick: the TUI calls it after queueing, and whatever shows jobs calls it too, so that
    work left queued when a worker was killed is taken up again. A store this process cannot write
    gets none (its worker could not claim a thing)."""
    _started[:] = [p for p in _started if p.poll() is None]
    if store.read_only:
        return False
    if not (warm and warm_seconds() > 0) and not jobs.count_jobs(store, "queued"):
        return False
    with lock_path(store).open("a") as lock:
        try:
            # Held while starting the worker, so a concurrent caller sees it as running.
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        with log_path(store).open("ab") as output:
            _started.append(
                subprocess.Popen(
                    [sys.executable, "-P", "-m", "workbench", "jobs", "work", "--warm", f"{warm_seconds():g}"],
                    env=os.environ | store.environment(),
                    cwd=store.root,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    return True


def worker_running(store: Store) -> bool:
    """Whether a worker on this host holds the store's worker lock."""
    if store.read_only:  # no lock file can be made, and no worker writes here
        return False
    with lock_path(store).open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False


@dataclass
class _Child:
    job: JobInfo
    process: subprocess.Popen[bytes]
    cancel_seen_at: float | None = None


def work(
    store: Store,
    *,
    follow: bool = False,
    warm: float = 0.0,
    max_parallel: int | None = None,
    gpus: HostGpus | None = None,
    say: Callable[[str], None] = print,
) -> int:
    """Claim and run queued jobs until the queue is empty (with `follow`, until interrupted; with
    `warm` seconds, until it has been empty that long, keeping job processes warm meanwhile).
    With GPUs, each job runs on a slot of `gpus` that no other job on this host uses (see
    workbench.jobs.gpus), at most one per slot; without, at most `max_parallel` (default 1) at
    once on this host, counting other workers' and foreground CLIs'. Returns how many jobs it ran."""
    slots = gpus.slots if gpus is not None else []
    max_parallel = max_parallel or len(slots) or 1
    place = gpus.place if gpus is not None and slots else None
    lock = lock_path(store).open("a")
    fcntl.flock(lock, fcntl.LOCK_SH)
    children: dict[int, _Child] = {}
    spares = _WarmProcesses(store, gpus, say) if warm > 0 else None
    ran = 0
    recovered_at = idle_since = time.monotonic()
    try:
        while True:
            _reap(store, children, say)
            _escalate_cancels(store, children)
            if time.monotonic() - recovered_at > RECOVER_EVERY_S:
                jobs.recover(store)
                recovered_at = time.monotonic()
            while len(children) < max_parallel:
                job = jobs.claim(store, os.getpid(), max_running=max_parallel, place=place)
                if job is None:
                    break
                ran += 1
                spare = spares.take(job.device if place else None) if spares is not None else None
                child = _spawn(store, job, gpus.environment(job.device) if gpus is not None else {}, spare)
                if child is None:
                    say(f"job {job.id} failed: its process could not start")
                    continue
                children[job.id] = child
                where = f" on {job.device}" if place else ""
                how = " (warm)" if child.process is spare else ""
                say(f"job {job.id} ({job.kind}) started: pid {child.process.pid}{where}{how}")
            if children or jobs.count_jobs(store, "queued"):
                idle_since = time.monotonic()
            elif not follow and time.monotonic() - idle_since >= warm:
                if spares is not None:
                    spares.dismiss()
                fcntl.flock(lock, fcntl.LOCK_UN)
                if not jobs.count_jobs(store, "queued"):
                    return ran
                fcntl.flock(lock, fcntl.LOCK_SH)
            if spares is not None and not jobs.count_jobs(store, "queued"):
                # One for each slot, a busy one's too: ready when its job ends, for a command
                # that follows at once (it holds no GPU memory meanwhile, only the imports).
                spares.keep([slot.label for slot in slots] if place else [None])
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        # Ctrl-C on a worker in a terminal reached its children too (one process group): they
        # stop as cancelled; wait for them, and end those that do not.
        for id_ in children:
            with suppress(StoreError):  # it may have just finished
                jobs.request_cancel(store, id_)
        deadline = time.monotonic() + KILL_AFTER_S
        while children and time.monotonic() < deadline:
            _reap(store, children, say)
            time.sleep(POLL_S)
        for child in children.values():
            child.process.kill()
            child.process.wait()
        _reap(store, children, say)
        raise
    finally:
        if spares is not None:
            spares.dismiss()
        lock.close()


class _WarmProcesses:
    """Job processes started ahead of their jobs: at most one per slot (its GPUs already chosen in
    its environment; the key None where jobs get no GPUs), each importing the engine and then
    waiting for a job on its stdin. One that ends by itself (its imports failed, say) is reported,
    and from then on jobs get fresh processes."""

    def __init__(self, store: Store, gpus: HostGpus | None, say: Callable[[str], None]) -> None:
        self.store, self.gpus, self.say = store, gpus, say
        self.waiting: dict[str | None, subprocess.Popen[bytes]] = {}
        self.failed = False

    def keep(self, keys: list[str | None]) -> None:
        """One waiting process for each slot of `keys`."""
        for key, process in list(self.waiting.items()):
            code = process.poll()
            if code is not None:
                del self.waiting[key]
                self.failed = True
                self.say(f"a warm job process (pid {process.pid}) ended by itself, exit status {code}: "
                         "jobs get processes of their own from now on")
        for key in keys if not self.failed else []:
            if key not in self.waiting:
                gpus = self.gpus.environment(key) if self.gpus is not None and key else {}
                try:
                    self.waiting[key] = subprocess.Popen(
                        [sys.executable, "-P", "-m", "workbench.jobs.child", "--warm"],
                        env=_environment(self.store, gpus), cwd=self.store.root, stdin=subprocess.PIPE,
                    )
                except OSError as e:
                    self.failed = True
                    self.say(f"cannot start a warm job process: {e}")
                    return
                where = f" for {key}" if key else ""
                self.say(f"a warm job process waits for work{where}: pid {self.waiting[key].pid}")

    def take(self, key: str | None) -> subprocess.Popen[bytes] | None:
        """The process waiting for a job on this slot, if any (it is no longer kept)."""
        return self.waiting.pop(key, None)

    def dismiss(self) -> None:
        while self.waiting:
            self._end(self.waiting.popitem()[1])

    @staticmethod
    def _end(process: subprocess.Popen[bytes]) -> None:
        assert process.stdin is not None
        with suppress(OSError):
            process.stdin.close()  # a process past its imports reads the end and exits
        process.terminate()  # one still importing stops now
        try:
            process.wait(timeout=KILL_AFTER_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _environment(store: Store, gpus: dict[str, str]) -> dict[str, str]:
    """A job process's environment; `gpus`: its share of them (gpus.child_environment)."""
    return os.environ | store.environment() | {
        "TQDM_DISABLE": "1",  # progress goes to the job row; bars would only fill the log
        "PYTHONUNBUFFERED": "1",  # the log shows what happened up to a crash
    } | gpus


def _spawn(
    store: Store, job: JobInfo, gpus: dict[str, str], spare: subprocess.Popen[bytes] | None = None
) -> _Child | None:
    """Start the job's process, or hand the job to `spare` (a warm process started with the same
    GPUs); `gpus`: its environment's share of them (gpus.child_environment)."""
    assert job.log_path is not None
    log = store.root / job.log_path
    cwd = Path(job.spec.get("cwd") or store.root)
    if not cwd.is_dir():
        _note(log, f"the folder the job was queued in, {cwd}, is gone: running in {store.root}")
        cwd = store.root
    if spare is not None and _hand(spare, {"job": job.id, "cwd": str(cwd), "log": str(log)}):
        process = spare
    else:
        if spare is not None:
            _WarmProcesses._end(spare)
        with log.open("ab") as output:
            try:
                # -P: the job's folder must not shadow the workbench's own modules.
                process = subprocess.Popen(
                    [sys.executable, "-P", "-m", "workbench.jobs.child", str(job.id)],
                    env=_environment(store, gpus),
                    cwd=cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            except OSError as e:
                jobs.finish(store, job.id, "failed", "failed", error=f"cannot start a job process: {e}")
                return None
    jobs.update_running(store, job.id, pid=process.pid)
    return _Child(job, process)


def _hand(process: subprocess.Popen[bytes], order: dict[str, object]) -> bool:
    """Give a warm process its job; False when it has ended (it then takes nothing)."""
    assert process.stdin is not None
    if process.poll() is not None:
        return False
    try:
        process.stdin.write(json.dumps(order).encode() + b"\n")
        process.stdin.close()
    except OSError:  # it ended just now
        return False
    return True


def _reap(store: Store, children: dict[int, _Child], say: Callable[[str], None]) -> None:
    """Children that ended: a job left `running` gets its outcome from how its process ended."""
    for id_, child in list(children.items()):
        code = child.process.poll()
        if code is None:
            continue
        del children[id_]
        job = jobs.get_job(store, id_)
        if job.status == "running":
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            if job.cancel_requested:
                jobs.finish(store, id_, "cancelled", f"cancelled: its process was ended ({how})")
            else:
                hint = " (out of memory?)" if code == -signal.SIGKILL else ""
                jobs.finish(store, id_, "interrupted", "interrupted",
                            error=f"its process ended without finishing: {how}{hint}")
            assert job.log_path is not None
            _note(store.root / job.log_path, f"worker: the job process ended ({how})")
            job = jobs.get_job(store, id_)
        removed = jobs.remove_temp_folders(store, child.process.pid, host_name())
        if removed:
            assert job.log_path is not None
            _note(store.root / job.log_path, f"worker: removed the half-written {', '.join(removed)}")
        say(f"job {id_} {job.status}" + (f": {job.error}" if job.error else ""))


def _escalate_cancels(store: Store, children: dict[int, _Child]) -> None:
    now = time.monotonic()
    for id_, child in children.items():
        if child.cancel_seen_at is None:
            if jobs.get_job(store, id_).cancel_requested:
                child.cancel_seen_at = now
            continue
        waited = now - child.cancel_seen_at
        if waited > KILL_AFTER_S:
            child.process.kill()
        elif waited > TERMINATE_AFTER_S:
            child.process.terminate()


def _note(log: Path, line: str) -> None:
    with log.open("a", encoding="utf-8") as f:
        f.write(f"{datetime.now(UTC).astimezone():%Y-%m-%d %H:%M:%S} {line}\n")
