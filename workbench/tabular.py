"""A table as the CLI prints it and every export writes it: CSV, Markdown, JSON, or a terminal.

Cells hold raw values. CSV and JSON write them as they are (full precision, ISO times), so
exported figures are never the rounded ones on screen; Markdown and the terminal show each
column's formatted text. Light on purpose (no torch): the TUI builds its tables from it too.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime
from typing import Any, TextIO


def plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, list | tuple):
        return ", ".join(plain(v) for v in value)
    return str(value)


def count(value: int | None) -> str:
    """135_100_000 -> "135.1M"."""
    if value is None:
        return ""
    for size, suffix in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "k")):
        if abs(value) >= size:
            return f"{value / size:.1f}{suffix}"
    return str(value)


def size(value: int | None) -> str:
    """Bytes in binary units: 268_435_456 -> "256.0 MiB"."""
    if value is None:
        return ""
    for power, unit in ((4, "TiB"), (3, "GiB"), (2, "MiB"), (1, "KiB")):
        if abs(value) >= 1024**power:
            return f"{value / 1024**power:.1f} {unit}"
    return f"{value} B"


def fixed(digits: int) -> Callable[[Any], str]:
    return lambda v: "" if v is None else f"{v:.{digits}f}"


@dataclass(frozen=True)
class Column:
    key: str  # the attribute (or dict key) each row's value comes from, and the JSON/CSV name
    header: str = ""
    fmt: Callable[[Any], str] = plain
    numeric: bool = False  # right-aligned on screen

    @property
    def title(self) -> str:
        return self.header or self.key


@dataclass(frozen=True)
class Table:
    title: str
    columns: Sequence[Column]
    rows: Sequence[Sequence[Any]]  # raw values, one per column

    @classmethod
    def of(cls, title: str, columns: Sequence[Column], items: Sequence[Any]) -> Table:
        """A table of objects (or dicts), one row each, a column per attribute."""
        get = (lambda item, key: item[key]) if items and isinstance(items[0], dict) else getattr
        return cls(title, columns, [[get(item, c.key) for c in columns] for item in items])

    @classmethod
    def of_dataclasses(cls, title: str, items: Sequence[Any], kind: type | None = None) -> Table:
        """Every field of a dataclass as a column: what a full export writes."""
        source = kind or (type(items[0]) if items else None)
        if source is None or not is_dataclass(source):
            return cls(title, [], [])
        return cls.of(title, [Column(f.name) for f in fields(source)], items)

    @classmethod
    def of_pairs(cls, title: str, pairs: Sequence[tuple[str, Any]]) -> Table:
        """A two-column table of (field, value): one record shown whole."""
        return cls(title, [Column("field"), Column("value")], [list(p) for p in pairs])

    def formatted(self) -> list[list[str]]:
        return [[c.fmt(v) for c, v in zip(self.columns, row, strict=True)] for row in self.rows]

    def records(self) -> list[dict[str, Any]]:
        return [{c.key: v for c, v in zip(self.columns, row, strict=True)} for row in self.rows]

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([c.key for c in self.columns])
        writer.writerows([_csv_cell(v) for v in row] for row in self.rows)
        return out.getvalue()

    def to_json(self) -> str:
        return json.dumps(self.records(), indent=2, default=json_default) + "\n"

    def to_markdown(self) -> str:
        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

        rule = ["---:" if c.numeric else "---" for c in self.columns]
        body = [line([c.title for c in self.columns]), "|" + "|".join(rule) + "|"]
        body += [line(cells) for cells in self.formatted()]
        heading = f"### {self.title}\n\n" if self.title else ""
        return heading + "\n".join(body) + "\n"

    def to_text(self) -> str:
        """The title, then aligned plain columns: for pipes and files (no box drawing, nothing cut short)."""
        cells = [[c.title for c in self.columns], *self.formatted()]
        widths = [max(len(r[i]) for r in cells) for i in range(len(self.columns))]
        lines = [
            "  ".join(
                (v.rjust(w) if c.numeric else v.ljust(w)) for c, v, w in zip(self.columns, row, widths, strict=True)
            ).rstrip()
            for row in cells
        ]
        return "\n".join([self.title, *lines] if self.title else lines) + "\n"

    def render(self, file: TextIO | None = None) -> None:
        """Print the table: drawn with rich on a terminal, as plain columns otherwise."""
        file = file or sys.stdout
        if not file.isatty():
            file.write(self.to_text())
            return
        from rich.console import Console
        from rich.table import Table as RichTable

        table = RichTable(title=self.title or None, title_justify="left")
        for c in self.columns:
            table.add_column(c.title, justify="right" if c.numeric else "left")
        for cells in self.formatted():
            table.add_row(*cells)
        Console(file=file).print(table)


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return str(value)


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=json_default)
    return value
