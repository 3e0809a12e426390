"""A detail screen: a few tables in tabs, switched with [ and ] (or a click)."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import DataTable, TabbedContent, TabPane

from tui.screens.base import StoreScreen


class TabbedScreen(StoreScreen):
    BINDINGS = [
        Binding("left_square_bracket", "tab(-1)", "Prev tab", id="tabs.previous"),
        Binding("right_square_bracket", "tab(1)", "Next tab", id="tabs.next"),
    ]

    def action_tab(self, step: int) -> None:
        tabs = self.query_one(TabbedContent)
        panes = [p.id for p in tabs.query(TabPane) if p.id and tabs.get_tab(p.id).display]
        if tabs.active in panes:
            tabs.active = panes[(panes.index(tabs.active) + step) % len(panes)]

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        # Keyboard first: the tab's table takes the focus, ready for the arrows.
        tables = event.pane.query(DataTable)
        if tables:
            tables.first().focus()
