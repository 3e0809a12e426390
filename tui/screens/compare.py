"""Compare two to four models side by side (a base, its cuts, repaired or not, and healed models
among them): architecture and the step each is in its lineage, every metric aligned by task and key
with its stderr and limit and the best in each row marked (only where it beats the others beyond
noise, the rule of Trade-off and `workbench compare`), per-layer retention of the ones a pruning run
made, and for two runs of the same base how many kept neurons they share in each layer, beside how
many two random choices of those sizes would share (a healed model keeps its cut's neurons: it has
no run of its own, so no overlap of its own either)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Header, Static, TabbedContent, TabPane

from store import bitset, queries
from store.db import Store
from store.queries import ModelInfo, RetentionInfo, RunSummary
from tui.keybar import KeyBar
from tui.lineage import Step, step
from tui.records import RecordTable
from tui.screens.tabbed import TabbedScreen
from workbench import tradeoff
from workbench.studies.specialisation import LayerOverlap
from workbench.tabular import Column, Table, count, fixed, size

BEST = "bold reverse"
BELOW_CHANCE = "bold red"
METRICS_LEGEND = (
    f"best: beats every other beyond noise, |Δ| > {tradeoff.NOISE_SIGMAS:g}·√(se₁²+se₂²) where both have a "
    "stderr · ±: lm-eval's stderr · docs: the limit evaluated at"
)
OVERLAP_LEGEND = (
    "shared: kept by both, as a share of the fewer kept · chance: what two random choices of those sizes "
    "share (the larger kept share) · red: below chance"
)


@dataclass(frozen=True)
class Comparison:
    models: list[ModelInfo]
    made_by: dict[int, RunSummary]  # model id -> the run that made it (pruned models only)
    retention: dict[int, tuple[RetentionInfo, ...]]  # model id -> that run's retention
    metrics: tuple[tradeoff.Row, ...]  # every metric aligned by task and key, with its direction
    steps: dict[int, Step]  # model id -> its step in its lineage (base, pruned, repaired, healed) and how made


def gather(store: Store, model_ids: list[int]) -> Comparison:
    with store.session() as session:
        models = [queries.get_model(session, i) for i in model_ids]
        made_by, retention = {}, {}
        for m in models:
            if m.made_by_run_id is not None:
                run = queries.run_detail(session, m.made_by_run_id)
                made_by[m.id], retention[m.id] = run, run.retention
        found = {m.id: step(session, m) for m in models}
        return Comparison(models, made_by, retention, tradeoff.compare(session, model_ids).rows, found)


def _key(m: ModelInfo) -> str:
    return f"m{m.id}"


def overview(c: Comparison) -> Table:
    fields: list[tuple[str, Any]] = [
        ("step", lambda m: c.steps[m.id].role),
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
        ("made by", lambda m: c.steps[m.id].how if c.steps[m.id].role != "base" else ""),
        ("evaluations", lambda m: m.eval_count),
    ]
    columns = [Column("field"), *(Column(_key(m), m.name) for m in c.models)]
    return Table("models", columns, [[name, *(get(m) for m in c.models)] for name, get in fields])


def metrics(c: Comparison) -> tuple[Table, set[tuple[int, str]]]:
    """The aligned metrics with their stderrs and limits, and the (row, column) cells holding each
    row's best value."""
    columns = [Column("task"), Column("metric")]
    for m in c.models:
        columns += [Column(_key(m), m.name, tradeoff.figure, numeric=True),
                    Column(f"{_key(m)}_stderr", "±", fixed(3), numeric=True)]  # fmt: skip
    columns += [Column("limit", "docs", numeric=True), Column("best")]
    rows, best = [], set()
    ids = [m.id for m in c.models]
    for i, row in enumerate(c.metrics):
        cells = [row.cells.get(m.id) for m in c.models]
        found = tradeoff.best(row, ids)
        winner = next((m.name for m in c.models if m.id == found.model_id), found.why_none)
        if found.model_id is not None:
            best.add((i, f"m{found.model_id}"))
        limits = sorted({f"{x.limit:g}" for x in cells if x is not None and x.limit is not None})
        values = [v for x in cells for v in ((row.figure(x.value), x.stderr) if x else (None, None))]
        rows.append([row.label, row.metric, *values, " / ".join(limits), winner])
    return Table("metrics", columns, rows), best
def retention(c: Comparison) -> Table:
    pruned = [m for m in c.models if m.id in c.retention]
    layers = sorted({r.layer for m in pruned for r in c.retention[m.id]})
    kept = {m.id: {r.layer: r.percent_kept for r in c.retention[m.id]} for m in pruned}
    columns = [Column("layer", numeric=True), *(Column(_key(m), f"{m.name} % kept", fixed(1), True) for m in pruned)]
    rows = [[layer, *(kept[m.id].get(layer) for m in pruned)] for layer in layers]
    return Table("per-layer retention", columns, rows)


def overlap(c: Comparison) -> tuple[Table, set[tuple[int, str]]] | None:
    """Shared kept neurons per layer for every pair of models pruned from the same base, beside
    chance; and the (row, column) cells below chance."""
    pairs = [
        (a, b)
        for a, b in combinations([m for m in c.models if m.id in c.made_by], 2)
        if c.made_by[a.id].base_model_id == c.made_by[b.id].base_model_id
    ]
    if not pairs:
        return None
    columns = [Column("layer", numeric=True)]
    for a, b in pairs:
        pair = f"{_key(a)}_{_key(b)}"
        columns += [
            Column(pair, f"{a.name} ∩ {b.name}", numeric=True),
            Column(f"{pair}_share", "% shared", fixed(1), numeric=True),
            Column(f"{pair}_chance", "% chance", fixed(1), numeric=True),
        ]
    by_layer = {m.id: {r.layer: r for r in c.retention[m.id]} for m in c.models if m.id in c.retention}
    rows, below = [], set()
    for layer in sorted({layer for rows_ in by_layer.values() for layer in rows_}):
        row: list[Any] = [layer]
        for a, b in pairs:
            ra, rb = by_layer[a.id].get(layer), by_layer[b.id].get(layer)
            if ra is None or rb is None:
                row += [None, None, None]
                continue
            found = LayerOverlap(layer, bitset.overlap(ra.kept_indices, rb.kept_indices), ra.kept_width,
                                 rb.kept_width, ra.original_width)  # fmt: skip
            row += [found.shared, 100 * found.share, 100 * found.chance]
            if found.share < found.chance:
                below.add((len(rows), f"{_key(a)}_{_key(b)}_share"))
        rows.append(row)
    return Table("shared kept neurons", columns, rows), below


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
            with TabPane("Metrics", id="metrics"), Vertical():
                yield RecordTable(id="metrics-table")
                yield Static(METRICS_LEGEND, classes="hint legend")
            with TabPane("Retention", id="retention"):
                yield RecordTable(id="retention-table")
            with TabPane("Overlap", id="overlap"), Vertical():
                yield RecordTable(id="overlap-table")
                yield Static(OVERLAP_LEGEND, classes="hint legend")
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
            table, below = shared
            self.query_one("#overlap-table", RecordTable).show(
                table, style=lambda row, key, _value: BELOW_CHANCE if (row, key) in below else ""
            )
        else:
            tabs.hide_tab("overlap")
        self.query_one("#overview-table", RecordTable).focus()

    @property
    def current_model_ids(self) -> list[int]:
        return self.model_ids
