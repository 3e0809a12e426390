"""The forms: checked as you type, with a preview of what the launch would make."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Select, SelectionList, Static
from tui_helpers import anyio_backend, app_on, filled_fixture, settle  # noqa: F401  (fixtures)

from tui.forms.evaluate import EvalForm
from tui.forms.import_model import ImportForm
from tui.forms.prune import PruneForm
from tui.screens.jobs import JobsScreen
from workbench import jobs

pytestmark = pytest.mark.anyio


def check_line(app) -> str:
    return str(app.screen.query_one("#check", Static).render())


async def type_into(pilot, widget_id: str, text: str) -> None:
    field = pilot.app.screen.query_one(f"#{widget_id}", Input)
    field.value = text
    await settle(pilot)


async def test_prune_form_checks_as_you_type_and_previews_widths_parameters_expansion(store, filled):
    app = app_on(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("p")  # from the Models screen: the model under the cursor is filled in
        await settle(pilot)
        form = app.screen
        assert isinstance(form, PruneForm) and form.query_one("#model", Input).value == "llama-base"
        assert "layers 0-2: 96 → 48" in check_line(app)
        assert "300.0k → 286.2k (4.6% fewer) · expansion 3.00 → 1.50" in check_line(app)
        assert form.spec is not None and form.spec.percent == 50.0

        await pilot.press(*"505")  # the focused field starts selected: typing replaces it
        await settle(pilot)
        assert check_line(app) == "--percent must be at least 0 and below 100, got 505"
        assert form.spec is None
        await type_into(pilot, "target", "abc")
        assert check_line(app) == "the target must be a number, got 'abc'"

        form.query_one("#target-kind", Select).value = "expansion"
        await type_into(pilot, "target", "2")
        assert "layers 0-2: 96 → 64" in check_line(app)
        await type_into(pilot, "target", "4")
        assert "does not shrink the model: its expansion is already 3" in check_line(app)
        await type_into(pilot, "target", "1.5")
        await type_into(pilot, "divisor", "32")
        assert "layers 0-2: 96 → 32" in check_line(app)  # 48 rounded down to a multiple of 32
        await type_into(pilot, "layers", "0-1")
        assert "layers 0-1: 96 → 32  layer 2: 96 → 96" in check_line(app)
        await type_into(pilot, "layers", "0-7")
        assert "names layer 7, but the model has 3" in check_line(app)
        await type_into(pilot, "layers", "all")
        await type_into(pilot, "model", "nosuch")
        assert check_line(app) == "no model named 'nosuch' in the store"


async def test_calibration_fields_show_only_for_data_driven_scorers(store, filled):
    app = app_on(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.open_prune_form("llama-base")
        await settle(pilot)
        form = app.screen
        assert not form.query_one("#calibration").display
        assert "peak-to-peak magnitude" in str(form.query_one("#scorer-info", Static).render())
        form.query_one("#scorer", Select).value = "wanda"
        await settle(pilot)
        assert form.query_one("#calibration").display
        await type_into(pilot, "samples", "0")
        assert check_line(app) == "--samples must be at least 1, got 0"
        await type_into(pilot, "samples", "8")
        assert form.spec is not None and (form.spec.calibration, form.spec.samples) == ("wikitext2", 8)
        form.query_one("#allocation", Select).value = "global"
        await settle(pilot)
        assert "global allocation: widths differ per layer" in check_line(app)


async def test_eval_form_picks_models_and_tasks_checks_and_queues_a_job(store, filled, monkeypatch):
    monkeypatch.setattr(jobs, "ensure_worker", lambda store: True)  # queued only: no job process here
    app = app_on(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("down", "space", "space", "e")  # two models marked (the cursor moves on), then evaluate
        await settle(pilot)
        form = app.screen
        assert isinstance(form, EvalForm)
        assert sorted(m.name for m in form.chosen.values()) == ["llama-ppm-50", "llama-wanda-25"]
        assert check_line(app) == "name at least one task, e.g. gsm8k, ifeval, truthfulqa_mc1"
        await type_into(pilot, "model-filter", "qwen")  # the chosen stay listed while filtering
        models = form.query_one("#models", SelectionList)
        assert models.option_count == 3
        models.select(filled["qwen"])
        await settle(pilot)
        assert len(form.chosen) == 3
        tasks = form.query_one("#tasks", SelectionList)
        tasks.select("arc_easy")
        tasks.select("piqa")
        await settle(pilot)
        assert check_line(app).startswith("3 models × 2 tasks: arc_easy, piqa")
        await type_into(pilot, "limit", "2.5")
        assert check_line(app) == "a limit above 1 counts documents: a whole number, got 2.5"
        await type_into(pilot, "limit", "100")
        await type_into(pilot, "batch-size", "big")
        assert check_line(app) == "the batch size must be auto or a positive integer, got 'big'"
        await type_into(pilot, "batch-size", "8")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, JobsScreen)
        job = jobs.list_jobs(store)[0]
        assert (job.kind, job.request["tasks"], job.request["limit"]) == ("eval", ["arc_easy", "piqa"], 100.0)
        assert sorted(job.request["models"]) == ["llama-ppm-50", "llama-wanda-25", "qwen-base"]


async def test_import_form_checks_the_source_of_the_kind_chosen_and_the_name(store, filled, tmp_path):
    app = app_on(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("i")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, ImportForm)
        assert check_line(app) == "imports smollm2 as 'smollm2'"  # the bundled model, by default
        assert form.request is not None and not form.query_one("#source-row").display

        async def choose(kind: str) -> None:
            form.query_one("#kind", Select).value = kind
            await settle(pilot)

        await choose("folder")
        assert check_line(app) == "give a model folder" and form.request is None
        await type_into(pilot, "source", str(tmp_path / "nothing"))
        assert check_line(app) == f"no folder {tmp_path / 'nothing'}"
        await type_into(pilot, "source", str(tmp_path))
        assert check_line(app) == f"{tmp_path} is not a Hugging Face model folder (no config.json)"
        (tmp_path / "config.json").write_text("{}")
        await type_into(pilot, "source", str(tmp_path) + "/")
        assert check_line(app) == f"imports {tmp_path} as '{tmp_path.name}'"
        await type_into(pilot, "name", "llama-base")
        assert check_line(app) == "the store already has a model named 'llama-base': choose another name"
        assert form.request is None
        await type_into(pilot, "name", "mine")

        await choose("gguf")
        assert check_line(app) == f"{tmp_path} is not a .gguf file"
        await type_into(pilot, "source", str(tmp_path / "model.gguf"))
        assert check_line(app) == f"GGUF file {tmp_path / 'model.gguf'} does not exist"

        await choose("hub")
        await type_into(pilot, "source", "SmolLM2")
        assert check_line(app) == "a hub id is owner/name, got 'SmolLM2'"
        await type_into(pilot, "source", str(tmp_path))
        assert check_line(app) == f"{tmp_path} is a model folder, not a hub id"
        await type_into(pilot, "source", "HuggingFaceTB/SmolLM2-135M-Instruct")
        assert check_line(app) == "imports HuggingFaceTB/SmolLM2-135M-Instruct as 'mine'"
        assert form.request is not None and form.request.to_dict() == {
            "source": "HuggingFaceTB/SmolLM2-135M-Instruct", "name": "mine", "if_missing": False}  # fmt: skip
