"""Bars drawn in text: one in a table cell, and a column chart of the layers over depth.

Block characters and two styles only, so that they read the same on a 16-colour terminal."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

EIGHTHS = " ▏▎▍▌▋▊▉█"
LEVELS = " ▁▂▃▄▅▆▇█"


def bar(fraction: float, width: int = 12) -> Text:
    """A horizontal bar `width` cells long, filled to `fraction` (in eighths of a cell); the rest
    is shaded, so an empty bar still shows its length."""
    fraction = min(1.0, max(0.0, fraction))
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    filled = "█" * full + (EIGHTHS[part] if part else "")
    return Text.assemble((filled, "bold"), ("░" * (width - len(filled)), "dim"))


def column_chart(values: Sequence[float], height: int = 4) -> list[Text]:
    """Rows (top first) of a chart with one column per value in 0..1, in eighths of a row."""
    rows = []
    for row in range(height - 1, -1, -1):
        line = Text()
        for v in values:
            eighths = round(min(1.0, max(0.0, v)) * height * 8) - row * 8
            line.append(LEVELS[min(8, max(0, eighths))], "bold")
        rows.append(line)
    return rows
