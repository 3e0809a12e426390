"""What every form does the same way.

Keys: in a form, printable keys belong to its fields. The app's single-letter keys (q quits, r
opens Runs, ...) would otherwise fire from a dropdown or a checkbox list and throw the input away,
so the form consumes them; ctrl keys, escape and the palette still work.

Leaving: escape (or quitting the app) with input that would be lost asks first.

Problems: a problem shows under the field it concerns, in the form's words (the engine's checks
speak in command-line flags), and on the check line; ctrl+s on a form with a problem says why
and puts the cursor in that field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.console import RenderableType
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.widget import Widget
from textual.widgets import Input, Select, SelectionList, Static
from textual.worker import Worker, WorkerState

from store.db import Store
from tui.confirm import Confirm
from tui.failures import one_line
from tui.forms.fields import FieldError, Row
from tui.screens.base import StoreScreen


@dataclass(frozen=True)
class Problem:
    field: str | None  # the widget id of the field it concerns, when known
    text: str


@dataclass(frozen=True)
class Wording:
    """An engine message that contains `found` concerns the field `field`; `found` reads as `said`."""

    found: str
    field: str
    said: str | None = None


class FormScreen(StoreScreen):
    BINDINGS = [Binding("ctrl+s", "launch", "Launch", id="form.launch")]
    WHAT = "this form"  # what leaving it would lose, e.g. "the new pruning run"
    WORDINGS: ClassVar[tuple[Wording, ...]] = ()
    TRANSIENT: ClassVar[frozenset[str]] = frozenset()  # fields whose text is no input (a list's filter)

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.problem: Problem | None = None
        self._pristine: dict[str, object] | None = None
        self.launching = False  # its job is being queued (a "launch" worker runs)

    def on_mount(self) -> None:
        # After the subclass's own mount (Textual calls it first) has filled the fields in.
        self.call_after_refresh(self._remember)

    def _remember(self) -> None:
        self._pristine = self.values()

    # Keys ---------------------------------------------------------------------------------------

    def check_consume_key(self, key: str, character: str | None) -> bool:
        return character is not None and character.isprintable()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "export":
            return False  # a form has no table
        return super().check_action(action, parameters)

    # Leaving ------------------------------------------------------------------------------------

    def values(self) -> dict[str, object]:
        """What the fields hold, by widget id."""
        found: dict[str, object] = {}
        for widget in self.query("Input, Select, SelectionList"):
            if widget.id is None or widget.id in self.TRANSIENT:
                continue
            if isinstance(widget, SelectionList):
                found[widget.id] = tuple(sorted(map(str, widget.selected)))
            elif isinstance(widget, Input | Select):
                found[widget.id] = widget.value
        return found

    def unsaved(self) -> bool:
        """Whether leaving would lose input: the fields differ from how the form opened."""
        return self._pristine is not None and self.values() != self._pristine

    def action_back(self) -> None:
        if not self.unsaved():
            self.dismiss()
            return

        def answered(leave: bool | None) -> None:
            if leave:
                self.dismiss()

        self.app.push_screen(Confirm(f"Leave {self.WHAT}? What you entered is lost.", "Leave", "Stay"), answered)

    # Problems -----------------------------------------------------------------------------------

    def worded(self, error: BaseException) -> Problem:
        """The field an error concerns and its text in the form's words (an unexpected error, named by
        its type, concerns no field)."""
        text = one_line(error)
        if isinstance(error, FieldError):
            return Problem(error.field, text)
        for wording in self.WORDINGS:
            if wording.found in text:
                return Problem(wording.field, text.replace(wording.found, wording.said or wording.found))
        return Problem(None, text)

    def show_ready(self, text: RenderableType) -> None:
        self._show(None, text)

    def show_problem(self, error: BaseException) -> None:
        self._show(self.worded(error), "")

    def _show(self, problem: Problem | None, ready: RenderableType) -> None:
        self.problem = problem
        for shown in self.query(".field-error"):
            shown.display = False
        check = self.query_one("#check", Static)
        if problem is None:
            check.update(ready)
            check.remove_class("problem")
        else:
            label = self.label_of(problem.field)
            check.update(f"{label}: {problem.text}" if label else problem.text)
            check.add_class("problem")
            shown = self.error_line(problem.field)
            if shown is not None:
                shown.update(problem.text)
                shown.display = True
        self.refresh_bindings()

    def field(self, field: str | None) -> Widget | None:
        if field is None:
            return None
        try:
            return self.query_one(f"#{field}")
        except NoMatches:
            return None

    def _row(self, field: str | None) -> Row | None:
        widget = self.field(field)
        while widget is not None and not isinstance(widget, Row):
            widget = widget.parent if isinstance(widget.parent, Widget) else None
        return widget

    def label_of(self, field: str | None) -> str:
        row = self._row(field)
        return row.label if row is not None else ""

    def error_line(self, field: str | None) -> Static | None:
        row = self._row(field)
        return None if row is None else row.query_one(".field-error", Static)

    # Launching ----------------------------------------------------------------------------------

    def ready(self) -> bool:
        """Whether what the form holds is checked and may be launched."""
        raise NotImplementedError

    def launch_checked(self) -> None:
        """Queue what the form holds (ready() is true), on a worker of the group "launch"."""
        raise NotImplementedError

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        super().on_worker_state_changed(event)  # a failure is said
        if event.worker.group == "launch" and event.state in (WorkerState.ERROR, WorkerState.CANCELLED):
            self.launching = False  # nothing queued: it may be launched again

    def action_launch(self) -> None:
        if self.launching:  # pressed again before the queued job's message closed the form: one job
            return
        if self.ready():
            self.launching = True
            self.launch_checked()
            return
        problem = self.problem
        if problem is None:
            self.notify("not launched: the form is still being checked", severity="warning")
            return
        label = self.label_of(problem.field)
        self.notify(f"not launched: {label + ': ' if label else ''}{problem.text}", severity="warning")
        widget = self.field(problem.field)
        if widget is not None and widget.focusable:
            widget.focus()
