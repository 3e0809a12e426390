"""Repair: refit each pruned layer's kept down_proj columns so that the layer's output on calibration
text moves as little as possible.

With x the input of down_proj at a real calibration token (padding masked out), G = sum x x^T over
those tokens (width x width, accumulated in float32), K the kept neurons and D the layer's original
down_proj weight, the refit kept columns are the damped least-squares solution

    W = D G[:, K] (G[K, K] + lambda I)^-1,    lambda = damping x mean(diag G[K, K])

(solved in float64; the damping keeps nearly collinear activations from blowing W up). A layer's
relative reconstruction error on the same tokens, sum |D x - W x_K|^2 / sum |D x|^2, comes from G too,
for the plain cut (W = D[:, K]) and for the refit; a refit that would not lower it is dropped, so a
repair never makes a layer worse on its calibration data.

Where all layers' G cannot be held at once (or for sequential repair), G is gathered layer by layer:
the calibration sequences' hidden states are held between decoder layers (tokens x hidden, small next
to the model) and each layer runs over all of them, so only one G is in memory at a time, whatever
the model's width and depth.
- oneshot: layer i's G comes from the parent's own activations. These do not depend on the plan, so
  when all layers' G together fit GRAM_CACHE_BYTES, a data-driven scorer's calibration pass gathers
  them too (no second pass over the decoder: SmolLM2-135M's one-shot repair then costs about a third
  of a calibration more instead of a whole pass), and they are cached beside the activation statistics
  (calibration/<token hash>-<dtype>-gram): pruning again at another ratio repairs with no forward pass.
- sequential: layer i's G comes from the model whose layers below i are already cut and repaired, so
  each refit also absorbs the drift of the layers before it. Each layer runs twice (before its cut,
  for G; after, for the next layer's input), and nothing is cached.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from workbench.architecture import decoder_layers, glu_mlps
from workbench.calibration import TOKENS_PER_BATCH, add_gram, save_cache
from workbench.devices import input_device
from workbench.plan import LayerPlan
from workbench.progress import Progress
from workbench.surgery import cut_layer, set_config_widths

GRAM_CACHE_BYTES = 2 * 2**30  # SmolLM2-135M's 30 layers take 283 MB; an 8B model's 26 GB are not cached


@dataclass
class LayerRepair:
    layer: int
    damping: float  # lambda, the absolute ridge term added to G[K, K]'s diagonal
    error_before: float  # relative reconstruction error of the plain cut
    error_after: float  # ... and after the repair (equal when the refit was dropped)
    refit: bool  # False: the refit would not have lowered the error, so the plain cut stays


def refit(down: torch.Tensor, gram: torch.Tensor, keep: torch.Tensor, damping: float) -> tuple[torch.Tensor, float]:
    """The refit kept columns (float32, hidden x kept) and lambda; see the module docstring."""
    g = gram.to(torch.float64)
    keep = keep.to(g.device)
    g_kk = g[keep][:, keep]
    lam = damping * float(g_kk.diagonal().mean())
    a = g_kk + lam * torch.eye(len(keep), dtype=g.dtype, device=g.device)
    b = down.to(device=g.device, dtype=torch.float64) @ g[:, keep]  # hidden x kept
    weight = torch.linalg.solve(a, b.T).T  # a is symmetric: W a = b
    return weight.float(), lam


def relative_error(down: torch.Tensor, weight: torch.Tensor, keep: torch.Tensor, gram: torch.Tensor) -> float:
    """sum |D x - W x_K|^2 / sum |D x|^2 over the tokens G was gathered on."""
    g = gram.to(torch.float64)
    d = down.to(device=g.device, dtype=torch.float64)
    residual = d.clone()
    residual[:, keep.to(g.device)] -= weight.to(device=g.device, dtype=torch.float64)
    total = float(((d @ g) * d).sum())
    return float(((residual @ g) * residual).sum()) / total if total > 0 else 0.0


@dataclass
class _Batch:
    hidden: torch.Tensor  # the next layer's input
    mask: torch.Tensor  # 1 for real tokens
    calls: list[tuple[tuple, dict]] = field(default_factory=list)  # each layer's other arguments


class _Recorder(nn.Module):
    """Stands in for a decoder layer during one forward pass: notes how the layer was called and
    passes its input through, so the model builds every layer's masks and position embeddings."""

    def __init__(self, layer: nn.Module, calls: list) -> None:
        super().__init__()
        self.calls = calls
        if hasattr(layer, "attention_type"):  # read by some models' forward
            self.attention_type = layer.attention_type

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        self.calls.append((hidden_states, args, kwargs))
        return hidden_states


@torch.no_grad()
def _layer_inputs(model: nn.Module, input_ids: torch.Tensor, mask: torch.Tensor) -> list[_Batch]:
    """Each batch's input to the first decoder layer, and how every layer is called on it."""
    layers = decoder_layers(model)
    originals = list(layers)
    device = input_device(model)
    batch_size = max(1, TOKENS_PER_BATCH // input_ids.shape[1])
    batches = []
    calls: list = []
    try:
        for i, layer in enumerate(originals):
            layers[i] = _Recorder(layer, calls)
        for start in range(0, input_ids.shape[0], batch_size):
            calls.clear()
            ids, real = input_ids[start : start + batch_size].to(device), mask[start : start + batch_size].to(device)
            model.model(input_ids=ids, attention_mask=real, use_cache=False)
            batches.append(_Batch(calls[0][0], real, [(args, kwargs) for _, args, kwargs in calls]))
    finally:
        for i, layer in enumerate(originals):
            layers[i] = layer
    return batches


def grams_fit(widths: list[int]) -> bool:
    """Whether every layer's G may be held at once (gathered in the calibration pass, and cached)."""
    return sum(w * w * 4 for w in widths) <= GRAM_CACHE_BYTES


def gram_cache_path(statistics_cache: Path) -> Path:
    """Where a oneshot repair's Gram matrices are cached, beside the activation statistics."""
    return statistics_cache.with_name(statistics_cache.stem + "-gram.safetensors")


@torch.no_grad()
def repair(
    model: nn.Module,
    plans: list[LayerPlan],
    input_ids: torch.Tensor,
    mode: str,
    damping: float,
    cache: Path | None = None,
    progress: Progress | None = None,
    keep_weights_as: torch.dtype | None = None,
    attention_mask: torch.Tensor | None = None,
    grams: list[torch.Tensor] | None = None,
) -> tuple[list[LayerRepair], dict[int, torch.Tensor]]:
    """Cut the model in place by the plans, refitting each pruned layer's down_proj (see the
    module docstring); the per-layer repairs, and (with `keep_weights_as`) every pruned layer's
    final down_proj weight in that dtype on the CPU, for a copy of the model in another dtype.
    `grams`: for oneshot, every layer's G as the calibration pass gathered them on these tokens."""
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    mlps = glu_mlps(model)
    widths = [m.down_proj.in_features for m in mlps]
    repairs: list[LayerRepair] = []
    kept: dict[int, torch.Tensor] = {}

    def fix(index: int, gram: torch.Tensor) -> None:
        plan, mlp = plans[index], mlps[index]
        gram = gram.to(torch.float64)  # once: the refit and both errors read it in float64
        down = mlp.down_proj.weight.float()
        keep = plan.keep.to(down.device)  # each layer on its own device (a model spread over GPUs)
        plain = down[:, keep]
        weight, lam = refit(down, gram, keep, damping)
        before, after = relative_error(down, plain, keep, gram), relative_error(down, weight, keep, gram)
        better = after < before
        final = weight if better else plain
        repairs.append(LayerRepair(index, lam, before, after if better else before, better))
        cut_layer(mlp, plan)
        mlp.down_proj.weight = nn.Parameter(final.to(mlp.down_proj.weight.dtype), requires_grad=False)
        if keep_weights_as is not None:
            kept[index] = final.to(keep_weights_as).cpu()

    pruned = [p.layer for p in plans if p.kept_width < p.original_width]
    if mode != "oneshot":
        grams = None
    elif grams is not None and cache is not None:
        save_cache({f"gram.{i}": g.cpu().contiguous() for i, g in enumerate(grams)}, cache)
    cached = _read_cache(cache, widths) if mode == "oneshot" and grams is None and cache is not None else None
    if grams is not None or cached is not None:
        if progress:
            where = "calibration" if grams is not None else "the cache"
            progress.stage("repair", total=len(pruned), message=f"Gram matrices from {where}")
        with cached or contextlib.nullcontext():
            for index in pruned:
                device = mlps[index].down_proj.weight.device
                fix(index, grams[index] if grams is not None else cached.get_tensor(f"gram.{index}").to(device))
                if progress:
                    progress.advance(message=f"layer {index}")
    else:
        _pass(model, plans, input_ids, mask, mode, cache, widths, fix, progress)
    set_config_widths(model.config, [m.down_proj.in_features for m in mlps])
    return sorted(repairs, key=lambda r: r.layer), kept


def _pass(model, plans, input_ids, mask, mode, cache, widths, fix, progress) -> None:
    """Run the decoder layer by layer over the calibration batches, gathering each layer's G and
    repairing it before the next layer runs."""
    layers, mlps = decoder_layers(model), glu_mlps(model)
    if progress:
        progress.stage("repair", total=len(layers), message=f"{input_ids.shape[0]} sequences, layer by layer")
    batches = _layer_inputs(model, input_ids, mask)
    keep_all = mode == "oneshot" and cache is not None and grams_fit(widths)
    saved: dict[str, torch.Tensor] = {}
    current: list[torch.Tensor] = []

    def accumulate_into(gram: torch.Tensor):
        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            add_gram(gram, inputs[0][current[0].to(inputs[0].device).bool()])  # real tokens only

        return hook

    def run_layer(index: int) -> list[torch.Tensor]:
        outputs = []
        for batch in batches:
            current[:] = [batch.mask]
            args, kwargs = batch.calls[index]
            out = layers[index](batch.hidden, *args, **kwargs)
            outputs.append(out[0] if isinstance(out, tuple) else out)
            if progress:
                progress.check()
        return outputs

    for index, plan in enumerate(plans):
        pruned = plan.kept_width < plan.original_width
        gram = None
        if pruned or keep_all:
            gram = torch.zeros(widths[index], widths[index], dtype=torch.float32,
                               device=mlps[index].down_proj.weight.device)
            handle = mlps[index].down_proj.register_forward_pre_hook(accumulate_into(gram))
        try:
            outputs = run_layer(index)
        finally:
            if gram is not None:
                handle.remove()
        if keep_all:
            saved[f"gram.{index}"] = gram.cpu()
        if pruned:
            fix(index, gram)
            if mode == "sequential":
                outputs = run_layer(index)
        del gram
        for batch, out in zip(batches, outputs, strict=True):
            batch.hidden = out
        if progress:
            progress.advance(message=f"layer {index + 1}/{len(plans)}")
    if keep_all:
        save_cache(saved, cache)


def _read_cache(path: Path, widths: list[int]):
    """An open cache file whose matrices match the model's widths, else None (a damaged or stale
    file is rebuilt, never trusted)."""
    if not path.is_file():
        return None
    try:
        handle = safe_open(path, "pt")
        for index, width in enumerate(widths):
            if handle.get_slice(f"gram.{index}").get_shape() != [width, width]:
                return None
        return handle
    except Exception:
        return None
