"""A study with known figures, built row by row (no engine): for the views, findings, report and
TUI tests and snapshots.

smol-base pruned by ppm (static) and wanda (wikitext2, sms) at 20% and 40%, every run done and
evaluated on ppl:wikitext2, ppl:sms and arc_easy (limit 100, stderr 0.05); ppm at 60% still
queued. The figures are chosen so that each finding rule has a case: wanda beats ppm on
perplexity at both targets; arc_easy shows no clear difference at 20% and ppm clearly below at
40%; each calibration source wins on its own perplexity (the diagonal).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from store_fixtures import eval_row, model_row, run_row

from store import bitset, queries, studies
from store.db import Store
from store.tables import Job, LayerRetention, Study
from workbench.spec import PruneSpec
from workbench.studies.request import EvalSettings, SweepRequest, config_key, config_of

T0 = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)
WIDTH = 96
NAME = "smol-study"
REQUEST = SweepRequest(model="smol-base", scorers=("ppm", "wanda"), tasks=("ppl:wikitext2", "ppl:sms", "arc_easy"),
                       percents=(20.0, 40.0), calibrations=("wikitext2", "sms"), limit=100)  # fmt: skip
SETTINGS = EvalSettings.of(REQUEST, "cpu", local_data=True)
# (scorer, percent, calibration) -> (ppl:wikitext2, ppl:sms, arc_easy acc)
FIGURES = {
    ("ppm", 20.0, None): (24.0, 36.0, 0.55),
    ("ppm", 40.0, None): (40.0, 60.0, 0.35),
    ("wanda", 20.0, "wikitext2"): (22.0, 35.0, 0.57),
    ("wanda", 20.0, "sms"): (23.5, 32.0, 0.56),
    ("wanda", 40.0, "wikitext2"): (30.0, 50.0, 0.52),
    ("wanda", 40.0, "sms"): (36.0, 41.0, 0.50),
}
BASE_FIGURES = (20.0, 30.0, 0.60)
PPL_SETTINGS = {"windows": 24, "window_len": 512, "tokens_scored": 12264, "stride": 512, "overlapping": False}


def retention(kept: int, shift: int) -> list[LayerRetention]:
    """Three layers keeping `kept` neurons from `shift + layer` on: two shifts overlap partly."""
    return [
        LayerRetention(layer=i, original_width=WIDTH, kept_width=kept, percent_kept=100.0 * kept / WIDTH,
                       kept_indices=bitset.encode(range(shift + i, shift + i + kept), WIDTH))
        for i in range(3)
    ]  # fmt: skip


def evaluations(model_id: int, figures: tuple[float, float, float], when: datetime) -> list:
    wikitext, sms, arc = figures
    ppl = [
        eval_row(model_id, task, "perplexity", value, harness="workbench", harness_version="0.1.0", stderr=None,
                 limit=None, fewshot=None, samples=24, created_at=when, settings=PPL_SETTINGS | {"source": source})
        for task, source, value in (("ppl:wikitext2", "wikitext2", wikitext), ("ppl:sms", "sms", sms))
    ]  # fmt: skip
    lm = {"requested": "arc_easy", "higher_is_better": True, "chat_template_mode": "auto", "chat_template": False,
          "data": "local", "approximate": False}  # fmt: skip
    arc_row = eval_row(model_id, "arc_easy", "acc,none", arc, stderr=0.05, samples=100, limit=100.0, fewshot=0,
                       harness_version="0.4.9", created_at=when, settings=lm)  # fmt: skip
    return [*ppl, arc_row]


def fill_study(store: Store) -> dict[str, int]:
    """The study NAME; returns the ids of the base model and of each run by `scorer-percent-source`."""
    ids: dict[str, int] = {}
    hour = timedelta(hours=1)
    with store.write() as s:
        base = model_row("smol-base", parameters=1_000_000, created_at=T0, path="models/smol-base")
        s.add(base)
        s.flush()
        assert base.id is not None
        ids["base"] = base.id
        rows = evaluations(base.id, BASE_FIGURES, T0 + hour)
        study_id = studies.save_study(s, NAME, "smol-base", base.id, REQUEST.to_dict() | {
            "percents": [20.0, 40.0, 60.0], "settings": SETTINGS.to_dict()})  # fmt: skip
        for n, spec in enumerate(REQUEST.configurations()):
            calibration = spec.calibration if spec.data_driven else None
            kept = WIDTH - int(WIDTH * spec.percent / 100)  # type: ignore[operator]
            name = f"smol-{spec.scorer}-p{spec.percent:g}" + (f"-{calibration}" if calibration else "")
            when = T0 + (2 + n) * hour
            recorded = queries.record_run(
                s,
                run_row(base.id, scorer=spec.scorer, target_value=spec.percent, divisor=1, created_at=when,
                        calibration_source=calibration, calibration_samples=64 if calibration else None,
                        calibration_seq_len=512 if calibration else None, parameters_before=1_000_000,
                        calibration_hash=f"{calibration}-hash-0123456789abcdef" if calibration else None,
                        parameters_after=1_000_000 - int(spec.percent) * 5_000),  # type: ignore[arg-type]
                retention(kept, 8 if calibration == "sms" else 0),
                model_row(name, source="pruned", source_ref="", intermediate_size=kept, expansion=kept / 32,
                          parameters=1_000_000 - int(spec.percent) * 5_000, created_at=when,  # type: ignore[arg-type]
                          path=f"models/{name}"),
            )  # fmt: skip
            ids[name.removeprefix("smol-")] = recorded.run_id
            config = config_of(spec)
            studies.add_item(s, study_id, config_key(config), config, "prune", run_id=recorded.run_id)
            rows += evaluations(recorded.model_id, FIGURES[(spec.scorer, spec.percent, calibration)], when + hour)
        queries.add_evaluations(s, rows)
        # ppm at 60%: asked for, still queued.
        pending = PruneSpec(model="smol-base", scorer="ppm", percent=60.0, divisor=1)
        job = Job(kind="prune", spec={"request": pending.to_dict()}, created_at=T0 + 9 * hour)
        s.add(job)
        s.flush()
        config = config_of(pending)
        studies.add_item(s, study_id, config_key(config), config, "prune", job_id=job.id)
        s.execute(update(Study).where(Study.id == study_id).values(created_at=T0, updated_at=T0 + 9 * hour))
    return ids
