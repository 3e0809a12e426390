"""A foreground command's wall time against its job's own: job processes kept warm (the default)
against none (WORKBENCH_WARM_S=0, every command importing the engine and running its job itself,
as before warm workers).

A random-weight tiny Llama (bench/calibration_overhead.py's "tiny", 16M parameters) in a fresh
store; each command in a fresh process, `--pause-s` apart (a researcher typing the next command;
a warm process needs its imports done to help): a static `prune`, a `hybrid` prune on 4 x 128
tokens of WikiText-2, an `eval --tasks speed`, an `eval --tasks gsm8k --limit 2` (five-shot, on the
data folder: WORKBENCH_DATA or --data-dir's default), a `heal` of the static prune's cut by its parent
on 512 tokens. The job's own time is its row's start (the claim)
to finish. Without warmth first, then with: the first warm command finds no worker and runs its
job itself (leaving the warm worker behind), so the medians leave it out. Prints a table, writes
bench/results/command-overhead.json.

    python bench/command_overhead.py [--repeats 5] [--pause-s 8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from calibration_overhead import random_model
from gpu import trained_tokenizer

RESULTS = Path(__file__).parent / "results"
COMMANDS = {
    "prune static": ["prune", "tiny", "--scorer", "ppm", "--percent", "40", "--device", "cpu"],
    "prune hybrid": ["prune", "tiny", "--scorer", "hybrid", "--percent", "40", "--calibration", "wikitext2",
                     "--samples", "4", "--seq-len", "128", "--device", "cpu"],
    "eval speed": ["eval", "tiny", "--tasks", "speed", "--device", "cpu"],
    "eval gsm8k": ["eval", "tiny", "--tasks", "gsm8k", "--limit", "2", "--device", "cpu"],
    # (the static prune's cut of this round, distilled from `tiny` on 4 x 2 x 64 WikiText-2 tokens)
    "heal": ["heal", "{mode}-static-{i}", "--data", "wikitext2", "--tokens", "512", "--seq-len", "64", "--batch-size",
             "2", "--device", "cpu"],
}


def run(store: Path, argv: list[str], warm: bool) -> tuple[float, dict]:
    env = os.environ | {"WORKBENCH_WARM_S": "600" if warm else "0"}
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "workbench", "--store", str(store), *argv, "--json"],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()[-400:]}")
    return wall, json.loads(done.stdout)


def newest_job(store: Path) -> dict:
    done = subprocess.run([sys.executable, "-m", "workbench", "--store", str(store), "jobs", "list", "--limit", "1",
                           "--json"], capture_output=True, text=True, check=True,
                          env=os.environ | {"WORKBENCH_WARM_S": "0"})
    return json.loads(done.stdout)[0]


def job_seconds(job: dict) -> float:
    return (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])).total_seconds()


def stop_workers(store: Path) -> None:
    """The warm worker a mode left (the newest worker its log names), so that the next mode starts cold;
    its warm process ends with it."""
    for log in store.glob("worker.*.log"):
        pids = re.findall(r"worker pid (\d+)", log.read_text())
        if pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pids[-1]), signal.SIGTERM)
    time.sleep(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="commands of each kind, in each mode")
    parser.add_argument("--pause-s", type=float, default=8.0, help="seconds between commands")
    parser.add_argument("--out", default=str(RESULTS / "command-overhead.json"))
    args = parser.parse_args()

    import torch

    from store.db import Store
    from workbench import model_io

    figures: dict = {"settings": vars(args), "torch": torch.__version__, "modes": {}}
    with tempfile.TemporaryDirectory(prefix="command-overhead-") as scratch:
        store_dir = Path(scratch) / "store"
        tokenizer = trained_tokenizer()
        model = random_model("tiny", torch.device("cpu"), torch.float32, vocab_size=len(tokenizer))
        with Store.open(store_dir) as store:
            model_io.save_new_model(store, model, tokenizer, name="tiny", source="folder", source_ref="random weights")
        del model
        for mode, warm in (("cold", False), ("warm", True)):
            rows: dict[str, list[dict]] = {name: [] for name in COMMANDS}
            for i in range(args.repeats):
                for name, argv in COMMANDS.items():
                    named = [a.format(mode=mode, i=i) for a in argv]
                    named += ["--name", f"{mode}-{name.split()[-1]}-{i}"] if argv[0] in ("prune", "heal") else []
                    wall, _ = run(store_dir, named, warm)
                    job = job_seconds(newest_job(store_dir))
                    first = warm and i == 0 and name == next(iter(COMMANDS))  # no worker yet: it ran its job itself
                    rows[name].append({"wall_seconds": wall, "job_seconds": job, "overhead_seconds": wall - job,
                                       "first": first})
                    print(f"{mode} {name} {i}: wall {wall:.2f} s, job {job:.2f} s", flush=True)
                    time.sleep(args.pause_s)
            stop_workers(store_dir)
            figures["modes"][mode] = {
                name: {"runs": runs, "median": {k: statistics.median(r[k] for r in runs if not r["first"])
                                                for k in ("wall_seconds", "job_seconds", "overhead_seconds")}}
                for name, runs in rows.items()
            }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    print("| command | no warm process: wall / job / apart s | warm: wall / job / apart s |")
    print("|---|---:|---:|")
    for name in COMMANDS:
        cells = [" / ".join(f"{figures['modes'][m][name]['median'][k]:.2f}"
                            for k in ("wall_seconds", "job_seconds", "overhead_seconds")) for m in ("cold", "warm")]
        print(f"| {name} | {cells[0]} | {cells[1]} |")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
