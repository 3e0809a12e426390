"""Row builders and small helpers for the store's tests (the `store` fixture is in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from store import bitset, queries
from store.db import Store
from store.tables import Evaluation, LayerRetention, Model, PruningRun

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("store_worker.py")


def model_row(name: str, **overrides: Any) -> Model:
    values: dict[str, Any] = dict(
        name=name,
        source="folder",
        source_ref=f"/models/{name}",
        family="llama",
        architecture="LlamaForCausalLM",
        num_layers=3,
        hidden_size=32,
        intermediate_size=96,
        expansion=3.0,
        parameters=100_000,
        dtype="float32",
        size_bytes=1000,
        path=f"models/{name}",
    )
    return Model(**(values | overrides))


def run_row(base_model_id: int, **overrides: Any) -> PruningRun:
    values: dict[str, Any] = dict(
        base_model_id=base_model_id,
        scorer="ppm",
        target_kind="percent",
        target_value=50.0,
        divisor=8,
        allocation="uniform",
        layers="all",
        device="cpu",
        dtype="float32",
        versions={"torch": "2.13.0", "transformers": "5.0.0", "workbench": "0.1.0"},
        stage_seconds={"load": 0.5, "score": 0.25, "save": 0.125},
        parameters_before=100_000,
        parameters_after=80_000,
    )
    return PruningRun(**(values | overrides))


def retention_rows(layers: int = 3, width: int = 96, kept: int = 48) -> list[LayerRetention]:
    return [
        LayerRetention(
            layer=layer,
            original_width=width,
            kept_width=kept,
            percent_kept=100.0 * kept / width,
            kept_score_min=0.5,
            kept_score_mean=1.0,
            kept_score_max=2.0,
            removed_score_min=0.0,
            removed_score_mean=0.25,
            removed_score_max=0.49,
            kept_indices=bitset.encode(range(layer, layer + kept), width),
        )
        for layer in range(layers)
    ]


def eval_row(
    model_id: int, task: str = "arc_easy", metric: str = "acc_norm,none", value: float = 0.5, **kw: Any
) -> Evaluation:
    values: dict[str, Any] = dict(
        model_id=model_id,
        harness="lm-eval",
        harness_version="0.4.9",
        task=task,
        metric=metric,
        value=value,
        stderr=0.01,
        limit=100.0,
        fewshot=0,
        device="cpu",
        dtype="float32",
    )
    return Evaluation(**(values | kw))


def add_model(store: Store, name: str, **overrides: Any) -> int:
    """A model row and a folder of files for it, written the way the engine does it."""
    with store.new_artifact("models") as artifact:
        (artifact.path / "config.json").write_text('{"model_type": "llama"}')
        with store.write() as session:
            row = model_row(name, path=artifact.relpath, **overrides)
            session.add(row)
            session.flush()
            artifact.commit()
        artifact.keep()
    assert row.id is not None
    return row.id


def add_pruned(store: Store, base_id: int, name: str, **run_overrides: Any) -> queries.Recorded:
    """A pruning run of `base_id`, its retention rows and its result model (with files)."""
    with store.new_artifact("models") as artifact:
        (artifact.path / "model.safetensors").write_bytes(b"\0" * 64)
        with store.write() as session:
            result = model_row(name, source="pruned", source_ref="", intermediate_size=48, path=artifact.relpath)
            recorded = queries.record_run(session, run_row(base_id, **run_overrides), retention_rows(), result)
            artifact.commit()
        artifact.keep()
    return recorded


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under a folder with its bytes: equal snapshots mean nothing was touched."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def worker(*args: str) -> subprocess.Popen[str]:
    """tests/store_worker.py in a separate Python process."""
    env = os.environ | {"PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
