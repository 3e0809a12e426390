"""Model detail, run detail and compare: what each shows, what opens from it, what exports."""

from __future__ import annotations

import pytest
from store_fixtures import eval_row
from tui_helpers import anyio_backend, app_on, filled_fixture, screen_text, settle  # noqa: F401  (fixtures)

from store import queries
from tui.records import RecordTable
from tui.screens.compare import CompareScreen
from tui.screens.model_detail import ModelDetailScreen
from tui.screens.run_detail import RunDetailScreen
from tui.screens.tradeoff import TradeoffScreen

pytestmark = pytest.mark.anyio


def cells(table: RecordTable) -> list[list[str]]:
    return table.table.formatted()


async def test_model_detail_shows_lineage_evaluations_and_files_and_opens_lineage(store, filled):
    folder = store.artifacts / "models" / "base"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    app = app_on(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.open_model(filled["base"])
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ModelDetailScreen)
        assert ["layers", "3"] in cells(screen.query_one("#overview-table", RecordTable))
        lineage = screen.query_one("#lineage-table", RecordTable)
        assert [row[:2] for row in cells(lineage)] == [
            ["child", "llama-ppm-50"], ["child", "llama-wanda-25"], ["pruned by", "run 2"], ["pruned by", "run 1"],
        ]  # fmt: skip
        evaluations = cells(screen.query_one("#evaluations-table", RecordTable))
        assert {row[0] for row in evaluations} == {"arc_easy", "piqa", "wikitext"}
        assert cells(screen.query_one("#files-table", RecordTable)) == [["config.json", "2 B"]]
        await pilot.press("right_square_bracket")  # to the Lineage tab: its table takes the focus
        await settle(pilot)
        assert app.focused is lineage
        run_row = next(i for i, row in enumerate(cells(lineage)) if row[1] == f"run {filled['ppm_run']}")
        lineage.move_cursor(row=run_row)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, RunDetailScreen) and app.screen.run_id == filled["ppm_run"]
        await pilot.press("o")  # the run's result model
        await settle(pilot)
        assert isinstance(app.screen, ModelDetailScreen) and app.screen.model_id == filled["ppm"]


async def test_run_detail_shows_retention_with_bars_depth_scores_stages(store, filled):
    app = app_on(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.open_run(filled["ppm_run"])
        await settle(pilot)
        screen = app.screen
        retention = screen.query_one("#retention-table", RecordTable)
        assert [row[:4] for row in cells(retention)] == [["0", "96", "64", "66.7"], ["1", "96", "48", "50.0"],
                                                         ["2", "96", "32", "33.3"]]  # fmt: skip
        text = screen_text(app)
        assert "66.7 ████████░░░░" in text  # the bar in each row
        assert "most: layer 2 67%, layer 1 50%, layer 0 33%" in text
        assert "scores (mean over layers): kept 2 · removed 0.25" in text
        config = dict((k, v) for k, v in cells(screen.query_one("#configuration-table", RecordTable)))
        assert (config["scorer"], config["target"], config["peak memory"]) == ("ppm", "50% off", "3.0 MiB")
        stages = cells(screen.query_one("#stages-table", RecordTable))
        assert stages[-1] == ["total", "0.88"]
        assert retention.export_table().records()[0]["kept_score_mean"] == 1.0  # raw values export


async def test_compare_marks_the_best_and_counts_shared_kept_neurons(store, filled):
    app = app_on(store)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        app.open_compare([filled["base"], filled["ppm"], filled["wanda"]])
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        metrics = screen.query_one("#metrics-table", RecordTable).table.records()
        best = {(r["task"], r["metric"]): r["best"] for r in metrics}
        assert best[("arc_easy", "acc_norm,none")] == "llama-base"
        assert best[("wikitext", "word_perplexity,none")] == "llama-base"  # lower perplexity is better
        retention = cells(screen.query_one("#retention-table", RecordTable))
        assert retention[0][:3] == ["0", "66.7", "75.0"]
        overlap = cells(screen.query_one("#overlap-table", RecordTable))
        # ppm keeps 64 from neuron 0, wanda 72 from neuron 0 in layer 0: they share 64.
        assert overlap[0] == ["0", "64", "100.0"]


async def test_compare_of_unpruned_models_hides_retention_and_overlap(store, filled):
    app = app_on(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.open_compare([filled["base"], filled["qwen"]])
        await settle(pilot)
        text = screen_text(app)
        assert "Overview" in text and "Metrics" in text and "Retention" not in text and "Overlap" not in text
        metrics = app.screen.query_one("#metrics-table", RecordTable).table.records()
        assert all(r["best"] == "" for r in metrics)  # one value per row: nothing to beat


async def test_tradeoff_against_the_parent_colours_by_direction_and_dims_noise(store, filled):
    with store.write() as s:  # one more metric whose change is within its noise
        queries.add_evaluations(s, [
            eval_row(filled["base"], "boolq", "acc,none", 0.600, stderr=0.02),
            eval_row(filled["ppm"], "boolq", "acc,none", 0.590, stderr=0.02),
        ])  # fmt: skip
    app = app_on(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("down", "t")  # llama-ppm-50, against its parent
        await settle(pilot)
        assert isinstance(app.screen, TradeoffScreen)
        table = app.screen.query_one(RecordTable)
        records = {(r["task"], r["metric"]): r for r in table.table.records()}
        arc = records[("arc_easy", "acc_norm,none")]
        assert (arc["parent"], arc["pruned"], arc["noise"]) == (0.62, 0.48, True)
        assert arc["delta"] == pytest.approx(-0.14) and arc["relative"] == pytest.approx(-0.14 / 0.62)
        assert records[("model", "parameters")]["pruned"] == 250_000
        assert records[("boolq", "acc,none")]["noise"] is False
        rows = list(records)
        styles = app.screen.view.styles
        assert styles[(rows.index(("arc_easy", "acc_norm,none")), "delta")] == "red"  # accuracy fell
        assert styles[(rows.index(("wikitext", "word_perplexity,none")), "delta")] == "red"  # perplexity rose
        assert styles[(rows.index(("boolq", "acc,none")), "pruned")] == "dim"
        assert "change" in screen_text(app) and "-22.6%" in screen_text(app)
