"""New pruning run: the form checks as you type (PruneSpec.validate, planned_widths, the calibration
source read as the job would read it) and shows the resulting widths, parameters and expansion,
and what a repair adds, before anything is queued."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Header, Input, Select, Static
from textual.worker import get_current_worker

from store import queries
from store.db import Store
from store.queries import ModelInfo
from tui.failures import one_line
from tui.forms.fields import COMPLETES, FieldError, ModelNames, choice, completion, entry, hint, number, row, whole
from tui.forms.files import FilePicker
from tui.forms.form import FormScreen, Wording
from tui.forms.sources import PLACEHOLDERS, SOURCES, TEXT_FILES, text_source
from tui.keybar import KeyBar
from tui.navigation import navigator
from workbench import jobs, texts
from workbench.spec import ALLOCATIONS, DEVICES, DTYPES, REPAIRS, SCORERS, PruneSpec, planned_widths
from workbench.tabular import count

TARGETS = [("percent of neurons removed", "percent"), ("expansion ratio (width / hidden)", "expansion")]
DEFAULT_PERCENT = "50"
NO_REPAIR = "none"
REPAIR_CHOICES = [(NO_REPAIR, NO_REPAIR), *((mode, mode) for mode in REPAIRS)]


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


def repair_said(spec: PruneSpec) -> Text:
    """What a repair adds to the run, for the preview."""
    said = Text(f"\nrepair {spec.repair} (damping {spec.repair_damping:g}): kept down_proj columns refit on the "
                "calibration text")
    if not spec.data_driven:
        said.append(f", read for the repair alone ({spec.scorer} is static)")
    return said


class PruneForm(FormScreen):
    TITLE = "New pruning run"
    WHAT = "the new pruning run"
    WORDINGS = (
        Wording("--percent", "target", "the percent removed"),
        Wording("--expansion", "target", "the expansion ratio"),
        Wording("--divisor", "divisor", "the divisor"),
        Wording("impossible rounding", "divisor"),
        Wording("--layers", "layers", "layers"),
        Wording("--samples", "samples", "samples"),
        Wording("--seq-len", "seq-len", "the sequence length"),
        Wording("--repair-damping", "repair-damping", "the damping"),
        Wording("cannot name a model", "name"),
    )

    @dataclass
    class Found(Message):
        name: str
        model: ModelInfo | None
        completion: str | None  # the stored name that completes it

    @dataclass
    class SourceChecked(Message):
        source: str
        said: str  # what it holds, when it can be read
        problem: str  # why not, else ""

    @dataclass
    class NameChecked(Message):
        name: str
        taken: bool  # a model has it already

    @dataclass
    class Queued(Message):
        job_id: int

    def __init__(self, store: Store, model: str = "", data_dir: Path | None = None) -> None:
        super().__init__(store)
        self.data_dir = data_dir
        self.model_name = model
        self.model: ModelInfo | None = None
        self.completion: str | None = None
        self.spec: PruneSpec | None = None
        self.sources: dict[str, tuple[str, str]] = {}  # source -> (what it holds, problem) once checked
        self.taken: dict[str, bool] = {}  # result names looked up: whether a model has it

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="form"):
            model = entry("model", self.model_name, f"a stored model's name ({COMPLETES})", ModelNames(self.store))
            yield row("Model", model, hint("model-info"))
            scorers = [(f"{s.name} ({'data' if s.data_driven else 'static'})", s.name) for s in SCORERS.values()]
            yield row("Scorer", choice("scorer", scorers, "ppm"), hint("scorer-info"))
            yield row("Target", choice("target-kind", TARGETS, "percent"), entry("target", DEFAULT_PERCENT),
                      hint("target-info"))  # fmt: skip
            yield row("Divisor", entry("divisor", "1", "round kept widths down to a multiple of this"))
            yield row("Allocation", choice("allocation", [(a, a) for a in ALLOCATIONS], "uniform"),
                      hint("allocation-info"))  # fmt: skip
            yield row("Layers", entry("layers", "all", "all, or e.g. 0-9,20"))
            yield row("Repair", choice("repair", REPAIR_CHOICES, NO_REPAIR), hint("repair-info"))
            yield row("Damping", entry("repair-damping", f"{PruneSpec.repair_damping:g}"),
                      hint("damping-info", "advanced: λ = this × the mean diagonal of G[K,K]; 0 or more"),
                      id="damping-row")  # fmt: skip
            with Vertical(id="calibration"):
                yield row("Calibration", choice("calibration-kind", SOURCES, "wikitext2"))
                yield row("", Horizontal(entry("calibration-source", ""), Button("Browse…", id="browse", compact=True),
                                         classes="inline"), id="source-row")  # fmt: skip
                yield row("Samples", entry("samples", str(PruneSpec.samples)))
                yield row("Seq. length", entry("seq-len", str(PruneSpec.seq_len)))
            yield row("Device", choice("device", [(d, d) for d in DEVICES], "auto"))
            yield row("Dtype", choice("dtype", [(d, d) for d in DTYPES], "auto"))
            yield row("Name", entry("name", "", "the pruned model's name (made up when empty)"))
        yield Static(id="check", markup=False)
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
        if event.control.id == "target-kind":
            self._reset_target(str(event.value))
        self.check()

    def _reset_target(self, kind: str) -> None:
        """A value of one kind means nothing in the other: start from a sensible one."""
        target = self.query_one("#target", Input)
        if kind == "percent":
            target.value = DEFAULT_PERCENT
        else:
            current = self.model.expansion if self.model is not None else 2.67
            target.value = f"{round(0.75 * current, 2):g}"  # a quarter narrower

    @work(thread=True, exclusive=True, group="find-model", exit_on_error=False)
    def find_model(self, name: str) -> None:
        found = queries.find_model(self.store, name) if name else None
        self.post_message(self.Found(name, found, completion(self.store, name) if found is None else None))

    def on_prune_form_found(self, message: Found) -> None:
        if message.name == self.query_one("#model", Input).value.strip():
            self.model, self.completion = message.model, message.completion
            self.check()

    @work(thread=True, exclusive=True, group="check-source", exit_on_error=False)
    def check_source(self, source: str) -> None:
        """Off the UI thread: it reads the text as the job would."""
        said, problem = "", ""
        try:
            said = texts.check_source(source, self.data_dir)
        except Exception as e:  # a file the job could not read either: said in one line
            problem = one_line(e)
        if not get_current_worker().is_cancelled:
            self.post_message(self.SourceChecked(source, said, problem))

    def on_prune_form_source_checked(self, message: SourceChecked) -> None:
        self.sources[message.source] = (message.said, message.problem)
        self.check()

    @work(thread=True, exclusive=True, group="check-name", exit_on_error=False)
    def check_name(self, name: str) -> None:
        self.post_message(self.NameChecked(name, queries.find_model(self.store, name) is not None))

    def on_prune_form_name_checked(self, message: NameChecked) -> None:
        self.taken[message.name] = message.taken
        self.check()

    @on(Button.Pressed, "#browse")
    def _browse(self) -> None:
        def chosen(path: Path | None) -> None:
            if path is not None:
                self.query_one("#calibration-source", Input).value = str(path)

        self.app.push_screen(FilePicker(Path.cwd(), TEXT_FILES, "a text to calibrate on"), chosen)

    def read(self) -> PruneSpec:
        """The spec the form holds, validated; UserError says what is wrong."""

        def value(widget_id: str) -> str:
            return self.query_one(f"#{widget_id}", Input).value.strip()

        def choice(widget_id: str) -> str:
            return str(self.query_one(f"#{widget_id}", Select).value)

        scorer = choice("scorer")
        repair = None if choice("repair") == NO_REPAIR else choice("repair")
        calibrated = SCORERS[scorer].data_driven or repair is not None  # a repair reads the text too
        kind = choice("target-kind")
        what = "the percent removed" if kind == "percent" else "the expansion ratio"
        target = number(value("target"), what, "target")
        calibration = None
        if calibrated:
            calibration = text_source(choice("calibration-kind"), value("calibration-source"), "calibration-source",
                                      "to calibrate on")  # fmt: skip
        return PruneSpec(
            model=value("model"),
            scorer=scorer,
            percent=target if kind == "percent" else None,
            expansion=target if kind == "expansion" else None,
            divisor=whole(value("divisor"), "the divisor", "divisor"),
            allocation=choice("allocation"),
            layers=value("layers") or "all",
            calibration=calibration,
            samples=whole(value("samples"), "samples", "samples") if calibrated else PruneSpec.samples,
            seq_len=whole(value("seq-len"), "the sequence length", "seq-len") if calibrated else PruneSpec.seq_len,
            device=choice("device"),
            dtype=choice("dtype"),
            name=value("name") or None,
            repair=repair,
            repair_damping=number(value("repair-damping"), "the damping", "repair-damping") if repair else
            PruneSpec.repair_damping,
        ).validate()

    def check(self) -> None:
        scorer = SCORERS[str(self.query_one("#scorer", Select).value)]
        self.query_one("#scorer-info", Static).update(scorer.description)
        self.query_one("#allocation-info", Static).update(ALLOCATIONS[str(self.query_one("#allocation", Select).value)])
        repair = str(self.query_one("#repair", Select).value)
        self.query_one("#repair-info", Static).update(
            "the cut as it is" if repair == NO_REPAIR else f"{REPAIRS[repair]}; reads calibration text, also with a "
            "static scorer"
        )
        self.query_one("#damping-row").display = repair != NO_REPAIR
        self.query_one("#calibration").display = scorer.data_driven or repair != NO_REPAIR
        kind = str(self.query_one("#calibration-kind", Select).value)
        self.query_one("#source-row").display = kind not in texts.BUILTIN
        self.query_one("#browse").display = kind == "file"
        self.query_one("#calibration-source", Input).placeholder = PLACEHOLDERS.get(kind, "")
        model = self.model
        self._describe(model)
        self.spec = None
        try:
            spec = self.read()
            if model is None:
                raise FieldError("model", self._missing(spec.model))
            shown = preview(spec, model).render()
            if spec.repair is not None:
                shown.append_text(repair_said(spec))
        except Exception as e:  # a UserError says what is wrong; no input may take the app down
            self.show_problem(e)
            return
        if spec.name is not None and self.taken.get(spec.name) is not False:
            if self.taken.get(spec.name):
                self.show_problem(FieldError("name", f"the store already has a model named {spec.name!r}: choose "
                                             "another name"))  # fmt: skip
            else:
                self.check_name(spec.name)  # ready once looked up
                self.show_ready(shown)
            return
        source = spec.calibration_source
        if source is not None:
            said, problem = self.sources.get(source, ("", ""))
            if problem:
                field = "calibration-kind" if source in texts.BUILTIN else "calibration-source"
                self.show_problem(FieldError(field, problem))
                return
            if not said:
                self.check_source(source)  # ready once it has been read
                shown.append(f"\ncalibration: {source}: checking…", "dim")
                self.show_ready(shown)
                return
            shown.append(f"\ncalibration: {source}: {said}", "dim")
        self.spec = spec
        self.show_ready(shown)

    def _describe(self, model: ModelInfo | None) -> None:
        info = self.query_one("#model-info", Static)
        if model is not None:
            widths = "per-layer" if model.intermediate_sizes else str(model.intermediate_size)
            info.update(f"{model.family}, {model.num_layers} layers, hidden {model.hidden_size}, "
                        f"width {widths}, {count(model.parameters)} parameters")  # fmt: skip
        else:
            info.update("")
        kind = str(self.query_one("#target-kind", Select).value)
        target = self.query_one("#target-info", Static)
        if kind == "percent":
            target.update("the share of each pruned layer's neurons removed, at least 0 and below 100")
        else:
            now = f"; now {model.expansion:.2f}" if model is not None else ""
            target.update(f"kept width over the hidden size, below the model's own{now}")

    def _missing(self, name: str) -> str:
        if not name:
            return f"choose a model to prune: type its name ({COMPLETES} it)"
        if self.completion is not None:
            return f"no model named {name!r} in the store: {COMPLETES} it to {self.completion!r}"
        return f"no model named {name!r} in the store"

    # Launching --------------------------------------------------------------------------------

    def ready(self) -> bool:
        return self.spec is not None

    def launch_checked(self) -> None:
        assert self.spec is not None
        self.launch(self.spec)

    @work(thread=True, exclusive=True, group="launch", exit_on_error=False)
    def launch(self, spec: PruneSpec) -> None:
        job_id = jobs.submit(self.store, "prune", spec.to_dict(), data_dir=self.data_dir)
        jobs.ensure_worker(self.store)
        self.post_message(self.Queued(job_id))

    def on_prune_form_queued(self, message: Queued) -> None:
        model = self.spec.model if self.spec else ""
        self.notify(f"queued job {message.job_id}: prune {model}", title="Queued")
        go = navigator(self)
        go.remember_model(model)
        self.dismiss()
        go.show_jobs(message.job_id)
