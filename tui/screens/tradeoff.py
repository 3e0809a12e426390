"""Trade-off: a pruned model against its parent, every metric with both values, the change and the
relative change, coloured by direction and dimmed where the change is within noise; parameters,
size, speed and memory in the same table (workbench.tradeoff does the arithmetic)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
from workbench.tabular import Column, Table, count

BETTER, WORSE, NOISE = "green", "red", "dim"


def value(v: float | None) -> str:
    """Large figures (parameters, bytes, tokens) in short form, the rest to four digits."""
    if v is None:
        return ""
    return count(round(v)) if abs(v) >= 1e4 else f"{v:.4g}"


def signed(v: float | None) -> str:
    return "" if v is None else ("+" if v >= 0 else "-") + value(abs(v))


def percent(v: float | None) -> str:
    return "" if v is None else f"{100 * v:+.1f}%"


def noise(flag: bool | None) -> str:
    return "" if flag is None else ("beyond" if flag else "within")


@dataclass(frozen=True)
class TradeoffView:
    title: str
    table: Table
    styles: dict[tuple[int, str], str]  # (row, column key) -> style


def view(c: tradeoff.Comparison) -> TradeoffView:
    base, pruned = c.models[0], c.models[-1]
    columns = [
        Column("task"),
        Column("metric"),
        Column("parent", base.name, value, numeric=True),
        Column("pruned", pruned.name, value, numeric=True),
        Column("delta", "change", signed, numeric=True),
        Column("relative", "relative", percent, numeric=True),
        Column("noise", "vs noise", noise),
        Column("stderr", "± (pruned)", value, numeric=True),
    ]
    rows: list[list[Any]] = []
    styles: dict[tuple[int, str], str] = {}
    for i, r in enumerate(c.rows):
        a, b, change = r.cells.get(base.id), r.cells.get(pruned.id), r.changes.get(pruned.id)
        rows.append([
            r.label, r.metric, a.value if a else None, b.value if b else None,
            change.delta if change else None, change.relative if change else None,
            change.beyond_noise if change else None, b.stderr if b else None,
        ])  # fmt: skip
        if change is None:
            continue
        if change.beyond_noise is False:
            styles.update({(i, col.key): NOISE for col in columns})
        elif r.higher_is_better is not None and change.delta:
            better = (change.delta > 0) == r.higher_is_better
            styles.update({(i, key): BETTER if better else WORSE for key in ("delta", "relative")})
    title = f"trade-off: {pruned.name} vs {base.name}"
    return TradeoffView(title, Table(title, columns, rows), styles)


class TradeoffScreen(StoreScreen):
    TITLE = "Trade-off"

    @dataclass
    class Loaded(Message):
        view: TradeoffView

    def __init__(self, store: Store, model_id: int) -> None:
        super().__init__(store)
        self.model_id = model_id
        self.view: TradeoffView | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            yield RecordTable(id="tradeoff-table")
            rule = f"|change| ≤ {tradeoff.NOISE_SIGMAS:g}·√(se₁²+se₂²)"
            yield Static(f"  green: better · red: worse · dim: within noise, {rule}", id="legend")
        yield KeyBar()

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="tradeoff", exit_on_error=False)
    def load(self) -> None:
        self.post_message(self.Loaded(view(tradeoff.compare(self.store, [self.model_id]))))

    def on_tradeoff_screen_loaded(self, message: Loaded) -> None:
        v = self.view = message.view
        self.sub_title = v.title.removeprefix("trade-off: ")
        table = self.query_one(RecordTable)
        table.border_title = v.title
        table.show(v.table, style=lambda row, key, _value: v.styles.get((row, key), ""))
        table.focus()
