"""Import model: the bundled SmolLM2, a model folder, a .gguf file or a hub id, stored under a
name; checked as you type (workbench.sources: the source exists and is of the kind chosen, and
neither it nor the name is in the store yet). Launch queues an import job."""

from __future__ import annotations

from dataclasses import dataclass

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Header, Input, Label, Select, Static
from textual.worker import get_current_worker

from store.db import Store
from tui.failures import one_line
from tui.forms.fields import choice, entry, hint, row
from tui.keybar import KeyBar
from tui.navigation import navigator
from tui.screens.base import StoreScreen
from workbench import jobs
from workbench.errors import UserError
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


class ImportForm(StoreScreen):
    TITLE = "Import model"
    BINDINGS = [Binding("ctrl+s", "launch", "Launch", id="form.launch")]

    @dataclass
    class Checked(Message):
        asked: tuple[str, str, str]  # kind, source text, name: what was checked
        request: ImportRequest | None
        problem: str

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
        yield Static(id="check")
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
        self.query_one("#source-row Label", Label).update(LABELS.get(kind, ""))
        self.query_one("#source", Input).placeholder = PLACEHOLDERS.get(kind, "")
        self.request = None  # until the check of what the form now says comes back
        self.refresh_bindings()
        self.check(asked)

    @work(thread=True, exclusive=True, group="import-check", exit_on_error=False)
    def check(self, asked: tuple[str, str, str]) -> None:
        """Off the UI thread: it looks at files and reads the store."""
        kind, text, name = asked
        request, problem = None, ""
        try:
            checked = ImportRequest(classify_as(kind, text).ref, name or None).validate()
            stored_already(self.store, checked)
            request = checked
        except UserError as e:
            problem = one_line(e)
        if not get_current_worker().is_cancelled:
            self.post_message(self.Checked(asked, request, problem))

    def on_import_form_checked(self, message: Checked) -> None:
        if message.asked != self.asked():
            return  # the form has changed since: its own check is on the way
        shown = self.query_one("#check", Static)
        self.request = message.request
        if message.request is not None:
            shown.update(f"imports {message.request.source} as {message.request.model_name!r}")
            shown.remove_class("problem")
        else:
            shown.update(message.problem)
            shown.add_class("problem")
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "launch":
            return self.request is not None
        return super().check_action(action, parameters)

    # Launching --------------------------------------------------------------------------------

    def action_launch(self) -> None:
        if self.request is not None:
            self.launch(self.request)

    @work(thread=True, exclusive=True, group="launch", exit_on_error=False)
    def launch(self, request: ImportRequest) -> None:
        job_id = jobs.submit(self.store, "import", request.to_dict())
        jobs.ensure_worker(self.store)
        self.post_message(self.Queued(job_id, request))

    def on_import_form_queued(self, message: Queued) -> None:
        self.notify(f"queued job {message.job_id}: import {message.request.model_name}", title="Queued")
        self.dismiss()
        navigator(self).show_jobs(message.job_id)
