"""Calibration: text to token sequences, and activation statistics captured with hooks.

How documents become sequences: each document is tokenised without special tokens, the
documents are joined into one stream with the end-of-text token between them, the stream is
cut into consecutive windows of `seq_len` tokens, and `samples` windows are taken evenly
spaced across it (deterministic: the same source, tokenizer and sizes give the same tokens).

Statistics are per neuron of each layer's down_proj input X = act(gate x) * up x, accumulated
in float32 over every real token (padding masked out), so they do not depend on batch size:
- sum_squares: sum over tokens of X_i^2 (the square of act_l2);
- sequence_mean_abs_squares: sum over sequences of (mean over its tokens of |X_i|)^2 (Minitron);
- on request, the Gram matrix sum over tokens of X X^T (width x width), which a one-shot repair
  (workbench/repair.py) solves with: gathered here, it costs no second pass over the decoder.

Cost: the hooks must stay cheap next to the layers they watch (at most 1.15x a plain decoder
forward is the target; bench/calibration_overhead.py). On a GPU each hook reads X twice, with
reductions that accumulate in float32 straight from the model's dtype (no upcast copy of X; see
`token_sums`); padding is masked only in a batch that has some, with a mask built once per batch
and device. A batch holds TOKENS_PER_BATCH tokens on the CPU; on a GPU, as many
sequences as half the free memory holds (`batch_size_for`). Every statistic lives on its own
layer's device, so a model spread over several GPUs is calibrated where its layers are.
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

TOKENS_PER_BATCH = 4096  # per batch on the CPU (and MPS): larger batches gain nothing there
GPU_MEMORY_SHARE = 0.5  # of the free memory that one batch's activations may take on a GPU
MAX_TOKENS_PER_BATCH = 65536  # on a GPU: larger batches gain nothing and cancel later


@dataclass
class LayerStats:
    sum_squares: torch.Tensor  # float32 [width]
    sequence_mean_abs_squares: torch.Tensor  # float32 [width]


@dataclass
class ActivationStats:
    layers: list[LayerStats]
    tokens: int
    sequences: int
    grams: list[torch.Tensor] | None = None  # float32 [width, width] per layer, when asked (not saved here)

    def save(self, path: Path) -> None:
        tensors = {}
        for i, layer in enumerate(self.layers):
            tensors[f"sum_squares.{i}"] = layer.sum_squares.cpu().contiguous()
            tensors[f"sequence_mean_abs_squares.{i}"] = layer.sequence_mean_abs_squares.cpu().contiguous()
        save_cache(tensors, path, {"tokens": str(self.tokens), "sequences": str(self.sequences)})

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


def save_cache(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> bool:
    """Write a statistics cache kept in a model's folder (`<model folder>/calibration/<file>`); False,
    writing nothing, when that model's folder is gone (removed meanwhile: never make it again).
    Jobs on other GPUs may save the same cache at once: each writes a file of its own, renamed into
    place, so a reader never sees half a file."""
    if not path.parent.parent.is_dir():
        return False
    partial = path.with_suffix(f".{os.getpid()}.partial")
    try:
        path.parent.mkdir(exist_ok=True)  # (not parents: the model's folder must be there)
        save_file(tensors, partial, metadata=metadata)
        os.replace(partial, path)
    except FileNotFoundError:  # the model's folder went while this was written
        partial.unlink(missing_ok=True)
        return False
    return True


def add_gram(gram: torch.Tensor, x: torch.Tensor) -> None:
    """gram += X^T X over the rows of x [..., width] (float32; rows of padding are zero or left out)."""
    x = x.reshape(-1, x.shape[-1]).float()
    gram.addmm_(x.T, x)


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


def batch_size_for(model: nn.Module, seq_len: int, free_bytes: int | None = None) -> int:
    """Sequences per calibration batch: TOKENS_PER_BATCH tokens on the CPU; on a GPU, as many as
    GPU_MEMORY_SHARE of the free memory holds (`free_bytes`, else the least any of the model's
    GPUs has free), up to MAX_TOKENS_PER_BATCH.

    A token's activations inside one decoder layer (the only one alive at a time) are about
    4 x intermediate + 8 x hidden values in the model's dtype, plus a row of attention scores
    per head where the attention kernel materialises them (eager attention)."""
    mlps = glu_mlps(model)
    devices = {m.down_proj.weight.device for m in mlps}
    if any(d.type != "cuda" for d in devices):
        return max(1, TOKENS_PER_BATCH // seq_len)
    if free_bytes is None:
        free_bytes = min(torch.cuda.mem_get_info(d)[0] for d in devices)
    config = model.config
    widest = max(m.down_proj.in_features for m in mlps)
    per_token = model.dtype.itemsize * (4 * widest + 8 * config.hidden_size)
    if getattr(config, "_attn_implementation", "eager") == "eager":
        per_token += 4 * 2 * config.num_attention_heads * seq_len  # float32 scores and their softmax
    tokens = min(int(free_bytes * GPU_MEMORY_SHARE) // per_token, MAX_TOKENS_PER_BATCH)
    return max(1, tokens // seq_len)


def token_sums(x: torch.Tensor, fused: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """For x [batch, tokens, width]: the sum over all tokens of x^2 [width], and each sequence's
    sum over its tokens of |x| [batch, width], both float32.

    `fused` (the default on a GPU): reductions that read x in its own dtype and accumulate in
    float32 in one kernel each, with no copy of x. Elsewhere plain elementwise ops and sums are
    faster (the CPU's norm kernels reduce slowly over leading dimensions)."""
    if fused is None:
        fused = x.is_cuda
    if fused:
        squares = torch.linalg.vector_norm(x, 2, dim=(0, 1), dtype=torch.float32).square()
        return squares, torch.linalg.vector_norm(x, 1, dim=1, dtype=torch.float32)
    x = x.float()
    return x.square().sum((0, 1)), x.abs().sum(1)


class _Batch:
    """The batch being run: its mask, and (when it has padding) that mask and the sequences'
    lengths on each device that asks, built once per batch rather than once per layer."""

    def __init__(self, mask: torch.Tensor) -> None:
        self.padded = not bool(mask.all())
        self.mask = mask
        self._masks: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self._lengths: dict[torch.device, torch.Tensor] = {}
        self.lengths_cpu = mask.sum(1, keepdim=True).clamp_min(1).float()  # [batch, 1]

    def masked(self, x: torch.Tensor) -> torch.Tensor:
        """x [batch, tokens, width] with its padding tokens zeroed (x itself when there are none);
        exact in any dtype, the mask being 0 or 1."""
        if not self.padded:
            return x
        key = (x.device, x.dtype)
        if key not in self._masks:
            self._masks[key] = self.mask.to(device=x.device, dtype=x.dtype).unsqueeze(-1)
        return x * self._masks[key]

    def lengths(self, device: torch.device) -> torch.Tensor:
        if device not in self._lengths:
            self._lengths[device] = self.lengths_cpu.to(device)
        return self._lengths[device]


@torch.inference_mode()
def capture(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    progress: Progress | None = None,
    batch_size: int | None = None,
    grams: bool = False,
) -> ActivationStats:
    """Run the decoder over the sequences and accumulate every layer's down_proj input statistics
    (with `grams`, every layer's Gram matrix too: the caller makes sure they fit).

    Only the decoder runs (no language-model head): the statistics need nothing after the last
    layer. `attention_mask` marks real tokens (1) and right padding (0).
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    mlps = glu_mlps(model)
    stats = [
        LayerStats(
            torch.zeros(m.down_proj.in_features, dtype=torch.float32, device=m.down_proj.weight.device),
            torch.zeros(m.down_proj.in_features, dtype=torch.float32, device=m.down_proj.weight.device),
        )
        for m in mlps
    ]
    gram_list = [torch.zeros(m.down_proj.in_features, m.down_proj.in_features, dtype=torch.float32,
                             device=m.down_proj.weight.device) for m in mlps] if grams else None  # fmt: skip
    current: list[_Batch] = []

    def hook_for(index: int):
        layer = stats[index]

        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            batch = current[0]
            x = batch.masked(inputs[0])  # [batch, tokens, width], in the model's dtype
            squares, abs_sums = token_sums(x)
            means = abs_sums / batch.lengths(x.device)
            # (`to` is free where x is on the layer's own device, as it is but under unusual device maps)
            layer.sum_squares += squares.to(layer.sum_squares.device)
            layer.sequence_mean_abs_squares += means.square().sum(0).to(layer.sum_squares.device)  # padding adds 0
            if gram_list is not None:
                add_gram(gram_list[index], x.to(gram_list[index].device))
            if progress:
                progress.check()  # a batch may be large: a cancel lands within a layer

        return hook

    handles = [m.down_proj.register_forward_pre_hook(hook_for(i)) for i, m in enumerate(mlps)]
    batch_size = batch_size or batch_size_for(model, input_ids.shape[1])
    batches = range(0, input_ids.shape[0], batch_size)
    device = model.get_input_embeddings().weight.device
    if progress:
        progress.stage("calibrate", total=len(batches),
                       message=f"calibrating on {input_ids.shape[0]} sequences of {input_ids.shape[1]} tokens")
    try:
        for start in batches:
            mask = attention_mask[start : start + batch_size]
            current[:] = [_Batch(mask)]
            model.model(input_ids=input_ids[start : start + batch_size].to(device),
                        attention_mask=mask.to(device) if current[0].padded else None, use_cache=False)
            if progress:
                progress.advance(message=f"batch {start // batch_size + 1}/{len(batches)}")
    finally:
        for h in handles:
            h.remove()
    real = attention_mask.sum(1)
    return ActivationStats(stats, tokens=int(real.sum()), sequences=int((real > 0).sum()), grams=gram_list)
