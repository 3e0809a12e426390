"""What the forms share: labelled rows of compact fields, model names suggested from the store,
numbers read from inputs (UserError saying which field is wrong)."""

from __future__ import annotations

import asyncio

from textual.containers import Horizontal, Vertical
from textual.suggester import Suggester
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Static

from store import queries
from store.db import Store
from workbench.errors import UserError


class ModelNames(Suggester):
    """Completes a model name from the store (the first, by name, that starts with the text)."""

    def __init__(self, store: Store) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.store = store

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        found = await asyncio.to_thread(queries.list_models, self.store, value, limit=20)
        return next((m.name for m in found if m.name.startswith(value)), None)


def number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserError(f"{what} must be a number, got {text!r}") from None


def whole(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{what} must be a whole number, got {text!r}") from None


def row(label: str, *widgets: Widget, id: str | None = None) -> Horizontal:
    return Horizontal(Label(label, classes="label"), Vertical(*widgets, classes="field"), classes="row", id=id)


def entry(id: str, value: str, placeholder: str = "", suggester: Suggester | None = None) -> Input:
    return Input(value, placeholder=placeholder, id=id, suggester=suggester, compact=True)


def choice(id: str, options: list[tuple[str, str]], value: str) -> Select[str]:
    return Select(options, value=value, allow_blank=False, id=id, compact=True)


def hint(id: str) -> Static:
    return Static(id=id, classes="hint")
