"""A small store with fixed names and timestamps for the TUI's tests and snapshots.

Two base models; two done runs of llama-base (ppm 50%, wanda 25%: their kept neurons overlap)
with their result models; a failed run of qwen-base; evaluations of three models.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from store_fixtures import eval_row, model_row, run_row

from store import bitset, queries
from store.db import Store
from store.tables import LayerRetention

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
WIDTH = 96


def retention(kept: list[int]) -> list[LayerRetention]:
    """One row per layer keeping the first kept[i] neurons after an offset of i."""
    return [
        LayerRetention(
            layer=i,
            original_width=WIDTH,
            kept_width=k,
            percent_kept=100.0 * k / WIDTH,
            kept_score_min=0.5 + i,
            kept_score_mean=1.0 + i,
            kept_score_max=2.0 + i,
            removed_score_min=0.0 if k < WIDTH else None,
            removed_score_mean=0.25 if k < WIDTH else None,
            removed_score_max=0.49 if k < WIDTH else None,
            kept_indices=bitset.encode(range(i, i + k), WIDTH),
        )
        for i, k in enumerate(kept)
    ]


def fill(store: Store) -> dict[str, int]:
    """Returns the ids: base, qwen, ppm (model), wanda (model), ppm_run, wanda_run, failed_run."""
    hour = timedelta(hours=1)
    with store.write() as s:
        base = model_row("llama-base", created_at=T0, parameters=300_000, tags=["baseline"], path="models/base")
        qwen = model_row(
            "qwen-base", family="qwen2", architecture="Qwen2ForCausalLM", intermediate_size=128, expansion=4.0,
            parameters=200_000, created_at=T0, path="models/qwen",
        )  # fmt: skip
        s.add_all([base, qwen])
        s.flush()
        ppm = queries.record_run(
            s,
            run_row(base.id, created_at=T0 + hour, peak_memory_bytes=3 * 2**20),
            retention([64, 48, 32]),
            model_row(
                "llama-ppm-50", source="pruned", source_ref="", intermediate_size=64, intermediate_sizes=[64, 48, 32],
                expansion=1.5, parameters=250_000, created_at=T0 + hour, path="models/ppm",
            ),  # fmt: skip
        )
        wanda = queries.record_run(
            s,
            run_row(base.id, scorer="wanda", target_value=25.0, calibration_source="wikitext2",
                    calibration_samples=64, calibration_seq_len=512, created_at=T0 + 2 * hour),  # fmt: skip
            retention([72, 72, 72]),
            model_row(
                "llama-wanda-25", source="pruned", source_ref="", intermediate_size=72, expansion=2.25,
                parameters=270_000, created_at=T0 + 2 * hour, path="models/wanda",
            ),  # fmt: skip
        )
        failed = queries.record_failed_run(
            s, run_row(qwen.id, scorer="act_l2", calibration_source="sms", created_at=T0 + 3 * hour), "out of memory"
        )
        scores = {base.id: (0.62, 0.70, 30.5), ppm.model_id: (0.48, 0.61, 55.2), wanda.model_id: (0.57, 0.66, 38.0)}
        rows = []
        metrics = (("arc_easy", "acc_norm,none", True), ("piqa", "acc,none", True),
                   ("wikitext", "word_perplexity,none", False))  # fmt: skip
        for model_id, values in scores.items():
            for (task, metric, higher), value in zip(metrics, values, strict=True):
                settings = {"higher_is_better": higher}  # as the evaluation records lm-eval's direction
                rows.append(eval_row(model_id, task, metric, value, created_at=T0 + 4 * hour, settings=settings))
        queries.add_evaluations(s, rows)
        assert base.id is not None and qwen.id is not None
        return {
            "base": base.id, "qwen": qwen.id, "ppm": ppm.model_id, "wanda": wanda.model_id,
            "ppm_run": ppm.run_id, "wanda_run": wanda.run_id, "failed_run": failed,
        }  # fmt: skip


def add_failed_runs(store: Store, base_id: int, n: int) -> None:
    """n more failed runs of one model, a minute apart after the others (for paging)."""
    with store.write() as s:
        for i in range(n):
            when = T0 + timedelta(days=1, minutes=i)
            queries.record_failed_run(s, run_row(base_id, scorer="l2", created_at=when), f"error {i}")


LONG_BASE = "smollm2-135m-instruct-base"
LONG_CUT = "smollm2-135m-instruct-hybrid-p20-d64-wikitext2"


def add_long_names(store: Store) -> dict[str, int]:
    """A base and a cut with long names, evaluated on tasks whose metric keys are long, and jobs that
    describe themselves at length (for the 80x24 snapshots); the ids of base and cut."""
    from store.tables import Job

    with store.write() as s:
        base = model_row(LONG_BASE, created_at=T0, parameters=134_515_008, hidden_size=576, intermediate_size=1536,
                         expansion=2.667, num_layers=30, size_bytes=541_595_648, path="models/long-base")  # fmt: skip
        s.add(base)
        s.flush()
        cut = queries.record_run(
            s,
            run_row(base.id, scorer="hybrid", target_value=20.0, divisor=64, calibration_source="wikitext2",
                    calibration_samples=64, calibration_seq_len=512, created_at=T0 + timedelta(hours=1)),  # fmt: skip
            retention([64, 64, 64]),
            model_row(LONG_CUT, source="pruned", source_ref="", intermediate_size=1216, hidden_size=576,
                      expansion=2.111, num_layers=30, parameters=118_598_976, size_bytes=477_904_896,
                      created_at=T0 + timedelta(hours=1), path="models/long-cut"),  # fmt: skip
        )
        figures = [("arc_challenge", "acc_norm,none", True, (0.305, 0.290), 0.032),
                   ("gsm8k", "exact_match,flexible-extract", True, (0.040, 0.020), 0.010),
                   ("truthfulqa_mc2", "acc,none", True, (0.420, 0.395), 0.015),
                   ("wikitext", "word_perplexity,none", False, (21.50, 29.80), None)]  # fmt: skip
        rows = []
        for task, metric, higher, values, stderr in figures:
            for model_id, value in zip((base.id, cut.model_id), values, strict=True):
                rows.append(eval_row(model_id, task, metric, value, stderr=stderr, limit=200.0,
                                     created_at=T0 + timedelta(hours=2), settings={"higher_is_better": higher}))
        queries.add_evaluations(s, rows)
        prune = {"model": LONG_BASE, "scorer": "hybrid", "percent": 20.0, "calibration": "wikitext2"}
        evaluate = {"models": [LONG_BASE, LONG_CUT], "tasks": ["arc_challenge", "gsm8k", "truthfulqa_mc2"]}
        s.add(Job(kind="prune", spec={"request": prune}, status="done", progress=1.0, message="done",
                  created_at=T0 + timedelta(hours=1)))  # fmt: skip
        s.add(Job(kind="eval", spec={"request": evaluate}, status="failed", progress=0.6, message="failed",
                  error="RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB",
                  created_at=T0 + timedelta(hours=2)))  # fmt: skip
        s.add(Job(kind="eval", spec={"request": evaluate}, status="running", stage=f"{LONG_CUT}:gsm8k", progress=0.42,
                  eta_seconds=424, message="gsm8k: 84/200 generations", device="cuda:0",
                  peak_memory_bytes=3 * 2**30, created_at=T0 + timedelta(hours=3)))  # fmt: skip
        s.add(Job(kind="prune", spec={"request": prune | {"percent": 40.0}}, status="queued",
                  created_at=T0 + timedelta(hours=3, minutes=1)))  # fmt: skip
        assert base.id is not None
        return {"base": base.id, "cut": cut.model_id}


def repaired_rows(rows: list[LayerRetention]) -> list[LayerRetention]:
    """The rows with a repair's reconstruction errors: 0.2, 0.3, ... cut, halved by the refit."""
    for r in rows:
        r.repair_error_before, r.repair_error_after = 0.2 + 0.1 * r.layer, 0.1 + 0.05 * r.layer
    return rows


def loss_curve(steps: int, tokens_per_step: int = 1024) -> list[list[float]]:
    """A falling KL curve, [step, tokens seen, loss] per step, as a heal records it."""
    return [[s, s * tokens_per_step, round(2.0 * 0.5 ** (s / 10) + 0.4, 4)] for s in range(1, steps + 1)]


def add_recovery(store: Store, filled: dict[str, int]) -> dict[str, int]:
    """A base -> cut -> repaired cut and -> healed cut lineage on llama-base (the wanda cut of `fill`
    is the cut): a oneshot-repaired run of the same setting, and a heal of the cut (40 steps of 1,024
    tokens of wikitext2 distilled from llama-base) with its healed model, each evaluated like the
    others. The ids: repaired (model), repaired_run, healed (model), heal."""
    from store.tables import HealRun

    hour = timedelta(hours=1)
    with store.write() as s:
        repaired = queries.record_run(
            s,
            run_row(filled["base"], scorer="wanda", target_value=25.0, calibration_source="wikitext2",
                    calibration_samples=64, calibration_seq_len=512, repair="oneshot", repair_damping=0.01,
                    created_at=T0 + 5 * hour),  # fmt: skip
            repaired_rows(retention([72, 72, 72])),
            model_row("llama-wanda-25-roneshot", source="pruned", source_ref="", intermediate_size=72, expansion=2.25,
                      parameters=270_000, created_at=T0 + 5 * hour, path="models/wanda-repaired"),  # fmt: skip
        )
        healed = model_row("llama-wanda-25-healed", source="healed", source_ref="", intermediate_size=72,
                           expansion=2.25, parameters=270_000, created_at=T0 + 6 * hour,
                           path="models/wanda-healed")  # fmt: skip
        heal = HealRun(
            model_id=filled["wanda"], teacher_model_id=filled["base"], data_source="wikitext2", data_hash="ab" * 32,
            tokens=40_960, tokens_seen=40_960, passes=1.37, steps=40, seq_len=256, batch_size=4, lr=3e-4,
            temperature=1.0, train="all", device="cpu", dtype="float32",
            settings={"warmup": 0.05, "schedule": "cosine", "optimizer": "adamw", "weight_decay": 0.0, "seed": 0,
                      "checkpoint_every_s": 300.0, "resumed_from_step": None, "trained_parameters": 270_000,
                      "save_dtype": "float32"},
            loss_curve=loss_curve(40), seconds=754.0, peak_memory_bytes=5 * 2**30,
            versions={"torch": "2.13.0", "transformers": "5.0.0", "workbench": "0.1.0"}, created_at=T0 + 6 * hour,
        )  # fmt: skip
        heal_id = queries.record_heal(s, heal, healed)
        figures = {repaired.model_id: (0.59, 0.67, 34.0), healed.id: (0.60, 0.68, 32.0)}
        metrics = (("arc_easy", "acc_norm,none", True), ("piqa", "acc,none", True),
                   ("wikitext", "word_perplexity,none", False))  # fmt: skip
        rows = [eval_row(model_id, task, metric, value, created_at=T0 + 7 * hour, settings={"higher_is_better": up})
                for model_id, values in figures.items()
                for (task, metric, up), value in zip(metrics, values, strict=True)]  # fmt: skip
        queries.add_evaluations(s, rows)
        assert healed.id is not None
        return {"repaired": repaired.model_id, "repaired_run": repaired.run_id, "healed": healed.id, "heal": heal_id}
