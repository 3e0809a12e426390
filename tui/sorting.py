"""The sort menu: every sortable column of a list, keyboard first (headers also sort on a click)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import OptionList
from textual.widgets.option_list import Option

if TYPE_CHECKING:
    from tui.paging import ListColumn


class SortMenu(ModalScreen["ListColumn | None"]):
    """Choose a column; choosing the one sorted on reverses the order."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Close", id="menu.close")]

    def __init__(self, columns: Sequence[ListColumn], current: str, descending: bool) -> None:
        super().__init__()
        self.columns = list(columns)
        self.current = current
        self.descending = descending

    def compose(self) -> ComposeResult:
        options = []
        for c in self.columns:
            mark = ("  ▼ (reverse)" if self.descending else "  ▲ (reverse)") if c.sort == self.current else ""
            options.append(Option(f"{c.title}{mark}", id=c.key))
        menu = OptionList(*options, id="sort-menu")
        menu.border_title = "Sort by"
        yield menu

    def on_mount(self) -> None:
        menu = self.query_one(OptionList)
        menu.highlighted = next((i for i, c in enumerate(self.columns) if c.sort == self.current), 0)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.columns[event.option_index])
