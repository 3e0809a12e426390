"""Studies: every study `sweep` made, the latest first, with where its jobs stand (refreshed while
some run); enter opens one."""

from __future__ import annotations

from collections.abc import Sequence

from textual.timer import Timer

from store import studies
from store.studies import StudySummary
from tui.navigation import navigator
from tui.paging import ListColumn
from tui.screens.listing import ListScreen
from workbench.tabular import plain

POLL_S = 2.0


def _jobs(s: StudySummary) -> str:
    return f"{s.done}/{s.jobs}"


STUDY_COLUMNS = [
    ListColumn("name", sort="name", elastic=True),
    ListColumn("base_model", "base", sort="base", elastic=True),
    ListColumn("configurations", "configs", numeric=True),
    ListColumn("status", get=lambda s: s.status),
    ListColumn("jobs", "jobs done", numeric=True, get=_jobs),
    ListColumn("running", numeric=True),
    ListColumn("queued", numeric=True),
    ListColumn("failed", numeric=True),
    ListColumn("updated_at", "updated", plain, sort="updated"),
]


class StudiesScreen(ListScreen):
    TITLE = "Studies"
    NOUN = "studies"
    PLACEHOLDER = "/ filter: words in the study's name or base model"
    EMPTY = ("No studies yet. A study is a sweep of settings, made on the command line, e.g.\n"
             "  workbench sweep smollm2 --scorers ppm,wanda --percent 20,40 --tasks arc_easy --limit 200 --name first\n"
             "and followed here as its jobs run (workbench sweep --help says the rest).")
    SORT = "updated"
    DESCENDING = True

    _timer: Timer | None = None

    def columns(self) -> Sequence[ListColumn]:
        return STUDY_COLUMNS

    def fetch(self, text: str, sort: str, descending: bool, limit: int | None, offset: int) -> list[object]:
        return list(studies.list_studies(self.store, text, sort=sort, descending=descending, limit=limit,
                                         offset=offset))  # fmt: skip

    def count(self, text: str) -> int:
        return studies.count_studies(self.store, text)

    def on_mount(self) -> None:
        super().on_mount()
        self._timer = self.set_interval(POLL_S, self._refresh_live)

    def _refresh_live(self) -> None:
        # Only while a study listed has jobs on their way: its counts move.
        if self.table.loaded and any(s.running or s.queued for s in self.table.items):
            self.table.reload(keep=True)

    def open(self, item: object) -> None:
        assert isinstance(item, StudySummary)
        navigator(self).open_study(item.name)
