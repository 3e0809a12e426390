"""Import model: the bundled SmolLM2, a model folder, a .gguf file or a hub id, stored under a
name; checked as you type (workbench.sources: the source exists and is of the kind chosen, and
neither it nor the name is in the store yet). Launch queues an import job."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on, work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Header, Input, Label, Select, Static
from textual.worker import get_current_worker

from store.db import Store
from tui.forms.fields import FieldError, Row, choice, entry, hint, row
from tui.forms.form import FormScreen, Wording
from tui.keybar import KeyBar
from tui.navigation import navigator
from workbench import jobs
from workbench.sources import BUNDLED, SOURCE_KINDS, ImportRequest, classify_as, stored_already

KINDS = [(f"{what} ({BUNDLED})" if kind == "bundled" else what, kind) for kind, what in SOURCE_KINDS.items()]
LABELS = {"folder": "Folder", "gguf": "GGUF file", "hub": "Hub id"}
PLACEHOLDERS = {
    "folder": "a folder holding config.json and the weights",
    "gguf": "path/to/model.gguf",
    "hub": "owner/name, e.g. HuggingFaceTB/SmolLM2-135M-Instruct",
}
HINTS = {
    "bundled": "SmolLM2-135M-Instruct as Q4_1, shipped with the workbench: dequantised and stored as float32",
    "folder": "a Hugging Face model folder: its weights are copied into the store as safetensors",
    "gguf": "a GGUF file: dequantised (tens of seconds) and stored as safetensors",
    "hub": "downloaded from the Hugging Face hub: needs a network the job process can reach",
}


class ImportForm(FormScreen):
    TITLE = "Import model"
    WHAT = "the import"
    WORDINGS = (Wording("a model named", "name"), Wording("cannot name a model", "name"))

    @dataclass
    class Checked(Message):
        asked: tuple[str, str, str]  # kind, source text, name: what was checked
        request: ImportRequest | None
        problem: Exception | None

    @dataclass
    class Queued(Message):
        job_id: int
        request: ImportRequest

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.request: ImportRequest | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="form"):
            yield row("Source", choice("kind", KINDS, "bundled"), hint("kind-info"))
            yield row("", entry("source", ""), id="source-row")
            yield row("Name", entry("name", "", "its name in the store (default: from the source)"))
        yield Static(id="check", markup=False)
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#kind", Select).focus()
        self._changed()

    # Checking as you type ---------------------------------------------------------------------

    def asked(self) -> tuple[str, str, str]:
        kind = str(self.query_one("#kind", Select).value)
        source = self.query_one("#source", Input).value.strip() if kind != "bundled" else ""
        return kind, source, self.query_one("#name", Input).value.strip()

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self) -> None:
        kind, _, _ = asked = self.asked()
        self.query_one("#kind-info", Static).update(HINTS[kind])
        self.query_one("#source-row").display = kind != "bundled"
        source_row = self.query_one("#source-row", Row)
        source_row.label = LABELS.get(kind, "")
        source_row.query_one(Label).update(source_row.label)
        self.query_one("#source", Input).placeholder = PLACEHOLDERS.get(kind, "")
        self.request = None  # until the check of what the form now says comes back
        self.problem = None
        self.check(asked)

    @work(thread=True, exclusive=True, group="import-check", exit_on_error=False)
    def check(self, asked: tuple[str, str, str]) -> None:
        """Off the UI thread: it looks at files and reads the store."""
        kind, text, name = asked
        request, problem = None, None
        try:
            try:
                source = classify_as(kind, text)
            except Exception as e:  # a problem with the source, whatever it is: said under it
                raise FieldError("source" if kind != "bundled" else "kind", str(e)) from None
            checked = ImportRequest(source.ref, name or None).validate()
            stored_already(self.store, checked)
            request = checked
        except Exception as e:  # a UserError says what is wrong; no input may take the app down
            problem = e
        if not get_current_worker().is_cancelled:
            self.post_message(self.Checked(asked, request, problem))

    def on_import_form_checked(self, message: Checked) -> None:
        if message.asked != self.asked():
            return  # the form has changed since: its own check is on the way
        self.request = message.request
        if message.request is not None:
            self.show_ready(f"imports {message.request.source} as {message.request.model_name!r}")
        elif message.problem is not None:
            self.show_problem(message.problem)

    # Launching --------------------------------------------------------------------------------

    def ready(self) -> bool:
        return self.request is not None

    def launch_checked(self) -> None:
        assert self.request is not None
        self.launch(self.request)

    @work(thread=True, exclusive=True, group="launch", exit_on_error=False)
    def launch(self, request: ImportRequest) -> None:
        job_id = jobs.submit(self.store, "import", request.to_dict())
        jobs.ensure_worker(self.store)
        self.post_message(self.Queued(job_id, request))

    def on_import_form_queued(self, message: Queued) -> None:
        self.notify(f"queued job {message.job_id}: import {message.request.model_name}", title="Queued")
        go = navigator(self)
        go.remember_model(message.request.model_name)
        self.dismiss()
        go.show_jobs(message.job_id)
