"""A line chart drawn in the terminal: series as braille lines (2 x 4 dots a cell), their points as
● in the series' colour, a y axis with three labels and an x axis with its ends; a legend below.

Pure drawing (`draw` turns series and a size into lines of text) and a widget that redraws at
its size; colours from the 16 ANSI ones, so the ANSI theme reads the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from rich.text import Text
from textual.app import RenderResult
from textual.widget import Widget

COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "red")
BRAILLE = 0x2800
# Dot bit of (column 0-1, row 0-3) inside a braille cell.
DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
POINT = "●"
Y_LABEL = 9  # characters left of the axis


class Series(Protocol):
    """What a chart draws (workbench.studies.view.Series is one)."""

    @property
    def label(self) -> str: ...
    @property
    def points(self) -> Sequence[tuple[float, float]]: ...  # (x, y)


def _ticks(value: float) -> str:
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-2):
        for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= size:
                return f"{value / size:.1f}{suffix}"
        return f"{value:.1e}"
    return f"{value:.4g}"


def draw(series: Sequence[Series], width: int, height: int, x_label: str = "",
         fmt_x: Callable[[float], str] = _ticks, marks: bool = True) -> list[Text]:  # fmt: skip
    """The chart as `height` lines of `width` cells (fewer when there is nothing to draw); `marks`
    puts a ● on every point (a curve of many points reads better as its line alone)."""
    points = [p for s in series for p in s.points]
    if not points:
        return [Text("no figures to draw yet", style="dim")]
    plot_w, plot_h = max(4, width - Y_LABEL - 1), max(2, height - 2 - _legend_rows(series, width))
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = _span(min(xs), max(xs), pad=0.0)  # the axis's ends are labelled: the data's own
    y0, y1 = _span(min(ys), max(ys), pad=0.04)
    dots_w, dots_h = plot_w * 2, plot_h * 4

    def dot(x: float, y: float) -> tuple[int, int]:
        return (round((x - x0) / (x1 - x0) * (dots_w - 1)), round((y1 - y) / (y1 - y0) * (dots_h - 1)))

    cells: dict[tuple[int, int], int] = {}
    colour: dict[tuple[int, int], str] = {}
    marked: dict[tuple[int, int], str] = {}
    for i, s in enumerate(series):
        style = COLOURS[i % len(COLOURS)]
        ordered = sorted(s.points)
        for (ax, ay), (bx, by) in zip(ordered, ordered[1:], strict=False):
            for dx, dy in _line(dot(ax, ay), dot(bx, by)):
                cell = (dx // 2, dy // 4)
                cells[cell] = cells.get(cell, 0) | DOTS[dy % 4][dx % 2]
                colour[cell] = style
        if len(ordered) == 1 or marks:  # a lone point has no line to show it
            for x, y in ordered:
                dx, dy = dot(x, y)
                marked[(dx // 2, dy // 4)] = style
    lines = []
    labels = {0: _ticks(y1), plot_h - 1: _ticks(y0), (plot_h - 1) // 2: _ticks((y0 + y1) / 2)}
    for row in range(plot_h):
        line = Text(f"{labels[row]:>{Y_LABEL - 1}.{Y_LABEL - 1}} ┤" if row in labels else " " * Y_LABEL + "│")
        for column in range(plot_w):
            key = (column, row)
            if key in marked:
                line.append(POINT, style=f"bold {marked[key]}")
            elif key in cells:
                line.append(chr(BRAILLE + cells[key]), style=colour[key])
            else:
                line.append(" ")
        lines.append(line)
    lines.append(Text(" " * Y_LABEL + "└" + "─" * plot_w))
    left, right = fmt_x(x0), fmt_x(x1)
    middle = x_label.center(max(0, plot_w - len(left) - len(right)))[: max(0, plot_w - len(left) - len(right))]
    lines.append(Text(" " * (Y_LABEL + 1) + left + middle + right))
    lines += _legend(series, width)
    return lines


def _span(low: float, high: float, pad: float) -> tuple[float, float]:
    """The range drawn: the data's, wider by `pad` of it on each side, never below zero for data
    that is not (a perplexity axis starting at -123 reads wrong); never empty."""
    widen = (high - low) * pad if high != low else abs(low) * 0.05 or 1.0
    return (low - widen if low < 0 else max(0.0, low - widen)), high + widen


def _line(a: tuple[int, int], b: tuple[int, int]) -> list[tuple[int, int]]:
    """Bresenham's line between two dots, both ends included."""
    (x, y), (x1, y1) = a, b
    dx, dy = abs(x1 - x), -abs(y1 - y)
    sx, sy = (1 if x < x1 else -1), (1 if y < y1 else -1)
    error, found = dx + dy, []
    while True:
        found.append((x, y))
        if (x, y) == (x1, y1):
            return found
        double = 2 * error
        if double >= dy:
            error += dy
            x += sx
        if double <= dx:
            error += dx
            y += sy


def _legend_entries(series: Sequence[Series]) -> list[Text]:
    return [Text.assemble((POINT, f"bold {COLOURS[i % len(COLOURS)]}"), f" {s.label}") for i, s in enumerate(series)]


def _legend(series: Sequence[Series], width: int) -> list[Text]:
    lines, line = [], Text(" " * (Y_LABEL + 1))
    for entry in _legend_entries(series):
        if line.cell_len + entry.cell_len + 2 > width and line.plain.strip():
            lines.append(line)
            line = Text(" " * (Y_LABEL + 1))
        line.append_text(entry)
        line.append("  ")
    lines.append(line)
    return lines


def _legend_rows(series: Sequence[Series], width: int) -> int:
    return len(_legend(series, width))


class Chart(Widget):
    """Draws `series` at the widget's size; `show` replaces them."""

    DEFAULT_CSS = """
    Chart {
        height: 1fr;
        padding: 0 1;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.series: list[Series] = []
        self.x_label = ""
        self.fmt_x: Callable[[float], str] = _ticks
        self.marks = True

    def show(self, series: Sequence[Series], x_label: str, fmt_x: Callable[[float], str] = _ticks,
             marks: bool = True) -> None:  # fmt: skip
        self.series, self.x_label, self.fmt_x, self.marks = list(series), x_label, fmt_x, marks
        self.refresh()

    def render(self) -> RenderResult:
        width, height = self.content_size
        return Text("\n").join(draw(self.series, width, height, self.x_label, self.fmt_x, self.marks))
