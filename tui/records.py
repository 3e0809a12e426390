"""A table of rows already in hand (a run's layers, a model's evaluations, a comparison), built
from a `workbench.tabular.Table` so that what is on screen is what exports."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from rich.text import Text
from textual.binding import Binding

from tui.bars import bar
from tui.fitting import Elastic, FitsWidth
from workbench.tabular import Table

CellStyle = Callable[[int, str, Any], str]  # row index, column key, raw value -> a Rich style ("" for none)


class RecordTable(FitsWidth):
    """`openable` tables show enter (Open) in the footer; the screen opens the row it selects."""

    BINDINGS = [Binding("enter", "select_cursor", "Open", id="table.open")]

    def __init__(self, *, openable: bool = False, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True)
        self.openable = openable
        self.table = Table("", [], [])

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.openable if action == "select_cursor" else True

    def show(
        self,
        table: Table,
        *,
        bars: Mapping[str, float] | None = None,
        style: CellStyle | None = None,
        keys: list[str] | None = None,
        bar_width: int = 12,
        elastic: Collection[str] = (),
    ) -> None:
        """Show `table`. `bars` maps a numeric column to the value a full bar stands for: its cells
        get a bar after the number. `keys` name the rows (for events), one each. Columns in
        `elastic` (long text) are cut in the middle when the table is wider than its space. A title
        with a line break makes a header of two lines."""
        self.table = table
        self.elastic = elastic
        bars = bars or {}
        self.clear(columns=True)
        self.header_height = max((c.title.count("\n") + 1 for c in table.columns), default=1)
        for c in table.columns:
            title = "\n" * (self.header_height - 1 - c.title.count("\n")) + c.title  # titles sit on the last line
            self.add_column(Text(title, justify="right" if c.numeric else "left"), key=c.key)
        for i, (raw, shown) in enumerate(zip(table.rows, table.formatted(), strict=True)):
            cells: list[Any] = []
            for c, value, text in zip(table.columns, raw, shown, strict=True):
                how = style(i, c.key, value) if style is not None else ""
                if c.key in elastic:
                    cells.append(Elastic(text, how))
                    continue
                cell = Text(text, justify="right" if c.numeric else "left")
                if c.key in bars and value is not None:
                    cell = Text.assemble(cell, " ", bar(value / bars[c.key] if bars[c.key] else 0.0, bar_width))
                if how:
                    cell.stylize(how)
                cells.append(cell)
            self.add_row(*cells, key=keys[i] if keys else None)
        self.refit()

    def export_table(self) -> Table:
        return self.table
