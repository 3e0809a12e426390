"""New pruning run: the form checks as you type (PruneSpec.validate, planned_widths) and shows the
resulting widths, parameters and expansion before anything is queued."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Header, Input, Select, Static

from store import queries
from store.db import Store
from store.queries import ModelInfo
from tui.failures import one_line
from tui.forms.fields import ModelNames, choice, entry, hint, number, row, whole
from tui.keybar import KeyBar
from tui.navigation import navigator
from tui.screens.base import StoreScreen
from workbench import jobs
from workbench.errors import UserError
from workbench.spec import ALLOCATIONS, DEVICES, DTYPES, SCORERS, PruneSpec, planned_widths
from workbench.tabular import count

TARGETS = [("percent of neurons removed", "percent"), ("expansion ratio (width / hidden)", "expansion")]


@dataclass(frozen=True)
class Preview:
    before: list[int]
    after: list[int]
    hidden: int
    parameters_before: int
    global_allocation: bool

    @property
    def parameters_after(self) -> int:
        # A GLU MLP neuron is a row of gate_proj and up_proj and a column of down_proj.
        return self.parameters_before - 3 * self.hidden * (sum(self.before) - sum(self.after))

    def expansion(self, widths: list[int]) -> float:
        return sum(widths) / len(widths) / self.hidden

    def render(self) -> Text:
        text = Text()
        layers = list(enumerate(zip(self.before, self.after, strict=True)))
        for (old, new), group in groupby(layers, key=lambda x: x[1]):
            ids = [i for i, _ in group]
            span = f"layer {ids[0]}" if len(ids) == 1 else f"layers {ids[0]}-{ids[-1]}"
            text.append(f"{span}: {old} → ")
            text.append(str(new), "bold" if new != old else "")
            text.append("  ")
        text.append("\nparameters ")
        removed = 1 - self.parameters_after / self.parameters_before if self.parameters_before else 0.0
        text.append(f"{count(self.parameters_before)} → {count(self.parameters_after)}", "bold")
        text.append(f" ({100 * removed:.1f}% fewer) · expansion {self.expansion(self.before):.2f} → ")
        text.append(f"{self.expansion(self.after):.2f}", "bold")
        if self.global_allocation:
            text.append("\nglobal allocation: widths differ per layer by score; the total is as shown", "dim")
        return text


def preview(spec: PruneSpec, model: ModelInfo) -> Preview:
    widths = list(model.widths)
    after = planned_widths(spec, model.hidden_size, widths)
    return Preview(widths, after, model.hidden_size, model.parameters, spec.allocation == "global")


class PruneForm(StoreScreen):
    TITLE = "New pruning run"
    BINDINGS = [Binding("ctrl+s", "launch", "Launch", id="form.launch")]

    @dataclass
    class Found(Message):
        name: str
        model: ModelInfo | None

    @dataclass
    class Queued(Message):
        job_id: int

    def __init__(self, store: Store, model: str = "", data_dir: Path | None = None) -> None:
        super().__init__(store)
        self.data_dir = data_dir
        self.model_name = model
        self.model: ModelInfo | None = None
        self.spec: PruneSpec | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="form"):
            yield row("Model", entry("model", self.model_name, suggester=ModelNames(self.store)), hint("model-info"))
            scorers = [(f"{s.name} ({'data' if s.data_driven else 'static'})", s.name) for s in SCORERS.values()]
            yield row("Scorer", choice("scorer", scorers, "ppm"), hint("scorer-info"))
            yield row("Target", choice("target-kind", TARGETS, "percent"), entry("target", "50"))
            yield row("Divisor", entry("divisor", "1", "round kept widths down to a multiple of this"))
            yield row("Allocation", choice("allocation", [(a, a) for a in ALLOCATIONS], "uniform"),
                      hint("allocation-info"))  # fmt: skip
            yield row("Layers", entry("layers", "all", "all, or e.g. 0-9,20"))
            with Vertical(id="calibration"):
                yield row("Calibration", entry("calibration-source", "wikitext2", "wikitext2, sms, a file, hf:DATASET"))
                yield row("Samples", entry("samples", str(PruneSpec.samples)))
                yield row("Seq. length", entry("seq-len", str(PruneSpec.seq_len)))
            yield row("Device", choice("device", [(d, d) for d in DEVICES], "auto"))
            yield row("Dtype", choice("dtype", [(d, d) for d in DTYPES], "auto"))
            yield row("Name", entry("name", "", "the pruned model's name (made up when empty)"))
        yield Static(id="check")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#model" if not self.model_name else "#target", Input).focus()
        self.find_model(self.model_name)
        self.check()

    # Checking as you type ---------------------------------------------------------------------

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self, event: Input.Changed | Select.Changed) -> None:
        if event.control.id == "model":
            self.find_model(str(event.value).strip())
        self.check()

    @work(thread=True, exclusive=True, group="find-model", exit_on_error=False)
    def find_model(self, name: str) -> None:
        self.post_message(self.Found(name, queries.find_model(self.store, name) if name else None))

    def on_prune_form_found(self, message: Found) -> None:
        if message.name == self.query_one("#model", Input).value.strip():
            self.model = message.model
            self.check()

    def read(self) -> PruneSpec:
        """The spec the form holds, validated; UserError says what is wrong."""

        def value(widget_id: str) -> str:
            return self.query_one(f"#{widget_id}", Input).value.strip()

        def choice(widget_id: str) -> str:
            return str(self.query_one(f"#{widget_id}", Select).value)

        scorer = choice("scorer")
        data_driven = SCORERS[scorer].data_driven
        target = number(value("target"), "the target")
        kind = choice("target-kind")
        return PruneSpec(
            model=value("model"),
            scorer=scorer,
            percent=target if kind == "percent" else None,
            expansion=target if kind == "expansion" else None,
            divisor=whole(value("divisor"), "the divisor"),
            allocation=choice("allocation"),
            layers=value("layers") or "all",
            calibration=(value("calibration-source") or None) if data_driven else None,
            samples=whole(value("samples"), "samples") if data_driven else PruneSpec.samples,
            seq_len=whole(value("seq-len"), "the sequence length") if data_driven else PruneSpec.seq_len,
            device=choice("device"),
            dtype=choice("dtype"),
            name=value("name") or None,
        ).validate()

    def check(self) -> None:
        scorer = SCORERS[str(self.query_one("#scorer", Select).value)]
        self.query_one("#scorer-info", Static).update(scorer.description)
        self.query_one("#allocation-info", Static).update(ALLOCATIONS[str(self.query_one("#allocation", Select).value)])
        self.query_one("#calibration").display = scorer.data_driven
        model = self.model
        info = self.query_one("#model-info", Static)
        if model is not None:
            widths = "per-layer" if model.intermediate_sizes else str(model.intermediate_size)
            info.update(f"{model.family}, {model.num_layers} layers, hidden {model.hidden_size}, "
                        f"width {widths}, {count(model.parameters)} parameters")  # fmt: skip
        else:
            info.update("")
        self.spec = None
        shown = self.query_one("#check", Static)
        try:
            spec = self.read()
            if model is None:
                name = spec.model
                raise UserError(f"no model named {name!r} in the store" if name else "choose a model to prune")
            shown.update(preview(spec, model).render())
            shown.remove_class("problem")
            self.spec = spec
        except UserError as e:
            shown.update(one_line(e))
            shown.add_class("problem")
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "launch":
            return self.spec is not None
        return super().check_action(action, parameters)

    # Launching --------------------------------------------------------------------------------

    def action_launch(self) -> None:
        if self.spec is not None:
            self.launch(self.spec)

    @work(thread=True, exclusive=True, group="launch", exit_on_error=False)
    def launch(self, spec: PruneSpec) -> None:
        job_id = jobs.submit(self.store, "prune", spec.to_dict(), data_dir=self.data_dir)
        jobs.ensure_worker(self.store)
        self.post_message(self.Queued(job_id))

    def on_prune_form_queued(self, message: Queued) -> None:
        self.notify(f"queued job {message.job_id}: prune {self.spec.model if self.spec else ''}", title="Queued")
        self.dismiss()
        navigator(self).show_jobs(message.job_id)
