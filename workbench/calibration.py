"""Calibration: text to token sequences, and activation statistics captured with hooks.

How documents become sequences: each document is tokenised without special tokens, the
documents are joined into one stream with the end-of-text token between them, the stream is
cut into consecutive windows of `seq_len` tokens, and `samples` windows are taken evenly
spaced across it (deterministic: the same source, tokenizer and sizes give the same tokens).

Statistics are per neuron of each layer's down_proj input X = act(gate x) * up x, accumulated
in float32 over every real token (padding masked out), so they do not depend on batch size:
- sum_squares: sum over tokens of X_i^2 (the square of act_l2);
- sequence_mean_abs_squares: sum over sequences of (mean over its tokens of |X_i|)^2 (Minitron).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedTokenizerBase

from workbench.architecture import glu_mlps
from workbench.errors import UserError
from workbench.progress import Progress

TOKENS_PER_BATCH = 4096


@dataclass
class LayerStats:
    sum_squares: torch.Tensor  # float32 [width]
    sequence_mean_abs_squares: torch.Tensor  # float32 [width]


@dataclass
class ActivationStats:
    layers: list[LayerStats]
    tokens: int
    sequences: int

    def save(self, path: Path) -> None:
        tensors = {}
        for i, layer in enumerate(self.layers):
            tensors[f"sum_squares.{i}"] = layer.sum_squares.cpu().contiguous()
            tensors[f"sequence_mean_abs_squares.{i}"] = layer.sequence_mean_abs_squares.cpu().contiguous()
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        save_file(tensors, partial, metadata={"tokens": str(self.tokens), "sequences": str(self.sequences)})
        os.replace(partial, path)  # a reader never sees half a file

    @classmethod
    def load(cls, path: Path) -> ActivationStats:
        from safetensors import safe_open

        with safe_open(path, "pt") as f:
            meta = f.metadata()
        tensors = load_file(path)
        count = len([k for k in tensors if k.startswith("sum_squares.")])
        layers = [
            LayerStats(tensors[f"sum_squares.{i}"], tensors[f"sequence_mean_abs_squares.{i}"]) for i in range(count)
        ]
        return cls(layers, int(meta["tokens"]), int(meta["sequences"]))


def token_stream(tokenizer: PreTrainedTokenizerBase, documents: list[str]) -> list[int]:
    """All documents' tokens in order, the end-of-text token after each."""
    ids = tokenizer(documents, add_special_tokens=False)["input_ids"]
    separator = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stream: list[int] = []
    for doc in ids:
        if doc:
            stream.extend(doc)
            stream.extend(separator)
    return stream


def build_sequences(
    tokenizer: PreTrainedTokenizerBase, documents: list[str], samples: int, seq_len: int, source: str
) -> torch.Tensor:
    """`samples` windows of `seq_len` token ids [samples, seq_len]; too little text is an error."""
    stream = token_stream(tokenizer, documents)
    windows = len(stream) // seq_len
    if windows < samples:
        raise UserError(
            f"calibration source {source} has {len(stream)} tokens: {samples} samples of {seq_len} tokens "
            f"need {samples * seq_len} (lower --samples or --seq-len)"
        )
    starts = [i * windows // samples * seq_len for i in range(samples)]
    return torch.tensor([stream[s : s + seq_len] for s in starts], dtype=torch.long)


def token_hash(sequences: torch.Tensor) -> str:
    """sha256 of the token ids: names the exact calibration data a run used."""
    return hashlib.sha256(sequences.to(torch.int64).numpy().tobytes()).hexdigest()


@torch.inference_mode()
def capture(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    progress: Progress | None = None,
    batch_size: int | None = None,
) -> ActivationStats:
    """Run the decoder over the sequences and accumulate every layer's down_proj input statistics.

    Only the decoder runs (no language-model head): the statistics need nothing after the last
    layer. `attention_mask` marks real tokens (1) and right padding (0).
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    mlps = glu_mlps(model)
    device = next(model.parameters()).device
    stats = [
        LayerStats(
            torch.zeros(m.down_proj.in_features, dtype=torch.float32, device=device),
            torch.zeros(m.down_proj.in_features, dtype=torch.float32, device=device),
        )
        for m in mlps
    ]
    current_mask: list[torch.Tensor] = []

    def hook_for(layer: LayerStats):
        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0].float()
            mask = current_mask[0].unsqueeze(-1).to(x.dtype)  # [batch, tokens, 1]
            x = x * mask
            layer.sum_squares += x.square().sum((0, 1))
            lengths = mask.sum(1)  # [batch, 1]
            means = x.abs().sum(1) / lengths.clamp_min(1)
            layer.sequence_mean_abs_squares += (means.square() * (lengths > 0)).sum(0)

        return hook

    handles = [m.down_proj.register_forward_pre_hook(hook_for(s)) for m, s in zip(mlps, stats, strict=True)]
    batch_size = batch_size or max(1, TOKENS_PER_BATCH // input_ids.shape[1])
    batches = range(0, input_ids.shape[0], batch_size)
    if progress:
        progress.stage("calibrate", total=len(batches),
                       message=f"calibrating on {input_ids.shape[0]} sequences of {input_ids.shape[1]} tokens")
    try:
        for start in batches:
            ids = input_ids[start : start + batch_size].to(device)
            mask = attention_mask[start : start + batch_size].to(device)
            current_mask[:] = [mask]
            model.model(input_ids=ids, attention_mask=mask, use_cache=False)
            if progress:
                progress.advance(message=f"batch {start // batch_size + 1}/{len(batches)}")
    finally:
        for h in handles:
            h.remove()
    real = attention_mask.sum(1)
    return ActivationStats(stats, tokens=int(real.sum()), sequences=int((real > 0).sum()))
