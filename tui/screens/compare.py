"""Compare two to four models side by side: architecture, every metric aligned by task and key
with the best in each row marked, per-layer retention of the pruned ones, and for two runs of
the same base how many kept neurons they share in each layer."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.message import Message
from textual.widgets import Header, TabbedContent, TabPane

from store import bitset, queries
from store.db import Store
from store.queries import ModelInfo, RetentionInfo, RunSummary
from tui.keybar import KeyBar
from tui.records import RecordTable
from tui.screens.runs import target
from tui.screens.tabbed import TabbedScreen
from tui.screens.tradeoff import value
from workbench import tradeoff
from workbench.tabular import Column, Table, count, fixed, size

BEST = "bold reverse"


@dataclass(frozen=True)
class Comparison:
    models: list[ModelInfo]
    made_by: dict[int, RunSummary]  # model id -> the run that made it (pruned models only)
    retention: dict[int, tuple[RetentionInfo, ...]]  # model id -> that run's retention
    metrics: tuple[tradeoff.Row, ...]  # every metric aligned by task and key, with its direction


def gather(store: Store, model_ids: list[int]) -> Comparison:
    with store.session() as session:
        models = [queries.get_model(session, i) for i in model_ids]
        made_by, retention = {}, {}
        for m in models:
            if m.made_by_run_id is not None:
                run = queries.run_detail(session, m.made_by_run_id)
                made_by[m.id], retention[m.id] = run, run.retention
        return Comparison(models, made_by, retention, tradeoff.compare(session, model_ids).rows)


def _key(m: ModelInfo) -> str:
    return f"m{m.id}"


def overview(c: Comparison) -> Table:
    def made(m: ModelInfo) -> str:
        run = c.made_by.get(m.id)
        return f"run {run.id}: {run.scorer}, {target(run)}" if run else ""

    fields: list[tuple[str, Any]] = [
        ("family", lambda m: m.family),
        ("architecture", lambda m: m.architecture),
        ("layers", lambda m: m.num_layers),
        ("hidden", lambda m: m.hidden_size),
        ("intermediate", lambda m: "per-layer" if m.intermediate_sizes else m.intermediate_size),
        ("expansion", lambda m: f"{m.expansion:.3f}"),
        ("parameters", lambda m: count(m.parameters)),
        ("size", lambda m: size(m.size_bytes)),
        ("dtype", lambda m: m.dtype),
        ("parent", lambda m: m.parent_name or ""),
        ("made by", made),
        ("evaluations", lambda m: m.eval_count),
    ]
    columns = [Column("field"), *(Column(_key(m), m.name) for m in c.models)]
    return Table("models", columns, [[name, *(get(m) for m in c.models)] for name, get in fields])


def metrics(c: Comparison) -> tuple[Table, set[tuple[int, str]]]:
    """The aligned metrics, and the (row, column) cells holding each row's best value."""
    columns = [
        Column("task"),
        Column("metric"),
        *(Column(_key(m), m.name, value, numeric=True) for m in c.models),
        Column("best"),
    ]
    rows, best = [], set()
    for i, row in enumerate(c.metrics):
        values = {m.id: row.cells[m.id].value for m in c.models if m.id in row.cells}
        winner = None
        if len(values) > 1 and row.higher_is_better is not None:
            pick = max if row.higher_is_better else min
            top = pick(values.values())
            winners = [m for m in c.models if values.get(m.id) == top]
            if len(winners) < len(values):  # a tie for all is no best
                winner = winners[0]
                best.update((i, _key(w)) for w in winners)
        rows.append([row.label, row.metric, *(values.get(m.id) for m in c.models), winner.name if winner else ""])
    return Table("metrics", columns, rows), best


def retention(c: Comparison) -> Table:
    pruned = [m for m in c.models if m.id in c.retention]
    layers = sorted({r.layer for m in pruned for r in c.retention[m.id]})
    kept = {m.id: {r.layer: r.percent_kept for r in c.retention[m.id]} for m in pruned}
    columns = [Column("layer", numeric=True), *(Column(_key(m), f"{m.name} % kept", fixed(1), True) for m in pruned)]
    rows = [[layer, *(kept[m.id].get(layer) for m in pruned)] for layer in layers]
    return Table("per-layer retention", columns, rows)


def overlap(c: Comparison) -> Table | None:
    """Shared kept neurons per layer for every pair of models pruned from the same base."""
    pairs = [
        (a, b)
        for a, b in combinations([m for m in c.models if m.id in c.made_by], 2)
        if c.made_by[a.id].base_model_id == c.made_by[b.id].base_model_id
    ]
    if not pairs:
        return None
    columns = [Column("layer", numeric=True)]
    for a, b in pairs:
        columns += [
            Column(f"{_key(a)}_{_key(b)}", f"{a.name} ∩ {b.name}", numeric=True),
            Column(f"{_key(a)}_{_key(b)}_share", "% of fewer kept", fixed(1), numeric=True),
        ]
    by_layer = {m.id: {r.layer: r for r in c.retention[m.id]} for m in c.models if m.id in c.retention}
    rows = []
    for layer in sorted({layer for rows_ in by_layer.values() for layer in rows_}):
        row: list[Any] = [layer]
        for a, b in pairs:
            ra, rb = by_layer[a.id].get(layer), by_layer[b.id].get(layer)
            if ra is None or rb is None:
                row += [None, None]
                continue
            shared = bitset.overlap(ra.kept_indices, rb.kept_indices)
            fewer = min(ra.kept_width, rb.kept_width)
            row += [shared, 100 * shared / fewer if fewer else None]
        rows.append(row)
    return Table("shared kept neurons", columns, rows)


class CompareScreen(TabbedScreen):
    TITLE = "Compare"

    @dataclass
    class Loaded(Message):
        comparison: Comparison

    def __init__(self, store: Store, model_ids: list[int]) -> None:
        super().__init__(store)
        self.model_ids = model_ids

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent():
            with TabPane("Overview", id="overview"):
                yield RecordTable(id="overview-table")
            with TabPane("Metrics", id="metrics"):
                yield RecordTable(id="metrics-table")
            with TabPane("Retention", id="retention"):
                yield RecordTable(id="retention-table")
            with TabPane("Overlap", id="overlap"):
                yield RecordTable(id="overlap-table")
        yield KeyBar()

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def load(self) -> None:
        self.post_message(self.Loaded(gather(self.store, self.model_ids)))

    def on_compare_screen_loaded(self, message: Loaded) -> None:
        c = message.comparison
        self.sub_title = " · ".join(m.name for m in c.models)
        self.query_one("#overview-table", RecordTable).show(overview(c))
        table, best = metrics(c)
        self.query_one("#metrics-table", RecordTable).show(
            table, style=lambda row, key, _value: BEST if (row, key) in best else ""
        )
        tabs = self.query_one(TabbedContent)
        if c.retention:
            bars = {_key(m): 100.0 for m in c.models}
            self.query_one("#retention-table", RecordTable).show(retention(c), bars=bars, bar_width=6)
        else:
            tabs.hide_tab("retention")
        shared = overlap(c)
        if shared is not None:
            self.query_one("#overlap-table", RecordTable).show(shared)
        else:
            tabs.hide_tab("overlap")
        self.query_one("#overview-table", RecordTable).focus()
