"""Pruning SmolLM2-135M-Instruct: this engine against optipfair 0.4.2, side by side in one run.

Every configuration runs in a fresh process that loads the same safetensors weights, builds
the same calibration tokens (WikiText-2 validation, evenly spaced windows; see
workbench/calibration.py) and feeds them in the same batches on the same device and dtype.
Reported per configuration:

- calibration time (forward passes with hooks) and pruning time (scoring + surgery); for
  optipfair's data-driven mode both happen inside one call, reported together;
- memory: resident memory of the loaded model (after load minus before), and the peak while
  scoring and cutting over that, as peak / loaded (the target is at most 1.15x);
- parameters, and WikiText-2 test perplexity under one fixed protocol: the first 24 windows
  of 512 tokens of the test split, each scored alone (workbench/perplexity.py).
A "plain forward" row times ordinary full forward passes over the same tokens and batches:
the target is calibration within 1.15x of it.

Run: .venv/bin/python bench/prune_vs_optipfair.py [--samples 32] [--percents 20,40]
It prints a Markdown table and writes bench/results/prune_vs_optipfair.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
OURS = [
    ("ppm", "uniform"),
    ("act_l2", "uniform"),
    ("wanda", "uniform"),
    ("minitron", "uniform"),
    ("hybrid", "uniform"),
    ("act_l2", "global"),
    ("wanda", "global"),
    ("minitron", "global"),
    ("hybrid", "global"),
]
OPTIPFAIR = [("optipfair", "MAW static"), ("optipfair", "MAW + activations")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=str(RESULTS / "store"), help="a store holding (or to hold) smollm2")
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--percents", default="20,40")
    parser.add_argument("--only", help="run only these configurations, e.g. 'plain forward,hybrid global'")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # one configuration, run in its own process
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_one(json.loads(args.worker))))
        return

    from store.db import Store
    from workbench import model_io

    store = Store.open(args.store)
    model_io.import_model(store, "smollm2", if_missing=True)
    common = {"store": args.store, "samples": args.samples, "seq_len": args.seq_len}
    configs = [{"tool": "-", "config": "base (unpruned)", "percent": 0.0}]
    configs.append({"tool": "-", "config": "plain forward", "percent": 0.0})
    for percent in [float(p) for p in args.percents.split(",")]:
        configs += [{"tool": "workbench", "config": f"{s} {a}", "percent": percent} for s, a in OURS]
        configs += [{"tool": t, "config": c, "percent": percent} for t, c in OPTIPFAIR]
    if args.only:
        configs = [c for c in configs if c["config"] in args.only.split(",")]
    RESULTS.mkdir(exist_ok=True)
    summary = {
        "model": "SmolLM2-135M-Instruct (bundled GGUF Q4_1, dequantised to float32)",
        "calibration": {"source": "wikitext2 validation", "samples": args.samples, "seq_len": args.seq_len},
        "perplexity_protocol": "WikiText-2 test, first 24 windows of 512 tokens, each scored alone",
        "rows": [],
    }
    rows = summary["rows"]
    for config in configs:
        out = subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(common | config)],
            capture_output=True, text=True, check=True,
        ).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{r['tool']:<10} {r['config']:<26} {r['percent']:>4g}%  ppl {r.get('perplexity', 0):9.2f}  "
              f"calib {r.get('calibration_seconds', 0):6.1f}s  prune {r.get('prune_seconds', 0):5.2f}s  "
              f"peak/loaded {r.get('peak_over_loaded', 0):.3f}  plain forward {r.get('plain_forward_seconds', 0):.1f}s",
              flush=True)
        # Written after every row, so that a stopped run keeps what it measured.
        (RESULTS / "prune_vs_optipfair.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(markdown(rows))


def run_one(config: dict) -> dict:
    """Measure one configuration in this (fresh) process."""
    import torch

    from store import queries
    from store.db import Store
    from workbench import calibration, model_io
    from workbench.architecture import count_parameters
    from workbench.devices import MemoryMeter, resolve_device
    from workbench.perplexity import perplexity
    from workbench.plan import plan_pruning
    from workbench.spec import PruneSpec
    from workbench.surgery import apply_plan
    from workbench.texts import load_source

    torch.manual_seed(0)
    store = Store.open(config["store"])
    folder = store.model_path(queries.get_model(store, "smollm2"))
    device = resolve_device("auto")
    tokenizer = model_io.load_tokenizer(folder)
    wiki = load_source("wikitext2")
    sequences = calibration.build_sequences(tokenizer, wiki.calibration, config["samples"], config["seq_len"], "w")
    batch = max(1, calibration.TOKENS_PER_BATCH // config["seq_len"])
    meter = MemoryMeter(device)
    row = dict(config, device=str(device), threads=torch.get_num_threads(), batch=batch,
               calibration_hash=calibration.token_hash(sequences))

    before_load = meter.current()
    model = model_io.load_model(folder, device, torch.float32)
    with torch.no_grad():  # touch every weight, so none is left unread in a file mapping
        sum(float(p.sum()) for p in model.parameters())
    loaded = meter.current() - before_load
    row["loaded_model_bytes"] = loaded

    if config["config"] == "plain forward":
        # Calibration against plain forward passes, alternated in one process so that both see
        # the same machine load: the median of three each.
        plain, hooked = [], []
        for _ in range(3):
            with torch.inference_mode():
                plain.append(_timed(lambda: [model(input_ids=s, use_cache=False) for s in sequences.split(batch)]))
            hooked.append(_timed(lambda: calibration.capture(model, sequences, batch_size=batch)))
        row["plain_forward_seconds"] = sorted(plain)[1]
        row["calibration_seconds"] = sorted(hooked)[1]
        return row

    stats = None
    if config["tool"] == "workbench":
        scorer, allocation = config["config"].split()
        spec = PruneSpec(model="smollm2", scorer=scorer, percent=config["percent"], allocation=allocation)
        if spec.data_driven:
            def capture():
                nonlocal stats
                stats = calibration.capture(model, sequences, batch_size=batch)

            row["calibration_seconds"] = _timed(capture)
        prune = lambda: apply_plan(model, plan_pruning(model, spec, stats))  # noqa: E731
    elif config["tool"] == "optipfair":
        from optipfair import prune_model

        data_driven = "activations" in config["config"]
        loader = [(s, torch.ones_like(s)) for s in sequences.split(batch)] if data_driven else None
        prune = lambda: prune_model(  # noqa: E731
            model, pruning_type="MLP_GLU", neuron_selection_method="MAW", pruning_percentage=config["percent"],
            dataloader=loader, show_progress=False)
    else:
        prune = lambda: None  # noqa: E731  (the unpruned base)

    at_start = meter.current()
    meter.reset()
    row["prune_seconds"] = _timed(prune)
    row["peak_over_loaded"] = (loaded + max(0, meter.peak() - at_start)) / loaded
    row["parameters"] = count_parameters(model)
    row["perplexity"] = perplexity(model, tokenizer, wiki.heldout, windows=24, window_len=512).perplexity
    return row


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def markdown(rows: list[dict]) -> str:
    lines = [
        "| tool | configuration | removed | parameters | WikiText-2 ppl | calibration (s) | prune (s) "
        "| peak / loaded |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["config"] == "plain forward":
            continue
        lines.append(
            f"| {r['tool']} | {r['config']} | {r['percent']:g}% | {r['parameters'] / 1e6:.2f}M "
            f"| {r['perplexity']:.2f} | "
            f"{r.get('calibration_seconds', 0):.1f} | {r['prune_seconds']:.2f} | {r['peak_over_loaded']:.3f} |"
        )
    plain = next((r for r in rows if r["config"] == "plain forward"), None)
    if plain is None:
        return "\n".join(lines)
    lines.append("")
    lines.append(
        f"Calibration over the same tokens and batches, alternated in one process (median of 3): plain full "
        f"forward passes {plain['plain_forward_seconds']:.1f}s, our hooked decoder passes "
        f"{plain['calibration_seconds']:.1f}s ({plain['calibration_seconds'] / plain['plain_forward_seconds']:.2f}x)."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
