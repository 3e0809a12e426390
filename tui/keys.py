"""The keys screen (`?`): every key active where it was opened, what it does, and the binding id
a keymap file uses to move it elsewhere."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from tui.keymap import keymap_path
from tui.records import RecordTable
from workbench.tabular import Column, Table

KEY_COLUMNS = [Column("key"), Column("does"), Column("id", "binding id")]


def key_table(screen: Screen[object]) -> Table:
    """The workbench's own keys (they have ids) first, then the widgets' (cursor movement...)."""
    rows = []
    for active in screen.active_bindings.values():
        binding = active.binding
        if binding.description and active.enabled:
            rows.append([screen.app.get_key_display(binding), binding.description, binding.id or ""])
    return Table("keys", KEY_COLUMNS, sorted(rows, key=lambda row: not row[2]))


class KeysScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark", "dismiss", "Close", id="keys.close")]

    def __init__(self, keys: Table) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        with Vertical(id="keys-box") as box:
            box.border_title = "Keys"
            yield RecordTable(id="keys-table")
            moving = f"Move a key: put `\"binding id\" = \"key\"` lines in {keymap_path()}"
            yield Static(moving, classes="hint", markup=False)

    def on_mount(self) -> None:
        table = self.query_one(RecordTable)
        table.show(self.keys)
        table.focus()
