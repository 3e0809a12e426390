"""The forms: checked as you type, with a preview of what the launch would make; a problem under its
field in the form's words; letters that stay in the form; leaving or quitting with input asks."""

from __future__ import annotations

import time

import pytest
from textual.widgets import Button, Input, Select, SelectionList, Static
from tui_helpers import anyio_backend, app_on, filled_fixture, notices, screen_text, settle, wait_for  # noqa: F401  (fixtures)

from store import jobs as job_rows
from tui.confirm import Confirm
from tui.forms.evaluate import EvalForm
from tui.forms.files import FilePicker
from tui.forms.form import FormScreen
from tui.forms.heal import HealForm
from tui.forms.import_model import ImportForm
from tui.forms.prune import PruneForm
from tui.screens.jobs import JobsScreen
from tui.screens.models import ModelsScreen
from tui.screens.runs import RunsScreen
from workbench import jobs

pytestmark = pytest.mark.anyio


def check_line(app) -> str:
    return str(app.screen.query_one("#check", Static).render())


def under(form: FormScreen, field: str) -> str:
    """The problem shown under a field ("" when none shows)."""
    line = form.error_line(field)
    return str(line.render()) if line is not None and line.display else ""


async def type_into(pilot, widget_id: str, text: str) -> None:
    field = pilot.app.screen.query_one(f"#{widget_id}", Input)
    field.value = text
    await settle(pilot)


async def choose(pilot, widget_id: str, value: str) -> None:
    pilot.app.screen.query_one(f"#{widget_id}", Select).value = value
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

        # A problem shows under its field in the form's words (the engine's says --percent), and on
        # the check line after the field's label.
        await pilot.press(*"505")  # the focused field starts selected: typing replaces it
        await settle(pilot)
        assert under(form, "target") == "the percent removed must be at least 0 and below 100, got 505"
        assert check_line(app) == "Target: the percent removed must be at least 0 and below 100, got 505"
        assert form.spec is None and not under(form, "divisor")
        await type_into(pilot, "target", "abc")
        assert under(form, "target") == "the percent removed must be a number, got 'abc'"
        await type_into(pilot, "target", "nan")
        assert under(form, "target") == "the percent removed must be a finite number, got 'nan'"
        await type_into(pilot, "target", "")
        assert under(form, "target") == "give the percent removed"

        # Another kind of target starts from a sensible value of its own, not the old number.
        await choose(pilot, "target-kind", "expansion")
        assert form.query_one("#target", Input).value == "2.25"  # a quarter below the model's 3.0
        assert "layers 0-2: 96 → 72" in check_line(app) and form.spec is not None
        await type_into(pilot, "target", "4")
        assert under(form, "target") == "the expansion ratio 4 does not shrink the model: its expansion is already 3"
        await type_into(pilot, "target", "1.5")
        await type_into(pilot, "divisor", "32")
        assert "layers 0-2: 96 → 32" in check_line(app)  # 48 rounded down to a multiple of 32
        await type_into(pilot, "divisor", "512")
        assert under(form, "divisor").startswith("impossible rounding: 48 neurons rounded down")
        await type_into(pilot, "divisor", "1")
        await type_into(pilot, "layers", "0-1")
        assert "layers 0-1: 96 → 48  layer 2: 96 → 96" in check_line(app)
        await type_into(pilot, "layers", "0-7")
        assert under(form, "layers") == "layers '0-7' names layer 7, but the model has 3 (0-2)"
        await type_into(pilot, "layers", "0-99999999999999999")  # refused at once, never spelled out
        assert "names layer 99999999999999999" in under(form, "layers")
        await type_into(pilot, "layers", "all")
        await choose(pilot, "target-kind", "percent")
        assert form.query_one("#target", Input).value == "50"
        await type_into(pilot, "model", "nosuch")
        assert under(form, "model") == "no model named 'nosuch' in the store"


async def test_a_model_name_completes_and_the_form_says_how(store, filled):
    app = app_on(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.open_prune_form()
        await settle(pilot)
        form = app.screen
        assert "→ completes" in form.query_one("#model", Input).placeholder
        assert under(form, "model") == "choose a model to prune: type its name (→ completes it)"
        await pilot.press(*"llama-w")
        await settle(pilot)
        assert under(form, "model") == "no model named 'llama-w' in the store: → completes it to 'llama-wanda-25'"
        await pilot.press("right")  # takes the suggestion
        await settle(pilot)
        assert form.query_one("#model", Input).value == "llama-wanda-25" and form.spec is not None


async def test_calibration_is_chosen_from_the_sources_and_read_before_anything_is_queued(
    store, filled, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    app = app_on(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.open_prune_form("llama-base")
        await settle(pilot)
        form = app.screen
        assert not form.query_one("#calibration").display
        assert "peak-to-peak magnitude" in str(form.query_one("#scorer-info", Static).render())
        await choose(pilot, "scorer", "wanda")
        assert form.query_one("#calibration").display and not form.query_one("#source-row").display
        assert "calibration: wikitext2: 60 documents" in check_line(app)  # read from the data folder
        await type_into(pilot, "samples", "0")
        assert check_line(app) == "Samples: samples must be at least 1, got 0"
        await type_into(pilot, "samples", "8")
        assert form.spec is not None and (form.spec.calibration, form.spec.samples) == ("wikitext2", 8)
        await choose(pilot, "allocation", "global")
        assert "global allocation: widths differ per layer" in check_line(app)

        await choose(pilot, "calibration-kind", "file")
        assert form.query_one("#source-row").display and form.query_one("#browse", Button).display
        assert under(form, "calibration-source") == "give the text file to calibrate on" and form.spec is None
        await type_into(pilot, "calibration-source", "foo")  # queued once, failed seconds later: no more
        assert under(form, "calibration-source") == "a text file ends in .txt or .jsonl, got 'foo'"
        await type_into(pilot, "calibration-source", str(tmp_path / "missing.txt"))
        assert under(form, "calibration-source") == f"text file {tmp_path / 'missing.txt'} does not exist"
        await pilot.press("ctrl+s")  # refused, and says why, with the cursor put in the field
        await settle(pilot)
        assert notices(app)[-1] == f"not launched: text file {tmp_path / 'missing.txt'} does not exist"
        assert app.focused is form.query_one("#calibration-source") and job_rows.list_jobs(store) == []
        (tmp_path / "empty.txt").write_text("  \n")
        await type_into(pilot, "calibration-source", str(tmp_path / "empty.txt"))
        assert under(form, "calibration-source") == f"text file {tmp_path / 'empty.txt'} holds no text"
        (tmp_path / "notes.txt").write_text("one two three")
        (tmp_path / "notes.csv").write_text("not offered")
        form.query_one("#browse", Button).press()  # or pick it from the folder tree (of the folder it runs in)
        # (the tree reads folders on a worker of its own, which stays, so settle() would not return)
        await wait_for(pilot, lambda: isinstance(app.screen, FilePicker) and "notes.txt" in screen_text(app))
        assert "notes.csv" not in screen_text(app)
        app.screen.dismiss(tmp_path / "notes.txt")
        await settle(pilot)
        assert form.query_one("#calibration-source", Input).value == str(tmp_path / "notes.txt")
        assert f"calibration: {tmp_path / 'notes.txt'}: 1 document, 3 words" in check_line(app)
        assert form.spec is not None and form.spec.calibration == str(tmp_path / "notes.txt")

        await choose(pilot, "calibration-kind", "hub")
        await type_into(pilot, "calibration-source", "wikitext:wikitext-2-raw-v1@train")
        assert "the hub dataset wikitext:wikitext-2-raw-v1@train, read when the job starts" in check_line(app)
        assert form.spec is not None and form.spec.calibration == "hf:wikitext:wikitext-2-raw-v1@train"
        await type_into(pilot, "calibration-source", "hf:")
        assert under(form, "calibration-source").startswith("hf: needs a dataset")


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
        assert check_line(app) == "Tasks: name at least one task, e.g. gsm8k, ifeval, truthfulqa_mc1"
        models = form.query_one("#models", SelectionList)
        assert models.highlighted == 0  # a row under the cursor from the start, as in Tasks
        text = screen_text(app)
        # Ticked and unticked rows differ in plain text too, not by colour alone.
        assert "▐X▌ llama-ppm-50" in text and "▐ ▌ llama-base" in text and "▐ ▌ gsm8k" in text
        assert "Chat template  auto" in text  # the label and its field apart
        await type_into(pilot, "model-filter", "qwen")  # the chosen stay listed while filtering
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
        assert under(form, "limit") == "a limit above 1 counts documents: a whole number, got 2.5"
        await type_into(pilot, "limit", "100")
        await type_into(pilot, "batch-size", "big")
        assert under(form, "batch-size") == "the batch size must be auto or a positive integer, got 'big'"
        await type_into(pilot, "batch-size", "8")
        slow = iter([1.0])  # the first start of a job process is slow
        monkeypatch.setattr(jobs, "ensure_worker", lambda store: time.sleep(next(slow, 0)) or True)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: jobs.list_jobs(store))  # queued, the form still up: pressed again
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, JobsScreen)
        assert len(jobs.list_jobs(store)) == 1
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

        await choose(pilot, "kind", "folder")
        assert check_line(app) == "Folder: give a model folder" and form.request is None
        await type_into(pilot, "source", str(tmp_path / "nothing"))
        assert under(form, "source") == f"no folder {tmp_path / 'nothing'}"
        await type_into(pilot, "source", str(tmp_path))
        assert under(form, "source") == f"{tmp_path} is not a Hugging Face model folder (no config.json)"
        (tmp_path / "config.json").write_text("{}")
        await type_into(pilot, "source", str(tmp_path) + "/")
        assert check_line(app) == f"imports {tmp_path} as '{tmp_path.name}'"
        await type_into(pilot, "name", "llama-base")
        assert under(form, "name") == "the store already has a model named 'llama-base': choose another name"
        assert form.request is None
        await type_into(pilot, "name", "mine")

        await choose(pilot, "kind", "gguf")
        assert check_line(app) == f"GGUF file: {tmp_path} is not a .gguf file"
        await type_into(pilot, "source", str(tmp_path / "model.gguf"))
        assert under(form, "source") == f"GGUF file {tmp_path / 'model.gguf'} does not exist"

        await choose(pilot, "kind", "hub")
        await type_into(pilot, "source", "SmolLM2")
        assert under(form, "source") == "a hub id is owner/name, got 'SmolLM2'"
        await type_into(pilot, "source", str(tmp_path))
        assert under(form, "source") == f"{tmp_path} is a model folder, not a hub id"
        await type_into(pilot, "source", "HuggingFaceTB/SmolLM2-135M-Instruct")
        assert check_line(app) == "imports HuggingFaceTB/SmolLM2-135M-Instruct as 'mine'"
        assert form.request is not None and form.request.to_dict() == {
            "source": "HuggingFaceTB/SmolLM2-135M-Instruct", "name": "mine", "if_missing": False}  # fmt: skip


# The printable keys that could act from a form: the app's (Models, Runs, Jobs, Studies, Prune, Evaluate,
# Import, Keys, Quit) and every screen's Export.
BOUND_KEYS = [*"mrjSpeiqx", "question_mark"]
TYPED = "mrjSpeiqx?"


def shown(widget) -> bool:
    return all(node.display for node in widget.ancestors_with_self if hasattr(node, "display"))


def open_forms(app, filled) -> list:
    return [lambda: app.open_prune_form("llama-base"), lambda: app.open_eval_form([filled["ppm"]]),
            app.open_import_form, lambda: app.open_heal_form("llama-wanda-25")]  # fmt: skip


async def test_letters_in_every_form_field_stay_in_the_form(store, filled):
    """q quit the app and r jumped to Runs from a dropdown or a checkbox list, throwing the input away:
    in a form, every printable key belongs to the form."""
    app = app_on(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        for open_form in open_forms(app, filled):
            open_form()
            await settle(pilot)
            form = app.screen
            assert isinstance(form, FormScreen)
            assert "Quit" not in screen_text(app) and "Runs" not in screen_text(app)  # nor in the key bar
            fields = [w for w in form.query("Input, Select, SelectionList, Button") if w.focusable]
            assert len(fields) >= 3
            for field in fields:
                if not shown(field):
                    continue
                field.focus()
                await settle(pilot)
                before = form.values()
                await pilot.press(*BOUND_KEYS)
                await settle(pilot)
                assert app.screen is form and app.is_running and app.current_mode == "models", field
                if isinstance(field, Input):
                    assert field.value.endswith(TYPED), field  # the letters went into the field
                    field.value = str(before[field.id]) if field.id in before else ""
                    await settle(pilot)
                else:
                    assert form.values() == before, field  # a dropdown or a list: nothing changed
            form.dismiss()
            await settle(pilot)
        assert isinstance(app.screen, ModelsScreen)


async def test_leaving_a_form_with_input_asks_first_and_quitting_never_happens_from_a_form(store, filled):
    app = app_on(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)
        form = app.screen
        await pilot.press("escape")  # nothing typed: it just goes
        await settle(pilot)
        assert isinstance(app.screen, ModelsScreen)

        await pilot.press("p")
        await settle(pilot)
        form = app.screen
        await pilot.press(*"30")
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, Confirm) and app.screen.question.startswith("Leave the new pruning run?")
        await pilot.press("n")  # stay: the input is where it was
        await settle(pilot)
        assert app.screen is form and form.query_one("#target", Input).value == "30"

        await pilot.press("ctrl+q")  # the app's quit key, from a form with input in it
        await settle(pilot)
        assert isinstance(app.screen, Confirm)
        assert "What you entered in the new pruning run is lost" in app.screen.question
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is form and app.is_running
        await pilot.press("escape", "y")  # leave, losing the input
        await settle(pilot)
        assert isinstance(app.screen, ModelsScreen)

        await pilot.press("p")  # a fresh form, untouched: quitting from it still asks
        await settle(pilot)
        await pilot.press("ctrl+q")
        await settle(pilot)
        assert isinstance(app.screen, Confirm)
        await pilot.press("y")
        await settle(pilot)
    assert app.return_code == 0


async def test_the_forms_start_from_the_row_in_view_else_the_last_model(store, filled, monkeypatch):
    monkeypatch.setattr(jobs, "ensure_worker", lambda store: True)  # queued only: no job process here
    app = app_on(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("r")  # the newest run first: the failed one, of qwen-base, which made nothing
        await settle(pilot)
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("p")
        await settle(pilot)
        assert app.screen.query_one("#model", Input).value == "qwen-base"  # another setting on its base
        app.screen.dismiss()
        await settle(pilot)
        await pilot.press("down", "e")  # run 2 made llama-wanda-25: an evaluation starts with it
        await settle(pilot)
        assert [m.name for m in app.screen.chosen.values()] == ["llama-wanda-25"]
        app.screen.dismiss()
        await settle(pilot)
        await pilot.press("enter", "p")  # from the run's own screen too
        await settle(pilot)
        assert app.screen.query_one("#model", Input).value == "llama-base"
        await pilot.press("ctrl+s")  # launched: the model is remembered
        await settle(pilot)
        assert isinstance(app.screen, JobsScreen)
        app.switch_mode("studies")  # a screen with no model in view
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)
        assert app.screen.query_one("#model", Input).value == "llama-base"


# Empty, blank, edge numbers, huge, markup, wide characters, paths, SQL wildcards and quotes, a NUL.
ODD = ["", " ", "0", "-1", "1e309", "nan", "9" * 400, "abc", "ü€😀", "[/]", "[bold]x", "a\tb", "/", "~nobody/x",
       "'\"%_\\", "a\x00b", "0-", ","]  # fmt: skip


async def test_every_form_and_dialog_survives_empty_and_odd_input_in_every_field(store, filled, tmp_path, monkeypatch):
    """No input may crash the app: every field of every form and dialog, empty and odd, each choice of
    every dropdown, and a launch tried in each odd state (refused, saying why)."""
    monkeypatch.chdir(tmp_path)  # where exports land
    monkeypatch.setattr(jobs, "ensure_worker", lambda store: True)  # an odd name may still queue a job: no process
    app = app_on(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        for open_form in open_forms(app, filled):
            open_form()
            await settle(pilot)
            form = app.screen
            for select in form.query(Select):
                for _, value in list(select._options):
                    select.value = value
                    await settle(pilot)
            for field in form.query(Input):
                for text in ODD:
                    field.value = text
                    await settle(pilot)
                    assert app.screen is form and app.is_running, (field.id, text)
                await pilot.press("ctrl+s")  # the last odd value: refused or queued, never a crash
                await settle(pilot)
                if app.screen is not form:  # an odd value that is still a good request (a name): queued
                    break
                field.value = ""
                await settle(pilot)
            for checklist in form.query(SelectionList):
                checklist.select_all()
                await settle(pilot)
                checklist.deselect_all()
                await settle(pilot)
            assert app.is_running
            while len(app.screen_stack) > 1:
                app.pop_screen()
            await settle(pilot)

        # The export dialog: its file field, with each format.
        await pilot.press("x")
        await settle(pilot)
        dialog = app.screen
        here = [t for t in ODD if not t.startswith(("/", "~", ".."))]  # what may be written, inside tmp_path
        for text in [*here, str(tmp_path), str(tmp_path / "no" / "such.csv")]:
            dialog.query_one("#export-path", Input).value = text
            await settle(pilot)
            for fmt in ("md", "csv"):
                dialog.query_one("#export-format", Select).value = fmt
                await settle(pilot)
            await pilot.press("ctrl+s")
            await settle(pilot)
            assert app.is_running, text
            if app.screen is not dialog:  # written: open it again for the next value
                await pilot.press("x")
                await settle(pilot)
                dialog = app.screen
        dialog.dismiss(None)
        await settle(pilot)

        # The lists' filters.
        for mode in ("models", "runs", "studies"):
            app.switch_mode(mode)
            await settle(pilot)
            for text in ODD:
                app.screen.query_one("#filter", Input).value = text
                await settle(pilot)
                assert app.is_running, (mode, text)
        assert app.is_running


async def test_repair_is_checked_as_the_cli_checks_it_and_launches_with_its_calibration(store, filled, monkeypatch):
    """The pruning form's Repair: none, oneshot or sequential, its damping an advanced field checked as
    `prune --repair-damping` is (said in the form's words); a repair reads calibration text even for a
    static scorer, and the preview says so."""
    monkeypatch.setattr(jobs, "ensure_worker", lambda store: True)  # queued only: no job process here
    app = app_on(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.open_prune_form("llama-base")
        await settle(pilot)
        form = app.screen
        assert not form.query_one("#damping-row").display and not form.query_one("#calibration").display
        assert form.spec is not None and form.spec.repair is None and "repair" not in check_line(app)

        await choose(pilot, "repair", "oneshot")  # ppm is static: the calibration fields come with the repair
        assert form.query_one("#damping-row").display and form.query_one("#calibration").display
        line = check_line(app)
        assert "repair oneshot (damping 0.01): kept down_proj columns refit on the calibration text" in line
        assert "read for the repair alone (ppm is static)" in line
        assert form.spec is not None and (form.spec.repair, form.spec.calibration_source) == ("oneshot", "wikitext2")
        await type_into(pilot, "repair-damping", "-1")
        assert under(form, "repair-damping") == "the damping must be 0 or more, got -1" and form.spec is None
        assert check_line(app) == "Damping: the damping must be 0 or more, got -1"
        await type_into(pilot, "repair-damping", "lots")
        assert under(form, "repair-damping") == "the damping must be a number, got 'lots'"
        await pilot.press("ctrl+s")  # refused, saying why, with the cursor put in the field
        await settle(pilot)
        assert notices(app)[-1] == "not launched: Damping: the damping must be a number, got 'lots'"
        assert app.focused is form.query_one("#repair-damping") and job_rows.list_jobs(store) == []

        await type_into(pilot, "repair-damping", "0.05")
        await choose(pilot, "repair", "sequential")
        await type_into(pilot, "samples", "16")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, JobsScreen)
        [job] = jobs.list_jobs(store)
        asked = {k: job.request[k] for k in ("scorer", "repair", "repair_damping", "calibration", "samples")}
        assert asked == {"scorer": "ppm", "repair": "sequential", "repair_damping": 0.05, "calibration": "wikitext2",
                         "samples": 16}  # fmt: skip

        app.open_prune_form("llama-base")  # no repair again: the static scorer reads no text
        await settle(pilot)
        await choose(pilot, "repair", "none")
        assert app.screen.spec is not None and app.screen.spec.calibration is None


NAMES = [
    ("5", "'5' cannot name a model: it is a bare number, which names a model by its id"),
    ("job:3", "'job:3' cannot name a model: job:N names the model job N makes"),
    ("smollm2", "'smollm2' cannot name a model: smollm2 names the bundled SmolLM2-135M-Instruct"),
    ("a/b", "'a/b' cannot name a model: it holds a path separator"),
    ("-x", "'-x' cannot name a model: it begins with neither a letter nor a digit"),
]


async def test_every_form_refuses_a_bad_model_name_under_its_name_field(store, filled, monkeypatch):
    """The one name rule (workbench.names), said under the Name field of each form that names a model,
    and a name the store already has, before anything is queued."""
    monkeypatch.setattr(jobs, "ensure_worker", lambda store: True)
    app = app_on(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        for open_form in (lambda: app.open_prune_form("llama-base"), lambda: app.open_heal_form("llama-wanda-25"),
                          app.open_import_form):  # fmt: skip
            open_form()
            await settle(pilot)
            form = app.screen
            for name, said in NAMES:
                if name == "smollm2" and isinstance(form, ImportForm):
                    continue  # the bundled model's own import may (and does, by default) take it
                await type_into(pilot, "name", name)
                assert under(form, "name") == said, (type(form).__name__, name)
                assert check_line(app) == f"Name: {said}"
                assert not form.ready()
            await type_into(pilot, "name", "llama-ppm-50")
            taken = "the store already has a model named 'llama-ppm-50': choose another name"
            assert under(form, "name") == taken, type(form).__name__
            await pilot.press("ctrl+s")
            await settle(pilot)
            assert app.screen is form and notices(app)[-1] == f"not launched: Name: {taken}"
            await type_into(pilot, "name", "a-fine-name")
            assert form.ready(), (type(form).__name__, check_line(app))
            form.dismiss()
            await settle(pilot)
        assert job_rows.list_jobs(store) == []


async def test_heal_form_checks_what_the_cli_checks_before_queueing(store, filled, tmp_path, monkeypatch):
    """Every option of `workbench heal`, checked as HealSpec and the engine's store checks have it, each
    problem under its field in the form's words: the teacher defaults to the model's parent."""
    monkeypatch.chdir(tmp_path)
    app = app_on(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("down", "h")  # from the Models screen, on the model under the cursor
        await settle(pilot)
        form = app.screen
        assert isinstance(form, HealForm) and form.query_one("#model", Input).value == "llama-ppm-50"
        assert form.plan is not None and form.plan.models.teacher.name == "llama-base"
        line = check_line(app)
        assert "llama-base teaches llama-ppm-50 (250.0k parameters), saved as llama-ppm-50-healed" in line
        assert "32,768 tokens in 32 steps of 4 × 256; trains every weight, lr 0.0003, temperature 1" in line
        assert "wikitext2: 60 documents" in line and "to learn from" in line

        await type_into(pilot, "model", "llama-base")  # a base has no parent to learn from
        assert under(form, "teacher") == "llama-base has no parent in the store to learn from: name a teacher"
        await type_into(pilot, "teacher", "llama-base")
        assert under(form, "teacher") == "the teacher is the model itself: nothing to learn"
        await type_into(pilot, "teacher", "qwen-base")
        assert form.plan is not None and form.plan.models.teacher.name == "qwen-base"
        await type_into(pilot, "teacher", "nosuch")
        assert under(form, "teacher") == "the teacher must be a model in the store; nosuch is not one"
        await type_into(pilot, "teacher", "")
        await type_into(pilot, "model", "nosuch")
        assert under(form, "model") == "heal takes a model in the store; nosuch is not one (import or prune it first)"
        await type_into(pilot, "model", "llama-wanda-25")

        for field, text, said in [
            ("tokens", "0", "the tokens must be a positive number of tokens, got 0"),
            ("tokens", "many", "the tokens must be a whole number, got 'many'"),
            ("seq-len", "1", "the sequence length must be at least 2 tokens, got 1"),
            ("batch-size", "0", "the batch size must be at least 1, got 0"),
            ("lr", "0", "the learning rate must be a positive number, got 0"),
            ("temperature", "-1", "the temperature must be a positive number, got -1"),
            ("warmup", "1", "the warmup must be a share of the steps, at least 0 and below 1, got 1"),
            ("checkpoint-every", "-5", "the checkpoint interval must be 0 or more seconds, got -5"),
            ("seed", "x", "the seed must be a whole number, got 'x'"),
        ]:
            before = str(form.values()[field])
            await type_into(pilot, field, text)
            assert under(form, field) == said and form.plan is None, field
            await type_into(pilot, field, before)
            assert form.plan is not None, (field, check_line(app))

        await choose(pilot, "train", "lora")
        assert form.query_one("#rank-row").display and form.plan.spec.train == "lora:16"
        await type_into(pilot, "lora-rank", "0")
        assert under(form, "lora-rank") == "what trains must be all, mlp or lora:RANK (e.g. lora:16), got 'lora:0'"
        await type_into(pilot, "lora-rank", "8")
        assert form.plan.spec.train == "lora:8"
        await choose(pilot, "train", "mlp")
        assert not form.query_one("#rank-row").display and form.plan.spec.train == "mlp"

        await choose(pilot, "data-kind", "file")
        assert under(form, "data-source") == "give the text file to learn from"
        await type_into(pilot, "data-source", str(tmp_path / "missing.txt"))
        assert under(form, "data-source") == f"text file {tmp_path / 'missing.txt'} does not exist"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert notices(app)[-1] == f"not launched: text file {tmp_path / 'missing.txt'} does not exist"
        assert app.focused is form.query_one("#data-source") and job_rows.list_jobs(store) == []
        (tmp_path / "notes.txt").write_text("one two three")
        await type_into(pilot, "data-source", str(tmp_path / "notes.txt"))
        assert f"{tmp_path / 'notes.txt'}: 1 document, 3 words to learn from" in check_line(app)
