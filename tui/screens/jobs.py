"""Jobs: queued, running and finished jobs with live progress bars and ETA, where each runs (its
GPU and host), the selected job's log, cancel and retry; on a host with GPUs, a line saying which
job each GPU runs. Polled from the store once a second; jobs run in their own processes, so closing
the app stops nothing and reopening it shows each job where it is. Each poll also starts a job
process when work is queued and none runs on this host (the CLI's reading commands do the same),
so nothing queued is stranded while the screen watches."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable, Header, Log, Static
from textual.worker import get_current_worker

from store.db import Store, host_name
from store.jobs import RETRYABLE
from tui.bars import bar
from tui.confirm import Confirm
from tui.fitting import Elastic, FitsWidth
from tui.keybar import KeyBar
from tui.logs import LogChunk, read_log
from tui.navigation import navigator
from tui.screens.base import StoreScreen
from workbench import jobs
from workbench.jobs import JobInfo, gpus
from workbench.tabular import Column, Table, plain, size

POLL_S = 1.0
SHOWN = 200  # the newest jobs; older ones stay in the store (and the CLI's `jobs list`)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def summary(job: JobInfo) -> str:
    kind = jobs.KINDS.get(job.kind)
    try:
        return kind.summarize(job.request) if kind else ""
    except (KeyError, TypeError, ValueError):
        return ""  # a request older code wrote: the row still lists


def gpu_line(count: int, running: list[JobInfo]) -> Text:
    """Which job each of this host's `count` GPUs runs (from the running jobs' devices, as the
    worker places them: a job whose device names no GPU of its own takes them all), or that it is free."""
    line = Text(f"GPUs of {host_name()}:", "bold")
    for gpu in range(count):
        users = [j.id for j in running if gpu in gpus.busy_gpus([j.device], count)]
        line.append(f"  {gpu} ")
        if users:
            line.append(", ".join(f"job {i}" for i in users), "bold")
        else:
            line.append("free", "green")
    return line


def progress(job: JobInfo) -> Text:
    text = bar(job.progress, 10)
    text.append(f" {100 * job.progress:3.0f}%")
    return text


# Where each job stands first (a narrow screen shows these), then what it is and says.
JOB_COLUMNS = [
    Column("id", numeric=True),
    Column("status"),
    Column("progress", fmt=lambda v: f"{100 * v:.0f}%", numeric=True),
    Column("eta_seconds", "ETA", duration, numeric=True),
    Column("device"),  # cuda:2, cuda:0+1 (the GPUs of its host it runs on), cpu
    Column("host"),
    Column("summary", "what"),
    Column("message", "message / error"),
    Column("stage"),
    Column("kind"),
    Column("peak_memory_bytes", "peak", size, numeric=True),
    Column("created_at", "queued", plain),
]


def row(job: JobInfo) -> list[object]:
    status_style = {"failed": "bold red", "interrupted": "bold red", "done": "green", "running": "bold"}
    message = job.error if job.error else job.message
    return [
        Text(str(job.id), justify="right"),
        Text(job.status, status_style.get(job.status, "")),
        progress(job),
        Text(duration(job.eta_seconds) if job.status == "running" else "", justify="right"),
        Text(job.device or ""),
        Elastic(job.host or ""),
        Elastic(summary(job)),
        Elastic(message, "red" if job.error else "", cut="end"),
        Text(job.stage),
        Text(job.kind),
        Text(size(job.peak_memory_bytes), justify="right"),
        Text(plain(job.created_at)),
    ]


def log_title(job: JobInfo) -> Text:
    """The log's title: whose it is, and where that job runs (its host's name is no markup)."""
    where = " on ".join(filter(None, (job.device, job.host)))
    return Text(f"Log of job {job.id}" + (f" · {where}" if where else ""))


class JobsTable(FitsWidth):
    """The jobs shown, newest first; exports them with raw values."""

    # On the table, so that it wins over DataTable's own enter; the screen decides when it applies.
    BINDINGS = [Binding("enter", "screen.open", "Open result", id="jobs.open")]
    elastic = ("host", "summary", "message")

    def __init__(self) -> None:
        super().__init__(id="jobs-table", cursor_type="row", zebra_stripes=True)
        self.jobs: dict[int, JobInfo] = {}

    def export_table(self) -> Table:
        listed = sorted(self.jobs.values(), key=lambda j: -j.id)
        rows = [[summary(j) if c.key == "summary" else getattr(j, c.key) for c in JOB_COLUMNS] for j in listed]
        return Table("jobs", JOB_COLUMNS, rows)


class JobsScreen(StoreScreen):
    TITLE = "Jobs"
    BINDINGS = [
        Binding("c", "cancel", "Cancel", id="jobs.cancel"),
        Binding("R", "retry", "Retry", id="jobs.retry"),
    ]

    @dataclass
    class Polled(Message):
        jobs: list[JobInfo]
        worker: bool  # a job process runs on this host
        log: LogChunk | None
        gpus: int  # this host's GPUs

    def __init__(self, store: Store, select: int | None = None) -> None:
        super().__init__(store)
        self.jobs: dict[int, JobInfo] = {}
        self.worker = False
        self.select = select  # a job to put the cursor on when it shows
        self._log_job: int | None = None
        self._log_offset = 0
        self._timer: Timer | None = None
        self._gpus: int | None = None  # this host's GPUs, counted at the first poll

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            table = JobsTable()
            table.border_title = "Jobs"
            yield table
            shown = Static(id="gpus")
            shown.display = False  # on a host with GPUs only
            yield shown
            log = Log(id="job-log", max_lines=2000)
            log.border_title = "Log"
            yield log
        yield KeyBar()

    def on_mount(self) -> None:
        table = self.query_one(JobsTable)
        for c in JOB_COLUMNS:
            table.add_column(Text(c.title, justify="right" if c.numeric else "left"), key=c.key)
        table.focus()
        self.poll()
        self._timer = self.set_interval(POLL_S, self.poll)

    def on_screen_suspend(self) -> None:
        if self._timer is not None:
            self._timer.pause()  # out of sight: no polling

    def on_screen_resume(self) -> None:
        if self._timer is not None:
            self._timer.resume()
            self.poll()

    @property
    def current(self) -> JobInfo | None:
        table = self.query_one(JobsTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.jobs.get(int(key)) if key is not None else None

    def show_job(self, job_id: int) -> None:
        """Put the cursor on a job (now, or when it first shows)."""
        self.select = job_id
        if self.is_mounted:
            self.poll()

    # Polling ------------------------------------------------------------------------------------

    def poll(self) -> None:
        current = self.current
        self._poll(current.id if current else self.select, self._log_job, self._log_offset)

    @work(thread=True, exclusive=True, group="jobs-poll", exit_on_error=False)
    def _poll(self, log_job: int | None, shown_job: int | None, offset: int) -> None:
        if self._gpus is None:
            self._gpus = len(gpus.visible_gpus())
        if jobs.ensure_worker(self.store):  # queued work never waits for a job process that is gone
            # Said here, not with the poll's message: a newer poll may cancel this one before it posts.
            self.notify("started a job process for the queued jobs")
        listed = jobs.list_jobs(self.store, limit=SHOWN)
        chunk = None
        job = next((j for j in listed if j.id == log_job), None)
        path = jobs.log_file(self.store, job) if job is not None else None
        if job is not None and path is not None and path.is_file():
            fresh = job.id != shown_job
            chunk = read_log(path, job.id, 0 if fresh else offset, fresh)
        if not get_current_worker().is_cancelled:
            self.post_message(self.Polled(listed, jobs.worker_running(self.store), chunk, self._gpus))

    def on_jobs_screen_polled(self, message: Polled) -> None:
        table = self.query_one(JobsTable)
        before, current = self.jobs, self.current
        self.jobs = table.jobs = {j.id: j for j in message.jobs}
        self.worker = message.worker
        for job in message.jobs:
            old = before.get(job.id)
            if old is None or old.status == job.status:
                continue
            if job.status in ("failed", "interrupted"):
                self.notify(f"job {job.id} {job.status}: {job.error or job.message}", severity="error", timeout=10)
            elif job.status == "done":
                self.notify(f"job {job.id} done: {summary(job)}", title="Job done")
        if set(before) != set(self.jobs):
            # New jobs (or old ones gone): rebuild in the store's order, newest first.
            table.clear()
            for job in message.jobs:
                table.add_row(*row(job), key=str(job.id))
            if self.select is None and current is not None:
                self.select = current.id
        else:
            for job in message.jobs:
                if before[job.id] != job:
                    for c, value in zip(JOB_COLUMNS, row(job), strict=True):
                        table.update_cell(str(job.id), c.key, value, update_width=True)
        table.refit()
        self._place_cursor()
        self._show_log(message.log)
        queued = sum(1 for j in message.jobs if j.status == "queued")
        running = sum(1 for j in message.jobs if j.status == "running")
        worker = "a worker runs on this host" if self.worker else "no worker on this host"
        table.border_subtitle = f"{running} running · {queued} queued · {worker}"
        self._show_gpus(message.gpus, [j for j in message.jobs if j.status == "running" and j.host == host_name()])
        self.refresh_bindings()

    def _show_gpus(self, count: int, running: list[JobInfo]) -> None:
        shown = self.query_one("#gpus", Static)
        shown.display = count > 0
        if count:
            shown.update(gpu_line(count, running))

    def _place_cursor(self) -> None:
        table = self.query_one(JobsTable)
        if self.select is not None and str(self.select) in table.rows:
            table.move_cursor(row=table.get_row_index(str(self.select)))
            self.select = None

    def _show_log(self, chunk: LogChunk | None) -> None:
        """Show the log of the job under the cursor: read whole (its tail) when first shown, then
        only what was added since."""
        log = self.query_one(Log)
        current = self.current
        if current is None:
            return
        if chunk is None or chunk.job_id != current.id:
            if self._log_job != current.id or current.status == "queued":
                log.clear()
                log.write_line("(queued: the log starts when the job does)" if current.status == "queued" else "")
                log.border_title = log_title(current)
                self._log_job = None  # the first chunk read for it is whole
            return
        if chunk.fresh:
            log.clear()
        log.write(chunk.text)
        self._log_job, self._log_offset = chunk.job_id, chunk.offset
        log.border_title = log_title(current)

    @on(DataTable.RowHighlighted)
    def _selected(self) -> None:
        self.refresh_bindings()
        current = self.current
        if current is not None and current.id != self._log_job:
            self.poll()  # its log now, not in a second

    # Actions ------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        job = self.current
        if action == "cancel":
            return job is not None and not job.finished
        if action == "retry":
            return job is not None and job.status in RETRYABLE
        if action == "open":
            return job is not None and job.status == "done"
        return super().check_action(action, parameters)

    def action_cancel(self) -> None:
        """A queued job goes at once (retry queues it again); a running one loses its work, so asks first."""
        job = self.current
        if job is None:
            return
        if job.status != "running":
            self._cancel(job.id)
            return

        def answered(cancel: bool | None) -> None:
            if cancel:
                self._cancel(job.id)

        done = f", {100 * job.progress:.0f}% done" if job.progress else ""
        question = f"Cancel job {job.id} ({summary(job)}{done})? The work it has done is lost."
        self.app.push_screen(Confirm(question, "Cancel the job", "Let it run"), answered)

    @work(thread=True, group="jobs-action", exit_on_error=False)
    def _cancel(self, job_id: int) -> None:
        job = jobs.request_cancel(self.store, job_id)
        said = "cancelled" if job.status == "cancelled" else "asked to stop at the next layer or batch"
        self.app.notify(f"job {job_id} {said}")
        self.app.call_from_thread(self.poll)

    def action_retry(self) -> None:
        if (job := self.current) is not None:
            self._retry(job.id)

    @work(thread=True, group="jobs-action", exit_on_error=False)
    def _retry(self, job_id: int) -> None:
        new = jobs.retry(self.store, job_id)
        jobs.ensure_worker(self.store)
        self.app.notify(f"job {job_id} queued again as job {new}")
        self.select = new
        self.app.call_from_thread(self.poll)

    @property
    def current_model_name(self) -> str | None:
        """The model the job under the cursor worked on (for an import, the one it made)."""
        job = self.current
        if job is None:
            return None
        made = job.result.get("model_name") or next((m.get("model_name") for m in job.result.get("models", [])), None)
        asked = job.request.get("model") or next(iter(job.request.get("models", [])), None)
        return asked or made or None

    @property
    def current_model_ids(self) -> list[int]:
        """The models the job under the cursor made or evaluated, once it is done."""
        job = self.current
        if job is None or job.status != "done":
            return []
        if "model_id" in job.result:
            return [int(job.result["model_id"])]
        return [int(m["model_id"]) for m in job.result.get("models", [])][:4]

    def action_open(self) -> None:
        job = self.current
        if job is None or job.status != "done":
            return
        go = navigator(self)
        if job.kind == "prune" and "run_id" in job.result:
            go.open_run(int(job.result["run_id"]))
        elif job.kind == "heal" and "heal_id" in job.result:
            go.open_heal(int(job.result["heal_id"]))
        elif job.kind == "import" and "model_id" in job.result:
            go.open_model(int(job.result["model_id"]))
        elif job.kind == "eval" and job.result.get("models"):
            ids = [int(m["model_id"]) for m in job.result["models"]]
            if 2 <= len(ids) <= 4:
                go.open_compare(ids)
            else:
                go.open_model(ids[0])
