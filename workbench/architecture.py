"""Which models the workbench can prune, and the facts about them it records.

A model qualifies when every decoder layer (`model.model.layers[i]`) has an MLP with separate
`gate_proj`, `up_proj` and `down_proj` linear layers: Llama, Mistral, Qwen2/3, Gemma 1/2/3
text models, SmolLM and their kin. Neuron i of a layer is row i of gate_proj and up_proj and
column i of down_proj.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from workbench.errors import UserError

GLU_PARTS = ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ModelFacts:
    family: str
    architecture: str
    num_layers: int
    hidden_size: int
    widths: list[int]  # MLP intermediate width per layer
    parameters: int
    dtype: str

    @property
    def uniform(self) -> bool:
        return len(set(self.widths)) == 1

    @property
    def expansion(self) -> float:
        return sum(self.widths) / len(self.widths) / self.hidden_size


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        found = ", ".join(name for name, _ in model.named_children())
        raise UserError(
            f"not a GLU model: {_describe(model)} has no model.layers of gate_proj/up_proj/down_proj "
            f"MLPs (it has {found})"
        )
    return layers


def glu_mlps(model: nn.Module) -> list[nn.Module]:
    """Every decoder layer's GLU MLP, or a UserError naming what was found instead."""
    mlps = []
    for index, layer in enumerate(decoder_layers(model)):
        mlp = getattr(layer, "mlp", None)
        if mlp is None:
            raise UserError(f"not a GLU model: layer {index} of {_describe(model)} has no mlp")
        if not all(isinstance(getattr(mlp, part, None), nn.Linear) for part in GLU_PARTS):
            found = ", ".join(name for name, _ in mlp.named_children()) or "no sub-modules"
            if hasattr(mlp, "gate_up_proj"):
                reason = "a fused gate_up_proj, which the workbench does not prune"
            else:
                reason = f"{type(mlp).__name__} ({found})"
            raise UserError(
                f"not a GLU model: {_describe(model)} layer {index} MLP has {reason}; "
                "need separate gate_proj, up_proj and down_proj"
            )
        mlps.append(mlp)
    return mlps


def facts(model: nn.Module) -> ModelFacts:
    config = model.config
    mlps = glu_mlps(model)
    return ModelFacts(
        family=config.model_type.removesuffix("_per_layer"),
        architecture=getattr(model, "base_architecture", type(model).__name__),  # per-layer widths: its family's
        num_layers=len(mlps),
        hidden_size=config.hidden_size,
        widths=[mlp.down_proj.in_features for mlp in mlps],
        parameters=count_parameters(model),
        dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
    )


def count_parameters(model: nn.Module) -> int:
    """Distinct parameters (tied embeddings count once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _describe(model: nn.Module) -> str:
    model_type = getattr(getattr(model, "config", None), "model_type", "?")
    return f"{type(model).__name__} ({model_type})"
