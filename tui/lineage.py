"""A model's lineage as the views show it: base -> cut (pruned, or pruned and repaired) -> healed,
each step with the role it plays and how it was made (the run or the heal), read from the store."""

from __future__ import annotations

from dataclasses import dataclass

from store import queries
from store.db import Store
from store.queries import ModelInfo, Source
from tui.screens.runs import target


@dataclass(frozen=True)
class Step:
    model: ModelInfo
    role: str  # base | pruned | repaired | healed | derived
    how: str  # how it was made, in words ("" for a base)
    run_id: int | None = None  # the pruning run that made it
    heal_id: int | None = None  # the heal that made it


def step(source: Source, model: ModelInfo) -> Step:
    """The role `model` plays in its lineage, and how it was made."""
    if model.made_by_run_id is not None:
        run = queries.run_detail(source, model.made_by_run_id)
        repaired = f", repair {run.repair}" if run.repair else ""
        return Step(model, "repaired" if run.repair else "pruned", f"run {run.id}: {run.scorer}, {target(run)}"
                    f"{repaired}", run_id=run.id)  # fmt: skip
    healed = queries.list_heals(source, result=model.id, limit=1)
    if healed:
        h = healed[0]
        return Step(model, "healed", f"heal {h.id}: {h.tokens_seen:,} tokens of {h.data_source}, from {h.teacher_name}",
                    heal_id=h.id)  # fmt: skip
    if model.parent_id is None:
        return Step(model, "base", f"imported ({model.source})")
    return Step(model, "derived", f"from {model.parent_name}")


def steps(store: Store, model: ModelInfo) -> list[Step]:
    """The model's lineage, its root (the base) first and the model itself last."""
    with store.session() as session:
        return [step(session, m) for m in queries.lineage(session, model)]


def chain(found: list[Step]) -> str:
    """The lineage in a line: llama-base → llama-ppm-50 → llama-ppm-50-healed."""
    return " → ".join(s.model.name for s in found)
