"""A model folder's files, checked from their headers alone: light (no torch, no transformers), so
that a front end can refuse a request for a damaged or mismatched model before importing the engine.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from safetensors import safe_open

from store.db import Store
from store.queries import ModelInfo
from workbench.errors import UserError


def missing_folder(store: Store, row: ModelInfo) -> str:
    """What to say of a stored model whose folder was deleted by hand, and the ways out."""
    again = f"; or `workbench models import {row.source_ref}` restores its files" if row.source != "pruned" else ""
    return (f"model {row.name!r} (id {row.id}): its folder {store.model_path(row)} is missing: "
            f"`workbench models rm {row.name}` removes its row{again}")


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "vocab.txt")
GLU_WEIGHT = re.compile(r"(?:^|\.)layers\.(\d+)\.mlp\.(gate_proj|up_proj|down_proj)\.weight$")


def check_weights(folder: Path, hidden: int, widths: list[int], expected: dict[str, tuple] | None = None) -> None:
    """A model folder's weights, from their safetensors headers alone: there, whole (the header's
    extent is the file's), and of the shapes the config gives (the GLU MLPs' always, every other
    tensor's too when `expected` has them). Weights only in pytorch_model.bin are not looked into."""
    shapes = _weight_shapes(folder)
    if shapes is None:
        return
    glu = {(int(m.group(1)), m.group(2)): key for key in shapes if (m := GLU_WEIGHT.search(key))}
    if not glu:
        raise UserError(f"{folder}: its weights hold no GLU MLP weights (model.layers.N.mlp.gate_proj.weight)")
    wanted = dict(expected or {})
    for layer, width in enumerate(widths):
        rows_cols = {"gate_proj": (width, hidden), "up_proj": (width, hidden), "down_proj": (hidden, width)}
        for part, shape in rows_cols.items():
            key = glu.get((layer, part))
            if key is None:
                raise UserError(f"{folder}: its weights lack layer {layer}'s {part} ({len(widths)} in config.json)")
            wanted[key] = shape
    for key, shape in shapes.items():
        if key in wanted and wanted[key] != shape:
            raise UserError(f"{folder}: weight {key} has shape {list(shape)}, but config.json says "
                            f"{list(wanted[key])}: the weights and the config do not belong together")


def _weight_shapes(folder: Path) -> dict[str, tuple[int, ...]] | None:
    """Every tensor's shape in the folder's safetensors files (None when its weights are only in
    pytorch_model.bin); UserError when they are missing, truncated or their header is damaged."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UserError(f"{index} is damaged: not a safetensors index") from None
        files = [folder / n for n in names]
    elif (folder / "model.safetensors").is_file():
        files = [folder / "model.safetensors"]
    elif (folder / "pytorch_model.bin").is_file() or (folder / "pytorch_model.bin.index.json").is_file():
        return None
    else:
        raise UserError(f"{folder} holds no weights (no model.safetensors or pytorch_model.bin)")
    shapes: dict[str, tuple[int, ...]] = {}
    for file in files:
        if not file.is_file():
            raise UserError(f"{folder} lacks {file.name}, which its model.safetensors.index.json names")
        try:
            with safe_open(file, framework="numpy") as weights:  # (numpy: "pt" imports torch)
                for key in weights.keys():  # noqa: SIM118 (a safe_open handle is no mapping)
                    shapes[key] = tuple(weights.get_slice(key).get_shape())
        except Exception as e:  # SafetensorError: a truncated file, a damaged header
            raise UserError(f"{file} is damaged or truncated ({first_line(e)})") from None
    return shapes


def check_stored(store: Store, row: ModelInfo) -> tuple[int, list[int]]:
    """A stored model's files, from their headers: (hidden size, MLP width per layer)."""
    folder = store.model_path(row)
    if not folder.is_dir():
        raise UserError(missing_folder(store, row))
    check_folder(folder, row.hidden_size, list(row.widths))
    return row.hidden_size, list(row.widths)


def check_folder(folder: Path, hidden: int, widths: list[int], expected: dict[str, tuple] | None = None) -> None:
    """A model folder's weights (check_weights) and that it holds a tokenizer."""
    check_weights(folder, hidden, widths, expected)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(f"{folder} holds no tokenizer ({' or '.join(TOKENIZER_FILES[:2])})")


# The tokenizer file read on its own can differ from transformers' reading of it by a setting of
# transformers' (a prefix space, say): a text must clear what a job needs by this share for
# count_tokens to settle it, else the engine counts exactly.
TOKEN_MARGIN = 0.02


def count_tokens(folder: Path, documents: list[str]) -> int | None:
    """How many tokens the documents hold at least, by the folder's tokenizer.json (without the
    end-of-text token after each, which only adds); None where only transformers can tell (no
    tokenizer.json, or one the tokenizers library cannot read)."""
    from tokenizers import Tokenizer  # (the Rust library alone: milliseconds)

    file = folder / "tokenizer.json"
    if not file.is_file():
        return None
    try:
        tokenizer = Tokenizer.from_file(os.fspath(file))
    except Exception:  # damaged, or of a newer format: transformers says what it makes of it
        return None
    return sum(len(e.ids) for e in tokenizer.encode_batch(documents, add_special_tokens=False))


def first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
