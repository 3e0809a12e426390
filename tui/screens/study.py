"""A study: the grid of its configurations with their status (live while its jobs run; enter opens
a row's run, or the base model), the trade-off table with the best of each column marked, a chart
of a chosen metric against parameters or the share removed (one series per scorer and source),
and the specialisation view. workbench.studies.view reads it all from the store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable, Header, Static, TabbedContent, TabPane

from store.db import Store
from tui.chart import Chart
from tui.keybar import KeyBar
from tui.navigation import navigator
from tui.records import RecordTable
from tui.screens.tabbed import TabbedScreen
from workbench.studies.specialisation import overlap_table, perplexity_table
from workbench.studies.view import StudyView, gather
from workbench.tabular import Column, Table, count

POLL_S = 1.0
BEST = "bold reverse"
OWN = "bold"
FLAGGED = "bold red"
AXES = {"parameters": "parameters", "removed": "% of parameters removed"}


def runs_table(view: StudyView) -> Table:
    """Each configuration with its status, the jobs and run behind it, and its model."""
    columns = [Column("label", "configuration"), Column("status"), Column("model"), Column("run", numeric=True),
               Column("jobs"), Column("parameters", "params", count, numeric=True), Column("problem")]  # fmt: skip
    rows = [[r.label, r.status, r.model.name if r.model else "", r.run.id if r.run else None,
             ", ".join(map(str, r.jobs)), r.parameters, r.problem or ""] for r in view.all_rows]  # fmt: skip
    return Table("configurations", columns, rows)


class StudyScreen(TabbedScreen):
    TITLE = "Study"
    BINDINGS = [
        Binding("n", "metric(1)", "Next metric", id="study.metric"),
        Binding("N", "metric(-1)", "Previous metric", show=False, id="study.metric_back"),
        Binding("a", "axis", "X axis", id="study.axis"),
    ]

    @dataclass
    class Loaded(Message):
        view: StudyView

    def __init__(self, store: Store, name: str) -> None:
        super().__init__(store)
        self.name_ = name
        self.view: StudyView | None = None
        self.metric = 0
        self.axis = "parameters"
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent():
            with TabPane("Runs", id="runs"):
                yield RecordTable(openable=True, id="study-runs")
            with TabPane("Trade-off", id="tradeoff"), Vertical():
                yield RecordTable(id="study-tradeoff")
                yield Static(id="study-notes", classes="hint", markup=False)
            with TabPane("Chart", id="chart"), Vertical():
                yield Static(id="chart-title", markup=False)
                yield Chart(id="study-chart")
            with TabPane("Specialisation", id="specialisation"), Vertical():
                yield RecordTable(id="spec-perplexity")
                yield RecordTable(id="spec-overlap")
        yield KeyBar()

    def on_mount(self) -> None:
        self.sub_title = self.name_
        self.load()
        self._timer = self.set_interval(POLL_S, self._poll)

    def on_screen_suspend(self) -> None:
        if self._timer is not None:
            self._timer.pause()

    def on_screen_resume(self) -> None:
        if self._timer is not None:
            self._timer.resume()

    def _poll(self) -> None:
        if self.view is not None and self.view.live:  # its jobs move: so do its rows
            self.load()

    @work(thread=True, exclusive=True, group="study", exit_on_error=False)
    def load(self) -> None:
        self.post_message(self.Loaded(gather(self.store, self.name_)))

    def on_study_screen_loaded(self, message: Loaded) -> None:
        first = self.view is None
        v = self.view = message.view
        live = sum(1 for j in v.jobs.values() if not j.finished)
        waiting = f" · {live} job{'s' * (live != 1)} on {'their' if live != 1 else 'its'} way" if live else ""
        self.sub_title = f"{v.study.name} · {len(v.rows)} configurations{waiting}"
        _show(self.query_one("#study-runs", RecordTable), runs_table(v))
        best = v.best()
        keys = [r.key for r in v.all_rows]
        flagged = {i for i, r in enumerate(v.all_rows) if r.overlaps}

        def style(row: int, key: str, _value: Any) -> str:
            if keys[row] in best.get(key, ()):
                return BEST
            return FLAGGED if key == "notes" and row in flagged else ""

        tradeoff = self.query_one("#study-tradeoff", RecordTable)
        tradeoff.border_title = Text(f"trade-off of {v.study.name}")  # a name: no markup
        _show(tradeoff, v.grid(), style)
        self.query_one("#study-notes", Static).update("\n".join(v.notes()).replace("* the best", "reversed: the best"))
        self._draw_chart()
        groups = v.specialisation()
        tabs = self.query_one(TabbedContent)
        if groups:
            tabs.show_tab("specialisation")
            table = perplexity_table(groups)
            _show(self.query_one("#spec-perplexity", RecordTable), table,
                  lambda _r, _k, value: OWN if isinstance(value, str) and value.endswith("(own)") else "")
            _show(self.query_one("#spec-overlap", RecordTable), overlap_table(groups))
        else:
            tabs.hide_tab("specialisation")
        if first:
            self.query_one("#study-runs", RecordTable).focus()

    @on(DataTable.RowSelected, "#study-runs")
    def _open_run(self, event: DataTable.RowSelected) -> None:
        rows = self.view.all_rows if self.view is not None else ()
        if event.cursor_row < len(rows):
            row = rows[event.cursor_row]
            if row.run is not None:
                navigator(self).open_run(row.run.id)
            elif row.model is not None:
                navigator(self).open_model(row.model.id)

    # The chart --------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("metric", "axis"):
            return self.query_one(TabbedContent).active == "chart"
        return super().check_action(action, parameters)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        super().on_tabbed_content_tab_activated(event)
        self.refresh_bindings()

    def action_metric(self, step: int) -> None:
        if self.view is not None and self.view.columns:
            self.metric = (self.metric + step) % len(self.view.columns)
            self._draw_chart()

    def action_axis(self) -> None:
        self.axis = "removed" if self.axis == "parameters" else "parameters"
        self._draw_chart()

    def _draw_chart(self) -> None:
        v = self.view
        if v is None:
            return
        title = self.query_one("#chart-title", Static)
        chart = self.query_one(Chart)
        if not v.columns:
            title.update("no figures yet")
            chart.show([], AXES[self.axis])
            return
        column = v.columns[self.metric % len(v.columns)]
        better = {True: "higher is better", False: "lower is better"}.get(column.higher_is_better, "")  # type: ignore[arg-type]
        title.update(f" {column.label} against {AXES[self.axis]}" + (f" ({better})" if better else ""))
        fmt_x = (lambda x: count(round(x))) if self.axis == "parameters" else (lambda x: f"{x:.1f}%")
        chart.show(v.series(column.key, self.axis), AXES[self.axis], fmt_x)


def _show(table: RecordTable, content: Table, style: Any = None) -> None:
    """Show `content`, keeping the cursor's row (a live study redraws every second)."""
    row = table.cursor_row
    table.show(content, style=style)
    if table.row_count:
        table.move_cursor(row=min(row, table.row_count - 1), animate=False)
