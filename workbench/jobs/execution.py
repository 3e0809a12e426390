"""Running one claimed job in this process: its log, heartbeat, progress rows, and outcome.

A job process (`python -m workbench.jobs.child`, started by `workbench jobs work`) and the CLI
running its own job in the foreground both come here. A heartbeat thread marks the job alive
every second and reads its cancel flag; the engine sees the flag through the Progress sink at
its next layer or batch boundary and raises Cancelled. Work that reaches no boundary within
CANCEL_GRACE_S is interrupted (KeyboardInterrupt in the main thread, which unwinds it the same
way): either way the engine's own clean-up leaves nothing half-written.
"""

from __future__ import annotations

import _thread
import json
import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from store import jobs
from store.db import Store
from store.jobs import JobInfo
from workbench.errors import UserError
from workbench.jobs import gpus
from workbench.jobs.kinds import KINDS, JobContext, kind_of
from workbench.progress import Cancelled, Progress

log = logging.getLogger("workbench.jobs")

PROGRESS_EVERY_S = 0.25  # at most four progress writes a second (a new stage is always written)
CANCEL_GRACE_S = 5.0  # then work that has not reached a boundary is interrupted


class Heartbeat(threading.Thread):
    """Marks the job alive and watches its cancel flag, from a thread of its own."""

    def __init__(self, store: Store, job_id: int) -> None:
        super().__init__(name=f"job-{job_id}-heartbeat", daemon=True)
        self.store, self.job_id = store, job_id
        self.cancelled = threading.Event()
        self._stopping = threading.Event()

    def run(self) -> None:
        asked_at: float | None = None
        while not self._stopping.wait(jobs.HEARTBEAT_S):
            try:
                wanted = jobs.beat(self.store, self.job_id)
            except Exception as e:  # e.g. the database busy past its timeout: beat again next time
                log.warning("heartbeat failed: %s", e)
                continue
            if wanted is not False and asked_at is None:
                # None: declared dead elsewhere, so the work stops rather than compete.
                log.info("cancel requested" if wanted else "the job no longer runs in the store: stopping")
                asked_at = time.monotonic()
                self.cancelled.set()
            if asked_at is not None and time.monotonic() - asked_at > CANCEL_GRACE_S and not self._stopping.is_set():
                log.info("no boundary reached within %.0f s of the cancel: interrupting", CANCEL_GRACE_S)
                _thread.interrupt_main()
                asked_at = float("inf")  # once

    def stop(self) -> None:
        self._stopping.set()
        self.join()


class JobProgress(Progress):
    """Writes the engine's progress to the job row and answers its cancel checks; `echo` (a
    terminal bar) sees every update too. Each new stage is a line of the log, in the engine's words."""

    def __init__(
        self, store: Store, job_id: int, heartbeat: Heartbeat, peak: Callable[[], int | None], echo: Progress | None
    ) -> None:
        super().__init__()
        self.store, self.job_id, self.heartbeat, self.echo = store, job_id, heartbeat, echo
        self._peak = peak  # the job process's peak memory so far
        self._written_at = 0.0
        self._stage = ""

    def emit(self, stage: str, fraction: float, message: str, eta_seconds: float | None = None) -> None:
        eta = self.eta_seconds if fraction < 1 else None  # the job's one estimate, from the work left
        if self.echo is not None:
            self.echo.emit(stage, fraction, message, eta)
        now = time.monotonic()
        if stage == self._stage and now - self._written_at < PROGRESS_EVERY_S:
            return
        if stage != self._stage and stage != "done":  # the end has its own line (execute)
            log.info("%s", message if message and message != stage else stage)
        self._stage, self._written_at = stage, now
        jobs.update_running(self.store, self.job_id, stage=stage, progress=fraction, message=message,
                            eta_seconds=eta, peak_memory_bytes=self._peak())

    def cancel_requested(self) -> bool:
        return self.heartbeat.cancelled.is_set()


def execute(store: Store, job: JobInfo, echo: Progress | None = None) -> JobInfo:
    """Run a job this process has claimed, and record how it ended; the job as it ended.

    Ctrl-C (KeyboardInterrupt) cancels it. Failures are recorded, not raised: the row says why
    in one line, the log holds the traceback.
    """
    assert job.log_path is not None
    heartbeat = Heartbeat(store, job.id)
    kind = KINDS.get(job.kind)
    begun = time.monotonic()
    with _logging_to(store.root / job.log_path):
        log.info("job %d (%s): %s", job.id, job.kind, _said(kind.summarize, job.request) if kind else "")
        log.info("started %s on %s, pid %d, in %s", time.strftime("%Y-%m-%d %H:%M:%S"), socket.gethostname(),
                 os.getpid(), os.getcwd())  # fmt: skip
        log.info("request: %s", json.dumps(job.request))
        heartbeat.start()
        try:
            status, message, error, result, peak = _run(store, job, heartbeat, echo)
        finally:
            heartbeat.stop()
        if not jobs.finish(store, job.id, status, message, error=error, result=result, peak_memory_bytes=peak):
            log.warning("the job no longer runs in the store (declared dead elsewhere?): outcome %s not recorded",
                        status)
        if status == "done" and result is not None and kind is not None:
            for line in _said(kind.tell, result).splitlines():
                log.info("%s", line)
        ended = message if message.startswith(status) else status  # "cancelled during calibrate"
        log.info("%s after %s%s", ended, _clock(time.monotonic() - begun), f": {error}" if error else "")
    return jobs.get_job(store, job.id)


def _said(describe: Callable[[dict[str, Any]], str], data: dict[str, Any]) -> str:
    """A kind's words for a request or result; nothing where they do not fit it (older rows)."""
    try:
        return describe(data)
    except (KeyError, TypeError, ValueError, IndexError):
        return ""


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}h {minutes % 60:02d}m {secs:02d}s" if minutes >= 60 else f"{minutes}m {secs:02d}s"


def _run(
    store: Store, job: JobInfo, heartbeat: Heartbeat, echo: Progress | None
) -> tuple[str, str, str | None, dict[str, Any] | None, int | None]:
    """(status, message, error, result, peak memory) of running the job here."""
    from workbench.devices import MemoryMeter, resolve_device  # the engine's world: torch

    meter: MemoryMeter | None = None
    progress: JobProgress | None = None

    def peak() -> int | None:
        return meter.peak() if meter is not None else None

    try:
        # A request that names no device (an import) runs on the CPU: its memory is the process's.
        asked = job.request.get("device", "cpu")
        given = gpus.gpus_of(job.device)  # the GPUs its claim gave it (see workbench.jobs.gpus)
        pinned = os.environ.get(gpus.PINNED)  # a worker's job process, shown only the GPUs it was given
        if pinned:
            log.info("GPUs: %s of the host (CUDA_VISIBLE_DEVICES=%s)", pinned, os.environ.get("CUDA_VISIBLE_DEVICES"))
        if pinned and asked in ("auto", "cuda"):  # never fall back to the CPU, nor to another GPU
            import torch

            if not torch.backends.cuda.is_built():
                raise UserError(f"the job was given {pinned}, but this torch ({torch.__version__}) is built "
                                "without CUDA: install a CUDA build, or run the job process with --gpus none")
            problem = gpus.missing(pinned, torch.cuda.device_count())
            if problem:
                raise UserError(problem)
        device = resolve_device(asked)
        meter = MemoryMeter(device)
        if given is None or device.type != "cuda":  # the row keeps naming the host's GPUs it runs on
            jobs.update_running(store, job.id, device=str(device))
        log.info("device %s", device)
        progress = JobProgress(store, job.id, heartbeat, peak, echo)
        context = JobContext(
            store=store,
            job_id=job.id,
            data=Path(job.spec["data_dir"]) if job.spec.get("data_dir") else None,
            out=Path(job.spec["out"]) if job.spec.get("out") else None,
            progress=progress,
        )
        result = kind_of(job.kind).run(job.request, context)
    except (Cancelled, KeyboardInterrupt):
        where = f" during {progress.name}" if progress is not None and progress.name else ""
        return "cancelled", f"cancelled{where}", None, None, peak()
    except UserError as e:
        return "failed", "failed", _one_line(str(e)), {"error_type": "UserError"}, peak()
    except Exception as e:
        log.exception("failed")
        return "failed", "failed", _one_line(f"{type(e).__name__}: {e}"), {"error_type": type(e).__name__}, peak()
    # Through JSON and back: the row holds exactly what a reader will get.
    return "done", "done", None, json.loads(json.dumps(result, default=str)), peak()


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else "(no message)"


class _StoryFormat(logging.Formatter):
    """The job's own lines as "12:04:31 what happened"; anything else (a library's warning) also names
    its level and logger, so that it reads as an aside."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        if record.name.split(".")[0] == "workbench" and record.levelno == logging.INFO:
            return f"{self.formatTime(record, self.datefmt)} {record.getMessage()}"
        return super().format(record)


@contextmanager
def _logging_to(path: Path) -> Iterator[None]:
    """Log records (the engine's, warnings) go to the job's log file while the job runs."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(_StoryFormat())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # each distinct warning once in the log
            yield
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()
