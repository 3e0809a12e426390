"""Model detail, run detail, heal detail, trade-off and compare: what each shows, what opens from
it, what exports; a base, its cut, the cut repaired and the cut healed side by side."""

from __future__ import annotations

import dataclasses
import json

import pytest
from store_fixtures import eval_row, model_row, run_row
from tui_helpers import anyio_backend, app_on, filled_fixture, screen_text, settle  # noqa: F401  (fixtures)
from tui_store import T0, WIDTH, add_recovery, retention

from store import bitset, queries
from tui.chart import Chart
from tui.forms.evaluate import EvalForm
from tui.records import RecordTable
from tui.screens.compare import CompareScreen
from tui.screens.heal_detail import HealDetailScreen, curve
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
        # The picture over depth shows the share kept, as the bars do, on a scale; its extremes named.
        assert "100% ┤" in text and "  0% ┤" in text and "height: share of neurons kept" in text
        assert "kept least: layer 2 33% · most: layer 0 67%" in text
        assert "score kept" in text and "score removed" in text  # the headers say these are scores
        assert "ppm scores of the neurons, mean over layers: kept 2 · removed 0.25" in text
        assert "run 1: llama-base → llama-ppm-50 · ppm, 50% of neurons removed" in text
        config = dict((k, v) for k, v in cells(screen.query_one("#configuration-table", RecordTable)))
        assert (config["scorer"], config["target"], config["peak memory"]) == ("ppm", "50% of neurons removed",
                                                                               "3.0 MiB")  # fmt: skip
        stages = cells(screen.query_one("#stages-table", RecordTable))
        assert stages[-1] == ["total", "0.88"]
        assert retention.export_table().records()[0]["kept_score_mean"] == 1.0  # raw values export


async def test_a_repaired_run_shows_its_repair_and_each_layers_error_cut_and_repaired(store, recovered):
    app = app_on(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.open_run(recovered["repaired_run"])
        await settle(pilot)
        screen = app.screen
        retention = screen.query_one("#retention-table", RecordTable)
        assert [row[:6] for row in cells(retention)] == [["0", "96", "72", "75.0", "0.2000", "0.1000"],
                                                         ["1", "96", "72", "75.0", "0.3000", "0.1500"],
                                                         ["2", "96", "72", "75.0", "0.4000", "0.2000"]]  # fmt: skip
        text = screen_text(app)
        assert "error" in text and "repaired" in text  # the headers, in sight at 80 columns
        assert "repair: mean relative MLP output error 0.3 cut → 0.15 repaired (-50%)" in text
        config = dict((k, v) for k, v in cells(screen.query_one("#configuration-table", RecordTable)))
        assert config["repair"] == "oneshot least-squares refit of down_proj, damping 0.01 × mean of diag G[K,K]"


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
        # ppm keeps 64 from neuron 0, wanda 72 from neuron 0 in layer 0: they share 64, all of the fewer
        # kept, where two random choices of 64 and 72 out of 96 would share 75%.
        assert overlap[0] == ["0", "64", "100.0", "75.0"]


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


async def test_compare_names_a_best_only_beyond_noise_as_trade_off_and_the_cli_do(store, filled, capsys):
    """arc_easy 0.40 vs 0.35 was "best" in Compare while Trade-off found the pair within noise: one rule
    now, shown with each value's stderr and limit. Overlap shows chance beside it, below it in red."""
    from workbench.cli.main import main

    higher = {"higher_is_better": True}  # as lm-eval records accuracy
    with store.write() as s:
        queries.add_evaluations(s, [
            eval_row(filled["base"], "boolq", "acc,none", 0.40, stderr=0.11, limit=20.0, settings=higher),
            eval_row(filled["ppm"], "boolq", "acc,none", 0.35, stderr=0.11, limit=20.0, settings=higher),
        ])  # fmt: skip
        # A third cut of llama-base that keeps the last 32 neurons of each layer: none ppm keeps in layer 0.
        tail = [retention([32] * 3)[i] for i in range(3)]
        for row in tail:
            row.kept_indices = bitset.encode(range(WIDTH - 32, WIDTH), WIDTH)
        queries.record_run(s, run_row(filled["base"], scorer="l2", created_at=T0), tail,
                           model_row("llama-tail-67", source="pruned", source_ref="", intermediate_size=32,
                                     expansion=1.0, parameters=200_000, created_at=T0, path="models/tail"))  # fmt: skip
    tail_id = queries.get_model(store, "llama-tail-67").id
    app = app_on(store)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        app.open_compare([filled["base"], filled["ppm"], tail_id])
        await settle(pilot)
        screen = app.screen
        metrics = screen.query_one("#metrics-table", RecordTable).table
        rows = {(r["task"], r["metric"]): r for r in metrics.records()}
        boolq = rows[("boolq", "acc,none")]
        assert boolq["best"] == "within noise"  # 0.05 apart, 2·√(0.11²+0.11²) = 0.31 needed
        assert (boolq[f"m{filled['base']}_stderr"], boolq["limit"]) == (0.11, "20")
        assert rows[("arc_easy", "acc_norm,none")]["best"] == "llama-base"  # 0.62 vs 0.48, stderr 0.01
        assert rows[("arc_easy", "acc_norm,none")]["limit"] == "100"
        assert rows[("model", "size_bytes")]["best"] == ""  # no direction: no best
        await pilot.press("right_square_bracket")  # the Metrics tab
        await settle(pilot)
        assert "best: beats every other beyond noise" in screen_text(app)

        await pilot.press("right_square_bracket", "right_square_bracket")  # past Retention, to Overlap
        await settle(pilot)
        overlap = screen.query_one("#overlap-table", RecordTable)
        titles = [c.title for c in overlap.table.columns]
        assert titles[:4] == ["layer", "llama-ppm-50 ∩ llama-tail-67", "% shared", "% chance"]
        first = overlap.table.formatted()[0]
        assert first[1:4] == ["0", "0.0", "66.7"]  # nothing shared in layer 0, where chance is 64/96
        assert "red: below chance" in screen_text(app)

    assert main(["--store", str(store.root), "compare", "llama-base", "llama-ppm-50", "llama-tail-67", "--json"]) == 0
    cli = {(r["task"], r["metric"]): r["best"] for r in json.loads(capsys.readouterr().out)["rows"]}
    assert cli[("boolq", "acc,none")] is None and cli[("arc_easy", "acc_norm,none")] == "llama-base"
    assert main(["--store", str(store.root), "compare", "llama-base", "llama-ppm-50"]) == 0
    printed = capsys.readouterr().out
    assert "300.0k" in printed and "e+0" not in printed  # parameters readable, not 3e+05
    assert "within noise" in printed


async def test_tradeoff_of_a_model_never_evaluated_says_how_to_evaluate_it(store, filled):
    with store.write() as s:
        queries.record_run(s, run_row(filled["base"], scorer="l2", created_at=T0), retention([48] * 3),
                           model_row("llama-l2-50", source="pruned", source_ref="", intermediate_size=48,
                                     expansion=1.5, parameters=250_000, size_bytes=3 * 2**20, created_at=T0,
                                     path="models/l2"))  # fmt: skip
    app = app_on(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.open_tradeoff(queries.get_model(store, "llama-l2-50").id)
        await settle(pilot)
        text = screen_text(app)
        assert "parent: llama-base · pruned: llama-l2-50" in text
        assert "—: not evaluated on that task · e evaluates llama-base and llama-l2-50" in text
        table = app.screen.query_one(RecordTable).table
        records = {(r["task"], r["metric"]): r for r in table.records()}
        assert records[("arc_easy", "acc_norm,none")]["pruned"] is None
        assert table.formatted()[1][:6] == ["model", "size_bytes", "1000 B", "3.0 MiB", "", "+3.0 MiB"]  # as elsewhere
        await pilot.press("e")  # both models, ready for the same tasks
        await settle(pilot)
        assert isinstance(app.screen, EvalForm)
        assert sorted(m.name for m in app.screen.chosen.values()) == ["llama-base", "llama-l2-50"]


@pytest.fixture(name="recovered")
def recovered_fixture(store, filled) -> dict[str, int]:
    """`filled` and a repaired cut and a healed cut of llama-base (tui_store.add_recovery); all the ids."""
    return filled | add_recovery(store, filled)


def test_the_loss_curve_is_named_for_what_its_values_are(store, recovered):
    """At temperature T the KL is scaled by T² (so its gradients keep their size): the label says so."""
    heal = queries.get_heal(store, recovered["heal"])
    assert curve(heal).label == "KL divergence"
    warm = dataclasses.replace(heal, temperature=2.0, settings=heal.settings | {"ce_weight": 0.25})
    assert curve(warm).label == "0.75 KL + 0.25 CE (KL at temperature 2, times 4)"


async def test_heal_detail_draws_the_loss_curve_and_opens_the_lineage(store, recovered):
    app = app_on(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.open_model(recovered["healed"])
        await settle(pilot)
        await pilot.press("right_square_bracket")  # Lineage: the heal that made it opens
        await settle(pilot)
        lineage = app.screen.query_one("#lineage-table", RecordTable)
        rows = cells(lineage)
        assert rows[0][:3] == ["parent", "llama-wanda-25", "the model it was healed from"]
        assert rows[1][:3] == ["made by", f"heal {recovered['heal']}",
                               "40,960 tokens of wikitext2, distilled from llama-base"]  # fmt: skip
        overview = dict(cells(app.screen.query_one("#overview-table", RecordTable)))
        assert overview["lineage"] == "llama-base → llama-wanda-25 → llama-wanda-25-healed"
        await pilot.press("down", "enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, HealDetailScreen) and screen.heal.id == recovered["heal"]
        text = screen_text(app)
        assert "KL 2.266 → 0.525 (-77%)" in text  # the first and last steps of the curve
        assert "40,960 tokens of wikitext2 (1.37 passes) in 40 steps" in text
        assert "12m 34s on cpu float32 · peak memory 5.0 GiB" in text
        assert "lineage: llama-base → llama-wanda-25 → llama-wanda-25-healed" in text
        # The curve: braille dots from the top left (the first loss) falling to the right, one point a step.
        chart = screen.query_one(Chart)
        assert chart.series[0].label == "KL divergence"
        assert len(chart.series[0].points) == 40 and chart.series[0].points[0] == (1024, 2.2661)
        plot = [line for line in text.splitlines() if "┤" in line or "│" in line]
        top, bottom = plot[0].split("┤", 1)[1], plot[-1].split("┤", 1)[1]
        dots = lambda line: [i for i, c in enumerate(line) if 0x2800 < ord(c) < 0x2900]  # noqa: E731
        assert dots(top) and dots(bottom) and max(dots(top)) < min(dots(bottom))
        assert "1,024" in text and "40,960" in text and "tokens seen" in text  # the x axis, read as tokens

        await pilot.press("right_square_bracket")  # Settings
        await settle(pilot)
        settings = dict(cells(screen.query_one("#settings-table", RecordTable)))
        assert settings["teacher"] == "llama-base" and settings["train"] == "all"
        assert settings["steps"] == "40 of 4 × 256 tokens" and settings["peak memory"] == "5.0 GiB"
        assert settings["learning rate"].startswith("0.0003 at its peak: warmup over 5% of the steps")

        await pilot.press("right_square_bracket")  # Lineage: each name opens its model
        await settle(pilot)
        table = screen.query_one("#heal-lineage-table", RecordTable)
        assert [r[:2] for r in cells(table)] == [["base", "llama-base"], ["pruned", "llama-wanda-25"],
                                                 ["healed", "llama-wanda-25-healed"]]  # fmt: skip
        await pilot.press("down", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ModelDetailScreen) and app.screen.model_id == recovered["wanda"]
        await pilot.press("escape", "o")  # and the healed model, from its key
        await settle(pilot)
        assert isinstance(app.screen, ModelDetailScreen) and app.screen.model_id == recovered["healed"]


async def test_tradeoff_fits_80_columns_without_scrolling_sideways(store, recovered):
    app = app_on(store)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.open_tradeoff(recovered["healed"])
        await settle(pilot)
        table = app.screen.query_one(RecordTable)
        assert 0 < table.virtual_size.width <= table.scrollable_content_region.width
        assert [str(c.label) for c in table.columns.values()][2:5] == ["parent", "healed", "±"]


async def test_tradeoff_of_a_healed_model_is_against_its_cut_and_on_b_against_the_base(store, recovered):
    app = app_on(store)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.open_tradeoff(recovered["healed"])
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TradeoffScreen)
        text = screen_text(app)
        assert "parent: llama-wanda-25 · healed: llama-wanda-25-healed · b: against the base, llama-base" in text
        records = {(r["task"], r["metric"]): r for r in screen.query_one(RecordTable).table.records()}
        assert (records[("arc_easy", "acc_norm,none")]["parent"], records[("arc_easy", "acc_norm,none")]["pruned"]) \
            == (0.57, 0.60)  # fmt: skip
        assert [c.title for c in screen.query_one(RecordTable).table.columns][2:4] == ["parent", "healed"]
        assert screen.compared == [recovered["wanda"], recovered["healed"]]

        await pilot.press("b")
        await settle(pilot)
        text = screen_text(app)
        assert "base: llama-base · healed: llama-wanda-25-healed · b: against its parent" in text
        records = {(r["task"], r["metric"]): r for r in screen.query_one(RecordTable).table.records()}
        arc = records[("arc_easy", "acc_norm,none")]
        assert (arc["parent"], arc["pruned"]) == (0.62, 0.60) and arc["delta"] == pytest.approx(-0.02)
        assert records[("model", "parameters")]["delta"] == -30_000
        assert screen.compared == [recovered["base"], recovered["healed"]]
        await pilot.press("b")
        await settle(pilot)
        assert screen.compared == [recovered["wanda"], recovered["healed"]]

        app.open_tradeoff(recovered["repaired"])  # a cut two steps from nothing else: no base to switch to
        await settle(pilot)
        assert "parent: llama-base · repaired: llama-wanda-25-roneshot" in screen_text(app)
        assert "against the base" not in screen_text(app) and not app.screen.check_action("switch_baseline", ())


async def test_compare_of_base_cut_repaired_and_healed_shows_each_step_and_overlap_only_of_cuts(store, recovered):
    ids = [recovered[k] for k in ("base", "wanda", "repaired", "healed")]
    app = app_on(store)
    async with app.run_test(size=(160, 30)) as pilot:
        await settle(pilot)
        app.open_compare(ids)
        await settle(pilot)
        screen = app.screen
        overview = {r[0]: r[1:] for r in cells(screen.query_one("#overview-table", RecordTable))}
        assert overview["step"] == ["base", "pruned", "repaired", "healed"]
        assert overview["made by"][1:] == ["run 2: wanda, 25% off", "run 4: wanda, 25% off, repair oneshot",
                                           f"heal {recovered['heal']}: 40,960 tokens of wikitext2, from llama-base"]
        metrics = {(r["task"], r["metric"]): r for r in screen.query_one("#metrics-table", RecordTable).table.records()}
        assert metrics[("wikitext", "word_perplexity,none")]["best"] == "llama-base"  # 30.5 beyond noise of 32.0
        retention = screen.query_one("#retention-table", RecordTable).table
        assert [c.title for c in retention.columns][1:] == ["llama-wanda-25 % kept",
                                                            "llama-wanda-25-roneshot % kept"]  # fmt: skip
        overlap = screen.query_one("#overlap-table", RecordTable).table
        # The cut and its repaired twin keep the same neurons; the healed model has no run of its own.
        assert [c.title for c in overlap.columns][1:] == ["llama-wanda-25 ∩ llama-wanda-25-roneshot", "% shared",
                                                          "% chance"]  # fmt: skip
        assert overlap.formatted()[0] == ["0", "72", "100.0", "75.0"]
