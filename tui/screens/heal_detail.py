"""Heal detail: the loss curve (the distillation loss over the tokens seen) drawn as a chart, with where it
started and ended, the tokens and passes, time and peak memory; every setting; the lineage (base ->
cut -> healed, each name opening its model); the job's log."""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Header, Log, Static, TabbedContent, TabPane

from store import queries
from store.db import NotFoundError, Store
from store.queries import HealInfo
from tui.chart import Chart
from tui.keybar import KeyBar
from tui.lineage import Step, chain, steps
from tui.logs import read_log
from tui.navigation import navigator
from tui.records import RecordTable
from tui.screens.jobs import duration
from tui.screens.tabbed import TabbedScreen
from workbench import jobs
from workbench.tabular import Column, Table, count, plain, size

LINEAGE_COLUMNS = [Column("role", "step"), Column("name", "model"), Column("how", "made by"),
                   Column("parameters", fmt=count, numeric=True)]  # fmt: skip


@dataclass(frozen=True)
class LossCurve:
    """The heal's loss over the tokens it has seen (a chart series)."""

    label: str
    points: tuple[tuple[float, float], ...]


def curve(heal: HealInfo) -> LossCurve:
    name = "KL divergence" if heal.loss_name == "KL" else heal.loss_name
    t = heal.temperature
    if t != 1:  # the KL is taken at temperature T and scaled by T² (Hinton et al.), as the values are
        name += f" (KL at temperature {t:g}, times {t * t:g})"
    return LossCurve(name, tuple((tokens, loss) for _, tokens, loss in heal.loss_curve))


def summary(heal: HealInfo) -> Text:
    """Where the loss went, what the heal read, and what it cost, in two lines."""
    text = Text("  ")
    if heal.loss_curve:
        first, last = heal.loss_curve[0][2], heal.loss_curve[-1][2]
        text.append(f"{heal.loss_name} ")
        text.append(f"{first:.4g} → {last:.4g}", "bold")
        if first:
            text.append(f" ({100 * (last - first) / first:+.0f}%)")
        text.append(" · ")
    text.append(f"{heal.tokens_seen:,} tokens of {heal.data_source} ({heal.passes:.2f} passes) in {heal.steps:,} steps")
    resumed = heal.settings.get("resumed_from_step")
    if resumed:
        text.append(f", resumed at step {resumed}")
    text.append(f"\n  {duration(heal.seconds) or 'time not recorded'} on {heal.device} {heal.dtype}")
    text.append(f" · peak memory {size(heal.peak_memory_bytes) or 'not recorded'}")
    return text


def settings(heal: HealInfo) -> Table:
    asked = heal.settings
    pairs = [
        ("model healed", heal.model_name),
        ("teacher", heal.teacher_name),
        ("healed model", heal.result_name or "(removed)"),
        ("data", f"{heal.data_source} (its calibration part)"),
        ("data hash", heal.data_hash),
        ("tokens", f"{heal.tokens_seen:,} seen of {heal.tokens:,} asked, {heal.passes:.2f} passes"),
        ("steps", f"{heal.steps:,} of {heal.batch_size} × {heal.seq_len} tokens"),
        ("learning rate", f"{heal.lr:g} at its peak: warmup over {100 * asked.get('warmup', 0):g}% of the steps, "
                          f"{asked.get('schedule', 'cosine')} decay"),
        ("optimiser", f"{asked['optimizer']}, weight decay {asked.get('weight_decay', 0):g}" if "optimizer" in asked
         else ""),
        ("temperature", f"{heal.temperature:g}"),
        ("cross-entropy", f"{heal.ce_weight:g} of the loss, on the text's next tokens (the rest: the KL)"
         if heal.ce_weight else ""),
        ("train", heal.train),
        ("trained parameters", count(asked["trained_parameters"]) if "trained_parameters" in asked else ""),
        ("checkpoints", f"every {asked['checkpoint_every_s']:g} s" if "checkpoint_every_s" in asked else ""),
        ("seed", asked.get("seed", "")),
        ("device", heal.device),
        ("dtype", f"{heal.dtype}, saved as {asked['save_dtype']}" if "save_dtype" in asked else heal.dtype),
        ("time", duration(heal.seconds)),
        ("peak memory", size(heal.peak_memory_bytes)),
        ("versions", ", ".join(f"{k} {v}" for k, v in heal.versions.items())),
        ("job", heal.job_id or ""),
        ("created", plain(heal.created_at)),
    ]
    return Table.of_pairs(f"heal {heal.id}", [(k, v) for k, v in pairs if v != ""])


def lineage_table(heal: HealInfo, found: list[Step]) -> Table:
    rows = [[s.role, s.model.name, s.how, s.model.parameters] for s in found]
    return Table(f"lineage of heal {heal.id}", LINEAGE_COLUMNS, rows)


class HealDetailScreen(TabbedScreen):
    TITLE = "Heal"
    BINDINGS = [
        Binding("o", "open_result", "Healed model", id="heal.result"),
        Binding("b", "open_student", "Model healed", id="heal.student"),
    ]

    @dataclass
    class Loaded(Message):
        heal: HealInfo
        lineage: list[Step]  # base first, the healed model (else the model healed) last
        log: str | None  # the tail of its job's log

    def __init__(self, store: Store, heal_id: int) -> None:
        super().__init__(store)
        self.heal_id = heal_id
        self.heal: HealInfo | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent():
            with TabPane("Loss", id="loss"), Vertical():
                yield Static(id="heal-summary")
                yield Static(id="heal-chain", markup=False, classes="hint")
                yield Chart(id="loss-chart")
            with TabPane("Settings", id="settings"):
                yield RecordTable(id="settings-table")
            with TabPane("Lineage", id="lineage"):
                yield RecordTable(openable=True, id="heal-lineage-table")
            with TabPane("Log", id="log"):
                yield Log(id="heal-log")
        yield KeyBar()

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, group="heal-detail", exit_on_error=False)
    def load(self) -> None:
        heal = queries.get_heal(self.store, self.heal_id)
        last = heal.result_model_id if heal.result_model_id is not None else heal.model_id
        found = steps(self.store, queries.get_model(self.store, last))
        log = None
        if heal.job_id is not None:
            with suppress(NotFoundError):  # a job row may have been cleared away
                path = jobs.log_file(self.store, jobs.get_job(self.store, heal.job_id))
                if path is not None and path.is_file():
                    log = read_log(path, heal.job_id).text
        self.post_message(self.Loaded(heal, found, log))

    def on_heal_detail_screen_loaded(self, message: Loaded) -> None:
        heal = self.heal = message.heal
        self.sub_title = f"heal {heal.id}: {heal.model_name} → {heal.result_name or '(removed)'}"
        self.query_one("#heal-summary", Static).update(summary(heal))
        self.query_one("#heal-chain", Static).update(f" lineage: {chain(message.lineage)}")  # (.hint pads it by one)
        self.query_one(Chart).show([curve(heal)], "tokens seen", lambda x: f"{x:,.0f}", marks=False)
        self.query_one("#settings-table", RecordTable).show(settings(heal))
        self.query_one("#heal-lineage-table", RecordTable).show(
            lineage_table(heal, message.lineage), keys=[f"model:{s.model.id}" for s in message.lineage],
            elastic=("how",),
        )
        if message.log is None:
            self.query_one(TabbedContent).hide_tab("log")
        else:
            self.query_one("#heal-log", Log).write(message.log)
        self.refresh_bindings()

    @on(DataTable.RowSelected, "#heal-lineage-table")
    def _open(self, event: DataTable.RowSelected) -> None:
        navigator(self).open_model(int(str(event.row_key.value).removeprefix("model:")))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "open_result":
            return self.heal is not None and self.heal.result_model_id is not None
        return super().check_action(action, parameters)

    def action_open_result(self) -> None:
        if self.heal is not None and self.heal.result_model_id is not None:
            navigator(self).open_model(self.heal.result_model_id)

    def action_open_student(self) -> None:
        if self.heal is not None:
            navigator(self).open_model(self.heal.model_id)

    @property
    def current_model_name(self) -> str | None:
        """A new heal (or pruning run) starts from the healed model."""
        if self.heal is None:
            return None
        return self.heal.result_name or self.heal.model_name

    @property
    def current_model_ids(self) -> list[int]:
        """A new evaluation starts with the model healed and the healed one: their figures side by side."""
        if self.heal is None:
            return []
        return [i for i in (self.heal.model_id, self.heal.result_model_id) if i is not None]
