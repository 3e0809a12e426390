"""Neuron scores for one GLU MLP: higher means more important, so kept first.

G, U: gate_proj and up_proj weights (width x hidden), row i is neuron i.
D: down_proj weight (hidden x width), column i is neuron i.
X: the input of down_proj, act(G x) * (U x), over calibration tokens (see calibration.py).
Names and one-line descriptions live in spec.SCORERS; every score is float32.
"""

from __future__ import annotations

import torch
from torch import nn

from workbench.calibration import LayerStats


def peak_to_peak(weight: torch.Tensor, dim: int) -> torch.Tensor:
    """max + |min| along dim (the spread of each neuron's weights)."""
    return weight.amax(dim) + weight.amin(dim).abs()


def score_layer(scorer: str, mlp: nn.Module, stats: LayerStats | None = None) -> torch.Tensor:
    gate = mlp.gate_proj.weight.float()
    up = mlp.up_proj.weight.float()
    if scorer == "ppm":
        return peak_to_peak(gate, 1) + peak_to_peak(up, 1)
    if scorer == "vow":
        return gate.var(1) + up.var(1)
    if scorer == "pon":
        return gate.abs().sum(1) * up.abs().sum(1)
    if scorer == "l2":
        return gate.norm(dim=1) + up.norm(dim=1)
    if stats is None:
        raise ValueError(f"scorer {scorer} needs calibration statistics")
    act_l2 = stats.sum_squares.to(gate.device).sqrt()
    if scorer == "act_l2":
        return act_l2
    down = mlp.down_proj.weight.float()
    if scorer == "wanda":
        return down.abs().mean(0) * act_l2
    if scorer == "minitron":
        return stats.sequence_mean_abs_squares.to(gate.device).sqrt()
    if scorer == "hybrid":
        parts = (peak_to_peak(gate, 1), peak_to_peak(up, 1), peak_to_peak(down, 0))
        return sum(p / p.max().clamp_min(torch.finfo(p.dtype).tiny) for p in parts) * act_l2
    raise ValueError(f"unknown scorer {scorer}")
