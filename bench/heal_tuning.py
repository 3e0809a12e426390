"""Heal settings compared on text the recovery table never reads: WikiText-2 validation split by
document, the first 54 articles to heal on and the last 6 held out for perplexity (the fixed protocol,
first 24 windows of 512 tokens). The test split is left alone, so the settings chosen here are then
measured once, by bench/recovery.py.

Each setting is one `workbench heal` of a stored cut (default: SmolLM2 at 40%, hybrid uniform, one-shot
repair, as `prune ... --repair oneshot` makes it) in a process of its own, timed by the OS (CPU: user +
system of the process); the healed model is scored in this process and removed from the store.

Run: OMP_NUM_THREADS=1 .venv/bin/python bench/heal_tuning.py --store STORE --model CUT \
         --runs 'lr=1e-3 tokens=49152' 'lr=2e-3 tokens=49152 train=mlp' ...
Each run's keys are `workbench heal` options without their dashes (seq_len for --seq-len). Results are
appended to bench/results/heal_tuning.jsonl, one line a run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "results" / "heal_tuning.jsonl"
HEAL_DOCS = 54  # of WikiText-2 validation's 60 articles; the other 6 are held out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--model", required=True, help="the stored cut to heal (its parent teaches)")
    parser.add_argument("--runs", nargs="+", required=True, help="settings, e.g. 'lr=1e-3 tokens=49152'")
    parser.add_argument("--work", default="/tmp/heal-tuning", help="folder for the split text")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    env = os.environ | {"PYTHONPATH": str(REPO)}
    train, heldout = split(Path(args.work))
    if not any(json.loads(line).get("setting") == "(no heal)" and json.loads(line).get("model") == args.model
               for line in (OUT.read_text().splitlines() if OUT.is_file() else [])):
        ppl = heldout_perplexity(args, args.model, heldout)
        append({"model": args.model, "setting": "(no heal)", "heldout_ppl": ppl})
    for run in args.runs:
        options = dict(item.split("=", 1) for item in run.split())
        name = f"tune-{time.time_ns()}"
        command = [sys.executable, "-m", "workbench", "--store", args.store, "heal", args.model, "--data", str(train),
                   "--device", "cpu", "--name", name, "--json"]
        for key, value in options.items():
            command += [f"--{key.replace('_', '-')}", value]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            print(run, "failed:", done.stderr.strip().splitlines()[-1:], flush=True)
            continue
        report = json.loads(done.stdout)
        row = {"model": args.model, "setting": run, "heldout_ppl": heldout_perplexity(args, name, heldout),
               "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), "wall_s": wall,
               "steps": report["steps"], "first_loss": report["first_loss"], "last_loss": report["last_loss"],
               "load": os.getloadavg()[0], "threads": os.environ.get("OMP_NUM_THREADS", "default")}
        append(row)
        subprocess.run([sys.executable, "-m", "workbench", "--store", args.store, "models", "rm", name], env=env,
                       capture_output=True, check=True)


def split(work: Path) -> tuple[Path, list[str]]:
    from workbench.texts import load_source

    documents = load_source("wikitext2").calibration  # validation
    work.mkdir(parents=True, exist_ok=True)
    train = work / "wikitext2-valid-heal.jsonl"
    train.write_text("".join(json.dumps({"text": d}) + "\n" for d in documents[:HEAL_DOCS]))
    return train, documents[HEAL_DOCS:]


def heldout_perplexity(args: argparse.Namespace, model_name: str, documents: list[str]) -> float:
    import torch

    from store import queries
    from store.db import Store
    from workbench import model_io
    from workbench.perplexity import perplexity

    store = Store.open(args.store)
    folder = store.model_path(queries.get_model(store, model_name))
    model = model_io.load_model(folder, torch.device("cpu"), torch.float32)
    return perplexity(model, model_io.load_tokenizer(folder), documents).perplexity


def append(row: dict) -> None:
    OUT.parent.mkdir(exist_ok=True)
    with OUT.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
