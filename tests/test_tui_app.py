"""The app as a whole: what starting it imports, themes, remapped keys, the command palette."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tui_helpers import anyio_backend, app_on, filled_fixture, settle  # noqa: F401  (fixtures)

from tui.app import ANSI_THEME, WorkbenchApp, default_theme
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
        from tui_store import fill
        from tui.app import WorkbenchApp

        async def main():
            store = Store.open({str(tmp_path / "store")!r})
            ids = fill(store)
            app = WorkbenchApp(store)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.pause()
                for keys in (["r"], ["enter"], ["escape", "m"], ["enter"], ["escape", "p"]):
                    await pilot.press(*keys)
                    await app.workers.wait_for_complete()
                app.open_compare([ids["ppm"], ids["wanda"]])
                await app.workers.wait_for_complete()
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
    assert {"ModelsScreen", "RunsScreen", "PruneForm", "CompareScreen"} <= set(report["screens"])
    assert report["heavy"] == []


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
        await pilot.press("ctrl+p", *"wanda-25")
        await settle(pilot)
        await pilot.pause(0.3)  # the palette gathers hits a little after the last key
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ModelDetailScreen) and app.screen.model_id == filled["wanda"]
        await pilot.press("ctrl+p", *"run 1: ppm")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot)
        assert getattr(app.screen, "run_id", None) == filled["ppm_run"]
        await pilot.press("ctrl+p", *"Runs")  # an action, by the name the footer gives it
        await pilot.pause(0.3)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, RunsScreen)
