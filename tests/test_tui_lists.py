"""The Models and Runs lists: filtering as you type, sorting, paging, marking, opening, exporting."""

from __future__ import annotations

import csv

import pytest
from tui_helpers import anyio_backend, app_on, filled_fixture, notices, screen_text, settle  # noqa: F401  (fixtures)
from tui_store import add_failed_runs

from store import queries
from tui.paging import PAGE, PagedTable
from tui.screens.model_detail import ModelDetailScreen
from tui.screens.run_detail import RunDetailScreen

pytestmark = pytest.mark.anyio


def names(table: PagedTable) -> list[str]:
    return [item.name for item in table.items]


async def test_models_open_first_sorted_by_name_and_filter_as_you_type(store, filled):
    app = app_on(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(PagedTable)
        assert names(table) == ["llama-base", "llama-ppm-50", "llama-wanda-25", "qwen-base"]
        assert "4 of 4 models" in screen_text(app)
        await pilot.press("slash", *"qwen")
        await settle(pilot)
        assert names(table) == ["qwen-base"]
        await pilot.press("backspace", "backspace", "backspace", "backspace", *"pruned")
        await settle(pilot)
        assert names(table) == ["llama-ppm-50", "llama-wanda-25"]
        assert "2 of 2 models · matching 'pruned'" in screen_text(app)
        await pilot.press("escape")  # back to the list, the filter kept
        assert app.focused is table and names(table) == ["llama-ppm-50", "llama-wanda-25"]


async def test_sort_from_the_menu_and_by_header_click(store, filled):
    app = app_on(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(PagedTable)
        await pilot.press("s")  # the menu lists the sortable columns; pick "params"
        menu = app.screen
        assert [c.title for c in menu.columns][:3] == ["name", "params", "width"]
        await pilot.press("down", "enter")
        await settle(pilot)
        assert (table.sort, table.descending) == ("params", True)  # numbers: largest first
        assert names(table)[0] == "llama-base"
        await pilot.press("s", "enter")  # the column sorted on is highlighted; choosing it reverses
        await settle(pilot)
        assert (table.sort, table.descending) == ("params", False) and names(table)[0] == "qwen-base"
        family = list(table.columns).index("family")
        x = 1 + sum(c.get_render_width(table) for c in list(table.columns.values())[:family])  # inside the border
        await pilot.click(PagedTable, offset=(x + 2, 1))  # the "family" header
        await settle(pilot)
        assert table.sort == "family" and names(table)[-1] == "qwen-base"
        assert "family ▲" in screen_text(app)


async def test_runs_page_through_the_store_as_the_cursor_nears_the_end(store, filled):
    add_failed_runs(store, filled["qwen"], PAGE + 20)
    app = app_on(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        table = app.screen.query_one(PagedTable)
        total = PAGE + 23
        assert (len(table.items), table.total) == (PAGE, total)
        assert f"{PAGE} of {total} runs" in screen_text(app)
        await pilot.press("end")  # the last loaded row: the next page comes
        await settle(pilot)
        assert len(table.items) == total
        assert [r.id for r in table.items] == sorted((r.id for r in table.items), reverse=True)  # newest first
        await pilot.press("slash", *"error 119")
        await settle(pilot)
        assert [r.error for r in table.items] == ["error 119"]


async def test_enter_opens_a_model_and_a_run(store, filled):
    app = app_on(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("down", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ModelDetailScreen) and app.screen.model_id == filled["ppm"]
        await pilot.press("escape", "r")
        await settle(pilot)
        await pilot.press("enter")  # the newest run: the failed one
        await settle(pilot)
        assert isinstance(app.screen, RunDetailScreen) and app.screen.run_id == filled["failed_run"]
        assert "the run made no model: out of memory" in screen_text(app)


async def test_export_writes_every_row_that_matches_with_raw_values(store, filled, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the export dialog suggests a file
    add_failed_runs(store, filled["qwen"], PAGE + 5)
    app = app_on(store)
    out = tmp_path / "runs.csv"
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        await pilot.press("slash", *"l2", "enter", "x")
        await settle(pilot)
        path = app.screen.query_one("#export-path")
        path.value = str(out)
        await pilot.press("enter")
        await settle(pilot)
        rows = list(csv.DictReader(out.open()))
        assert len(rows) == queries.count_runs(store, "l2") == PAGE + 6  # all of them, not the page on screen
        assert rows[0]["removed"] == "0.19999999999999996" or float(rows[0]["removed"]) == 0.2
        assert rows[0]["created_at"].startswith("2025-03-02T")
        await pilot.press("x")
        await pilot.press("shift+tab", "enter", "down", "enter")  # Markdown: the format's dropdown, its second
        path = app.screen.query_one("#export-path")
        assert path.value.endswith(".md")
        path.value = str(tmp_path / "runs.md")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert (tmp_path / "runs.md").read_text().startswith("### runs\n\n| id | status | base |")


async def test_marked_models_open_a_comparison(store, filled):
    app = app_on(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("c")  # nothing marked: a warning, no screen
        await settle(pilot)
        assert app.screen.query_one(PagedTable) and "mark two to four models" in notices(app)[-1]
        await pilot.press("down", "space", "space")  # the cursor moves on after a mark
        table = app.screen.query_one(PagedTable)
        assert set(table.marked) == {filled["ppm"], filled["wanda"]}
        assert "2 marked" in screen_text(app)
        await pilot.press("c")
        await settle(pilot)
        assert app.screen.model_ids == [filled["ppm"], filled["wanda"]]


async def test_export_with_the_file_field_cleared_or_odd_never_fails(store, filled, tmp_path, monkeypatch):
    """Clearing File, then switching CSV/Markdown, raised ValueError and took the app down."""
    tmp_path = tmp_path / "here"
    tmp_path.mkdir()
    monkeypatch.chdir(tmp_path)
    app = app_on(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("x")
        await settle(pilot)
        dialog = app.screen
        path = dialog.query_one("#export-path")
        assert path.value == str(tmp_path / "models.csv")
        path.value = ""
        await settle(pilot)
        assert "give a file to write" in screen_text(app)
        await pilot.press("ctrl+s")  # refused, saying why: nothing written, the dialog stays
        await settle(pilot)
        assert app.screen is dialog and list(tmp_path.iterdir()) == []
        dialog.query_one("#export-format").value = "md"  # a file named after the table, in this folder
        await settle(pilot)
        assert path.value == str(tmp_path / "models.md")
        path.value = str(tmp_path)  # a folder: the file goes in it
        dialog.query_one("#export-format").value = "csv"
        await settle(pilot)
        assert path.value == str(tmp_path / "models.csv")
        path.value = str(tmp_path / "no" / "such.csv")
        await settle(pilot)
        assert str(dialog.query_one("#export-problem").render()) == f"no folder {tmp_path / 'no'}"
        path.value = "mine"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert (tmp_path / "mine").read_text().startswith("name,parameters,intermediate")
