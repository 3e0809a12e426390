"""Exporting a table: choose CSV or Markdown and a file; the file appears whole or not at all."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet

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


def write_export(table: Table, choice: ExportChoice) -> int:
    """Write the table; returns the number of rows written."""
    path = choice.path.expanduser()
    if not path.parent.is_dir():
        raise UserError(f"cannot write {path}: no folder {path.parent}")
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
            box.border_title = f"Export {self.what}"
            with RadioSet(id="export-format"):
                for i, (key, label) in enumerate(FORMATS.items()):
                    yield RadioButton(label, value=i == 0, name=key)
            yield Label("File")
            yield Input(str(suggested_path(self.what, "csv")), id="export-path")
            with Horizontal(classes="buttons"):
                yield Button("Write", variant="primary", id="export-write")
                yield Button("Cancel", id="export-cancel")

    def on_mount(self) -> None:
        self.query_one("#export-path", Input).focus()

    @property
    def format(self) -> str:
        pressed = self.query_one(RadioSet).pressed_button
        return pressed.name if pressed is not None and pressed.name else "csv"

    @on(RadioSet.Changed)
    def _suffix(self) -> None:
        path = self.query_one("#export-path", Input)
        path.value = str(Path(path.value).with_suffix(f".{self.format}"))

    @on(Input.Submitted)
    @on(Button.Pressed, "#export-write")
    def action_write(self) -> None:
        value = self.query_one("#export-path", Input).value.strip()
        if value:
            self.dismiss(ExportChoice(self.format, Path(value)))

    @on(Button.Pressed, "#export-cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
