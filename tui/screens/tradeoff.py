"""Trade-off: a model against its parent (a cut against the model it was cut from, a healed model
against its cut), every metric with both values, the change and the relative change, coloured by
direction and dimmed where the change is within noise; parameters, size, speed and memory in the
same table (workbench.tradeoff does the arithmetic). A model two steps or more from its base (a
healed cut) is shown against the base as well, on a key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Header, Static

from store import queries
from store.db import Store
from tui.keybar import KeyBar
from tui.lineage import Step, steps
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


def view(c: tradeoff.Comparison, roles: tuple[str, str] = ("parent", "pruned")) -> TradeoffView:
    """The names stay out of the headers (they are in the title): the figures keep their columns,
    headed by the role each model plays (parent or base; pruned, repaired or healed)."""
    base, pruned = c.models[0], c.models[-1]
    before, after = roles
    columns = [
        Column("task"),
        Column("metric", fmt=metric),
        Column("parent", before, shown, numeric=True),
        Column("pruned", after, shown, numeric=True),
        Column("stderr", "±", tradeoff.figure, numeric=True),  # beside its figure: the table fits 80 columns
        Column("delta", "change", tradeoff.signed, numeric=True),
        Column("relative", "relative", percent, numeric=True),
        Column("noise", "vs noise", noise),
    ]
    rows: list[list[Any]] = []
    styles: dict[tuple[int, str], str] = {}
    for i, r in enumerate(c.rows):
        a, b, change = r.cells.get(base.id), r.cells.get(pruned.id), r.changes.get(pruned.id)
        rows.append([
            r.label, r.metric, r.figure(a.value) if a else None, r.figure(b.value) if b else None,
            b.stderr if b else None, r.figure(change.delta) if change else None,
            change.relative if change else None, change.beyond_noise if change else None,
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
    names = f"{before}: {base.name} · {after}: {pruned.name}"
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


def roles(lineage: list[Step], against_base: bool) -> tuple[str, str]:
    """The headers of the two models' columns: what each is in the lineage."""
    return ("base" if against_base else "parent"), lineage[-1].role if lineage[-1].role != "base" else "model"


class TradeoffScreen(StoreScreen):
    TITLE = "Trade-off"
    BINDINGS = [Binding("b", "switch_baseline", "Base / parent", id="tradeoff.baseline")]

    @dataclass
    class Loaded(Message):
        compared: list[int]  # parent (or base), the model
        view: TradeoffView
        lineage: list[Step]  # base first, the model last

    def __init__(self, store: Store, model_id: int, against_base: bool = False) -> None:
        super().__init__(store)
        self.model_id = model_id
        self.against_base = against_base  # (where the base is not the parent)
        self.view: TradeoffView | None = None
        self.compared: list[int] = []  # parent (or base), the model
        self.lineage: list[Step] = []

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
        found = steps(self.store, queries.get_model(self.store, self.model_id))
        against_base = self.against_base and len(found) > 2
        refs = [found[0].model.id, self.model_id] if against_base else [self.model_id]  # one: against its parent
        comparison = tradeoff.compare(self.store, refs)
        self.post_message(self.Loaded([m.id for m in comparison.models], view(comparison, roles(found, against_base)),
                                      found))  # fmt: skip

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "switch_baseline":
            return len(self.lineage) > 2  # a base that is not the parent
        return super().check_action(action, parameters)

    def action_switch_baseline(self) -> None:
        self.against_base = not self.against_base
        self.load()

    def on_tradeoff_screen_loaded(self, message: Loaded) -> None:
        v = self.view = message.view
        self.compared, self.lineage = message.compared, message.lineage
        self.sub_title = v.title.removeprefix("trade-off: ")
        other = ""
        if len(self.lineage) > 2:
            base = self.lineage[0].model.name
            other = " · b: against its parent" if self.against_base else f" · b: against the base, {base}"
        self.query_one("#tradeoff-names", Static).update(f"  {v.names}{other}")
        self.refresh_bindings()
        hint = self.query_one("#tradeoff-hint", Static)
        hint.update(v.hint)
        hint.display = bool(v.hint)
        table = self.query_one(RecordTable)
        table.border_title = Text(v.title)  # names: no markup
        table.show(v.table, style=lambda row, key, _value: v.styles.get((row, key), ""))
        table.focus()
