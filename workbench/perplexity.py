"""Perplexity on held-out text under one fixed, recorded protocol.

The source's held-out documents become one token stream (as in calibration: end-of-text
between documents); the first `windows` non-overlapping windows of `window_len` tokens are
scored, each on its own (no context carried across windows); perplexity is exp of the mean
negative log-likelihood over every predicted token (window_len - 1 per window).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from workbench.calibration import token_stream
from workbench.devices import input_device
from workbench.errors import UserError
from workbench.progress import Progress


@dataclass(frozen=True)
class PerplexityResult:
    perplexity: float
    windows: int
    window_len: int
    tokens_scored: int

    def protocol(self) -> dict:
        return asdict(self) | {"stride": self.window_len}


@torch.inference_mode()
def perplexity(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    documents: list[str],
    windows: int = 24,
    window_len: int = 512,
    batch_size: int = 4,
    progress: Progress | None = None,
) -> PerplexityResult:
    stream = token_stream(tokenizer, documents)
    available = len(stream) // window_len
    if available == 0:
        raise UserError(f"the text has {len(stream)} tokens: not one window of {window_len}")
    windows = min(windows, available)
    ids = torch.tensor(stream[: windows * window_len]).view(windows, window_len)
    device = input_device(model)  # a model spread over GPUs returns its logits there too
    total_nll, scored = 0.0, 0
    if progress:
        progress.stage("perplexity", total=windows)
    for start in range(0, windows, batch_size):
        batch = ids[start : start + batch_size].to(device)
        logits = model(input_ids=batch, use_cache=False).logits[:, :-1].float()
        targets = batch[:, 1:]
        total_nll += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum"))
        scored += targets.numel()
        if progress:
            progress.advance(len(batch))
    return PerplexityResult(math.exp(total_nll / scored), windows, window_len, scored)
