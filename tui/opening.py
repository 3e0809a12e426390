"""What shows while the store opens: the Models screen's frame, empty, so that the first paint
comes at once and the list fills in where the eye already is."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Container
from textual.screen import Screen
from textual.widgets import Header, Static

from tui.keybar import KeyBar


class OpeningScreen(Screen[None]):
    TITLE = "Models"

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("  opening the store…", id="filter")
        frame = Container(id="list")
        frame.border_title = "Models"
        frame.border_subtitle = "opening the store…"
        yield frame
        yield KeyBar()
