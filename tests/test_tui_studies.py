"""The Studies screens: the list, a study's grid of runs (live while its jobs run), the trade-off
table with the best of each column marked and its export, the chart of a chosen metric, the
specialisation view, and the palette finding a study by name."""

from __future__ import annotations

import csv
import os

import pytest
from study_store import NAME, fill_study
from tui_helpers import anyio_backend, app_on, palette_pick, screen_text, settle, wait_for  # noqa: F401  (fixtures)

from store import jobs, studies
from tui.chart import POINT, draw
from tui.records import RecordTable
from tui.screens.run_detail import RunDetailScreen
from tui.screens.studies import StudiesScreen
from tui.screens.study import StudyScreen
from workbench.studies.view import Series

pytestmark = pytest.mark.anyio


async def open_study(pilot) -> StudyScreen:
    await settle(pilot)
    await pilot.press("S")
    await settle(pilot)
    assert isinstance(pilot.app.screen, StudiesScreen)
    await pilot.press("enter")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, StudyScreen) and screen.view is not None
    return screen


async def test_the_list_opens_a_study_whose_grid_shows_each_configuration_and_opens_its_run(store):
    ids = fill_study(store)
    app = app_on(store)
    async with app.run_test(size=(110, 30)) as pilot:
        await settle(pilot)
        await pilot.press("S")
        await settle(pilot)
        text = screen_text(app)
        assert NAME in text and "smol-base" in text and "queued" in text
        screen = await open_study(pilot)
        text = screen_text(app)
        for label in ("base (smol-base)", "ppm 20%", "ppm 60%", "wanda 20% (wikitext2)", "wanda 40% (sms)"):
            assert label in text
        assert "prune queued" in text and "1 job on its way" in text
        await pilot.press("down", "enter")  # ppm 20%: its run
        await settle(pilot)
        assert isinstance(app.screen, RunDetailScreen) and app.screen.run_id == ids["ppm-p20"]
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is screen


async def test_the_grid_follows_the_studys_jobs_as_they_run(store):
    fill_study(store)
    [pending] = jobs.list_jobs(store)
    app = app_on(store)
    async with app.run_test(size=(130, 30)) as pilot:
        await open_study(pilot)
        jobs.claim(store, os.getpid(), job_id=pending.id)
        jobs.update_running(store, pending.id, stage="score", progress=0.35)
        await wait_for(pilot, lambda: "pruning 35%" in screen_text(app))  # a poll brings it
        jobs.finish(store, pending.id, "failed", "failed", error="RuntimeError: out of memory")
        await wait_for(pilot, lambda: "prune failed" in screen_text(app))
        await settle(pilot)
        text = screen_text(app)
        assert "prune failed" in text and "RuntimeError: out of memory" in text
        assert app.screen.view is not None and not app.screen.view.live  # nothing left to follow


async def test_the_tradeoff_marks_the_best_of_each_column_and_exports_raw_values(store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fill_study(store)
    app = app_on(store)
    async with app.run_test(size=(160, 30)) as pilot:
        screen = await open_study(pilot)
        await pilot.press("right_square_bracket")
        await settle(pilot)
        table = screen.query_one("#study-tradeoff", RecordTable)
        assert screen.focused is table
        key = {r.label: r.key for r in screen.view.rows}
        assert screen.view.best() == {"ppl:wikitext2 perplexity": {key["wanda 20% (wikitext2)"]},
                                      "ppl:sms perplexity": {key["wanda 20% (sms)"]},
                                      "arc_easy acc,none": {key["wanda 20% (wikitext2)"]}}  # fmt: skip
        row = [r.label for r in screen.view.all_rows].index("wanda 20% (wikitext2)")
        cell = table.get_cell_at((row, [c.key for c in table.export_table().columns].index("arc_easy acc,none")))
        assert cell.plain == "0.570" and "reverse" in str(cell.spans[0].style)
        await pilot.press("x")
        await settle(pilot)
        app.screen.query_one("#export-path").value = str(tmp_path / "study.csv")
        await pilot.press("enter")
        await settle(pilot)
        rows = list(csv.DictReader((tmp_path / "study.csv").open()))
        assert [r["scorer"] for r in rows] == ["base", "ppm", "ppm", "ppm", "wanda", "wanda", "wanda", "wanda"]
        assert rows[4]["arc_easy acc,none"] == "0.57" and rows[4]["arc_easy acc,none stderr"] == "0.05"
        assert rows[1]["parameters"] == "900000" and rows[3]["status"] == "prune queued"


async def test_the_chart_draws_a_chosen_metric_one_series_per_scorer_and_source(store):
    fill_study(store)
    app = app_on(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await open_study(pilot)
        await pilot.press("right_square_bracket", "right_square_bracket")
        await settle(pilot)
        text = screen_text(app)
        assert "ppl:wikitext2 perplexity against parameters (lower is better)" in text
        assert f"{POINT} ppm  {POINT} wanda/wikitext2  {POINT} wanda/sms" in text
        assert "800.0k" in text and "1.0M" in text  # the x axis's ends: the data's
        assert text.count(POINT) >= 3 + 4  # the legend's, and points at 1.0M, 900k and 800k (some share a cell)
        await pilot.press("n", "a")
        await settle(pilot)
        text = screen_text(app)
        assert "ppl:sms perplexity against % of parameters removed" in text and "20.0%" in text


def test_the_chart_is_drawn_in_braille_with_its_points_on_the_data():
    series = [Series("a", ((0.0, 0.0), (10.0, 10.0))), Series("b", ((0.0, 10.0), (10.0, 0.0)))]
    lines = [line.plain for line in draw(series, 40, 12)]
    plot = lines[:-3]  # less the axis, its labels and the legend's line
    assert plot[0].rstrip().endswith(POINT) and plot[-1].rstrip().endswith(POINT)  # the right ends: 10 and 0
    assert all(any(0x2800 < ord(c) <= 0x28FF for c in row) for row in plot[1:-1])  # lines between
    assert lines[-1].strip() == f"{POINT} a  {POINT} b"
    assert draw([], 40, 12)[0].plain == "no figures to draw yet"


def test_the_axis_of_figures_that_are_never_negative_starts_at_zero_at_the_lowest():
    lines = [line.plain for line in draw([Series("ppl", ((1.0, 30.0), (2.0, 4000.0)))], 40, 12)]
    y_labels = [line.split("┤")[0].strip() for line in lines if "┤" in line]
    assert y_labels[-1] == "0" and not any(label.startswith("-") for label in y_labels)


async def test_the_specialisation_tab_puts_each_source_side_by_side(store):
    fill_study(store)
    app = app_on(store)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_study(pilot)
        for _ in range(3):
            await pilot.press("right_square_bracket")
        await settle(pilot)
        text = screen_text(app)
        assert "22.00 (own)" in text and "32.00 (own)" in text and "wikitext2 vs sms" in text
        table = screen.query_one("#spec-perplexity", RecordTable)
        assert [r[-1] for r in table.export_table().rows] == ["yes"] * 4


async def test_the_palette_finds_a_study_by_name(store):
    fill_study(store)
    app = app_on(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await palette_pick(pilot, "smol-stu", NAME)
        assert isinstance(app.screen, StudyScreen) and app.screen.name_ == NAME
        assert studies.get_study(store, NAME).base_model == "smol-base"
