"""Run detail: the per-layer retention (a bar in each row, a picture over depth), kept vs removed
scores, the whole configuration, time per stage and peak memory."""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Header, Log, Static, TabbedContent, TabPane

from store import queries
from store.db import NotFoundError, Store
from store.queries import RetentionInfo, RunDetail, RunSummary
from tui.bars import column_chart
from tui.keybar import KeyBar
from tui.logs import read_log
from tui.navigation import navigator
from tui.records import RecordTable
from tui.screens.runs import percent, removed
from tui.screens.tabbed import TabbedScreen
from workbench import jobs
from workbench.tabular import Column, Table, count, fixed, plain, size

SCORE = plain  # four significant digits: scores run from 1e-6 (variance) to thousands (activations)
# Headers of two lines: the scores of the kept and of the removed neurons, each min, mean and max.
RETENTION_COLUMNS = [
    Column("layer", numeric=True),
    Column("original_width", "width", numeric=True),
    Column("kept_width", "kept", numeric=True),
    Column("percent_kept", "% kept", fixed(1), numeric=True),
]
# A repaired run's relative reconstruction error of each layer's MLP output, cut and refit: beside
# the share kept, where 80 columns show it.
REPAIR_COLUMNS = [
    Column("repair_error_before", "error\ncut", fixed(4), numeric=True),
    Column("repair_error_after", "error\nrepaired", fixed(4), numeric=True),
]
SCORE_COLUMNS = [
    Column("kept_score_min", "score kept\nmin", SCORE, numeric=True),
    Column("kept_score_mean", "score kept\nmean", SCORE, numeric=True),
    Column("kept_score_max", "score kept\nmax", SCORE, numeric=True),
    Column("removed_score_min", "score removed\nmin", SCORE, numeric=True),
    Column("removed_score_mean", "score removed\nmean", SCORE, numeric=True),
    Column("removed_score_max", "score removed\nmax", SCORE, numeric=True),
]
STAGE_COLUMNS = [Column("stage"), Column("seconds", fmt=fixed(2), numeric=True)]
CHART_ROWS = 4


def goal(run: RunSummary) -> str:
    """What the run was asked to do, in words."""
    if run.target_kind == "percent":
        return f"{run.target_value:g}% of neurons removed"
    return f"down to expansion {run.target_value:g}"


def configuration(run: RunDetail) -> Table:
    calibration = ""
    if run.calibration_source:
        calibration = f"{run.calibration_source}, {run.calibration_samples} x {run.calibration_seq_len} tokens"
    parameters = ""
    if run.parameters_before and run.parameters_after:
        parameters = (
            f"{count(run.parameters_before)} -> {count(run.parameters_after)} ({percent(removed(run))} removed)"
        )
    pairs = [
        ("status", run.status),
        ("error", run.error or ""),
        ("base model", run.base_model_name),
        ("result model", run.result_model_name or ""),
        ("scorer", run.scorer),
        ("target", goal(run)),
        ("divisor", run.divisor),
        ("allocation", run.allocation),
        ("layers", run.layers),
        ("calibration", calibration),
        ("calibration hash", run.calibration_hash or ""),
        ("repair", f"{run.repair} least-squares refit of down_proj, damping {run.repair_damping:g} × mean of "
                   "diag G[K,K]" if run.repair else ""),
        ("device", run.device),
        ("dtype", run.dtype),
        ("parameters", parameters),
        ("peak memory", size(run.peak_memory_bytes)),
        ("versions", ", ".join(f"{k} {v}" for k, v in run.versions.items())),
        ("job", run.job_id or ""),
        ("created", plain(run.created_at)),
    ]
    return Table.of_pairs(f"run {run.id}", [(k, v) for k, v in pairs if v != ""])


def depth_picture(run: RunDetail) -> Text:
    """Share of neurons kept per layer as a column chart over depth (as the bars of the table
    below), with its scale, and the layers that kept least and most."""
    layers = run.retention
    if not layers:
        return Text(f"  the run made no model: {run.error}" if run.error else "  no retention rows", "bold red")
    kept = [r.kept_width / r.original_width if r.original_width else 1.0 for r in layers]
    picture = Text()
    for i, row in enumerate(column_chart(kept, CHART_ROWS)):
        scale = "100% ┤" if i == 0 else "  0% ┤" if i == CHART_ROWS - 1 else "     │"
        picture.append(f"  {scale}", "dim")
        picture.append_text(row)
        picture.append("\n")
    first, last = str(layers[0].layer), str(layers[-1].layer)
    picture.append(f"        {first}".ljust(len(layers) + 8 - len(last)) + last + "  layer (depth) →\n", "dim")
    picture.append("  height: share of neurons kept · ")
    picture.append_text(extremes(layers, kept))
    return picture


def extremes(layers: tuple[RetentionInfo, ...], kept: list[float]) -> Text:
    """The layers that kept least and most; one line for a run that kept the same share everywhere."""
    if len({r.kept_width for r in layers}) == 1 and len({r.original_width for r in layers}) == 1:
        first = layers[0]
        return Text(f"every layer keeps {100 * kept[0]:.1f}% ({first.kept_width} of {first.original_width})", "bold")
    ranked = sorted(zip(kept, layers, strict=True), key=lambda x: (x[0], x[1].layer))

    def named(picked: list[tuple[float, RetentionInfo]]) -> str:
        return ", ".join(f"layer {r.layer} {100 * share:.0f}%" for share, r in picked)

    shown = min(3, len(ranked) // 2) or 1  # never the same layer on both ends
    text = Text("kept least: ")
    text.append(named(ranked[:shown]), "bold")
    text.append(" · most: ")
    text.append(named(ranked[::-1][:shown]), "bold")
    return text


def mean(values: list[float | None]) -> float | None:
    """The mean of the values recorded (None: none is)."""
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def score_summary(scorer: str, layers: tuple[RetentionInfo, ...]) -> Text:
    """Means over layers of the kept and the removed neurons' scores, and how far apart they are."""
    kept = mean([r.kept_score_mean for r in layers])
    gone = mean([r.removed_score_mean for r in layers])
    if kept is None:
        return Text("")
    summary = Text(f"  {scorer} scores of the neurons, mean over layers: kept ")
    summary.append(f"{kept:.4g}", "bold")
    if gone is None:
        return summary.append(" · nothing removed")
    summary.append(" · removed ")
    summary.append(f"{gone:.4g}", "bold")
    overlapping = sum(1 for r in layers if r.removed_score_max is not None and r.kept_score_min is not None
                      and r.removed_score_max > r.kept_score_min)  # fmt: skip
    if overlapping:
        summary.append(f" · {overlapping} layers keep a neuron scored below one removed (global allocation)")
    return summary


def repair_summary(layers: tuple[RetentionInfo, ...]) -> Text:
    """A repaired run's reconstruction error, mean over layers, before and after the refit."""
    before = mean([r.repair_error_before for r in layers])
    after = mean([r.repair_error_after for r in layers])
    if before is None or after is None:
        return Text("")
    summary = Text("  repair: mean relative MLP output error ")
    summary.append(f"{before:.4g} cut → {after:.4g} repaired", "bold")
    if before:
        summary.append(f" ({100 * (after - before) / before:+.0f}%)")
    return summary


def stages(run: RunDetail) -> Table:
    rows = [[k, v] for k, v in run.stage_seconds.items()]
    rows.append(["total", sum(run.stage_seconds.values())])
    return Table(f"stages of run {run.id}", STAGE_COLUMNS, rows)


class RunDetailScreen(TabbedScreen):
    TITLE = "Run"
    BINDINGS = [
        Binding("o", "open_result", "Result model", id="run.result"),
        Binding("b", "open_base", "Base model", id="run.base"),
    ]

    @dataclass
    class Loaded(Message):
        run: RunDetail
        log: str | None  # the tail of its job's log, when it ran as a job

    def __init__(self, store: Store, run_id: int) -> None:
        super().__init__(store)
        self.run_id = run_id
        self.run: RunDetail | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent():
            with TabPane("Retention", id="retention"), Vertical():
                yield Static(id="depth")
                yield RecordTable(id="retention-table")
                yield Static(id="scores")
            with TabPane("Configuration", id="configuration"):
                yield RecordTable(id="configuration-table")
            with TabPane("Stages", id="stages"), Vertical():
                yield RecordTable(id="stages-table")
                yield Static(id="memory", markup=False)
            with TabPane("Log", id="log"):
                yield Log(id="run-log")
        yield KeyBar()

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="run-detail", exit_on_error=False)
    def load(self) -> None:
        run = queries.run_detail(self.store, self.run_id)
        log = None
        if run.job_id is not None:
            with suppress(NotFoundError):  # a job row may have been cleared away
                path = jobs.log_file(self.store, jobs.get_job(self.store, run.job_id))
                if path is not None and path.is_file():
                    log = read_log(path, run.job_id).text
        self.post_message(self.Loaded(run, log))

    def on_run_detail_screen_loaded(self, message: Loaded) -> None:
        run = self.run = message.run
        made = f" → {run.result_model_name}" if run.result_model_name else f" ({run.status})"
        self.sub_title = f"run {run.id}: {run.base_model_name}{made} · {run.scorer}, {goal(run)}"
        self.query_one("#depth", Static).update(depth_picture(run))
        retention = self.query_one("#retention-table", RecordTable)
        retention.border_title = f"retention of run {run.id}"
        columns = RETENTION_COLUMNS + (REPAIR_COLUMNS if run.repair else []) + SCORE_COLUMNS
        retention.show(Table.of(f"retention of run {run.id}", columns, run.retention), bars={"percent_kept": 100.0})
        lines = [score_summary(run.scorer, run.retention), repair_summary(run.retention)]
        self.query_one("#scores", Static).update(Text("\n").join(line for line in lines if line.plain))
        self.query_one("#configuration-table", RecordTable).show(configuration(run))
        total = sum(run.stage_seconds.values())
        self.query_one("#stages-table", RecordTable).show(stages(run), bars={"seconds": total})
        self.query_one("#memory", Static).update(f"  peak memory {size(run.peak_memory_bytes) or 'not recorded'}")
        if message.log is None:
            self.query_one(TabbedContent).hide_tab("log")
        else:
            self.query_one("#run-log", Log).write(message.log)
        retention.focus()
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "open_result":
            return self.run is not None and self.run.result_model_id is not None
        return super().check_action(action, parameters)

    def action_open_result(self) -> None:
        if self.run is not None and self.run.result_model_id is not None:
            navigator(self).open_model(self.run.result_model_id)

    @property
    def current_model_name(self) -> str | None:
        """A new pruning run starts from this run's base (another setting on it)."""
        return self.run.base_model_name if self.run is not None else None

    @property
    def current_model_ids(self) -> list[int]:
        """A new evaluation starts with what this run made, else its base."""
        return [] if self.run is None else [self.run.result_model_id or self.run.base_model_id]

    def action_open_base(self) -> None:
        if self.run is not None:
            navigator(self).open_model(self.run.base_model_id)
