"""A screen that is one long list of the store: a filter line over a paged table."""

from __future__ import annotations

from collections.abc import Sequence

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Header, Input, Static

from store.db import Store
from tui.keybar import KeyBar
from tui.paging import ListColumn, PagedTable
from tui.screens.base import StoreScreen


class FilterInput(Input):
    """Escape or down goes back to the list; the filter stays."""

    BINDINGS = [Binding("escape,down", "screen.focus('#list')", "To list", id="filter.done")]


class ListScreen(StoreScreen):
    BINDINGS = [Binding("slash", "filter", "Filter", id="list.filter")]

    NOUN = ""
    PLACEHOLDER = ""
    EMPTY = ""  # what to do when the store has none
    SORT = ""
    DESCENDING = False
    MARKABLE = False

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.table = PagedTable(
            self.NOUN,
            self.columns(),
            self.fetch,
            self.count,
            sort=self.SORT,
            descending=self.DESCENDING,
            markable=self.MARKABLE,
            id="list",
        )
        self.table.border_title = self.NOUN.capitalize()

    def columns(self) -> Sequence[ListColumn]:
        raise NotImplementedError

    def fetch(self, text: str, sort: str, descending: bool, limit: int | None, offset: int) -> list[object]:
        raise NotImplementedError

    def count(self, text: str) -> int:
        raise NotImplementedError

    def compose(self) -> ComposeResult:
        yield Header()
        yield FilterInput(placeholder=self.PLACEHOLDER, id="filter", compact=True)
        yield self.table
        empty = Static(self.EMPTY, id="empty", classes="hint", markup=False)
        empty.display = False
        yield empty
        yield KeyBar()

    def on_mount(self) -> None:
        self.table.focus()

    def on_screen_resume(self) -> None:
        # Back from a detail or a form, or switched to: the store may have changed meanwhile (an
        # empty list too: a model may have been imported). Its first load is its own.
        if self.table.loaded:
            self.table.reload(keep=True)

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    @on(Input.Changed, "#filter")
    def _filter(self, event: Input.Changed) -> None:
        self.table.filter(event.value)

    @on(Input.Submitted, "#filter")
    def _to_table(self) -> None:
        self.table.focus()

    @on(PagedTable.Loaded)
    def _empty(self) -> None:
        self.query_one("#empty").display = bool(self.EMPTY) and self.table.total == 0 and not self.table.text.strip()

    @on(DataTable.RowSelected, "#list")
    def _open(self) -> None:
        item = self.table.current
        if item is not None:
            self.open(item)

    def open(self, item: object) -> None:
        raise NotImplementedError
