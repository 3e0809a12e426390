"""The app as a whole: what starting it imports, themes, remapped keys, the command palette."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tui_helpers import anyio_backend, app_on, filled_fixture, notices, palette_pick, screen_text, settle, wait_for  # noqa: F401  (fixtures)

from store.db import Store
from tui.app import ANSI_THEME, WorkbenchApp, default_theme
from tui.forms.import_model import ImportForm
from tui.keybar import KeyBar
from tui.keymap import load_keymap
from tui.screens.model_detail import ModelDetailScreen
from tui.screens.runs import RunsScreen
from workbench.errors import UserError

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "lm_eval", "datasets")


def test_starting_the_app_and_opening_every_screen_imports_no_engine(tmp_path):
    """In a fresh interpreter: open the app headless, visit each screen and form, list what loaded."""
    script = textwrap.dedent(
        f"""
        import asyncio, json, sys
        sys.path.insert(0, {str(REPO / "tests")!r})
        from store.db import Store
        from study_store import fill_study
        from tui_store import add_recovery, fill
        from tui.app import WorkbenchApp

        async def main():
            store = Store.open({str(tmp_path / "store")!r})
            ids = fill(store)
            ids |= add_recovery(store, ids)
            fill_study(store)
            app = WorkbenchApp(store)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.pause()
                for keys in (["r"], ["enter"], ["escape", "m"], ["enter"], ["escape", "p"]):
                    await pilot.press(*keys)
                    await app.workers.wait_for_complete()
                app.open_compare([ids["ppm"], ids["wanda"]])
                await app.workers.wait_for_complete()
                app.open_import_form()
                await app.workers.wait_for_complete()
                app.open_heal_form("llama-wanda-25")
                await app.workers.wait_for_complete()
                app.open_heal(ids["heal"])
                await app.workers.wait_for_complete()
                app.open_tradeoff(ids["healed"])
                await app.workers.wait_for_complete()
                app.switch_mode("jobs")
                await app.workers.wait_for_complete()
                app.switch_mode("studies")
                await app.workers.wait_for_complete()
                app.open_study("smol-study")
                for _ in range(3):  # its trade-off, chart and specialisation tabs
                    await app.workers.wait_for_complete()
                    await pilot.press("right_square_bracket")
                await pilot.pause()
                screens = [type(s).__name__ for m in app._screen_stacks.values() for s in m]
            print(json.dumps({{"screens": screens, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))

        asyncio.run(main())
        """
    )
    env = os.environ | {"PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"ModelsScreen", "RunsScreen", "PruneForm", "ImportForm", "HealForm", "HealDetailScreen", "TradeoffScreen",
            "CompareScreen", "JobsScreen", "StudiesScreen", "StudyScreen"} <= set(report["screens"])
    assert report["heavy"] == []


def test_the_app_module_leaves_the_store_to_a_worker():
    """tui.app paints before SQLAlchemy, SQLModel and Alembic load: they take most of a second."""
    code = "import sys, tui.app; print([m for m in ('sqlalchemy', 'sqlmodel', 'alembic') if m in sys.modules])"
    env = os.environ | {"PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


def test_the_ansi_theme_on_a_16_colour_terminal():
    assert default_theme({"TERM": "xterm"}) == default_theme({"TERM": "linux"}) == ANSI_THEME
    assert default_theme({"TERM": "xterm-256color"}) == "textual-dark"
    assert default_theme({"TERM": "dumb", "TEXTUAL_COLOR_SYSTEM": "truecolor"}) == "textual-dark"  # textual-serve
    assert default_theme({"TERM": "xterm-256color", "WORKBENCH_THEME": "nord"}) == "nord"


def test_a_keymap_file_maps_binding_ids_to_keys(tmp_path):
    path = tmp_path / "keymap.toml"
    assert load_keymap(path) == {}
    path.write_text('"app.runs" = "2"\n"list.sort" = "o,ctrl+o"\n')
    assert load_keymap(path) == {"app.runs": "2", "list.sort": "o,ctrl+o"}
    path.write_text('"app.runs" = 2\n')
    with pytest.raises(UserError, match="'app.runs' must map to keys"):
        load_keymap(path)
    path.write_text("app.runs = \n")
    with pytest.raises(UserError, match="cannot read the keymap"):
        load_keymap(path)


@pytest.mark.anyio
async def test_a_folder_that_is_not_a_store_ends_the_app_with_one_line(tmp_path, capsys):
    (tmp_path / "workbench.sqlite").write_text("not a database")
    app = WorkbenchApp(tmp_path, theme="textual-dark")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.return_code is not None, timeout=30)
    assert app.return_code == 2
    said = " ".join(capsys.readouterr().err.split())
    assert said.startswith("workbench: error:") and "is not a SQLite database, so not a workbench store" in said
    assert "Traceback" not in said


@pytest.mark.anyio
async def test_remapped_keys_replace_the_defaults(store, filled):
    app = WorkbenchApp(store, theme="textual-dark", keymap={"app.runs": "2"})
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("r")
        assert not isinstance(app.screen, RunsScreen)
        await pilot.press("2")
        await settle(pilot)
        assert isinstance(app.screen, RunsScreen)


@pytest.mark.anyio
async def test_the_palette_finds_models_runs_and_actions(store, filled):
    app = app_on(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await palette_pick(pilot, "wanda-25", "llama-wanda-25")
        assert isinstance(app.screen, ModelDetailScreen) and app.screen.model_id == filled["wanda"]
        await palette_pick(pilot, "run 1: ppm", "run 1: ppm")
        assert getattr(app.screen, "run_id", None) == filled["ppm_run"]
        await palette_pick(pilot, "Runs", "Runs")  # an action, by the name the footer gives it
        assert isinstance(app.screen, RunsScreen)
        await palette_pick(pilot, "Import", "Import")
        assert isinstance(app.screen, ImportForm)
        app.screen.dismiss()
        await pilot.press("j")  # from Jobs, the actions of other screens too: they go there and run
        await settle(pilot)
        await palette_pick(pilot, "compare", "Compare (Models)")
        assert app.current_mode == "models" and notices(app)[-1].startswith("mark two to four models")


@pytest.mark.anyio
async def test_an_empty_store_says_on_each_list_how_to_fill_it(store):
    app = app_on(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert "No models yet: i imports one" in screen_text(app)
        await pilot.press("r")
        await settle(pilot)
        assert "No pruning runs yet: p opens the form for one" in screen_text(app)
        await pilot.press("S")
        await settle(pilot)
        assert "No studies yet" in screen_text(app) and "workbench sweep smollm2 --scorers" in screen_text(app)
        await pilot.press("slash", *"x")  # a filter that matches nothing is not an empty store
        await settle(pilot)
        assert "No studies yet" not in screen_text(app)


def test_serve_runs_the_workbench_for_a_browser_on_localhost_only(tmp_path, monkeypatch):
    """What each browser session runs (tests/test_serve.py serves for real, behind its token)."""
    import textual_serve.server

    from workbench.cli.main import main

    served = []

    class Server:
        def __init__(self, command: str, host: str, port: int, **options: object) -> None:
            served.append((command, host, port))

        def serve(self) -> None:
            pass

    monkeypatch.setattr(textual_serve.server, "Server", Server)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORKBENCH_STORE", "elsewhere")  # (restored after the test: serve() sets it)
    assert main(["serve", "--store", "here", "--data-dir", ".", "--port", "9001"]) == 0
    command, host, port = served[0]
    assert (host, port) == ("localhost", 9001)
    assert command.endswith(f"-m workbench tui --data-dir {tmp_path}")
    assert os.environ["WORKBENCH_STORE"] == str(tmp_path / "here")  # the sessions' store, out of sight of `ps`


@pytest.mark.anyio
async def test_every_screen_survives_resizing_and_the_key_bar_wraps(store, filled):
    app = app_on(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        opens = [lambda: None, lambda: app.open_run(filled["ppm_run"]), lambda: app.open_compare([1, 2, 3]),
                 lambda: app.open_tradeoff(filled["ppm"]), lambda: app.open_prune_form("llama-base"),
                 lambda: app.open_eval_form([1]), lambda: app.open_import_form(), lambda: app.show_jobs()]  # fmt: skip
        for open_screen in opens:
            open_screen()
            await settle(pilot)
            for size in ((60, 16), (80, 24)):
                await pilot.resize_terminal(*size)
                await settle(pilot)
                assert app.size == size
            assert "Palette" in screen_text(app)  # the key bar is still there, its last entry included
        await pilot.resize_terminal(50, 20)
        await settle(pilot)
        bar = app.screen.query_one(KeyBar)
        assert bar.size.height == len(bar.lines(bar.content_region.width)) >= 2  # wrapped, not cut
        text = screen_text(app)
        assert all(entry.description in text for entry in bar.entries())


@pytest.mark.anyio
@pytest.mark.backends("sqlite", "postgresql")
async def test_the_header_names_the_store_a_url_stores_database_rather_than_its_files_folder(store, tmp_path):
    app = app_on(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        if store.is_sqlite:
            assert app.sub_title == str(store.root)  # a folder store: its folder
        else:
            assert app.sub_title == store.url and app.sub_title.startswith("postgresql+psycopg://")
            assert str(store.root) not in app.sub_title  # (the files folder every host mounts)
    (tmp_path / "db").mkdir()
    url = Store.open(f"sqlite:///{tmp_path / 'db' / 'shared.sqlite'}", files=tmp_path / "files")
    assert url.shown == str(tmp_path / "db" / "shared.sqlite")


@pytest.mark.anyio
async def test_heal_opens_from_models_model_detail_and_the_palette_anywhere(store, filled):
    from tui.forms.heal import HealForm

    app = app_on(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("down", "h")  # on the Models screen: the model under the cursor
        await settle(pilot)
        assert isinstance(app.screen, HealForm) and app.screen.query_one("#model").value == "llama-ppm-50"
        app.screen.dismiss()
        await settle(pilot)
        app.open_model(filled["wanda"])
        await settle(pilot)
        await pilot.press("h")  # on Model detail: the model shown
        await settle(pilot)
        assert isinstance(app.screen, HealForm) and app.screen.query_one("#model").value == "llama-wanda-25"
        app.screen.dismiss()
        await settle(pilot)
        app.remember_model("llama-ppm-50")
        await pilot.press("j")  # from Jobs, which has no model in view: the last one worked on
        await settle(pilot)
        await palette_pick(pilot, "Heal", "Heal")
        assert isinstance(app.screen, HealForm) and app.screen.query_one("#model").value == "llama-ppm-50"
