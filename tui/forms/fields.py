"""What the forms share: labelled rows of compact fields (each with a line for its problem), model
names completed from the store, check lists that show what is ticked, numbers read from inputs
(FieldError saying which field is wrong)."""

from __future__ import annotations

import asyncio
import math

from rich.segment import Segment
from textual.containers import Horizontal, Vertical
from textual.strip import Strip
from textual.suggester import Suggester
from textual.widget import Widget
from textual.widgets import Input, Label, Select, SelectionList, Static
from textual.widgets._toggle_button import ToggleButton

from store import queries
from store.db import Store
from workbench.errors import UserError

COMPLETES = "→ completes"  # how a field with suggestions says they are taken


class FieldError(UserError):
    """A problem with one field of a form (its widget id), said in the form's words."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def completion(store: Store, text: str) -> str | None:
    """The stored model name that completes `text` (the first, by name, that starts with it)."""
    if not text:
        return None
    try:
        found = queries.list_models(store, text, limit=20)
    except Exception:  # text the store cannot search for (a NUL...): no suggestion, and never a crash
        return None
    return next((m.name for m in found if m.name.startswith(text) and m.name != text), None)


class ModelNames(Suggester):
    """Suggests a model name from the store as ghost text; the right arrow takes it."""

    def __init__(self, store: Store) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.store = store

    async def get_suggestion(self, value: str) -> str | None:
        return await asyncio.to_thread(completion, self.store, value)


class CheckList(SelectionList):  # type: ignore[type-arg]
    """A SelectionList whose unticked rows show an empty box (Textual draws an X in every box, told
    apart by colour alone), with a row under the cursor as soon as it has rows."""

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        index = self.scroll_offset.y + y
        segments = list(strip)
        box = len(segments) > 1 and segments[1].text == ToggleButton.BUTTON_INNER  # Textual draws [left, X, right, ...]
        if box and index < self.option_count and self.get_option_at_index(index).value not in self._selected:
            segments[1] = Segment(" ", segments[1].style)
            return Strip(segments, strip.cell_length)
        return strip

    def on_focus(self) -> None:
        if self.highlighted is None and self.option_count:
            self.highlighted = 0


def number(text: str, what: str, field: str) -> float:
    if not text:
        raise FieldError(field, f"give {what}")
    try:
        value = float(text)
    except ValueError:
        raise FieldError(field, f"{what} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise FieldError(field, f"{what} must be a finite number, got {text!r}")
    return value


def whole(text: str, what: str, field: str) -> int:
    if not text:
        raise FieldError(field, f"give {what}")
    try:
        return int(text)
    except ValueError:
        raise FieldError(field, f"{what} must be a whole number, got {text[:40]!r}") from None


class Row(Horizontal):
    """A label, then its field(s) with a line under them for the field's problem."""

    def __init__(self, label: str, *widgets: Widget, id: str | None = None) -> None:
        error = Static(classes="field-error", markup=False)
        error.display = False
        field = Vertical(*widgets, error, classes="field")
        super().__init__(Label(label, classes="label"), field, classes="row", id=id)
        self.label = label


def row(label: str, *widgets: Widget, id: str | None = None) -> Row:
    return Row(label, *widgets, id=id)


def entry(id: str, value: str, placeholder: str = "", suggester: Suggester | None = None) -> Input:
    return Input(value, placeholder=placeholder, id=id, suggester=suggester, compact=True)


def choice(id: str, options: list[tuple[str, str]], value: str) -> Select[str]:
    return Select(options, value=value, allow_blank=False, id=id, compact=True)


def hint(id: str, text: str = "") -> Static:
    return Static(text, id=id, classes="hint", markup=False)
