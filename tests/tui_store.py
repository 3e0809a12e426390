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
