"""The Textual workbench: `run()` opens it on the store's Models screen.

Layers: this package reads the store through store.queries (plain dataclasses) and uses only the
light workbench modules (spec, tabular, jobs); torch, transformers and lm_eval load in job
processes, never here, so the first screen paints fast.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from rich.console import Console
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from store.db import Store
from tui.forms.prune import PruneForm
from tui.keymap import load_keymap
from tui.palette import StoreCommands, binding_commands
from tui.screens.compare import CompareScreen
from tui.screens.model_detail import ModelDetailScreen
from tui.screens.models import ModelsScreen
from tui.screens.run_detail import RunDetailScreen
from tui.screens.runs import RunsScreen

ANSI_THEME = "ansi-dark"


class WorkbenchApp(App[None]):
    TITLE = "Width Pruning Workbench"
    CSS_PATH = "workbench.tcss"
    COMMANDS = App.COMMANDS | {StoreCommands}
    BINDINGS = [
        Binding("m", "switch_mode('models')", "Models", id="app.models"),
        Binding("r", "switch_mode('runs')", "Runs", id="app.runs"),
        Binding("p", "prune", "Prune", id="app.prune"),
        Binding("question_mark", "keys", "Keys", id="app.keys"),
        Binding("q", "quit", "Quit", id="app.quit"),
    ]

    def __init__(
        self,
        store: Store,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        theme: str | None = None,
        keymap: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.store = store
        self.data_dir = None if data_dir is None else Path(data_dir)
        self.add_mode("models", lambda: ModelsScreen(store))
        self.add_mode("runs", lambda: RunsScreen(store))
        if theme is not None:
            self.theme = theme
        if keymap:
            self.set_keymap(keymap)

    def on_mount(self) -> None:
        self.sub_title = str(self.store.root)
        self.switch_mode("models")

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        seen = set()
        for command in super().get_system_commands(screen):
            seen.add(command.title)
            yield command
        yield from binding_commands(screen, seen)

    def action_prune(self) -> None:
        """The form, with the model under the cursor (Models screen) filled in."""
        model = getattr(self.screen, "current_model", None)
        self.open_prune_form(model.name if model is not None else "")

    def action_keys(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    # Navigation (tui.navigation.Navigator) --------------------------------------------------------

    def open_model(self, model_id: int) -> None:
        self.push_screen(ModelDetailScreen(self.store, model_id))

    def open_run(self, run_id: int) -> None:
        self.push_screen(RunDetailScreen(self.store, run_id))

    def open_compare(self, model_ids: Sequence[int]) -> None:
        self.push_screen(CompareScreen(self.store, list(model_ids)))

    def open_prune_form(self, model: str = "") -> None:
        self.push_screen(PruneForm(self.store, model))


def default_theme(environ: Mapping[str, str] = os.environ) -> str:
    """$WORKBENCH_THEME, else the ANSI theme on a terminal of 16 colours or fewer (as Textual reads
    $TEXTUAL_COLOR_SYSTEM, else as Rich reads $TERM and $COLORTERM), else Textual's default."""
    if environ.get("WORKBENCH_THEME"):
        return environ["WORKBENCH_THEME"]
    system = environ.get("TEXTUAL_COLOR_SYSTEM") or Console(force_terminal=True, _environ=dict(environ)).color_system
    return ANSI_THEME if system in (None, "standard", "windows") else "textual-dark"


def run(store: str | os.PathLike[str] | None = None, data_dir: str | os.PathLike[str] | None = None) -> int:
    """Open the workbench on a store (a folder or URL; default as Store.open chooses)."""
    app = WorkbenchApp(Store.open(store), data_dir=data_dir, theme=default_theme(), keymap=load_keymap())
    app.run()
    return app.return_code or 0
