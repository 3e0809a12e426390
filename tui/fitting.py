"""Tables that fit their width: the columns that matter keep theirs, long text gives way.

A DataTable lays its columns out at their content's width and scrolls sideways when they do not
fit, so at 80 columns a long model name or job description pushed status, progress, parameters
and evaluations out of sight. Here the columns holding long free text (names, descriptions,
messages: "elastic" ones) shrink, widest first, down to a floor, and their cells are cut with …:
names in the middle (`smollm2-wan…wikitext2`: both ends of a name tell it apart), sentences at the
end (`gsm8k: 84/200 gener…`: they start with what matters). Every other column keeps its whole
width. Only when that is not enough does the table scroll sideways.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.text import Text
from textual.render import measure
from textual.widgets import DataTable
from textual.widgets._data_table import RowKey, default_cell_formatter

FLOOR = 20  # an elastic column never shrinks below this many cells (or its content's width)
ELLIPSIS = "…"


def shorten(text: str, width: int, cut: str = "middle") -> str:
    """`text` in `width` cells, with … where it is too long: its start and end (cut "middle"), or its
    start (cut "end")."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    keep = width - 1
    if cut == "end":
        while cell_len(text[:keep]) > width - 1:
            keep -= 1
        return text[:keep].rstrip() + ELLIPSIS
    head, tail = text[: (keep + 1) // 2], text[len(text) - keep // 2 :] if keep // 2 else ""
    while cell_len(head) + cell_len(tail) > keep:  # wide characters: give up one at a time
        head, tail = (head[:-1], tail) if cell_len(head) >= cell_len(tail) else (head, tail[1:])
    return head + ELLIPSIS + tail


class Elastic:
    """A cell of an elastic column: measured at its whole length, drawn shortened to its width (`cut`
    as `shorten` takes it)."""

    def __init__(self, text: str, style: str = "", cut: str = "middle") -> None:
        self.text, self.style, self.cut = text, style, cut

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Text(shorten(self.text, options.max_width, self.cut), self.style, no_wrap=True)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(cell_len(self.text), cell_len(self.text))

    def __str__(self) -> str:
        return self.text


def fit(natural: Sequence[int], elastic: Sequence[bool], space: int, floor: int = FLOOR) -> list[int | None]:
    """Content widths for the elastic columns (None: the natural width) so that the columns, each
    `natural[i]` wide plus its padding (counted in `natural`), fit in `space` where they can."""
    widths: list[int | None] = [None] * len(natural)
    over = sum(natural) - space
    room = [max(0, n - floor) if e else 0 for n, e in zip(natural, elastic, strict=True)]
    if over <= 0 or not any(room):
        return widths
    take = min(over, sum(room))
    cuts = [take * r // sum(room) for r in room]
    for i in sorted(range(len(room)), key=lambda i: -room[i])[: take - sum(cuts)]:
        cuts[i] += 1  # what the rounding left over, from the widest
    for i, cut in enumerate(cuts):
        if cut:
            widths[i] = natural[i] - cut
    return widths


class FitsWidth(DataTable[Any]):
    """A DataTable whose columns named in `elastic` give way (call `refit()` once its rows change)."""

    elastic: Collection[str] = ()

    def on_resize(self) -> None:
        self.refit()

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        # DataTable measures new rows' cells when idle, but a frame drawn before that (rows shown
        # while the screen lays out) stays in its line cache at the header's widths, columns cut to
        # "mode" where "model" fits, unless the table's size changes. Once measured, draw afresh.
        super()._update_dimensions(new_rows)
        self._clear_caches()
        self.refresh()

    def refit(self) -> None:
        if not self.columns or not self.is_mounted:
            return
        console = self.app.console
        columns = list(self.columns.values())
        padding = 2 * self.cell_padding
        natural = []
        for column in columns:
            cells = [measure(console, default_cell_formatter(c, wrap=False, height=1), 1)
                     for c in self.get_column(column.key)]  # fmt: skip
            label = measure(console, column.label, 1)
            natural.append(max([label, *cells]) if column.auto_width or column.key.value in self.elastic
                           else column.width)  # fmt: skip
        space = self.scrollable_content_region.width - (self._row_label_column_width if self.show_row_labels else 0)
        flexible = [c.key.value in self.elastic for c in columns]
        widths = fit([n + padding for n in natural], flexible, space, FLOOR + padding)
        changed = False
        for column, width, bends in zip(columns, widths, flexible, strict=True):
            if not bends:
                continue
            wanted = (False, width - padding) if width is not None else (True, column.width)
            if (column.auto_width, column.width) != wanted:
                column.auto_width, column.width = wanted
                changed = True
        if changed:
            # DataTable caches cells drawn at the old widths and sizes itself on idle.
            self._clear_caches()
            self._require_update_dimensions = True
            self.refresh()
