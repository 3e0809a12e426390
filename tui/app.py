"""The Textual workbench: `run()` opens it on the store's Models screen.

Layers: this package reads the store through store.queries (plain dataclasses) and uses only the
light workbench modules (spec, tabular, texts, jobs, tradeoff); torch, transformers and lm_eval
load in job processes, never here.

Starting fast: the screens read the store through SQLAlchemy and SQLModel; importing those takes
most of a second (Alembic too, but the store loads it only to migrate). So this module imports
none of them. The app paints the Models frame at once, then a worker imports the Models screen (and with
it the store's modules) and opens the store, and the Models screen takes over. Every screen is
imported inside the method that opens it, never at the top of this module.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from tui.confirm import Confirm
from tui.failures import one_line
from tui.keymap import load_keymap
from tui.keys import KeysScreen, key_table
from tui.opening import OpeningScreen
from tui.palette import StoreCommands, binding_commands
from workbench import texts

if TYPE_CHECKING:
    from store.db import Store
    from tui.screens.jobs import JobsScreen

ANSI_THEME = "ansi-dark"
OPEN_ONLY = ("quit", "keys", "command_palette")  # the actions there are before the store is open
HEAL = "Heal"  # the Heal form's command (and key h on Models and Model detail)


class WorkbenchApp(App[None]):
    TITLE = "Width Pruning Workbench"
    CSS_PATH = "workbench.tcss"
    COMMANDS = App.COMMANDS | {StoreCommands}
    BINDINGS = [
        Binding("m", "switch_mode('models')", "Models", id="app.models"),
        Binding("r", "switch_mode('runs')", "Runs", id="app.runs"),
        Binding("j", "switch_mode('jobs')", "Jobs", id="app.jobs"),
        Binding("S", "switch_mode('studies')", "Studies", id="app.studies"),
        Binding("p", "prune", "Prune", id="app.prune"),
        Binding("e", "evaluate", "Evaluate", id="app.evaluate"),
        Binding("i", "import_model", "Import", id="app.import"),
        Binding("question_mark", "keys", "Keys", id="app.keys"),
        Binding("q", "quit", "Quit", id="app.quit"),
    ]

    @dataclass
    class Opened(Message):
        store: Store

    def __init__(
        self,
        store: Store | str | os.PathLike[str] | None = None,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        theme: str | None = None,
        keymap: dict[str, str] | None = None,
    ) -> None:
        """`store`: an open Store, or where one is (as Store.open takes it), opened on a worker."""
        super().__init__()
        self._location = store
        self.store: Store | None = None
        self.data_dir = None if data_dir is None else Path(data_dir)  # passed on to the jobs it queues
        self._jobs_screen: JobsScreen | None = None
        self.last_model = ""  # the model the last form launched work on: the next form starts from it
        if theme is not None:
            self.theme = theme
        if keymap:
            self.set_keymap(keymap)

    # Opening ----------------------------------------------------------------------------------

    def get_default_screen(self) -> Screen[None]:
        return OpeningScreen()

    def on_mount(self) -> None:
        # After the first frame is on screen: importing the store's modules would slow its painting.
        self.call_after_refresh(self._open, self._location)

    @work(thread=True, exclusive=True, group="open-store", exit_on_error=False)
    def _open(self, location: Store | str | os.PathLike[str] | None) -> None:
        # The first screen's modules, and with them the store's; the others load when first opened.
        import tui.screens.models  # noqa: F401
        from store.db import Store

        self.post_message(self.Opened(location if isinstance(location, Store) else Store.open(location)))

    def on_workbench_app_opened(self, message: Opened) -> None:
        from tui.screens.models import ModelsScreen
        from tui.screens.runs import RunsScreen
        from tui.screens.studies import StudiesScreen

        store = self.store = message.store
        self.sub_title = store.shown  # a URL store's database, not the folder of its files
        self.add_mode("models", lambda: ModelsScreen(store))
        self.add_mode("runs", lambda: RunsScreen(store))
        self.add_mode("studies", lambda: StudiesScreen(store))
        self.add_mode("jobs", self.jobs_screen)
        self.switch_mode("models")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Without its store the app has nothing to show: leave, saying why in one line.
        if event.worker.group == "open-store" and event.state is WorkerState.ERROR and event.worker.error:
            self.exit(return_code=2, message=f"workbench: error: {one_line(event.worker.error)}")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.store is not None or action in OPEN_ONLY

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        seen = set()
        for command in super().get_system_commands(screen):
            seen.add(command.title)
            yield command
        yield from binding_commands(screen, seen)
        if self.store is not None:
            if HEAL not in seen:  # from anywhere: the model in view, else the last one worked on
                seen.add(HEAL)
                yield SystemCommand(HEAL, "distil a model's parent back into it (the Heal form)", self.action_heal)
            yield from self._commands_elsewhere(seen)

    def _commands_elsewhere(self, seen: set[str]) -> Iterable[SystemCommand]:
        """The actions of the main screens not on this one ("Compare" from Jobs): each goes to its
        screen and runs there."""
        from tui.screens.jobs import JobsScreen
        from tui.screens.models import ModelsScreen

        for mode, kind in (("models", ModelsScreen), ("jobs", JobsScreen)):
            for binding in kind.BINDINGS:
                assert isinstance(binding, Binding)
                if binding.description and binding.description not in seen:
                    seen.add(binding.description)
                    help = f"on the {kind.TITLE} screen, key {self.get_key_display(binding)}"
                    yield SystemCommand(f"{binding.description} ({kind.TITLE})", help, partial(self._run_in, mode,
                                        binding.action))  # fmt: skip

    def _run_in(self, mode: str, action: str) -> None:
        """Run an action of a mode's own screen, there (what was opened over it stays open)."""
        self.switch_mode(mode)
        self.call_after_refresh(self.run_action, action, self._screen_stacks[mode][0])

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Notifications carry what users typed and what errors said (model names, paths, '[/]'):
        never read as markup, which such text could break."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    def action_keys(self) -> None:
        self.push_screen(KeysScreen(key_table(self.screen)))

    async def action_quit(self) -> None:
        """Quit; from a form, or with a form's input unsaved, only once asked."""
        forms = [s for stack in self._screen_stacks.values() for s in stack if hasattr(s, "unsaved")]
        unsaved = [s for s in forms if s.unsaved()]
        if not unsaved and not hasattr(self.screen, "unsaved"):
            self.exit()
            return
        lost = " and ".join(s.WHAT for s in unsaved)
        question = f"Quit the workbench? What you entered in {lost} is lost." if unsaved else "Quit the workbench?"

        def answered(quit: bool | None) -> None:
            if quit:
                self.exit()

        self.push_screen(Confirm(question, "Quit", "Stay"), answered)

    # Navigation (tui.navigation.Navigator): each screen imported where it opens ------------------

    def action_prune(self) -> None:
        """The form, with the model in view (under the cursor, or the one shown) filled in, else the
        model the last form launched work on."""
        self.open_prune_form(getattr(self.screen, "current_model_name", None) or self.last_model)

    def action_evaluate(self) -> None:
        """The form, with the models in view (marked, under the cursor, or shown), else the model the
        last form launched work on."""
        ids: list[int] = list(getattr(self.screen, "current_model_ids", []))
        if not ids and self.last_model:
            from store import queries

            last = queries.find_model(self.opened, self.last_model)
            ids = [last.id] if last is not None else []
        self.open_eval_form(ids)

    def remember_model(self, name: str) -> None:
        self.last_model = name

    def action_import_model(self) -> None:
        self.open_import_form()

    def jobs_screen(self) -> JobsScreen:
        """The Jobs mode's screen, made when first shown (then it polls while the app runs)."""
        from tui.screens.jobs import JobsScreen

        if self._jobs_screen is None:
            self._jobs_screen = JobsScreen(self.opened)
        return self._jobs_screen

    @property
    def opened(self) -> Store:
        assert self.store is not None, "the store opens before any screen that reads it"
        return self.store

    def open_model(self, model_id: int) -> None:
        from tui.screens.model_detail import ModelDetailScreen

        self.push_screen(ModelDetailScreen(self.opened, model_id))

    def open_run(self, run_id: int) -> None:
        from tui.screens.run_detail import RunDetailScreen

        self.push_screen(RunDetailScreen(self.opened, run_id))

    def open_compare(self, model_ids: Sequence[int]) -> None:
        from tui.screens.compare import CompareScreen

        self.push_screen(CompareScreen(self.opened, list(model_ids)))

    def open_study(self, name: str) -> None:
        from tui.screens.study import StudyScreen

        self.push_screen(StudyScreen(self.opened, name))

    def open_prune_form(self, model: str = "") -> None:
        from tui.forms.prune import PruneForm

        self.push_screen(PruneForm(self.opened, model, self.data_dir))

    def open_eval_form(self, model_ids: Sequence[int] = ()) -> None:
        from tui.forms.evaluate import EvalForm

        self.push_screen(EvalForm(self.opened, list(model_ids), self.data_dir))

    def open_import_form(self) -> None:
        from tui.forms.import_model import ImportForm

        self.push_screen(ImportForm(self.opened))

    def open_heal_form(self, model: str = "") -> None:
        from tui.forms.heal import HealForm

        self.push_screen(HealForm(self.opened, model, self.data_dir))

    def action_heal(self) -> None:
        """The Heal form, with the model in view filled in, else the model the last form launched work on."""
        self.open_heal_form(getattr(self.screen, "current_model_name", None) or self.last_model)

    def open_heal(self, heal_id: int) -> None:
        from tui.screens.heal_detail import HealDetailScreen

        self.push_screen(HealDetailScreen(self.opened, heal_id))

    def open_tradeoff(self, model_id: int) -> None:
        from tui.screens.tradeoff import TradeoffScreen

        self.push_screen(TradeoffScreen(self.opened, model_id))

    def show_jobs(self, job_id: int | None = None) -> None:
        """The Jobs screen (its list, not what was opened from it), on job `job_id` if given."""
        self.switch_mode("jobs")
        while len(self.screen_stack) > 1 and not getattr(self.screen, "unsaved", lambda: False)():
            self.pop_screen()  # back to the list, but never through a form's unsaved input
        if job_id is not None:
            self.jobs_screen().show_job(job_id)


def default_theme(environ: Mapping[str, str] = os.environ) -> str:
    """$WORKBENCH_THEME, else the ANSI theme on a terminal of 16 colours or fewer (as Textual reads
    $TEXTUAL_COLOR_SYSTEM, else as Rich reads $TERM and $COLORTERM), else Textual's default."""
    if environ.get("WORKBENCH_THEME"):
        return environ["WORKBENCH_THEME"]
    system = environ.get("TEXTUAL_COLOR_SYSTEM") or Console(force_terminal=True, _environ=dict(environ)).color_system
    return ANSI_THEME if system in (None, "standard", "windows") else "textual-dark"


def run(store: str | os.PathLike[str] | None = None, data_dir: str | os.PathLike[str] | None = None) -> int:
    """Open the workbench on a store (a folder or URL; default as Store.open chooses)."""
    data = texts.data_dir(data_dir)
    app = WorkbenchApp(store, data_dir=data, theme=default_theme(), keymap=load_keymap())
    app.run()
    return app.return_code or 0
