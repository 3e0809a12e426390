"""A table over a store list too long to hold: pages fetched with limit/offset as the cursor nears
the end, filtered as you type and sorted by any column, all in the store.

Building 10,000 dataclasses takes longer than a screen should wait, while one page of a hundred
answers in milliseconds (bench/store_queries.py), so the table never asks for more than it shows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on, work
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable
from textual.worker import get_current_worker

from tui.failures import ReportsFailures
from tui.fitting import Elastic, FitsWidth
from tui.sorting import SortMenu
from workbench.tabular import Column, Table

PAGE = 100
AHEAD = 20  # fetch the next page when the cursor comes this close to the last loaded row

Fetch = Callable[[str, str, bool, int | None, int], list[Any]]  # text, sort, descending, limit, offset
Count = Callable[[str], int]


@dataclass(frozen=True)
class ListColumn(Column):
    sort: str | None = None  # the store's sort key for this column; None: not sortable
    get: Callable[[Any], Any] | None = None  # computes the value from the item, else its attribute `key`
    elastic: bool = False  # long text (a name): cut in the middle when the table is too wide

    def value(self, item: Any) -> Any:
        return self.get(item) if self.get is not None else getattr(item, self.key)


class PagedTable(ReportsFailures, FitsWidth):
    """Rows are items (frozen dataclasses) with an `id`; marks (space) pick several of them."""

    BINDINGS = [
        Binding("enter", "select_cursor", "Open", id="list.open"),
        Binding("s", "sort", "Sort", id="list.sort"),
        Binding("space", "mark", "Mark", id="list.mark"),
        # A list goes up and down: home and end go to its first and (loaded) last row.
        Binding("home", "scroll_top", "First", show=False, id="list.first"),
        Binding("end", "scroll_bottom", "Last", show=False, id="list.last"),
    ]

    class Loaded(Message):
        """A page arrived and is in the table (the screen may show counts)."""

    @dataclass
    class _Page(Message, bubble=False):
        generation: int
        offset: int
        items: list[Any]
        total: int | None

    def __init__(
        self,
        noun: str,
        columns: Sequence[ListColumn],
        fetch: Fetch,
        count: Count,
        *,
        sort: str,
        descending: bool,
        markable: bool = False,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.noun = noun
        self.list_columns = list(columns)
        self.elastic = {c.key for c in columns if c.elastic}
        self.fetch = fetch
        self.count = count
        self.text = ""
        self.sort = sort
        self.descending = descending
        self.markable = markable
        self.items: list[Any] = []
        self.total = 0
        self.marked: dict[int, Any] = {}  # id -> item, kept across filters and sorts
        self.loaded = False  # a first page (perhaps empty) has arrived
        self._generation = 0
        self._loading = False

    def on_mount(self) -> None:
        self._set_columns()
        self.reload()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "mark":
            return self.markable
        return True

    # Loading ------------------------------------------------------------------------------------

    def reload(self, *, keep: bool = False) -> None:
        """Fetch from the first row again: as many rows as are loaded when `keep` (coming back to
        the screen keeps the cursor where it was), else one page."""
        self._generation += 1
        self._loading = True
        rows = max(PAGE, len(self.items)) if keep else PAGE
        self._load(self._generation, self.text, self.sort, self.descending, 0, rows)

    def filter(self, text: str) -> None:
        if text != self.text:
            self.text = text
            self.reload()

    def sort_by(self, key: str, descending: bool) -> None:
        self.sort, self.descending = key, descending
        self._set_columns()
        self.reload()

    @work(thread=True, exclusive=True, group="page", exit_on_error=False)
    def _load(self, generation: int, text: str, sort: str, descending: bool, offset: int, limit: int) -> None:
        items = self.fetch(text, sort, descending, limit, offset)
        total = self.count(text) if offset == 0 else None
        if not get_current_worker().is_cancelled:
            self.post_message(self._Page(generation, offset, items, total))

    @on(_Page)
    def _show_page(self, page: _Page) -> None:
        page.stop()
        if page.generation != self._generation:
            return  # an answer to a filter or sort since replaced
        self._loading = False
        self.loaded = True
        if page.offset == 0:
            selected = self.current
            self.clear()
            self.items = []
            self.total = page.total or 0
        else:
            selected = None
        self.items.extend(page.items)
        for item in page.items:
            self.add_row(*self._cells(item), key=str(item.id))
        if selected is not None and str(selected.id) in self.rows:
            self.move_cursor(row=self.get_row_index(str(selected.id)), animate=False)
        self.refit()
        self._show_counts()
        self.post_message(self.Loaded())

    def _more(self) -> None:
        if not self._loading and len(self.items) < self.total:
            self._loading = True
            self._load(self._generation, self.text, self.sort, self.descending, len(self.items), PAGE)

    @on(DataTable.RowHighlighted)
    def _near_end(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row >= len(self.items) - AHEAD:
            self._more()

    # Showing ------------------------------------------------------------------------------------

    @property
    def current(self) -> Any | None:
        """The item under the cursor, if any."""
        if 0 <= self.cursor_row < len(self.items) and self.row_count:
            return self.items[self.cursor_row]
        return None

    def _set_columns(self) -> None:
        self.clear(columns=True)
        if self.markable:
            self.add_column(" ", key="_mark", width=1)
        for c in self.list_columns:
            label = Text(c.title, justify="right" if c.numeric else "left")
            if c.sort == self.sort:
                label.append(" ▼" if self.descending else " ▲", style="bold")
            self.add_column(label, key=c.key)
        self.items = []

    def _cells(self, item: Any) -> list[Any]:
        cells: list[Any] = ["●" if item.id in self.marked else " "] if self.markable else []
        for c in self.list_columns:
            text = c.fmt(c.value(item))
            cells.append(Elastic(text) if c.elastic else Text(text, justify="right" if c.numeric else "left"))
        return cells

    def _show_counts(self) -> None:
        shown = f"{len(self.items):,} of {self.total:,} {self.noun}"
        marked = f" · {len(self.marked)} marked" if self.marked else ""
        filtered = f" · matching {self.text!r}" if self.text.strip() else ""
        self.border_subtitle = Text(f"{shown}{filtered}{marked}")  # the filter as typed: no markup

    # Actions ------------------------------------------------------------------------------------

    def action_sort(self) -> None:
        def chosen(column: ListColumn | None) -> None:
            if column is not None:
                self._sort_on(column)

        sortable = [c for c in self.list_columns if c.sort]
        self.app.push_screen(SortMenu(sortable, self.sort, self.descending), chosen)

    def _sort_on(self, column: ListColumn) -> None:
        """The column sorted on flips; another starts with the largest (numbers) or A (text) first."""
        assert column.sort is not None
        self.sort_by(column.sort, not self.descending if column.sort == self.sort else column.numeric)

    @on(DataTable.HeaderSelected)
    def _header_sort(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        column = next((c for c in self.list_columns if c.key == event.column_key.value), None)
        if column is not None and column.sort:
            self._sort_on(column)

    def action_mark(self) -> None:
        item = self.current
        if item is None:
            return
        if item.id in self.marked:
            del self.marked[item.id]
        else:
            self.marked[item.id] = item
        self.update_cell(str(item.id), "_mark", "●" if item.id in self.marked else " ")
        self._show_counts()
        if self.cursor_row < self.row_count - 1:
            self.move_cursor(row=self.cursor_row + 1)

    def export_table(self) -> Table:
        """Every row matching the filter, in this order, every field at full precision (slow on a
        big store: run it on a worker)."""
        items = self.fetch(self.text, self.sort, self.descending, None, 0)
        return Table(self.noun, self.list_columns, [[c.value(item) for c in self.list_columns] for item in items])
