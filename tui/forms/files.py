"""Choosing a file from a tree of folders: the calibration text of a pruning run."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DirectoryTree, Static


class FilesOf(DirectoryTree):
    """Folders, and the files with one of `suffixes`; hidden ones left out."""

    def __init__(self, path: Path, suffixes: tuple[str, ...], id: str | None = None) -> None:
        super().__init__(path, id=id)
        self.suffixes = suffixes

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [p for p in paths if not p.name.startswith(".") and (p.is_dir() or p.suffix in self.suffixes)]


class FilePicker(ModalScreen[Path | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", id="files.cancel")]

    def __init__(self, start: Path, suffixes: tuple[str, ...], what: str) -> None:
        super().__init__()
        self.start, self.suffixes, self.what = start, suffixes, what

    def compose(self) -> ComposeResult:
        with Vertical(id="files-box") as box:
            box.border_title = f"Choose {self.what} ({', '.join(self.suffixes)})"
            yield FilesOf(self.start, self.suffixes, id="files-tree")
            yield Static("enter opens a folder or takes a file · esc cancels", classes="hint")

    def on_mount(self) -> None:
        self.query_one(FilesOf).focus()

    @on(DirectoryTree.FileSelected)
    def _chosen(self, event: DirectoryTree.FileSelected) -> None:
        self.dismiss(event.path)
