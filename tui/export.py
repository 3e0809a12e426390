"""Exporting a table: choose CSV or Markdown and a file; the file appears whole or not at all.

The file is checked as it is typed (its folder exists, it is no folder itself), so that a write
refused later is rare; whatever the field holds, the dialog never fails on it."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from workbench.errors import UserError
from workbench.tabular import Table

FORMATS = {"csv": "CSV (raw values, full precision)", "md": "Markdown (as shown)"}


@dataclass(frozen=True)
class ExportChoice:
    format: str  # csv | md
    path: Path


def suggested_path(title: str, fmt: str, folder: Path | None = None) -> Path:
    stem = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower() or "table"
    return (folder or Path.cwd()) / f"{stem}.{fmt}"


def with_format(text: str, fmt: str, title: str) -> str:
    """The file named in `text` with the suffix of `fmt`; a file named after the table in the folder
    `text` names, or in this one when it is empty. A name the system refuses is left as it is."""
    named = text.strip()
    try:
        path = Path(named).expanduser()
        if not named or named.endswith(os.sep) or path.is_dir() or path.name in ("", ".", ".."):
            return str(suggested_path(title, fmt, path if named else None))
        known = {f".{f}" for f in FORMATS}
        return str(path.with_suffix(f".{fmt}")) if path.suffix in known | {""} else f"{path}.{fmt}"
    except (OSError, ValueError, RuntimeError):
        return text  # the check under the field says what is wrong with it


def export_path(text: str) -> Path:
    """The file to write (UserError saying why it cannot be one)."""
    if not text.strip():
        raise UserError("give a file to write")
    if "\0" in text:
        raise UserError("a file name cannot hold a NUL character")
    try:
        path = Path(text.strip()).expanduser()
        if path.is_dir():
            raise UserError(f"{path} is a folder: give a file in it")
        if not path.parent.is_dir():
            raise UserError(f"no folder {path.parent}")
    except (OSError, ValueError, RuntimeError) as e:  # a name the system refuses (too long, ~nobody)
        raise UserError(f"cannot write {text.strip()!r}: {e}") from None
    return path


def write_export(table: Table, choice: ExportChoice) -> int:
    """Write the table; returns the number of rows written."""
    path = export_path(str(choice.path))
    text = table.to_csv() if choice.format == "csv" else table.to_markdown()
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(text)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return len(table.rows)


class ExportScreen(ModalScreen[ExportChoice | None]):
    BINDINGS = [
        Binding("escape", "dismiss(None)", "Cancel", id="export.cancel"),
        Binding("ctrl+s", "write", "Write", id="export.write"),
    ]

    def __init__(self, title: str) -> None:
        super().__init__()
        self.what = title

    def compose(self) -> ComposeResult:
        with Vertical(id="export-box") as box:
            box.border_title = Text(f"Export {self.what}")  # a title holds names: no markup
            yield Label("Format")
            yield Select([(label, key) for key, label in FORMATS.items()], value="csv", allow_blank=False,
                         id="export-format", compact=True)  # fmt: skip
            yield Label("File")
            yield Input(str(suggested_path(self.what, "csv")), id="export-path", compact=True)
            yield Static(id="export-problem", classes="field-error", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Write", variant="primary", id="export-write", compact=True)
                yield Button("Cancel", id="export-cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#export-path", Input).focus()
        self._check()

    @property
    def format(self) -> str:
        return str(self.query_one("#export-format", Select).value)

    @on(Select.Changed, "#export-format")
    def _suffix(self) -> None:
        path = self.query_one("#export-path", Input)
        path.value = with_format(path.value, self.format, self.what)

    @on(Input.Changed, "#export-path")
    def _check(self) -> Path | None:
        shown = self.query_one("#export-problem", Static)
        try:
            path = export_path(self.query_one("#export-path", Input).value)
        except UserError as e:
            shown.update(str(e))
            shown.display = True
            return None
        shown.display = False
        return path

    @on(Input.Submitted)
    @on(Button.Pressed, "#export-write")
    def action_write(self) -> None:
        path = self._check()
        if path is not None:
            self.dismiss(ExportChoice(self.format, path))

    @on(Button.Pressed, "#export-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
