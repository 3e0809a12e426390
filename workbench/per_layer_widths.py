"""GLU causal LMs whose MLP layers have different widths, for any transformers family.

A pruned model with per-layer widths is saved as its family's model with a config that lists
`intermediate_sizes`, model_type `<family>_per_layer`, and an `auto_map` pointing at a copy of
this file. So:
- the workbench loads it with `load(folder)`, and reads any such folder (its config, its
  tokenizer, an import of a copy of it) after `register(folder)`: the classes of this module are
  registered with transformers' Auto classes, which then use them without asking whether to run
  the folder's copy (transformers' "Do you wish to run the custom code?", 15 s of waiting);
- plain transformers loads it with `AutoModelForCausalLM.from_pretrained(folder,
  trust_remote_code=True)`, and without that flag refuses with a message asking for it.
This file is copied next to the weights, so it imports nothing but torch and transformers.
"""

from __future__ import annotations

import json
import shutil
from functools import cache
from pathlib import Path

import transformers
from torch import nn

MODEL_TYPE_SUFFIX = "_per_layer"
CONFIG_PREFIX = "PerLayerConfig_"  # + family, e.g. PerLayerConfig_llama
MODEL_PREFIX = "PerLayerForCausalLM_"


@cache
def config_class(family: str) -> type:
    base = transformers.CONFIG_MAPPING[family]
    return type(CONFIG_PREFIX + family, (base,), {"model_type": family + MODEL_TYPE_SUFFIX})


@cache
def model_class(family: str) -> type:
    base = transformers.MODEL_FOR_CAUSAL_LM_MAPPING[transformers.CONFIG_MAPPING[family]]

    def __init__(self, config):  # noqa: N807
        base.__init__(self, config)
        resize_mlps(self, config.intermediate_sizes)

    attributes = {"config_class": config_class(family), "base_architecture": base.__name__, "__init__": __init__}
    return type(MODEL_PREFIX + family, (base,), attributes)


def resize_mlps(model: nn.Module, widths: list[int]) -> None:
    """Give each decoder layer's gate/up/down projections its own width (weights uninitialised)."""
    for layer, width in zip(model.model.layers, widths, strict=True):
        mlp = layer.mlp
        for name in ("gate_proj", "up_proj"):
            old = getattr(mlp, name)
            setattr(mlp, name, _linear(old.in_features, width, old))
        mlp.down_proj = _linear(width, mlp.down_proj.out_features, mlp.down_proj)
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = width


def _linear(in_features: int, out_features: int, like: nn.Linear) -> nn.Linear:
    return nn.Linear(
        in_features, out_features, bias=like.bias is not None, device=like.weight.device, dtype=like.weight.dtype
    )


def __getattr__(name: str) -> type:
    """Resolve the class names written into a saved config's auto_map."""
    if name.startswith(CONFIG_PREFIX):
        return config_class(name.removeprefix(CONFIG_PREFIX))
    if name.startswith(MODEL_PREFIX):
        return model_class(name.removeprefix(MODEL_PREFIX))
    raise AttributeError(name)


def write_width_config(folder: Path, widths: list[int]) -> None:
    """Make a saved model's config.json describe its widths: its family's own config when they
    are uniform, else a per-layer config with this file beside it."""
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    family = config["model_type"].removesuffix(MODEL_TYPE_SUFFIX)
    base_model = transformers.MODEL_FOR_CAUSAL_LM_MAPPING[transformers.CONFIG_MAPPING[family]]
    for key in ("intermediate_sizes", "auto_map"):
        config.pop(key, None)
    config.update(model_type=family, intermediate_size=max(widths), architectures=[base_model.__name__])
    if len(set(widths)) > 1:
        module = Path(__file__).stem
        config.update(
            model_type=family + MODEL_TYPE_SUFFIX,
            intermediate_sizes=list(widths),
            architectures=[MODEL_PREFIX + family],
            auto_map={
                "AutoConfig": f"{module}.{CONFIG_PREFIX}{family}",
                "AutoModelForCausalLM": f"{module}.{MODEL_PREFIX}{family}",
            },
        )
        shutil.copyfile(__file__, folder / Path(__file__).name)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def is_per_layer(folder: Path) -> bool:
    config = json.loads((folder / "config.json").read_text())
    return "intermediate_sizes" in config


def register(folder: str | Path) -> None:
    """When `folder` holds a per-layer model (of a family transformers knows), let transformers'
    Auto classes build it with this module's classes, never the folder's copy of the code."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # not a model folder (a hub id, a GGUF file's folder): nothing of ours to register
    model_type = config.get("model_type", "") if isinstance(config, dict) else ""
    family = model_type.removesuffix(MODEL_TYPE_SUFFIX)
    if model_type.endswith(MODEL_TYPE_SUFFIX) and family in transformers.CONFIG_MAPPING:
        transformers.AutoConfig.register(model_type, config_class(family), exist_ok=True)
        transformers.AutoModelForCausalLM.register(config_class(family), model_class(family), exist_ok=True)


def load(folder: Path, **kwargs) -> nn.Module:
    """Load a per-layer model saved by the workbench; kwargs go to from_pretrained."""
    register(folder)
    config = json.loads((Path(folder) / "config.json").read_text())
    family = config["model_type"].removesuffix(MODEL_TYPE_SUFFIX)
    return model_class(family).from_pretrained(folder, **kwargs)
