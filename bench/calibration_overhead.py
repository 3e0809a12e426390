"""Calibration against a plain decoder forward pass over the same tokens, in one process.

`workbench.calibration.capture` runs the decoder (no language-model head) with a hook on every
layer's down_proj that accumulates the activation statistics. This times it against the same
decoder over the same token batches without hooks (`model.model(...)`), alternating the two so
that both see the same machine load, and reports the medians and their ratio (the target is at
most 1.15x). The model is random weights built from a config (no download): calibration's cost
does not depend on the weights or on which tokens are fed.

Run:  python bench/calibration_overhead.py [--shape smollm2-135m] [--samples 8] [--seq-len 512]
      [--device auto] [--dtype auto] [--repeats 3]
On a shared CPU, `--threads 1` and the CPU-time ratio (this process's CPU seconds, which other
work on the machine disturbs far less than wall time) compare steadily. It prints the figures and
writes bench/results/calibration_overhead-<shape>-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

# Decoder shapes of real models (their configs' sizes), built with random weights.
SHAPES = {
    "tiny": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=8,
                 num_key_value_heads=2, head_dim=32, vocab_size=1024, tie_word_embeddings=True),
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, head_dim=64, vocab_size=49152, tie_word_embeddings=True,
                         rope_theta=100000.0),
    "llama-3.2-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                         num_key_value_heads=8, head_dim=64, vocab_size=128256, tie_word_embeddings=True,
                         rope_theta=500000.0),
    "llama-3.1-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, head_dim=128, vocab_size=128256, tie_word_embeddings=False,
                         rope_theta=500000.0),
}  # fmt: skip


def random_model(shape: str, device, dtype, seed: int = 0, vocab_size: int | None = None):
    """A Llama of the shape with random weights, built straight on the device in the dtype (with
    another vocabulary size when given: one that holds a real tokenizer's)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(seed)
    sizes = SHAPES[shape] | ({"vocab_size": vocab_size} if vocab_size else {})
    with torch.device(device):  # no float32 copy first: an 8B model in bfloat16 takes 16 GB
        model = AutoModelForCausalLM.from_config(LlamaConfig(max_position_embeddings=4096, **sizes), dtype=dtype)
    return model.eval()


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(model, ids, repeats: int, batch_size: int | None = None) -> dict:
    """Median seconds of capture and of the plain decoder forward over the same batches."""
    import torch

    from workbench import calibration

    device = model.get_input_embeddings().weight.device
    batch_size = batch_size or calibration.batch_size_for(model, ids.shape[1])

    def plain() -> None:
        with torch.inference_mode():
            for batch in ids.split(batch_size):
                model.model(input_ids=batch.to(device), use_cache=False)

    def hooked() -> None:
        calibration.capture(model, ids, batch_size=batch_size)

    def timed(run) -> tuple[float, float]:
        synchronize(device)
        start, cpu = time.perf_counter(), time.process_time()
        run()
        synchronize(device)
        return time.perf_counter() - start, time.process_time() - cpu

    plain()  # warm-up: kernels, allocator, caches
    hooked()
    plains, hookeds = [], []
    for _ in range(repeats):
        plains.append(timed(plain))
        hookeds.append(timed(hooked))
    p, h = (statistics.median(t[0] for t in runs) for runs in (plains, hookeds))
    p_cpu, h_cpu = (statistics.median(t[1] for t in runs) for runs in (plains, hookeds))
    return {"batch_size": batch_size, "plain_forward_s": p, "calibration_s": h, "ratio": h / p,
            "plain_forward_cpu_s": p_cpu, "calibration_cpu_s": h_cpu, "cpu_ratio": h_cpu / p_cpu,
            "plain_runs": plains, "calibration_runs": hookeds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=list(SHAPES), default="smollm2-135m")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--batch-size", type=int, help="sequences per batch (default: calibration's own choice)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch's CPU threads (1: steady CPU-time ratios on a busy host)")
    args = parser.parse_args()

    import torch
    import transformers

    from workbench.devices import dtype_name, resolve_device, resolve_dtype

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    model = random_model(args.shape, device, dtype)
    ids = torch.randint(0, model.config.vocab_size, (args.samples, args.seq_len),
                        generator=torch.Generator().manual_seed(1))
    result = measure(model, ids, args.repeats, args.batch_size)
    result |= {"shape": args.shape, "samples": args.samples, "seq_len": args.seq_len, "device": str(device),
               "dtype": dtype_name(dtype), "threads": torch.get_num_threads(), "torch": torch.__version__,
               "transformers": transformers.__version__, "machine": platform.processor() or platform.machine(),
               "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    print(f"{args.shape} {device} {dtype_name(dtype)}, {args.samples} x {args.seq_len} tokens, batch "
          f"{result['batch_size']}: plain decoder forward {result['plain_forward_s']:.3f} s, calibration "
          f"{result['calibration_s']:.3f} s, ratio {result['ratio']:.3f}; CPU time "
          f"{result['plain_forward_cpu_s']:.2f} s against {result['calibration_cpu_s']:.2f} s, ratio "
          f"{result['cpu_ratio']:.3f} (medians of {args.repeats})")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"calibration_overhead-{args.shape}-{device.type}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
