"""Heal a model: distil a teacher (the model's parent unless another is named) back into it on a
text source, with every option of `workbench heal`. Checked as you type, off the UI thread, with the
checks the engine makes before it loads anything (HealSpec.validate and heal_request.check_models,
which `workbench heal` runs first too: a model and teacher in the store, a free name) and the text
read as the job would read it. What needs the models' files (their tokenizers, the fit on the
device, enough tokens in the text) the job checks first, before it loads a weight. Launch queues
a heal job."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Header, Input, Select, Static
from textual.worker import get_current_worker

from store import queries
from store.db import Store
from tui.forms.fields import COMPLETES, FieldError, ModelNames, choice, entry, hint, number, row, whole
from tui.forms.files import FilePicker
from tui.forms.form import FormScreen, Wording
from tui.forms.sources import PLACEHOLDERS, SOURCES, TEXT_FILES, text_source
from tui.keybar import KeyBar
from tui.navigation import navigator
from workbench import jobs, texts
from workbench.heal_request import HealModels, check_models
from workbench.spec import DEVICES, DTYPES, HEAL_TRAIN, HealSpec
from workbench.tabular import count

DEFAULT_TOKENS = 32768
DEFAULT_RANK = 16
TRAIN = [("all", "all"), ("mlp", "mlp"), ("lora", "lora")]


@dataclass(frozen=True)
class HealPlan:
    """A heal request checked, with what it names."""

    spec: HealSpec
    models: HealModels
    text: str  # what the source holds, in a few words
    name: str  # the healed model's name (made up when the form leaves it empty)

    def render(self) -> str:
        s, student, teacher = self.spec, self.models.student, self.models.teacher
        train = "every weight" if s.train == "all" else "the MLP weights" if s.train == "mlp" else \
            f"rank-{s.lora_rank} LoRA adapters"  # fmt: skip
        return (
            f"{teacher.name} teaches {student.name} ({count(student.parameters)} parameters), saved as {self.name}\n"
            f"{s.tokens:,} tokens in {s.steps:,} steps of {s.batch_size} × {s.seq_len}; trains {train}, "
            f"lr {s.lr:g}, temperature {s.temperature:g}, loss {queries.loss_name(s.ce_weight)}\n"
            f"{s.data}: {self.text}"
        )


class HealForm(FormScreen):
    TITLE = "Heal a model"
    WHAT = "the heal"
    WORDINGS = (
        Wording("heal takes a model", "model"),
        Wording("name a --teacher", "teacher", "name a teacher"),
        Wording("the teacher", "teacher"),
        Wording("--tokens", "tokens", "the tokens"),
        Wording("--seq-len", "seq-len", "the sequence length"),
        Wording("--batch-size", "batch-size", "the batch size"),
        Wording("--lr", "lr", "the learning rate"),
        Wording("--temperature", "temperature", "the temperature"),
        Wording("--ce-weight", "ce-weight", "the CE weight"),
        Wording("--train", "lora-rank", "what trains"),
        Wording("--warmup", "warmup", "the warmup"),
        Wording("--checkpoint-every", "checkpoint-every", "the checkpoint interval"),
        Wording("choose another --name", "name", "choose another name"),
        Wording("cannot name a model", "name"),
    )

    @dataclass
    class Checked(Message):
        asked: dict[str, object]  # the form's values that were checked
        plan: HealPlan | None
        problem: Exception | None

    @dataclass
    class Queued(Message):
        job_id: int
        plan: HealPlan

    def __init__(self, store: Store, model: str = "", data_dir: Path | None = None) -> None:
        super().__init__(store)
        self.data_dir = data_dir
        self.model_name = model
        self.plan: HealPlan | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="form"):
            model = entry("model", self.model_name, f"the model to heal ({COMPLETES})", ModelNames(self.store))
            yield row("Model", model, hint("model-info"))
            teacher = entry("teacher", "", f"the model's parent ({COMPLETES} another)", ModelNames(self.store))
            yield row("Teacher", teacher, hint("teacher-info"))
            yield row("Data", choice("data-kind", SOURCES, "wikitext2"))
            yield row("", Horizontal(entry("data-source", ""), Button("Browse…", id="browse", compact=True),
                                     classes="inline"), id="source-row")  # fmt: skip
            yield row("Tokens", entry("tokens", str(DEFAULT_TOKENS)), hint("tokens-info"))
            yield row("Seq. length", entry("seq-len", str(HealSpec.seq_len)))
            yield row("Batch size", entry("batch-size", str(HealSpec.batch_size), "windows per step"))
            yield row("Learning rate", entry("lr", f"{HealSpec.lr:g}", "the peak: warmup, then cosine decay to 0"))
            yield row("Temperature", entry("temperature", f"{HealSpec.temperature:g}"))
            yield row("CE weight", entry("ce-weight", f"{HealSpec.ce_weight:g}"),
                      hint("ce-info", "share of the loss that is cross-entropy on the text (the rest: KL)"))
            yield row("Train", choice("train", TRAIN, HealSpec.train), hint("train-info"))
            yield row("LoRA rank", entry("lora-rank", str(DEFAULT_RANK)), id="rank-row")
            with Vertical(id="advanced"):
                yield row("Warmup", entry("warmup", f"{HealSpec.warmup:g}"),
                          hint("warmup-info", "advanced: share of the steps warming the learning rate up"))
                yield row("Checkpoints", entry("checkpoint-every", f"{HealSpec.checkpoint_every_s:g}"),
                          hint("checkpoint-info", "advanced: seconds between checkpoints a retry resumes from"))
                yield row("Seed", entry("seed", str(HealSpec.seed)), hint("seed-info", "advanced: of the data order"))
            yield row("Device", choice("device", [(d, d) for d in DEVICES], "auto"))
            yield row("Dtype", choice("dtype", [(d, d) for d in DTYPES], "auto"),
                      hint("dtype-info", "of the forward passes; the result keeps the model's own"))
            yield row("Name", entry("name", "", "the healed model's name (default: MODEL-healed)"))
        yield Static(id="check", markup=False)
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#model" if not self.model_name else "#tokens", Input).focus()
        self._changed()

    # Checking as you type ---------------------------------------------------------------------

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self) -> None:
        kind = str(self.query_one("#data-kind", Select).value)
        self.query_one("#source-row").display = kind not in texts.BUILTIN
        self.query_one("#browse").display = kind == "file"
        self.query_one("#data-source", Input).placeholder = PLACEHOLDERS.get(kind, "")
        train = str(self.query_one("#train", Select).value)
        self.query_one("#rank-row").display = train == "lora"
        self.query_one("#train-info", Static).update(HEAL_TRAIN["lora:R" if train == "lora" else train])
        self.plan = None  # until the check of what the form now says comes back
        self.problem = None
        self.check(self.values())

    @work(thread=True, exclusive=True, group="heal-check", exit_on_error=False)
    def check(self, asked: dict[str, object]) -> None:
        """Off the UI thread: it reads the store and the text."""
        plan, problem = None, None
        try:
            spec = self.read(asked)
            models = check_models(spec, self.store)
            try:
                text = texts.check_source(spec.data, self.data_dir, "to learn from")
            except Exception as e:  # a text the job could not read either: said under its field
                field = "data-kind" if spec.data in texts.BUILTIN else "data-source"
                raise FieldError(field, str(e)) from None
            name = spec.name or queries.unique_model_name(self.store, f"{models.student.name}-healed")
            plan = HealPlan(spec, models, text, name)
        except Exception as e:  # a UserError says what is wrong; no input may take the app down
            problem = e
        if not get_current_worker().is_cancelled:
            self.post_message(self.Checked(asked, plan, problem))

    def read(self, asked: dict[str, object]) -> HealSpec:
        """The request the form's values (as `values()` gives them) make; FieldError for a field
        that says no number, UserError (HealSpec.validate's) for one out of range."""

        def value(field: str) -> str:
            return str(asked[field]).strip()

        model = value("model")
        if not model:
            raise FieldError("model", f"choose a model to heal: type its name ({COMPLETES} it)")
        data = text_source(value("data-kind"), value("data-source"), "data-source", "to learn from")
        train = value("train")
        if train == "lora":
            train = f"lora:{whole(value('lora-rank'), 'the LoRA rank', 'lora-rank')}"
        return HealSpec(
            model=model,
            data=data,
            tokens=whole(value("tokens"), "the tokens", "tokens"),
            teacher=value("teacher") or None,
            seq_len=whole(value("seq-len"), "the sequence length", "seq-len"),
            batch_size=whole(value("batch-size"), "the batch size", "batch-size"),
            lr=number(value("lr"), "the learning rate", "lr"),
            temperature=number(value("temperature"), "the temperature", "temperature"),
            ce_weight=number(value("ce-weight"), "the CE weight", "ce-weight"),
            train=train,
            warmup=number(value("warmup"), "the warmup", "warmup"),
            device=value("device"),
            dtype=value("dtype"),
            name=value("name") or None,
            checkpoint_every_s=number(value("checkpoint-every"), "the checkpoint interval", "checkpoint-every"),
            seed=whole(value("seed"), "the seed", "seed"),
        ).validate()

    def on_heal_form_checked(self, message: Checked) -> None:
        if message.asked != self.values():
            return  # the form has changed since: its own check is on the way
        self.plan = message.plan
        self._describe(message.plan)
        if message.plan is not None:
            self.show_ready(message.plan.render())
        elif message.problem is not None:
            self.show_problem(message.problem)

    def _describe(self, plan: HealPlan | None) -> None:
        model, teacher = self.query_one("#model-info", Static), self.query_one("#teacher-info", Static)
        tokens = self.query_one("#tokens-info", Static)
        model.display = teacher.display = plan is not None  # (no line left empty at 80x24)
        if plan is None:
            tokens.update("distillation tokens; past the text's end it starts over")
            return
        m = plan.models.student
        model.update(f"{m.family}, {m.num_layers} layers, width {m.width_text}, {count(m.parameters)} parameters")
        default = plan.spec.teacher is None
        teacher.update(f"{'its parent' if default else 'teacher'}: {plan.models.teacher.name}, "
                       f"{count(plan.models.teacher.parameters)} parameters")  # fmt: skip
        tokens.update(f"{plan.spec.steps:,} steps; past the text's end it starts over")

    @on(Button.Pressed, "#browse")
    def _browse(self) -> None:
        def chosen(path: Path | None) -> None:
            if path is not None:
                self.query_one("#data-source", Input).value = str(path)

        self.app.push_screen(FilePicker(Path.cwd(), TEXT_FILES, "a text to learn from"), chosen)

    # Launching --------------------------------------------------------------------------------

    def ready(self) -> bool:
        return self.plan is not None

    def launch_checked(self) -> None:
        assert self.plan is not None
        self.launch(self.plan)

    @work(thread=True, exclusive=True, group="launch", exit_on_error=False)
    def launch(self, plan: HealPlan) -> None:
        job_id = jobs.submit(self.store, "heal", plan.spec.to_dict(), data_dir=self.data_dir)
        jobs.ensure_worker(self.store)
        self.post_message(self.Queued(job_id, plan))

    def on_heal_form_queued(self, message: Queued) -> None:
        student = message.plan.models.student.name
        self.notify(f"queued job {message.job_id}: heal {student}", title="Queued")
        go = navigator(self)
        go.remember_model(student)
        self.dismiss()
        go.show_jobs(message.job_id)
