"""The workbench's own measurements: perplexity, speed, memory, and the model's size.

Each returns rows of (task, metric, value, settings) whose settings say how it was measured, so
that a figure in a table can always be traced to its protocol.
- `ppl:SOURCE`: workbench.perplexity's fixed protocol on the source's held-out text.
- `speed`: batch 1, a fixed prompt of random token ids (seeded; speed does not depend on the text),
  greedy `generate` with the KV cache. Prefill is the time to the first new token; decode is the
  rest of a generation of exactly NEW_TOKENS tokens, per token after the first. One warm-up run,
  then the median of timed runs of each.
- `memory`: the same generation once, with peak device memory (CUDA: allocated bytes) or the
  process's peak resident set (CPU) reset just before.
- `model`: parameters (tied weights once) and the size of the stored folder.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from workbench.architecture import count_parameters
from workbench.devices import MemoryMeter, input_device, model_devices
from workbench.perplexity import perplexity
from workbench.progress import Progress
from workbench.texts import TextSource

HARNESS = "workbench"
PPL_WINDOWS = 24
PPL_WINDOW_LEN = 512  # or the model's context, where that is shorter
PROMPT_TOKENS = 128
NEW_TOKENS = 64
TIMED_RUNS = 3
SEED = 0


@dataclass(frozen=True)
class Measurement:
    task: str
    metric: str
    value: float
    settings: dict[str, Any]
    samples: int | None = None


def model_facts(model: PreTrainedModel, size_bytes: int) -> list[Measurement]:
    return [
        Measurement("model", "parameters", count_parameters(model), {"counted": "distinct tensors, tied once"}),
        Measurement("model", "size_bytes", size_bytes, {"measured": "files of the stored model folder"}),
    ]


def measure_perplexity(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: str, source: TextSource, progress: Progress
) -> list[Measurement]:
    window_len = min(PPL_WINDOW_LEN, _context(model))
    result = perplexity(model, tokenizer, source.heldout, PPL_WINDOWS, window_len, progress=_Within(progress))
    protocol = {k: v for k, v in result.protocol().items() if k != "perplexity"}  # the value is the row's
    settings = protocol | {"source": source.name, "overlapping": source.overlapping}
    return [Measurement(task, "perplexity", result.perplexity, settings, samples=result.windows)]


def measure_speed(model: PreTrainedModel) -> list[Measurement]:
    prompt = _prompt(model)
    _generate(model, prompt, NEW_TOKENS)  # warm-up: kernels, allocator, caches
    first = statistics.median(_generate(model, prompt, 1) for _ in range(TIMED_RUNS))
    whole = statistics.median(_generate(model, prompt, NEW_TOKENS) for _ in range(TIMED_RUNS))
    settings = {
        "batch": 1, "prompt_tokens": PROMPT_TOKENS, "new_tokens": NEW_TOKENS, "greedy": True, "seed": SEED,
        "warmup_runs": 1, "timed_runs": TIMED_RUNS, "statistic": "median",
        "prefill": "prompt tokens / time to the first new token",
        "decode": "(new tokens - 1) / (generation time - time to the first new token)",
    }  # fmt: skip
    return [
        Measurement("speed", "prefill_tokens_per_s", PROMPT_TOKENS / first, settings),
        Measurement("speed", "decode_tokens_per_s", (NEW_TOKENS - 1) / max(whole - first, 1e-9), settings),
    ]


def measure_memory(model: PreTrainedModel) -> list[Measurement]:
    device = input_device(model)
    meter = MemoryMeter(torch.device(device.type))  # on CUDA: every GPU the model is spread over
    meter.reset()
    _generate(model, _prompt(model), NEW_TOKENS)
    measured = {
        "cuda": "torch.cuda.max_memory_allocated (weights, KV cache, activations)",
        "mps": "Metal driver-allocated memory",
    }.get(device.type, "peak resident set of the process (VmHWM), everything it holds")
    settings = {"measured": measured, "batch": 1, "prompt_tokens": PROMPT_TOKENS, "new_tokens": NEW_TOKENS}
    return [Measurement("memory", "peak_bytes", meter.peak(), settings)]


def _context(model: PreTrainedModel) -> int:
    return getattr(model.config, "max_position_embeddings", None) or PPL_WINDOW_LEN


def _prompt(model: PreTrainedModel) -> torch.Tensor:
    generator = torch.Generator().manual_seed(SEED)
    ids = torch.randint(0, model.config.vocab_size, (1, PROMPT_TOKENS), generator=generator)
    return ids.to(input_device(model))


@torch.inference_mode()
def _generate(model: PreTrainedModel, prompt: torch.Tensor, new_tokens: int) -> float:
    """Seconds for one greedy generation of exactly `new_tokens` tokens (no early stop)."""
    config = GenerationConfig(
        max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0
    )
    _sync(model)
    start = time.perf_counter()
    model.generate(prompt, attention_mask=torch.ones_like(prompt), generation_config=config)
    _sync(model)
    return time.perf_counter() - start


def _sync(model: PreTrainedModel) -> None:
    """Wait for the work queued on every device the model is on."""
    for device in model_devices(model):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elif device.type == "mps":
            torch.mps.synchronize()


class _Within(Progress):
    """Hands a helper's own stage (perplexity's windows) to the stage already running in `outer`."""

    def __init__(self, outer: Progress) -> None:
        super().__init__()
        self.outer = outer

    def stage(self, name: str, total: int = 0, message: str = "") -> None:
        self.outer.set_total(total, message or name)

    def advance(self, steps: int = 1, message: str = "") -> None:
        self.outer.advance(steps, message or "perplexity windows")

    def check(self) -> None:
        self.outer.check()
