"""From neuron scores to the neurons each layer keeps.

Uniform allocation keeps each pruned layer's top-scoring neurons, at the width spec.py plans.
Global allocation spends the same total across the pruned layers by score: each layer's scores
are divided by their median (so layers compare on one scale), every layer keeps a floor of 10%
of its width (never more than its uniform width), and the rest goes to the best normalised
scores anywhere, in blocks of the divisor so every width stays a multiple of it.

Why the median: a layer's few very large activations inflate its mean, so mean-normalised
layers with outliers looked uniformly weak and were cut to the floor. On SmolLM2-135M (16x512
WikiText-2 calibration, 8x512 test windows) mean normalisation gave 13-25% higher perplexity
than uniform (wanda, hybrid, act_l2 at 20% and 40%); the median gave -3% to +6%
(bench/global_allocation.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from workbench.architecture import glu_mlps
from workbench.calibration import ActivationStats
from workbench.scorers import score_layer
from workbench.spec import GLOBAL_FLOOR, PruneSpec, parse_layers, planned_widths, round_to_divisor


@dataclass
class LayerPlan:
    layer: int
    original_width: int
    keep: torch.Tensor  # sorted kept neuron indices (int64, on the CPU)
    scores: torch.Tensor | None  # float32 scores of every neuron; None for a layer not pruned

    @property
    def kept_width(self) -> int:
        return len(self.keep)

    def summary(self) -> dict[str, float | None]:
        """min/mean/max of the kept and of the removed neurons' scores."""
        out: dict[str, float | None] = {}
        removed = torch.ones(self.original_width, dtype=torch.bool)
        removed[self.keep] = False
        for part, chosen in (("kept", ~removed), ("removed", removed)):
            values = self.scores[chosen] if self.scores is not None else torch.empty(0)
            for stat in ("min", "mean", "max"):
                out[f"{part}_score_{stat}"] = float(getattr(values, stat)()) if len(values) else None
        return out


@torch.no_grad()
def plan_pruning(model: nn.Module, spec: PruneSpec, stats: ActivationStats | None) -> list[LayerPlan]:
    """Score the pruned layers and choose each layer's kept neurons."""
    mlps = glu_mlps(model)
    selected = parse_layers(spec.layers, len(mlps))
    scores = {
        i: score_layer(spec.scorer, mlps[i], stats.layers[i] if stats else None).cpu()
        for i in selected  # type: ignore[union-attr]
    }
    widths = [m.down_proj.in_features for m in mlps]
    return make_plan(spec, model.config.hidden_size, widths, scores)


def ranking(scores: torch.Tensor) -> torch.Tensor:
    """Neuron indices from best to worst; ties keep index order, so plans are deterministic."""
    return torch.argsort(scores, descending=True, stable=True)


def make_plan(spec: PruneSpec, hidden: int, widths: list[int], scores: dict[int, torch.Tensor]) -> list[LayerPlan]:
    """The kept neurons of every layer; `scores` holds the CPU scores of each pruned layer."""
    uniform = planned_widths(spec, hidden, widths)
    selected = parse_layers(spec.layers, len(widths)) or []
    if spec.allocation == "global":
        kept_widths = global_widths(spec, widths, uniform, {i: scores[i] for i in selected})
    else:
        kept_widths = uniform
    plans = []
    for layer, width in enumerate(widths):
        if layer in scores and layer in selected:
            keep = ranking(scores[layer])[: kept_widths[layer]].sort().values
            plans.append(LayerPlan(layer, width, keep, scores[layer]))
        else:
            plans.append(LayerPlan(layer, width, torch.arange(width), None))
    return plans


def layer_scale(scores: torch.Tensor) -> torch.Tensor:
    """What a layer's scores are divided by before they compete across layers (see module doc)."""
    return scores.median().clamp_min(torch.finfo(torch.float32).tiny)


def global_widths(
    spec: PruneSpec, widths: list[int], uniform: list[int], scores: dict[int, torch.Tensor]
) -> list[int]:
    """Per-layer widths with the uniform total, spread by normalised score (see module doc)."""
    divisor = spec.divisor
    kept = list(widths)
    floors = {
        i: min(uniform[i], max(divisor, math.ceil(GLOBAL_FLOOR * widths[i] / divisor) * divisor))
        for i in scores
    }
    budget = sum(uniform[i] for i in scores) - sum(floors.values())
    # Candidate blocks: each layer's neurons beyond its floor, best first, `divisor` at a time,
    # valued by the block's weakest normalised score. A layer's blocks come in decreasing
    # value, so the best blocks overall are a prefix of each layer's blocks.
    values, owners = [], []
    for i, layer_scores in scores.items():
        normalised = layer_scores / layer_scale(layer_scores)
        ordered = normalised[ranking(layer_scores)]
        block_ends = ordered[floors[i] + divisor - 1 : round_to_divisor(widths[i], divisor) : divisor]
        values.append(block_ends)
        owners.append(torch.full((len(block_ends),), i, dtype=torch.long))
    best = ranking(torch.cat(values))[: budget // divisor]
    extra_blocks = torch.bincount(torch.cat(owners)[best], minlength=len(widths))
    for i in scores:
        kept[i] = floors[i] + int(extra_blocks[i]) * divisor
    return kept
