"""New evaluation: models and tasks picked from lists (tasks with their descriptions), limit,
few-shot, batch size and chat template, checked as you type (EvalSpec.validate)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Header, Input, Select, SelectionList, Static
from textual.widgets.selection_list import Selection

from store import queries
from store.db import Store
from store.queries import ModelInfo
from tui.forms.fields import CheckList, choice, entry, hint, number, row, whole
from tui.forms.form import FormScreen, Wording
from tui.keybar import KeyBar
from tui.navigation import navigator
from workbench import jobs
from workbench.spec import CHAT_TEMPLATE_MODES, DEVICES, DTYPES, TASKS, EvalSpec, parse_batch_size
from workbench.tabular import count

LISTED = 200  # models listed for a filter; the chosen ones always stay listed


class EvalForm(FormScreen):
    TITLE = "New evaluation"
    WHAT = "the new evaluation"
    WORDINGS = (
        Wording("model to evaluate", "models"),
        Wording("one task", "tasks"),
        Wording("the limit", "limit"),
        Wording("a limit", "limit"),
        Wording("few-shot", "fewshot"),
        Wording("batch size", "batch-size"),
    )
    TRANSIENT = frozenset({"model-filter", "models"})  # the models chosen are read from self.chosen

    @dataclass
    class Listed(Message):
        text: str
        models: list[ModelInfo]

    @dataclass
    class Chosen(Message):
        models: list[ModelInfo]

    @dataclass
    class Queued(Message):
        job_id: int

    def __init__(self, store: Store, model_ids: list[int], data_dir: Path | None = None) -> None:
        super().__init__(store)
        self.data_dir = data_dir
        self.initial = model_ids
        self.chosen: dict[int, ModelInfo] = {}  # kept across filters
        self._chosen_loaded = False
        self.listed: dict[int, ModelInfo] = {}
        self.spec: EvalSpec | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="form"):
            yield row("Models", entry("model-filter", "", "filter models: words in name, family, tags"))
            yield row("", CheckList(id="models", compact=True))
            tasks = [Selection(f"{t.name:<15} {t.description}", t.name) for t in TASKS.values()]
            yield row("Tasks", CheckList(*tasks, id="tasks", compact=True))
            yield row("Limit", entry("limit", "", "documents per task (a share when below 1); empty: all"))
            yield row("Few-shot", entry("fewshot", "", "shots for every task; empty: each task's default"))
            yield row("Batch size", entry("batch-size", "auto"))
            modes = [(m, m) for m in CHAT_TEMPLATE_MODES]
            yield row("Chat template", choice("chat-template", modes, "auto"), hint("chat-info"))
            yield row("Device", choice("device", [(d, d) for d in DEVICES], "auto"))
            yield row("Dtype", choice("dtype", [(d, d) for d in DTYPES], "auto"))
        yield Static(id="check", markup=False)
        yield KeyBar()

    def on_mount(self) -> None:
        self.load_chosen(self.initial)
        self.list_models("")
        self.query_one("#model-filter", Input).focus()
        self.check()

    # The model list: a page of matches, with the chosen ones kept ------------------------------

    @work(thread=True, exclusive=True, group="eval-chosen", exit_on_error=False)
    def load_chosen(self, model_ids: list[int]) -> None:
        with self.store.session() as session:
            self.post_message(self.Chosen([queries.get_model(session, i) for i in model_ids]))

    @work(thread=True, exclusive=True, group="eval-models", exit_on_error=False)
    def list_models(self, text: str) -> None:
        self.post_message(self.Listed(text, queries.list_models(self.store, text, limit=LISTED)))

    def on_eval_form_chosen(self, message: Chosen) -> None:
        self.chosen.update({m.id: m for m in message.models})
        self._chosen_loaded = True
        self.show_models(list(self.listed.values()))

    def values(self) -> dict[str, object]:
        chosen = self.chosen if self._chosen_loaded else dict.fromkeys(self.initial)
        return super().values() | {"models": tuple(sorted(chosen))}

    def on_eval_form_listed(self, message: Listed) -> None:
        if message.text == self.query_one("#model-filter", Input).value.strip():
            self.show_models(message.models)

    def show_models(self, matching: list[ModelInfo]) -> None:
        self.listed = {m.id: m for m in self.chosen.values()} | {m.id: m for m in matching}
        models: SelectionList[int] = self.query_one("#models", SelectionList)
        highlighted = models.highlighted
        models.clear_options()
        models.add_options(
            Selection(f"{m.name}  ({m.family}, {count(m.parameters)})", m.id, m.id in self.chosen)
            for m in self.listed.values()
        )
        if models.option_count:  # a row under the cursor from the start, as in Tasks
            models.highlighted = min(highlighted or 0, models.option_count - 1)
        self.check()

    @on(Input.Changed, "#model-filter")
    def _filter(self, event: Input.Changed) -> None:
        self.list_models(event.value.strip())

    @on(SelectionList.SelectedChanged, "#models")
    def _chosen(self, event: SelectionList.SelectedChanged[int]) -> None:
        selected = set(event.selection_list.selected)
        for model_id, model in self.listed.items():
            if model_id in selected:
                self.chosen[model_id] = model
            else:
                self.chosen.pop(model_id, None)
        self.check()

    # Checking ---------------------------------------------------------------------------------

    @on(Input.Changed)
    @on(Select.Changed)
    @on(SelectionList.SelectedChanged, "#tasks")
    def _changed(self) -> None:
        self.check()

    def read(self) -> EvalSpec:
        def value(widget_id: str) -> str:
            return self.query_one(f"#{widget_id}", Input).value.strip()

        tasks: SelectionList[str] = self.query_one("#tasks", SelectionList)
        limit, fewshot = value("limit"), value("fewshot")
        return EvalSpec(
            models=tuple(m.name for m in self.chosen.values()),
            tasks=tuple(tasks.selected),
            limit=number(limit, "the limit", "limit") if limit else None,
            fewshot=whole(fewshot, "few-shot", "fewshot") if fewshot else None,
            batch_size=parse_batch_size(value("batch-size") or "auto"),
            chat_template=str(self.query_one("#chat-template", Select).value),
            device=str(self.query_one("#device", Select).value),
            dtype=str(self.query_one("#dtype", Select).value),
        ).validate()

    def check(self) -> None:
        mode = str(self.query_one("#chat-template", Select).value)
        self.query_one("#chat-info", Static).update(CHAT_TEMPLATE_MODES[mode])
        self.spec = None
        try:
            spec = self.read()
        except Exception as e:  # a UserError says what is wrong; no input may take the app down
            self.show_problem(e)
            return
        self.spec = spec
        self.show_ready(describe(spec))

    # Launching --------------------------------------------------------------------------------

    def ready(self) -> bool:
        return self.spec is not None

    def launch_checked(self) -> None:
        assert self.spec is not None
        self.launch(self.spec)

    @work(thread=True, exclusive=True, group="launch", exit_on_error=False)
    def launch(self, spec: EvalSpec) -> None:
        job_id = jobs.submit(self.store, "eval", spec.to_dict(), data_dir=self.data_dir)
        jobs.ensure_worker(self.store)
        self.post_message(self.Queued(job_id))

    def on_eval_form_queued(self, message: Queued) -> None:
        self.notify(f"queued job {message.job_id}: evaluate {len(self.chosen)} models", title="Queued")
        go = navigator(self)
        go.remember_model(next(iter(self.chosen.values())).name)
        self.dismiss()
        go.show_jobs(message.job_id)


def describe(spec: EvalSpec) -> str:
    shots = "each task's default" if spec.fewshot is None else f"{spec.fewshot} for every task"
    limit = "all documents" if spec.limit is None else (
        f"{spec.limit:g} of each task's documents" if spec.limit < 1 else f"{spec.limit:g} documents per task"
    )  # fmt: skip
    return (
        f"{len(spec.models)} model{'s' if len(spec.models) > 1 else ''} × {len(spec.tasks)} "
        f"task{'s' if len(spec.tasks) > 1 else ''}: {', '.join(spec.tasks)}\n{limit} · few-shot: {shots} · "
        f"batch {spec.batch_size} · chat template {spec.chat_template}"
    )
