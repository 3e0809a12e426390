"""Model detail: architecture, lineage (the runs and heals that made it or used it, each opening),
every evaluation (newest first), files on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Header, TabbedContent, TabPane

from store import queries
from store.db import Store
from store.queries import EvaluationInfo, ModelDetail
from tui.keybar import KeyBar
from tui.navigation import navigator
from tui.records import RecordTable
from tui.screens.runs import target
from tui.screens.tabbed import TabbedScreen
from workbench.tabular import Column, Table, count, fixed, plain, size

EVALUATION_COLUMNS = [
    Column("task"),
    Column("metric"),
    Column("value", fmt=fixed(4), numeric=True),
    Column("stderr", "± stderr", fixed(4), numeric=True),
    Column("fewshot", "shots", numeric=True),
    Column("limit", numeric=True),
    Column("harness"),
    Column("device"),
    Column("dtype"),
    Column("created_at", "date", plain),
]
LINEAGE_COLUMNS = [Column("relation"), Column("what"), Column("detail")]
FILE_COLUMNS = [Column("file"), Column("size", fmt=size, numeric=True)]


def overview(m: queries.ModelInfo, folder: Path, ancestors: tuple[queries.ModelInfo, ...] = ()) -> Table:
    widths = ", ".join(map(str, m.intermediate_sizes)) if m.intermediate_sizes else str(m.intermediate_size)
    pairs = [
        ("name", m.name),
        ("lineage", " → ".join(a.name for a in ancestors) if len(ancestors) > 1 else ""),
        ("family", m.family),
        ("architecture", m.architecture),
        ("layers", m.num_layers),
        ("hidden", m.hidden_size),
        ("intermediate", widths),
        ("expansion", f"{m.expansion:.3f}"),
        ("parameters", f"{m.parameters:,} ({count(m.parameters)})"),
        ("dtype", m.dtype),
        ("size on disk", size(m.size_bytes)),
        ("source", f"{m.source} {m.source_ref}".strip()),
        ("folder", str(folder)),
        ("created", m.created_at),
        ("tags", ", ".join(m.tags)),
        ("note", m.note),
    ]
    return Table.of_pairs(f"model {m.name}", [(k, v) for k, v in pairs if v != ""])


@dataclass(frozen=True)
class LineageRow:
    key: str  # model:ID or run:ID, what enter opens
    relation: str
    what: str
    detail: str


def lineage(d: ModelDetail) -> list[LineageRow]:
    m = d.model
    rows = []
    if m.parent_id is not None:
        how = "healed" if d.healed_by is not None else "pruned"
        rows.append(LineageRow(f"model:{m.parent_id}", "parent", m.parent_name or "", f"the model it was {how} from"))
    if d.made_by is not None:
        r = d.made_by
        rows.append(LineageRow(f"run:{r.id}", "made by", f"run {r.id}", f"{r.scorer}, {target(r)}, {r.allocation}"))
    if (h := d.healed_by) is not None:
        rows.append(LineageRow(f"heal:{h.id}", "made by", f"heal {h.id}",
                               f"{h.tokens_seen:,} tokens of {h.data_source}, distilled from {h.teacher_name}"))
    for c in d.children:
        rows.append(LineageRow(f"model:{c.id}", "child", c.name, f"{count(c.parameters)} parameters"))
    for r in d.runs:
        made = f"-> {r.result_model_name}" if r.result_model_name else r.status
        rows.append(LineageRow(f"run:{r.id}", "pruned by", f"run {r.id}", f"{r.scorer}, {target(r)} {made}"))
    for h in d.heals:
        made = f"-> {h.result_name}" if h.result_name else "(its model removed)"
        rows.append(LineageRow(f"heal:{h.id}", "healed by", f"heal {h.id}", f"{h.tokens_seen:,} tokens {made}"))
    return rows


def files(folder: Path) -> list[tuple[str, int]]:
    if not folder.is_dir():
        return []
    return [(str(p.relative_to(folder)), p.stat().st_size) for p in sorted(folder.rglob("*")) if p.is_file()]


class ModelDetailScreen(TabbedScreen):
    TITLE = "Model"
    BINDINGS = [
        Binding("t", "tradeoff", "Trade-off", id="model.tradeoff"),
        Binding("h", "app.heal", "Heal", id="model.heal"),
    ]

    @dataclass
    class Loaded(Message):
        detail: ModelDetail
        files: list[tuple[str, int]]

    def __init__(self, store: Store, model_id: int) -> None:
        super().__init__(store)
        self.model_id = model_id
        self.detail: ModelDetail | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent():
            with TabPane("Overview", id="overview"):
                yield RecordTable(id="overview-table")
            with TabPane("Lineage", id="lineage"):
                yield RecordTable(openable=True, id="lineage-table")
            with TabPane("Evaluations", id="evaluations"):
                yield RecordTable(id="evaluations-table")
            with TabPane("Files", id="files"):
                yield RecordTable(id="files-table")
        yield KeyBar()

    def on_mount(self) -> None:
        self.load()

    def on_screen_resume(self) -> None:
        if self.detail is not None:
            self.load()

    @work(thread=True, exclusive=True, group="model-detail", exit_on_error=False)
    def load(self) -> None:
        detail = queries.model_detail(self.store, self.model_id)
        self.post_message(self.Loaded(detail, files(self.store.model_path(detail.model))))

    def on_model_detail_screen_loaded(self, message: Loaded) -> None:
        d = self.detail = message.detail
        m = d.model
        self.sub_title = f"{m.name} · {m.family} · {count(m.parameters)} parameters"
        self.query_one("#overview-table", RecordTable).show(overview(m, self.store.model_path(m), d.lineage))
        rows = lineage(d)
        self.query_one("#lineage-table", RecordTable).show(
            Table.of(f"lineage of {m.name}", LINEAGE_COLUMNS, rows), keys=[r.key for r in rows]
        )
        self.query_one("#evaluations-table", RecordTable).show(evaluations_table(m.name, d.evaluations))
        self.query_one("#files-table", RecordTable).show(
            Table(f"files of {m.name}", FILE_COLUMNS, [list(f) for f in message.files])
        )
        self.refresh_bindings()

    @on(DataTable.RowSelected, "#lineage-table")
    def _open(self, event: DataTable.RowSelected) -> None:
        kind, _, ident = str(event.row_key.value).partition(":")
        if kind == "model":
            navigator(self).open_model(int(ident))
        elif kind == "heal":
            navigator(self).open_heal(int(ident))
        else:
            navigator(self).open_run(int(ident))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "tradeoff":
            return self.detail is not None and self.detail.model.parent_id is not None
        return super().check_action(action, parameters)

    def action_tradeoff(self) -> None:
        navigator(self).open_tradeoff(self.model_id)

    @property
    def current_model_name(self) -> str | None:
        """The model shown: the app's prune and evaluate keys start from it."""
        return self.detail.model.name if self.detail is not None else None

    @property
    def current_model_ids(self) -> list[int]:
        return [self.model_id]


def evaluations_table(name: str, rows: tuple[EvaluationInfo, ...]) -> Table:
    return Table.of(f"evaluations of {name}", EVALUATION_COLUMNS, rows)
