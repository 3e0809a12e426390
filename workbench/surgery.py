"""Cut neurons out of a model's GLU MLPs in place.

Neuron i is row i of gate_proj and up_proj (and their biases) and column i of down_proj; all
three are sliced together. Layer by layer, each new weight replaces the old one before the
next layer is cut, so memory never holds more than the model plus one layer's kept slices.
Dtype and device stay as they were.
"""

from __future__ import annotations

import torch
from torch import nn

from workbench.architecture import glu_mlps
from workbench.plan import LayerPlan
from workbench.progress import Progress


@torch.no_grad()
def apply_plan(model: nn.Module, plans: list[LayerPlan], progress: Progress | None = None) -> list[int]:
    """Keep only each layer's planned neurons; update the config; return the new widths."""
    mlps = glu_mlps(model)
    if progress:
        progress.stage("surgery", total=len(mlps), message=f"cutting the neurons out of {len(mlps)} layers")
    for mlp, plan in zip(mlps, plans, strict=True):
        cut_layer(mlp, plan)
        if progress:
            progress.advance()
    widths = [mlp.down_proj.in_features for mlp in mlps]
    set_config_widths(model.config, widths)
    return widths


@torch.no_grad()
def cut_layer(mlp: nn.Module, plan: LayerPlan) -> None:
    """Keep only one layer's planned neurons (nothing to do for a layer kept whole)."""
    if plan.kept_width < plan.original_width:
        keep = plan.keep.to(mlp.down_proj.weight.device)
        _keep_outputs(mlp.gate_proj, keep)
        _keep_outputs(mlp.up_proj, keep)
        _keep_inputs(mlp.down_proj, keep)
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = plan.kept_width


def set_config_widths(config, widths: list[int]) -> None:
    """`intermediate_size` is the widest layer; `intermediate_sizes` lists them when they differ."""
    config.intermediate_size = max(widths)
    if len(set(widths)) > 1:
        config.intermediate_sizes = list(widths)
    elif hasattr(config, "intermediate_sizes"):
        del config.intermediate_sizes


def _keep_outputs(linear: nn.Linear, keep: torch.Tensor) -> None:
    linear.weight = _sliced(linear.weight, 0, keep)
    if linear.bias is not None:
        linear.bias = _sliced(linear.bias, 0, keep)
    linear.out_features = len(keep)


def _keep_inputs(linear: nn.Linear, keep: torch.Tensor) -> None:
    linear.weight = _sliced(linear.weight, 1, keep)
    linear.in_features = len(keep)


def _sliced(param: nn.Parameter, dim: int, keep: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(param.index_select(dim, keep), requires_grad=param.requires_grad)
