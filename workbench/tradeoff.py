"""The trade-off between models: every recorded metric aligned by task and key, and for each model
its change against a baseline, with a noise test.

A model's baseline is its nearest ancestor among the compared models (its parent, for a pruned
model compared with the model it was pruned from), else the first model compared. A change
exceeds noise when |delta| > 2 * sqrt(se1^2 + se2^2), about a 95% test for two independent
estimates; it is judged only where both values carry a standard error (lm-eval's), else unknown.
The best of a row (Compare's, `workbench compare`'s) is the value, by the metric's direction, that
beats every other beyond that same noise; none where two cannot be told apart. Each cell is the
newest evaluation of that (task, metric) for that model. Parameters and size
come from the evaluation rows, or from the model's own row where it was never evaluated.

Light on purpose (store queries and arithmetic, no torch): the TUI draws it as well as the CLI.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from store import queries
from store.queries import ModelInfo, Source
from workbench.errors import UserError
from workbench.spec import PPL_PREFIX
from workbench.tabular import Column, Table, count, size

NOISE_SIGMAS = 2.0
# Directions of the workbench's own metrics (lm-eval's come with each row).
HIGHER_IS_BETTER = {"perplexity": False, "prefill_tokens_per_s": True, "decode_tokens_per_s": True,
                    "peak_bytes": False}  # fmt: skip
MODEL_FACTS = ("parameters", "size_bytes")
BYTE_METRICS = ("size_bytes", "peak_bytes")


class Bytes(float):
    """A figure in bytes: shown in binary units, as sizes are everywhere, and written as the number."""


def figure(v: float | None) -> str:
    """Bytes in binary units, other large figures (parameters, tokens) in short form, the rest to four digits."""
    if v is None:
        return ""
    if isinstance(v, Bytes):
        return size(round(v))
    return count(round(v)) if abs(v) >= 1e4 else f"{v:.4g}"


def signed(v: float | None) -> str:
    return "" if v is None else ("+" if v >= 0 else "-") + figure(type(v)(abs(v)))


@dataclass(frozen=True)
class Cell:
    value: float
    stderr: float | None
    samples: int | None
    fewshot: int | None
    limit: float | None
    evaluated_at: datetime | None  # None: taken from the model row


@dataclass(frozen=True)
class Change:
    baseline_id: int
    delta: float  # value - baseline value
    relative: float | None  # delta / |baseline value|; None when that is 0
    noise: float | None  # 2 * sqrt(se1^2 + se2^2); None without both stderrs
    beyond_noise: bool | None


@dataclass(frozen=True)
class Row:
    task: str
    metric: str
    approximate: bool  # measured on approximate data (the local HellaSwag)
    higher_is_better: bool | None
    requested: str  # the task asked for (mmlu, for its subgroups and subjects)
    depth: int  # 0: the task asked for; 1: its subgroups; 2: their subtasks
    cells: dict[int, Cell]  # model id -> its newest value
    changes: dict[int, Change]  # model id -> against its baseline, where both have a value

    @property
    def label(self) -> str:
        return self.task + (" (approximate)" if self.approximate else "")

    def figure(self, v: float | None) -> float | None:
        """A value of this row typed for showing: Bytes where the metric counts bytes."""
        return Bytes(v) if v is not None and self.metric in BYTE_METRICS else v


@dataclass(frozen=True)
class Best:
    model_id: int | None  # the model whose value beats every other's beyond noise
    why_none: str  # where there is none and the row could have one: "within noise" or "tie"


def best(row: Row, model_ids: Sequence[int]) -> Best:
    """The best value of a row among `model_ids`, by the row's direction, and only where it beats
    every other value beyond noise (the rule of `noise`; a pair without both standard errors is
    compared as it is, as a change without them is)."""
    values = {i: row.cells[i] for i in model_ids if i in row.cells}
    if len(values) < 2 or row.higher_is_better is None:
        return Best(None, "")
    top = (max if row.higher_is_better else min)(values, key=lambda i: values[i].value)
    for i, cell in values.items():
        if i == top:
            continue
        if cell.value == values[top].value:
            return Best(None, "tie")
        margin = noise(values[top].stderr, cell.stderr)
        if margin is not None and abs(values[top].value - cell.value) <= margin:
            return Best(None, "within noise")
    return Best(top, "")


@dataclass(frozen=True)
class Comparison:
    models: tuple[ModelInfo, ...]
    baselines: dict[int, int]  # model id -> its baseline's id (every model but the first has one)
    rows: tuple[Row, ...]

    def table(self) -> Table:
        """One row per (task, metric): each model's value and stderr, then its change; last, the best
        model where one beats every other beyond noise."""
        columns = [Column("task"), Column("metric")]
        for m in self.models:
            columns += [Column(f"{m.name}", fmt=figure, numeric=True), Column(f"{m.name} stderr", "±", numeric=True)]
            if m.id in self.baselines:
                columns += [
                    Column(f"{m.name} delta", "Δ", signed, numeric=True),
                    Column(f"{m.name} relative", "Δ%", lambda v: "" if v is None else f"{100 * v:+.1f}%",
                           numeric=True),
                    Column(f"{m.name} beyond noise", "> noise", _flag),
                ]  # fmt: skip
        columns.append(Column("best"))
        body = []
        for row in self.rows:
            line: list[Any] = [row.label, row.metric]
            for m in self.models:
                cell, change = row.cells.get(m.id), row.changes.get(m.id)
                line += [row.figure(cell.value) if cell else None, cell.stderr if cell else None]
                if m.id in self.baselines:
                    line += [row.figure(change.delta), change.relative, change.beyond_noise] if change else [None] * 3
            found = best(row, [m.id for m in self.models])
            body.append([*line, self._name(found.model_id) if found.model_id is not None else found.why_none])
        vs = ", ".join(f"{m.name} vs {self._name(self.baselines[m.id])}" for m in self.models if m.id in self.baselines)
        return Table(f"trade-off: {vs}" if vs else "trade-off", columns, body)

    def to_dict(self) -> dict[str, Any]:
        names = {m.id: m.name for m in self.models}
        return {
            "models": [
                {"id": m.id, "name": m.name, "parent": m.parent_name, "baseline": names.get(self.baselines.get(m.id))}
                for m in self.models
            ],
            "noise_rule": f"|delta| > {NOISE_SIGMAS:g} * sqrt(se1^2 + se2^2)",
            "rows": [
                {
                    "task": r.task,
                    "metric": r.metric,
                    "approximate": r.approximate,
                    "higher_is_better": r.higher_is_better,
                    "values": {names[i]: vars(c) for i, c in r.cells.items()},
                    "changes": {names[i]: _change_dict(c, names) for i, c in r.changes.items()},
                    "best": names.get(best(r, list(names)).model_id),  # type: ignore[arg-type]
                }
                for r in self.rows
            ],
        }

    def _name(self, model_id: int) -> str:
        return next(m.name for m in self.models if m.id == model_id)


def compare(source: Source, refs: Sequence[str | int]) -> Comparison:
    """Compare models by name or id (NotFoundError for an unknown one). One pruned model alone is
    compared with its parent."""
    models = [queries.get_model(source, r) for r in refs]
    if len(models) == 1 and models[0].parent_id is not None:
        models.insert(0, queries.get_model(source, models[0].parent_id))
    ids = [m.id for m in models]
    if len(set(ids)) != len(ids):
        raise UserError("a model is named twice")
    baselines = _baselines(source, models)
    rows = []
    for aligned in queries.aligned_evaluations(source, ids):
        cells = {i: _cell(e) for i, e in aligned.cells.items()}
        first = next(iter(aligned.cells.values()))
        if aligned.task == "model" and aligned.metric in MODEL_FACTS:
            cells |= {m.id: _fact(m, aligned.metric) for m in models if m.id not in cells}
        rows.append(_row(aligned.task, aligned.metric, first.settings, cells, baselines))
    present = {(r.task, r.metric) for r in rows}
    for fact in MODEL_FACTS:
        if ("model", fact) not in present:
            rows.append(_row("model", fact, {}, {m.id: _fact(m, fact) for m in models}, baselines))
    rows.sort(key=lambda r: (_rank(r.requested), r.requested, r.depth, r.task, r.metric))
    return Comparison(tuple(models), baselines, tuple(rows))


def noise(stderr: float | None, other_stderr: float | None) -> float | None:
    """How large a difference of two figures must be to exceed noise: 2 sqrt(se1^2 + se2^2);
    None where a standard error is missing."""
    if stderr is None or other_stderr is None:
        return None
    return NOISE_SIGMAS * math.sqrt(stderr**2 + other_stderr**2)


def change(value: Cell, baseline: Cell, baseline_id: int) -> Change:
    delta = value.value - baseline.value
    relative = delta / abs(baseline.value) if baseline.value else None
    threshold = noise(value.stderr, baseline.stderr)
    return Change(baseline_id, delta, relative, threshold, None if threshold is None else abs(delta) > threshold)


def _row(task: str, metric: str, settings: dict, cells: dict[int, Cell], baselines: dict[int, int]) -> Row:
    changes = {
        i: change(cells[i], cells[b], b) for i, b in baselines.items() if i in cells and b in cells
    }
    higher = settings.get("higher_is_better", HIGHER_IS_BETTER.get(metric))
    requested = settings.get("requested", task)
    depth = 0 if task == requested else 1 if settings.get("group") == requested else 2
    return Row(task, metric, bool(settings.get("approximate")), higher, requested, depth, cells, changes)


def _baselines(source: Source, models: list[ModelInfo]) -> dict[int, int]:
    """Each model's nearest ancestor among `models`; a model with none is compared with the first
    such model (the reference, which has no baseline)."""
    listed = {m.id for m in models}
    nearest: dict[int, int | None] = {}
    for m in models:
        ancestor, seen = m.parent_id, set()
        while ancestor is not None and ancestor not in listed and ancestor not in seen:
            seen.add(ancestor)
            ancestor = queries.get_model(source, ancestor).parent_id
        nearest[m.id] = ancestor if ancestor in listed else None
    reference = next(i for i, a in nearest.items() if a is None)  # the oldest listed ancestor has none
    return {i: a if a is not None else reference for i, a in nearest.items() if i != reference}


def _cell(e: queries.EvaluationInfo) -> Cell:
    return Cell(e.value, e.stderr, e.samples, e.fewshot, e.limit, e.created_at)


def _fact(m: ModelInfo, metric: str) -> Cell:
    return Cell(float(getattr(m, metric)), None, None, None, None, None)


def _change_dict(c: Change, names: dict[int, str]) -> dict[str, Any]:
    return {"baseline": names[c.baseline_id], "delta": c.delta, "relative": c.relative, "noise": c.noise,
            "beyond_noise": c.beyond_noise}  # fmt: skip


def _rank(task: str) -> int:
    """Model facts, then speed and memory, then perplexity, then benchmarks."""
    return {"model": 0, "speed": 1, "memory": 2}.get(task, 3 if task.startswith(PPL_PREFIX) else 4)


def _flag(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "no")
