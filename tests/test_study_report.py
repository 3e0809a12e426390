"""A study's views on known figures: the trade-off table (best per column, direction-aware), the
specialisation view, the findings each rule states (and those it must not), the report, and the
flag on a configuration calibrated on the text it is measured on."""

from __future__ import annotations

import json

import pytest
from store_fixtures import model_row, run_row
from study_store import NAME, T0, evaluations, fill_study, retention

from store import queries, studies
from workbench.cli.main import main
from workbench.studies.findings import findings
from workbench.studies.report import report
from workbench.studies.request import EvalSettings, SweepRequest, config_key, config_of
from workbench.studies.view import gather

pytestmark = pytest.mark.backends("sqlite", "postgresql")


def test_the_table_marks_the_best_of_each_column_by_its_direction(store):
    fill_study(store)
    view = gather(store, NAME)
    assert [r.label for r in view.all_rows] == [
        "base (smol-base)", "ppm 20%", "ppm 40%", "ppm 60%", "wanda 20% (wikitext2)", "wanda 20% (sms)",
        "wanda 40% (wikitext2)", "wanda 40% (sms)",
    ]  # fmt: skip
    assert [c.key for c in view.columns] == ["ppl:wikitext2 perplexity", "ppl:sms perplexity", "arc_easy acc,none"]
    text = view.table("text").to_text()
    assert "22.00 *" in text and "32.00 *" in text and "0.570 ± 0.050 *" in text  # lowest ppl, highest acc
    assert text.count(" *") == 3 and "20.00 *" not in text  # the base is the reference, never marked
    markdown = view.table("markdown").to_markdown()
    assert "| **22.00** |" in markdown and "| prune queued |" in markdown
    raw = view.table("raw").records()
    assert raw[4]["arc_easy acc,none"] == 0.57 and raw[4]["arc_easy acc,none stderr"] == 0.05
    assert raw[4]["calibration"] == "wikitext2" and abs(raw[1]["removed"] - 0.1) < 1e-12


def test_findings_state_what_the_figures_support_and_no_more(store):
    fill_study(store)
    found = {f.text for f in findings(gather(store, NAME))}
    expected = {
        # Perplexity has no standard error: the ordering as measured.
        "At 40%, wanda (wikitext2) (30.00) has the lowest ppl:wikitext2 perplexity; next is wanda (sms) (36.00).",
        # Accuracy: gaps judged against 2 sqrt(se1^2 + se2^2) = 0.141.
        "At 20%, arc_easy acc,none shows no clear difference between the 3 configurations (0.550 to 0.570: every "
        "gap within noise).",
        "At 40%, wanda (wikitext2) (0.520 ± 0.050) has the highest arc_easy acc,none; wanda (sms) (0.500 ± 0.050) is "
        "within noise of it; ppm (0.350 ± 0.050) is clearly below.",
        "At 20%, every configuration is within noise of the base on arc_easy acc,none (0.600 ± 0.050).",
        "At 40%, 1 of 3 configurations scores clearly worse than the base (0.600 ± 0.050) on arc_easy acc,none: ppm "
        "0.350 ± 0.050; 2 within noise of it.",
        "wanda scores lower than ppm on ppl:wikitext2 perplexity at every target (20%: 22.00 vs 24.00; 40%: 30.00 "
        "vs 40.00), comparing each scorer's best configuration.",
        "ppl:sms perplexity rises with every step of the share removed from the base in all 3 series (ppm, wanda "
        "(wikitext2), wanda (sms)).",
        "wanda 40% uniform: calibrating on sms instead of wikitext2 lowers ppl:sms perplexity (50.00 with wikitext2, "
        "41.00 with sms).",
        "The diagonal wins in 4 of 4 cases: the configuration calibrated on a source has the lowest perplexity on it "
        "within its group.",
        "lm-eval figures rest on 100 documents per task; their standard errors are about 0.050 (median), so gaps "
        "under about 0.141 cannot be told from noise.",
        "1 of 8 rows are not finished (ppm 60%: prune queued); the findings cover the figures there are.",
    }
    assert expected <= found, expected - found
    # wanda's lead on arc_easy is within noise at 20%: no ordering of the scorers is claimed there.
    assert not any("arc_easy" in t and "at every target" in t for t in found)
    overlap = next(t for t in found if t.startswith("wanda 40% uniform: the wikitext2 and sms calibrations keep"))
    assert "86.2% of the same neurons" in overlap and "would share 60.4%" in overlap


def test_the_report_holds_every_configuration_and_how_each_figure_was_measured(store):
    fill_study(store)
    view = gather(store, NAME)
    text = report(view)
    for heading in ("## Settings", "## Versions", "## How each figure was measured", "## Trade-off",
                    "## Specialisation", "## Findings"):  # fmt: skip
        assert f"\n{heading}\n" in text
    assert ("workbench sweep smol-base --scorers ppm,wanda --percent 20,40,60 --calibration wikitext2,sms "
            "--tasks ppl:wikitext2,ppl:sms,arc_easy --limit 100") in text  # fmt: skip
    assert "| torch | 2.13.0 |" in text and "| lm-eval | 0.4.9 |" in text and "| transformers | 5.0.0 |" in text
    assert "- `arc_easy` metric `acc,none` (lm-eval, value ± its standard error): 0-shot, limit 100, 100 documents" \
        in text
    assert "- `ppl:sms` metric `perplexity`: the first 24 non-overlapping windows of 512 tokens of the held-out " \
        "fifth of the SMS Spam Collection" in text
    for row in view.rows:
        assert f"| {row.label} |" in text  # in the table of runs, with its calibration and hash
    assert "| wanda 20% (sms) | 4 | cpu | float32 | sms, 64 x 512 | `sms-hash-0123456` |" in text
    assert all(f"- {f.text}" in text for f in findings(view))


def test_show_list_and_report_from_the_command_line(store, tmp_path, capsys):
    fill_study(store)
    where = ["--store", store.location]
    assert main([*where, "study", "list"]) == 0
    assert "smol-study  smol-base" in capsys.readouterr().out
    assert main([*where, "study", "show", NAME]) == 0
    out = capsys.readouterr().out
    assert "specialisation: perplexity by calibration source" in out and "0.570 ± 0.050 *" in out
    assert main([*where, "study", "show", NAME, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert len(shown["rows"]) == 8 and len(shown["specialisation"]) == 4 and shown["overlap"][0]["layers"] == 3
    assert main([*where, "study", "report", NAME, "--out", str(tmp_path / "none" / "r.md")]) == 2
    assert "no folder" in capsys.readouterr().err
    assert main([*where, "study", "show", "nope"]) == 2
    assert "no study named 'nope'" in capsys.readouterr().err


def test_calibrating_on_the_text_perplexity_reads_is_flagged_in_every_view(store, tmp_path):
    notes = str(tmp_path / "notes.txt")
    request = SweepRequest(model="base", scorers=("wanda",), tasks=(f"ppl:{notes}", "ppl:sms"), percents=(20.0,),
                           calibrations=(notes, "sms"))  # fmt: skip
    with store.write() as s:
        base = model_row("base", created_at=T0)
        s.add(base)
        s.flush()
        study_id = studies.save_study(s, "flagged", "base", base.id, request.to_dict() | {
            "settings": EvalSettings.of(request, "cpu", local_data=True).to_dict()})  # fmt: skip
        rows = []
        for spec in request.configurations():
            recorded = queries.record_run(
                s, run_row(base.id, scorer="wanda", target_value=20.0, calibration_source=spec.calibration,
                           calibration_samples=64, calibration_seq_len=512), retention(77, 0),
                model_row(f"base-{len(rows)}", source="pruned", source_ref="", intermediate_size=77))  # fmt: skip
            studies.add_item(s, study_id, config_key(config_of(spec)), config_of(spec), "prune", run_id=recorded.run_id)
            made = evaluations(recorded.model_id, (10.0, 12.0, 0.5), T0)[:2]
            made[0].task, made[0].settings = f"ppl:{notes}", made[0].settings | {"source": notes, "overlapping": True}
            rows += made
        queries.add_evaluations(s, rows)
    view = gather(store, "flagged")
    flagged = [r for r in view.rows if r.overlaps]
    assert [r.calibration for r in flagged] == ["notes.txt"] and flagged[0].overlaps == (f"ppl:{notes}",)
    assert f"overlap: calibrated on ppl:{notes}'s text" in view.table("text").to_text()
    assert view.table("raw").records()[1]["calibration_overlaps"] == [f"ppl:{notes}"]
    assert any(n.startswith("overlap:") for n in view.notes())
    assert f"calibrates on the text ppl:{notes} measures: its ppl:{notes} figure is not a held-out one" in report(view)
    grid = view.grid().records()
    assert grid[1]["notes"].startswith("overlap:") and grid[2]["notes"] == ""


def test_a_configuration_without_a_run_yet_has_a_status_and_no_figures(store):
    fill_study(store)
    view = gather(store, NAME)
    pending = next(r for r in view.rows if r.status != "done")
    assert (pending.label, pending.status, pending.figures, pending.run) == ("ppm 60%", "prune queued", {}, None)
    assert pending.config["target_value"] == 60.0 and pending.jobs == (1,)
