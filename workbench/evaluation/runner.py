"""One evaluation from request to recorded rows: the flow every front end (CLI, jobs) uses.

Everything that can be checked without loading weights is checked first: the request, every
model (resolved, not loaded), text sources, chat templates, and every lm-eval task (indexed,
written for the local data, built with its dataset), so bad input writes nothing. Then, model
by model: load once, measure the built-ins (speed and memory first, while the process is
lean), run each lm-eval task on the loaded model, and record all of that model's rows in one
transaction. A cancel or failure records nothing for the model it interrupts; a model already
finished keeps its rows.

Chat templates (--chat-template auto): on for tasks that generate answers (GSM8K, IFEval) when the
tokenizer has a chat template and the model, or the model it was pruned from, is named as
instruct-tuned (instruct, chat, -it; the bundled SmolLM2-135M-Instruct is); off for tasks
scored by log-likelihood, whose reported numbers use plain prompts. `on` and `off` apply to
every lm-eval task. Each row records whether the template was used.
"""

from __future__ import annotations

import gc
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch

import workbench
from store import queries
from store.db import Store
from store.tables import Evaluation
from workbench import model_io, sources
from workbench.devices import dtype_name, place, resolve_device, resolve_dtype
from workbench.errors import UserError
from workbench.evaluation import harness, measurements
from workbench.evaluation.harness import Harness, PreparedTask
from workbench.evaluation.measurements import Measurement
from workbench.progress import Progress
from workbench.spec import CPU_AUTO_BATCH, PPL_PREFIX, TASKS, EvalSpec
from workbench.texts import TextSource, load_source

INSTRUCT_NAME = re.compile(r"instruct|chat|(^|[-_])it($|[-_.])", re.IGNORECASE)
LOAD_WEIGHT, TASK_WEIGHT, QUICK_WEIGHT = 0.5, 1.0, 0.2


@dataclass
class ModelResult:
    model_id: int
    model_name: str
    load_seconds: float
    seconds: float
    evaluation_ids: list[int]
    metrics: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class EvalReport:
    spec: dict[str, Any]
    device: str
    dtype: str
    batch_size: int | str
    lm_eval_version: str | None
    data: str | None  # the local data folder, or None for lm-eval's hub tasks
    models: list[ModelResult]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Plan:
    """What the checks settled, shared by every model."""

    spec: EvalSpec
    device: torch.device
    dtype: torch.dtype
    batch_size: int | str
    sources: dict[str, TextSource]
    harness: Harness | None
    job_id: int | None


def check_request(spec: EvalSpec, store: Store, data: Path | None = None) -> None:
    """Everything `evaluate` checks before it loads weights, writing nothing: a front end calls it
    before queueing a job, so that bad input fails at once (UserError)."""
    with tempfile.TemporaryDirectory(prefix="workbench-eval-") as folder:
        _checked(spec, store, data, Path(folder), job_id=None)


def evaluate(
    spec: EvalSpec,
    store: Store,
    data: Path | None,
    progress: Progress | None = None,
    job_id: int | None = None,
) -> EvalReport:
    progress = progress or Progress()
    with tempfile.TemporaryDirectory(prefix="workbench-eval-") as folder:
        plan, targets, labels, chats = _checked(spec, store, data, Path(folder), job_id)
        progress.weights = {
            f"{label}:{task}": weight for label in labels for task, weight in _weights(spec.tasks).items()
        }
        results = []
        for target, label, chat in zip(targets, labels, chats, strict=True):
            results.append(_evaluate_model(plan, store, target, label, chat, progress))
            _release(plan.device)  # this model's weights go before the next one loads
    progress.finish()
    return EvalReport(
        spec=spec.to_dict(),
        device=str(plan.device),
        dtype=dtype_name(plan.dtype),
        batch_size=plan.batch_size,
        lm_eval_version=plan.harness.version if plan.harness else None,
        data=str(data) if data is not None else None,
        models=results,
    )


def _checked(
    spec: EvalSpec, store: Store, data: Path | None, folder: Path, job_id: int | None
) -> tuple[_Plan, list[model_io.Target], list[str], list[dict[str, bool]]]:
    """The request checked and settled; lm-eval task files are written into `folder`."""
    spec.validate()
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    targets = _resolve_models(store, spec.models)
    labels = [_label(t) for t in targets]
    sources = {t: load_source(t.removeprefix(PPL_PREFIX), data) for t in spec.tasks if t.startswith(PPL_PREFIX)}
    lm_names = [t for t in spec.tasks if not _builtin(t)]
    batch_size = spec.batch_size if spec.batch_size != "auto" or device.type == "cuda" else CPU_AUTO_BATCH
    prepared = harness.prepare(spec, lm_names, data, folder) if lm_names else None
    chats = [
        _chat_choices(spec.chat_template, store, target, label, prepared)
        for target, label in zip(targets, labels, strict=True)
    ]
    plan = _Plan(spec, device, dtype, batch_size, sources, prepared, job_id)
    return plan, targets, labels, chats


def _evaluate_model(
    plan: _Plan, store: Store, target: model_io.Target, label: str, chat: dict[str, bool], progress: Progress
) -> ModelResult:
    started = time.perf_counter()
    placement = place(target.parameters(), plan.dtype, plan.device)  # fits nowhere: refused before reading it
    progress.stage(f"{label}:load", message=f"loading {label}" + (f" over {placement}" if placement.spread else ""))
    # (the stage names are the job row's)
    row, model, tokenizer = target.load(store, placement, plan.dtype)
    load_seconds = time.perf_counter() - started
    rows = [_workbench_row(plan, row.id, m, None) for m in measurements.model_facts(model, row.size_bytes)]
    check = model.register_forward_pre_hook(harness.CancelCheck(progress))  # a cancel lands within one forward
    try:
        lm = None
        for task in sorted(plan.spec.tasks, key=_order):
            progress.stage(f"{label}:{task}", message=f"evaluating {label} on {task}")
            begun = time.perf_counter()
            if _builtin(task):
                found = _measure(task, model, tokenizer, plan, progress)
                rows += [_workbench_row(plan, row.id, m, time.perf_counter() - begun) for m in found]
                continue
            lm = lm or harness.build_lm(model, tokenizer, plan.batch_size, progress)
            rows += _run_lm_eval(plan, row.id, lm, task, chat[task], begun)
    finally:
        check.remove()
    with store.write() as session:
        ids = queries.add_evaluations(session, rows)
    return ModelResult(
        model_id=row.id,
        model_name=row.name,
        load_seconds=load_seconds,
        seconds=time.perf_counter() - started,
        evaluation_ids=ids,
        metrics=[_summary(r) for r in rows],
    )


def _run_lm_eval(
    plan: _Plan, model_id: int, lm: harness.TrackedHFLM, task: str, chat: bool, begun: float
) -> list[Evaluation]:
    prepared = plan.harness
    assert prepared is not None  # every lm-eval task was prepared before loading
    entry = next(t for t in prepared.tasks if t.name == task)
    results = harness.run_task(lm, prepared, entry, plan.spec.limit, chat)
    seconds = time.perf_counter() - begun
    return [_lm_eval_row(plan, model_id, m, entry, chat, seconds) for m in harness.metrics(results, task)]


def _measure(task: str, model, tokenizer, plan: _Plan, progress: Progress) -> list[Measurement]:
    if task == "speed":
        return measurements.measure_speed(model)
    if task == "memory":
        return measurements.measure_memory(model)
    return measurements.measure_perplexity(model, tokenizer, task, plan.sources[task], progress)


def _lm_eval_row(
    plan: _Plan, model_id: int, m: harness.Metric, task: PreparedTask, chat: bool, seconds: float
) -> Evaluation:
    settings = m.settings | {
        "chat_template": chat,
        "chat_template_mode": plan.spec.chat_template,
        "batch_size": plan.batch_size,
        "data": "local" if task.local else ("include-path" if task.name not in TASKS else "hub"),
        "approximate": bool(task.local and task.local.approximate),
    }
    if task.name not in TASKS:
        settings["include_path"] = plan.spec.include_path
    return Evaluation(
        model_id=model_id, job_id=plan.job_id, harness=harness.HARNESS, harness_version=version("lm_eval"),
        task=m.task, metric=m.metric, value=m.value, stderr=m.stderr, samples=m.samples, limit=plan.spec.limit,
        fewshot=m.fewshot, settings=settings, device=str(plan.device), dtype=dtype_name(plan.dtype), seconds=seconds,
    )  # fmt: skip


def _workbench_row(plan: _Plan, model_id: int, m: Measurement, seconds: float | None) -> Evaluation:
    return Evaluation(
        model_id=model_id, job_id=plan.job_id, harness=measurements.HARNESS, harness_version=workbench.__version__,
        task=m.task, metric=m.metric, value=float(m.value), stderr=None, samples=m.samples, limit=None,
        fewshot=None, settings=m.settings, device=str(plan.device), dtype=dtype_name(plan.dtype), seconds=seconds,
    )  # fmt: skip


def _summary(row: Evaluation) -> dict[str, Any]:
    keys = ("harness", "task", "metric", "value", "stderr", "samples", "limit", "fewshot", "settings", "seconds")
    return {k: getattr(row, k) for k in keys}


def _resolve_models(store: Store, models: tuple[str, ...]) -> list[model_io.Target]:
    targets = [model_io.resolve(store, m) for m in models]
    sources.refuse_one_model_twice(models, [t.row.id if t.row is not None else t.source for t in targets])
    for target in targets:
        target.check(store)  # a model that is no GLU model, or cannot be read, fails before anything loads
    return targets


def _label(target: model_io.Target) -> str:
    return target.row.name if target.row is not None else target.source.default_name  # type: ignore[union-attr]


def _chat_choices(
    mode: str, store: Store, target: model_io.Target, label: str, prepared: Harness | None
) -> dict[str, bool]:
    """Whether each lm-eval task of this model goes through its chat template."""
    if prepared is None:
        return {}
    if mode == "off":
        return {t.name: False for t in prepared.tasks}
    has_template = bool(getattr(target.tokenizer(store), "chat_template", None))
    if mode == "on":
        if not has_template:
            raise UserError(f"--chat-template on: the tokenizer of {label} has no chat template")
        return {t.name: True for t in prepared.tasks}
    instruct = has_template and _named_instruct(store, target)
    return {t.name: instruct and t.generates for t in prepared.tasks}


def _named_instruct(store: Store, target: model_io.Target) -> bool:
    """Whether the model, or one it was pruned from, is named as instruct-tuned."""
    names: list[str] = []
    if target.source is not None:
        names += [target.source.ref, target.source.default_name]
        if target.source.kind == "bundled":
            names.append(sources.BUNDLED_FILE)
    row = target.row
    while row is not None:
        names += [row.name, row.source_ref] + ([sources.BUNDLED_FILE] if row.source == "bundled" else [])
        row = queries.get_model(store, row.parent_id) if row.parent_id is not None else None
    return any(INSTRUCT_NAME.search(Path(n).name) for n in names if n)


def _builtin(task: str) -> bool:
    return task.startswith(PPL_PREFIX) or (task in TASKS and TASKS[task].harness == measurements.HARNESS)


def _order(task: str) -> int:
    """Speed and memory first (the process is leanest right after loading), then perplexity, then lm-eval."""
    return {"speed": 0, "memory": 1}.get(task, 2 if task.startswith(PPL_PREFIX) else 3)


def _weights(tasks: tuple[str, ...]) -> dict[str, float]:
    weights = {"load": LOAD_WEIGHT}
    for task in tasks:
        weights[task] = QUICK_WEIGHT if task in ("speed", "memory") else TASK_WEIGHT
    return weights


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
