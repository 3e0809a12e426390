"""Trade-off: a pruned model against its parent, every metric with both values, the change and the
relative change, coloured by direction and dimmed where the change is within noise; parameters,
size, speed and memory in the same table (workbench.tradeoff does the arithmetic)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Header, Static

from store.db import Store
from tui.keybar import KeyBar
from tui.records import RecordTable
from tui.screens.base import StoreScreen
from workbench import tradeoff
from workbench.tabular import Column, Table

BETTER, WORSE, NOISE = "green", "red", "dim"
NOT_RUN = "—"


def percent(v: float | None) -> str:
    return "" if v is None else f"{100 * v:+.1f}%"


def noise(flag: bool | None) -> str:
    return "" if flag is None else ("beyond" if flag else "within")


def metric(key: str) -> str:
    """lm-eval's metric key, its default filter (",none") left off: the rest is whole (exports keep it all)."""
    return key.removesuffix(",none")


def shown(v: float | None) -> str:
    return NOT_RUN if v is None else tradeoff.figure(v)


@dataclass(frozen=True)
class TradeoffView:
    title: str
    table: Table
    styles: dict[tuple[int, str], str]  # (row, column key) -> style
    names: str  # which model is which column
    hint: str  # what is missing, and how to get it


def view(c: tradeoff.Comparison) -> TradeoffView:
    """The names stay out of the headers (they are in the title): the figures keep their columns."""
    base, pruned = c.models[0], c.models[-1]
    columns = [
        Column("task"),
        Column("metric", fmt=metric),
        Column("parent", "parent", shown, numeric=True),
        Column("pruned", "pruned", shown, numeric=True),
        Column("delta", "change", tradeoff.signed, numeric=True),
        Column("relative", "relative", percent, numeric=True),
        Column("noise", "vs noise", noise),
        Column("stderr", "± pruned", tradeoff.figure, numeric=True),
    ]
    rows: list[list[Any]] = []
    styles: dict[tuple[int, str], str] = {}
    for i, r in enumerate(c.rows):
        a, b, change = r.cells.get(base.id), r.cells.get(pruned.id), r.changes.get(pruned.id)
        rows.append([
            r.label, r.metric, r.figure(a.value) if a else None, r.figure(b.value) if b else None,
            r.figure(change.delta) if change else None, change.relative if change else None,
            change.beyond_noise if change else None, b.stderr if b else None,
        ])  # fmt: skip
        styles.update({(i, key): NOISE for key, cell in (("parent", a), ("pruned", b)) if cell is None})
        if change is None:
            continue
        if change.beyond_noise is False:
            styles.update({(i, col.key): NOISE for col in columns})
        elif r.higher_is_better is not None and change.delta:
            better = (change.delta > 0) == r.higher_is_better
            styles.update({(i, key): BETTER if better else WORSE for key in ("delta", "relative")})
    title = f"trade-off: {pruned.name} vs {base.name}"
    names = f"parent: {base.name} · pruned: {pruned.name}"
    return TradeoffView(title, Table(title, columns, rows), styles, names, missing(c))


def missing(c: tradeoff.Comparison) -> str:
    """Which of the two models lacks evaluations the other has (or both lack any), and the key to run them."""
    measured = [r for r in c.rows if r.task != "model"]
    lacking = [m.name for m in c.models if not any(m.id in r.cells for r in measured)]
    if len(lacking) == len(c.models):
        return f"Neither model is evaluated yet: e evaluates {' and '.join(lacking)}, and their figures show here."
    gaps = [m.name for m in c.models if any(m.id not in r.cells for r in measured)]
    if gaps:
        return f"{NOT_RUN}: not evaluated on that task · e evaluates {' and '.join(m.name for m in c.models)}"
    return ""


class TradeoffScreen(StoreScreen):
    TITLE = "Trade-off"

    @dataclass
    class Loaded(Message):
        compared: list[int]  # parent, pruned
        view: TradeoffView

    def __init__(self, store: Store, model_id: int) -> None:
        super().__init__(store)
        self.model_id = model_id
        self.view: TradeoffView | None = None
        self.compared: list[int] = []  # parent, pruned

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            yield Static(id="tradeoff-names", markup=False)
            yield RecordTable(id="tradeoff-table")
            yield Static(id="tradeoff-hint", classes="hint", markup=False)
            rule = f"|change| ≤ {tradeoff.NOISE_SIGMAS:g}·√(se₁²+se₂²)"
            yield Static(f"  green: better · red: worse · dim: within noise, {rule} · metrics as lm-eval keys them, "
                         "',none' (no filter) left off", id="legend")  # fmt: skip
        yield KeyBar()

    @property
    def current_model_ids(self) -> list[int]:
        """A new evaluation starts with both models: their figures then line up here."""
        return self.compared

    def on_mount(self) -> None:
        self.load()

    def on_screen_resume(self) -> None:
        if self.view is not None:
            self.load()  # back from an evaluation launched here, say

    @work(thread=True, exclusive=True, group="tradeoff", exit_on_error=False)
    def load(self) -> None:
        comparison = tradeoff.compare(self.store, [self.model_id])
        self.post_message(self.Loaded([m.id for m in comparison.models], view(comparison)))

    def on_tradeoff_screen_loaded(self, message: Loaded) -> None:
        v = self.view = message.view
        self.compared = message.compared
        self.sub_title = v.title.removeprefix("trade-off: ")
        self.query_one("#tradeoff-names", Static).update(f"  {v.names}")
        hint = self.query_one("#tradeoff-hint", Static)
        hint.update(v.hint)
        hint.display = bool(v.hint)
        table = self.query_one(RecordTable)
        table.border_title = Text(v.title)  # names: no markup
        table.show(v.table, style=lambda row, key, _value: v.styles.get((row, key), ""))
        table.focus()
