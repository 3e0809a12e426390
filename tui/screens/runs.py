"""Runs: every pruning run, newest first, filtered as you type, sorted by any column."""

from __future__ import annotations

from collections.abc import Sequence

from store import queries
from store.queries import RunSummary
from tui.navigation import navigator
from tui.paging import ListColumn
from tui.screens.listing import ListScreen
from workbench.tabular import plain


def target(run: RunSummary) -> str:
    if run.target_kind == "percent":
        return f"{run.target_value:g}% off"
    return f"expansion {run.target_value:g}"


def removed(run: RunSummary) -> float | None:
    """The share of the base model's parameters the run removed."""
    if not run.parameters_before or run.parameters_after is None:
        return None
    return 1 - run.parameters_after / run.parameters_before


def percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


RUN_COLUMNS = [
    ListColumn("id", numeric=True, sort="id"),
    ListColumn("status", sort="status"),
    ListColumn("base_model_name", "base", sort="base", elastic=True),
    ListColumn("scorer", sort="scorer"),
    ListColumn("target", sort="target", get=target),
    ListColumn("removed", "params off", percent, numeric=True, sort="removed", get=removed),
    ListColumn("result_model_name", "result", sort="result", elastic=True),
    ListColumn("calibration_source", "calibration", sort="calibration", elastic=True),
    ListColumn("divisor", "div", numeric=True, sort="divisor"),
    ListColumn("allocation", sort="allocation"),
    ListColumn("created_at", "date", plain, sort="created"),
]


class RunsScreen(ListScreen):
    TITLE = "Runs"
    NOUN = "runs"
    PLACEHOLDER = "/ filter: words in scorer, model names, allocation, layers, calibration, status, error"
    EMPTY = "No pruning runs yet: p opens the form for one (from Models, on the model under the cursor)."
    SORT = "created"
    DESCENDING = True

    def columns(self) -> Sequence[ListColumn]:
        return RUN_COLUMNS

    def fetch(self, text: str, sort: str, descending: bool, limit: int | None, offset: int) -> list[object]:
        return list(queries.list_runs(self.store, text, sort=sort, descending=descending, limit=limit, offset=offset))

    def count(self, text: str) -> int:
        return queries.count_runs(self.store, text)

    def open(self, item: object) -> None:
        assert isinstance(item, RunSummary)
        navigator(self).open_run(item.id)

    @property
    def current_model_name(self) -> str | None:
        """A new pruning run starts from the base of the run under the cursor (another setting on it)."""
        run = self.table.current
        return run.base_model_name if run is not None else None

    @property
    def current_model_ids(self) -> list[int]:
        """A new evaluation starts with what the run under the cursor made, else its base."""
        run = self.table.current
        return [] if run is None else [run.result_model_id or run.base_model_id]
