"""Global allocation: how each layer's scores are normalised before they compete across layers.

On SmolLM2-135M-Instruct, one calibration capture (WikiText-2 validation, --samples windows of
512 tokens) feeds every configuration; each is pruned from a fresh copy of the model and scored
on the first --windows windows of 512 tokens of WikiText-2 test. Compared: uniform widths, and
global allocation with each layer's scores divided by their mean or by their median (what
workbench/plan.py does). Each line gives perplexity and the narrowest and widest kept layer.

Run: .venv/bin/python bench/global_allocation.py [--store DIR] [--samples 16] [--windows 8]
It prints one line per configuration and writes bench/results/global_allocation.json.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from unittest import mock

import torch

from store import queries
from store.db import Store
from workbench import calibration, model_io, plan
from workbench.perplexity import perplexity
from workbench.spec import PruneSpec
from workbench.surgery import apply_plan
from workbench.texts import load_source

RESULTS = Path(__file__).parent / "results"
SCALES = {"mean": lambda scores: scores.mean().clamp_min(torch.finfo(torch.float32).tiny), "median": plan.layer_scale}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=str(RESULTS / "store"), help="a store holding (or to hold) smollm2")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--percents", default="40,20")
    parser.add_argument("--scorers", default="wanda,hybrid,act_l2")
    args = parser.parse_args()

    store = Store.open(args.store)
    model_io.import_model(store, "smollm2", if_missing=True)
    folder = store.model_path(queries.get_model(store, "smollm2"))
    tokenizer = model_io.load_tokenizer(folder)
    wiki = load_source("wikitext2")
    sequences = calibration.build_sequences(tokenizer, wiki.calibration, args.samples, 512, "wikitext2")
    base = model_io.load_model(folder, torch.device("cpu"), torch.float32)
    stats = calibration.capture(base, sequences)

    rows = []
    for percent in [float(p) for p in args.percents.split(",")]:
        for scorer in args.scorers.split(","):
            for normalisation in ("uniform", "mean", "median"):
                model = copy.deepcopy(base)
                allocation = "uniform" if normalisation == "uniform" else "global"
                spec = PruneSpec(model="smollm2", scorer=scorer, percent=percent, allocation=allocation)
                with mock.patch.object(plan, "layer_scale", SCALES.get(normalisation, plan.layer_scale)):
                    plans = plan.plan_pruning(model, spec, stats)
                apply_plan(model, plans)
                ppl = perplexity(model, tokenizer, wiki.heldout, windows=args.windows, window_len=512).perplexity
                widths = [p.kept_width for p in plans]
                rows.append(
                    {
                        "percent": percent,
                        "scorer": scorer,
                        "allocation": normalisation,
                        "perplexity": ppl,
                        "narrowest": min(widths),
                        "widest": max(widths),
                    }
                )
                print(
                    f"{percent:g}% {scorer:<8} {normalisation:<8} ppl {ppl:8.2f}  widths {min(widths)}-{max(widths)}",
                    flush=True,
                )
                del model
    RESULTS.mkdir(exist_ok=True)
    summary = {"calibration": {"samples": args.samples, "seq_len": 512}, "windows": args.windows, "rows": rows}
    (RESULTS / "global_allocation.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
