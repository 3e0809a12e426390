"""One pruning run from request to recorded result: the flow every front end uses.

Everything that can be checked without loading weights is checked first (the request, the
calibration text and its length, the model's architecture from its config, the widths the
target gives), so bad input writes nothing. Then: load, calibrate (or reuse cached
statistics), score, plan, cut in place (repairing down_proj when asked), save into the store,
and record the run, its per-layer retention and the new model in one transaction.

Two dtypes: forward passes (calibration, repair) run in the compute dtype (`--dtype`, on the
device), while the saved model keeps the parent's weights bit for bit in the parent's dtype
(unless `--save-dtype` asks for another). When they differ, the plan is made on the compute copy,
which is then freed, and the parent's own weights are loaded and cut: never two copies at once.
A static scorer without repair needs no forward pass, so it loads the saved dtype only and scores
the stored weights themselves. A repair's new down_proj weights are computed in float32 and cast
to the saved dtype.
"""

from __future__ import annotations

import gc
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import transformers
from torch import nn

import workbench
from store import bitset, queries
from store.db import Store
from store.queries import ModelInfo
from store.tables import LayerRetention, Model, PruningRun
from workbench import calibration, model_io, prune_request, repair
from workbench.architecture import count_parameters, glu_mlps
from workbench.calibration import ActivationStats
from workbench.devices import MemoryMeter, dtype_name, place, resolve_device, resolve_dtype
from workbench.errors import UserError
from workbench.plan import LayerPlan, plan_pruning
from workbench.progress import Cancelled, Progress
from workbench.repair import LayerRepair
from workbench.spec import PruneSpec, planned_widths
from workbench.surgery import apply_plan
from workbench.texts import TextSource

STAGE_WEIGHTS = {"load": 0.1, "calibrate": 0.5, "score": 0.05, "repair": 0.4, "surgery": 0.05, "save": 0.3}


@dataclass
class PruneReport:
    run_id: int
    model_id: int
    model_name: str
    base_model: str
    spec: dict
    device: str
    dtype: str  # of the forward passes (or of the stored weights a static scorer read)
    save_dtype: str  # of the saved weights
    parameters_before: int
    parameters_after: int
    expansion_before: float
    expansion_after: float
    size_bytes: int
    stage_seconds: dict[str, float]
    peak_memory_bytes: int
    calibration: dict | None
    repair: dict | None = None
    layers: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def prune(
    spec: PruneSpec,
    store: Store,
    data: Path | None = None,
    progress: Progress | None = None,
    out: Path | None = None,
    job_id: int | None = None,
) -> PruneReport:
    progress = progress or Progress()
    progress.weights = STAGE_WEIGHTS
    text, target, widths, sequences, device = _checked(spec, store, data)
    stored = target.stored_dtype()
    save_dtype = stored if spec.save_dtype == "parent" else getattr(torch, spec.save_dtype)
    # Forward passes need the compute dtype; a static scorer alone reads the weights as saved.
    dtype = resolve_dtype(spec.dtype, device) if text is not None else save_dtype
    parameters = target.parameters()
    place(parameters, max(dtype, save_dtype, key=lambda d: d.itemsize), device)  # fits nowhere: refused here

    meter = MemoryMeter(device)
    meter.reset()
    placement = place(parameters, dtype, device)
    progress.stage("load", message=f"loading {spec.model}" + (f" over {placement}" if placement.spread else ""))
    base, model, tokenizer = target.load(store, placement, dtype, finite=True)
    if spec.save_dtype == "parent":
        save_dtype = getattr(torch, base.dtype)  # a source's dtype is known for sure once imported
    run = PruningRun(
        base_model_id=base.id,
        job_id=job_id,
        scorer=spec.scorer,
        target_kind=spec.target_kind,
        target_value=spec.target_value,
        divisor=spec.divisor,
        allocation=spec.allocation,
        layers=spec.layers,
        calibration_source=text.name if text else None,
        calibration_samples=spec.samples if text else None,
        calibration_seq_len=spec.seq_len if text else None,
        calibration_hash=calibration.token_hash(sequences) if sequences is not None else None,
        repair=spec.repair,
        repair_damping=spec.repair_damping if spec.repair else None,
        device=str(device),
        dtype=dtype_name(dtype),
        versions=versions(),
        parameters_before=count_parameters(model),
    )
    repairs: list[LayerRepair] = []
    try:
        cache = _statistics_cache(store, base, sequences, dtype) if text else None
        gram_cache = repair.gram_cache_path(cache) if spec.repair == "oneshot" else None
        # A one-shot repair's Gram matrices come with the calibration pass when they fit and are not cached.
        grams = gram_cache is not None and repair.grams_fit(widths) and not gram_cache.is_file()
        stats = _calibration_stats(cache, model, sequences, progress, grams) if spec.data_driven else None
        progress.stage("score", message=f"scoring neurons ({spec.scorer}) and planning the cut")
        plans = plan_pruning(model, spec, stats)
        repaired: dict[int, torch.Tensor] = {}
        if spec.repair:
            other_dtype = save_dtype if save_dtype != dtype else None
            repairs, repaired = repair.repair(
                model, plans, sequences, spec.repair, spec.repair_damping,
                cache=gram_cache, progress=progress, keep_weights_as=other_dtype, grams=stats and stats.grams,
            )  # fmt: skip
        if save_dtype != dtype:  # the plan was made on a copy in the compute dtype: cut the parent's own weights
            progress.stage("load", message=f"loading {base.name} in {dtype_name(save_dtype)}")
            del model
            _free(device)
            model = model_io.load_model(store.model_path(base), place(parameters, save_dtype, device), save_dtype)
            new_widths = apply_plan(model, plans, progress)
            for layer, weight in repaired.items():
                down = glu_mlps(model)[layer].down_proj
                down.weight = torch.nn.Parameter(weight.to(down.weight.device), requires_grad=False)
        elif spec.repair:
            new_widths = [m.down_proj.in_features for m in glu_mlps(model)]  # the repair cut it
        else:
            new_widths = apply_plan(model, plans, progress)
        progress.stage("save", message="saving the pruned model")
        run.parameters_after = count_parameters(model)
        by_layer = {r.layer: r for r in repairs}
        retention = [retention_row(p, by_layer.get(p.layer)) for p in plans]

        def record(session, row: Model) -> None:
            run.stage_seconds = progress.seconds_so_far()  # saving is nearly done: its files are written
            run.peak_memory_bytes = meter.peak()
            queries.record_run(session, run, retention, row)

        name = spec.name or queries.unique_model_name(store, default_name(spec, base.name))
        result = model_io.save_new_model(
            store, model, tokenizer, name=name, source="pruned", parent_id=base.id, record=record
        )
    except (UserError, Cancelled):
        raise
    except Exception as e:
        run.stage_seconds = progress.seconds_so_far()
        with store.write() as session:
            queries.record_failed_run(session, run, f"{type(e).__name__}: {e}".splitlines()[0])
        raise
    progress.finish()
    if out is not None:
        copy_out(store.model_path(result), out, f"model {result.name!r} (run {run.id})")
    hidden = model.config.hidden_size
    return PruneReport(
        run_id=run.id,
        model_id=result.id,
        model_name=result.name,
        base_model=base.name,
        spec=spec.to_dict(),
        device=str(device),
        dtype=dtype_name(dtype),
        save_dtype=dtype_name(save_dtype),
        parameters_before=run.parameters_before,
        parameters_after=run.parameters_after,
        expansion_before=sum(widths) / len(widths) / hidden,
        expansion_after=sum(new_widths) / len(new_widths) / hidden,
        size_bytes=result.size_bytes,
        stage_seconds=dict(progress.stage_seconds),
        peak_memory_bytes=run.peak_memory_bytes,
        calibration=None
        if text is None
        else {
            "source": text.name,
            "samples": spec.samples,
            "seq_len": spec.seq_len,
            "tokens": int(sequences.numel()),
            "hash": run.calibration_hash,
        },
        repair=None if not spec.repair else {"mode": spec.repair, "damping": spec.repair_damping,
                                             "refit_layers": sum(r.refit for r in repairs)},
        layers=[
            {"layer": r.layer, "original_width": r.original_width, "kept_width": r.kept_width,
             "percent_kept": r.percent_kept, "repair_error_before": r.repair_error_before,
             "repair_error_after": r.repair_error_after} | p.summary()
            for r, p in zip(retention, plans, strict=True)
        ],
    )


def copy_out(folder: Path, out: Path, what: str) -> None:
    """Copy a saved model to --out; when that fails, the copy goes and the job fails saying what
    was made all the same (it stays in the store)."""
    existed = out.exists()
    try:
        shutil.copytree(folder, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns("calibration"))
    except (OSError, shutil.Error) as e:
        if existed:
            for entry in out.iterdir():
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        else:
            shutil.rmtree(out, ignore_errors=True)
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0]
        raise UserError(f"{what} is in the store, but copying it to --out {out} failed: {reason}") from None


def check_request(spec: PruneSpec, store: Store, data: Path | None = None) -> str | None:
    """Everything `prune` checks before it loads weights, writing nothing: a front end calls it
    before queueing a job, so that bad input fails at once (UserError). Returns the hash of the
    calibration token ids the run will record (None for a static scorer)."""
    _, _, _, sequences, _ = _checked(spec, store, data)
    return calibration.token_hash(sequences) if sequences is not None else None


def _checked(
    spec: PruneSpec, store: Store, data: Path | None
) -> tuple[TextSource | None, model_io.Target, list[int], torch.Tensor | None, torch.device]:
    row, text = prune_request.check_rules(spec, store, data)  # the request, a stored model's files and widths, the name
    target = model_io.resolve(store, spec.model)
    if row is None:  # a source still to import: its config, files and tokenizer
        planned_widths(spec, *target.check(store))  # a target the model cannot meet fails here
    elif text is None:  # a stored model's tokenizer as transformers reads it (calibration reads it below)
        target.tokenizer(store)
    sequences = None
    if text is not None:
        sequences = calibration.build_sequences(
            target.tokenizer(store), text.calibration, spec.samples, spec.seq_len, text.name
        )
    # The device's availability, not its dtype: resolving "auto" to a dtype on CUDA opens a
    # context, which a front end that only queues the job should not hold.
    return text, target, target.shape()[1], sequences, resolve_device(spec.device)


def retention_row(plan: LayerPlan, repaired: LayerRepair | None = None) -> LayerRetention:
    return LayerRetention(
        layer=plan.layer,
        original_width=plan.original_width,
        kept_width=plan.kept_width,
        percent_kept=100.0 * plan.kept_width / plan.original_width,
        kept_indices=bitset.encode(plan.keep.tolist(), plan.original_width),
        repair_error_before=repaired.error_before if repaired else None,
        repair_error_after=repaired.error_after if repaired else None,
        repair_lambda=repaired.damping if repaired else None,
        **plan.summary(),
    )


def default_name(spec: PruneSpec, base: str) -> str:
    parts = [base, spec.scorer, f"p{spec.percent:g}" if spec.percent is not None else f"x{spec.expansion:g}"]
    if spec.divisor > 1:
        parts.append(f"d{spec.divisor}")
    if spec.allocation != "uniform":
        parts.append(spec.allocation)
    if spec.calibrated:  # a file's stem, made fit for a name (workbench.names)
        parts.append(re.sub(r"[^\w.+-]+", "-", Path(spec.calibration_source).stem))  # type: ignore[arg-type]
    if spec.layers.strip().lower() not in ("", "all"):
        parts.append(f"L{spec.layers.replace(',', '_')}")
    if spec.repair:
        parts.append(f"r{spec.repair}")
    return "-".join(parts)


def versions() -> dict[str, str]:
    return {"torch": torch.__version__, "transformers": transformers.__version__, "workbench": workbench.__version__}


def _statistics_cache(store: Store, base: ModelInfo, sequences: torch.Tensor, dtype: torch.dtype) -> Path:
    """Where the base model keeps statistics of these exact tokens in this dtype."""
    key = f"{calibration.token_hash(sequences)[:20]}-{dtype_name(dtype)}"
    return store.model_path(base) / "calibration" / f"{key}.safetensors"


def _calibration_stats(
    cache: Path, model: nn.Module, sequences: torch.Tensor, progress: Progress, grams: bool = False
) -> ActivationStats:
    """Statistics for these exact tokens, from the model's cache or from forward passes (which gather
    the Gram matrices too with `grams`; cached statistics come without them)."""
    if cache.is_file():
        progress.stage("calibrate", message="calibration statistics from the cache")
        try:
            stats = ActivationStats.load(cache)
        except Exception:  # a damaged cache file is rebuilt below, never trusted
            stats = None
        widths = [m.down_proj.in_features for m in glu_mlps(model)]
        if stats is not None and [len(layer.sum_squares) for layer in stats.layers] == widths:
            return stats
    stats = calibration.capture(model, sequences, progress=progress, grams=grams)
    stats.save(cache)  # (not when the model was removed meanwhile: see calibration.save_cache)
    return stats


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
