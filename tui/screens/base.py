"""What every screen shares: the store, error reporting, going back, and exporting a table."""

from __future__ import annotations

from typing import Protocol

from textual import work
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable

from store.db import Store
from tui.export import ExportChoice, ExportScreen, write_export
from tui.failures import ReportsFailures
from workbench.tabular import Table


class Exportable(Protocol):
    def export_table(self) -> Table: ...


class StoreScreen(ReportsFailures, Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back", id="screen.back"),
        Binding("x", "export", "Export", id="screen.export"),
    ]

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "back":
            stack = self.app.screen_stack  # a mode's first screen has nowhere to go back to
            return self in stack and stack.index(self) > 0
        if action == "export":
            return self.exportable() is not None
        return True

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.dismiss()

    def exportable(self) -> DataTable[object] | None:
        """The table export writes: the focused one, else the first on screen that has rows."""
        focused = self.focused
        if isinstance(focused, DataTable) and hasattr(focused, "export_table"):
            return focused
        for table in self.query(DataTable):
            if hasattr(table, "export_table") and table.display and table.row_count:
                return table
        return None

    def action_export(self) -> None:
        table = self.exportable()
        if table is None:
            return
        title = str(table.border_title or self.sub_title or "table")

        def chosen(choice: ExportChoice | None) -> None:
            if choice is not None:
                self._export(table, choice)  # type: ignore[arg-type]

        self.app.push_screen(ExportScreen(title), chosen)

    @work(thread=True, exclusive=True, group="export", exit_on_error=False)
    def _export(self, table: Exportable, choice: ExportChoice) -> None:
        rows = write_export(table.export_table(), choice)
        self.app.notify(f"wrote {rows:,} rows to {choice.path}", title="Exported")  # thread-safe
