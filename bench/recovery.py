"""Recovery on SmolLM2-135M-Instruct: cut, repair, heal and repair + heal, with optipfair's data-driven
cut alongside, measured in one run.

Every step is a `workbench` command (or, for optipfair, a script) in a process of its own against one
scratch store holding the bundled model (`workbench models import smollm2`, once). Per step: wall
time, CPU time (user + system of that process and its children, from the OS: the machine is shared,
so CPU time is the steadier figure) and peak memory (the job's, as the job row records it). A
pipeline's CPU time adds up its steps from the base (a repair's own run reuses the statistics its cut
cached but gathers its Gram matrices in a pass of its own; in a store without the cut, and with no cut
row in the JSON, `--only '40% uniform repair oneshot,...'` measures the repair straight from the base,
its Gram matrices gathered in the calibration pass). Every model is evaluated with the fixed perplexity
protocol (workbench/perplexity.py: the first 24 windows of 512 tokens) on WikiText-2 test and the
held-out fifth of SMS, and on arc_easy and piqa with --limit documents.

Configuration: hybrid scorer, 32 x 512 tokens of WikiText-2 validation for calibration (and the
repair's Gram matrices), heals distilled from the base on WikiText-2 validation.

Run: nice -n 0 .venv/bin/python bench/recovery.py --store /tmp/recovery-bench [--percents 40,20]
     [--allocations uniform,global] [--only LABEL,...] [--limit 100]
Rows already in the JSON are kept and not run again (so a stopped run goes on where it was);
the JSON is written after every row: bench/results/recovery.json. A Markdown table is printed.
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

RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "recovery.json"
REPO = Path(__file__).resolve().parents[1]
CALIBRATION = ["--calibration", "wikitext2", "--samples", "32", "--seq-len", "512"]
TASKS = "ppl:wikitext2,ppl:sms,arc_easy,piqa"
HEAL = {"tokens": 16384, "seq_len": 256, "batch_size": 4, "lr": 3e-4, "train": "all", "ce_weight": 0.5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="/tmp/recovery-bench")
    parser.add_argument("--percents", default="40,20")
    parser.add_argument("--allocations", default="uniform,global")
    parser.add_argument("--limit", type=int, default=100, help="documents per lm-eval task")
    parser.add_argument("--heal-tokens", type=int, default=HEAL["tokens"])
    parser.add_argument("--lr", type=float, default=HEAL["lr"])
    parser.add_argument("--train", default=HEAL["train"])
    parser.add_argument("--ce-weight", type=float, default=HEAL["ce_weight"])
    parser.add_argument("--tag", default="", help="appended to the heal rows' labels and model names, e.g. 64k")
    parser.add_argument("--only", help="run only rows with these labels, e.g. '40%% uniform repair oneshot'")
    parser.add_argument("--optipfair-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.optipfair_worker:
        optipfair_worker(json.loads(args.optipfair_worker))
        return
    heal = HEAL | {"tokens": args.heal_tokens, "lr": args.lr, "train": args.train, "ce_weight": args.ce_weight}
    summary = json.loads(OUT.read_text()) if OUT.is_file() else {}
    summary |= {
        "model": "SmolLM2-135M-Instruct (bundled GGUF Q4_1, dequantised to float32), CPU, float32",
        "calibration": "hybrid scorer; 32 x 512 tokens of WikiText-2 validation",
        "heal": heal | {"data": "wikitext2 (validation)", "teacher": "the base", "schedule": "5% warmup, cosine"},
        "perplexity_protocol": "first 24 windows of 512 tokens, each scored alone",
        "lm_eval_limit": args.limit,
        "threads": int(os.environ.get("OMP_NUM_THREADS", os.cpu_count())),
    }
    rows = summary.setdefault("rows", [])
    done = {r["label"] for r in rows}
    wb = Workbench(args.store)
    wb.run("models", "import", "smollm2", "--if-missing")
    plan = _plan([float(p) for p in args.percents.split(",")], args.allocations.split(","), heal, args.tag)
    if args.only:
        wanted = {s.strip() for s in args.only.split(",")}
        plan = [p for p in plan if p["label"] in wanted]
    if "base" not in done:
        _record(rows, summary, {"label": "base", "model": "smollm2", "step": "base"} | wb.evaluate("smollm2", args))
    for step in plan:
        if step["label"] in done:
            continue
        row = {k: v for k, v in step.items() if k != "command"}
        if step["step"].endswith("heal"):
            row["heal_tokens"], row["ce_weight"] = heal["tokens"], heal["ce_weight"]
        measured = wb.optipfair(step) if step["step"] == "optipfair" else wb.step(step["command"])
        row |= measured
        parent = next((r for r in rows if r["label"] == step.get("after")), None)
        row["pipeline_cpu_s"] = row["cpu_s"] + (parent["pipeline_cpu_s"] if parent else 0.0)
        row["pipeline_wall_s"] = row["wall_s"] + (parent["pipeline_wall_s"] if parent else 0.0)
        row |= wb.evaluate(step["model"], args)
        _record(rows, summary, row)
    print(markdown(rows))


def _record(rows: list[dict], summary: dict, row: dict) -> None:
    rows.append(row)
    RESULTS.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(summary, indent=2) + "\n")
    figures = " ".join(f"{k} {row[k]:.2f}" for k in ("ppl_wikitext2", "ppl_sms", "arc_easy", "piqa") if k in row)
    print(f"{row['label']:<44} cpu {row.get('cpu_s', 0):7.0f}s  wall {row.get('wall_s', 0):7.0f}s  {figures}",
          flush=True)


def _plan(percents: list[float], allocations: list[str], heal: dict, tag: str = "") -> list[dict]:
    """The rows in the order they run: the 40% uniform pipeline first (the goal), then the rest."""
    steps = []
    heal_args = ["--data", "wikitext2", "--tokens", str(heal["tokens"]), "--seq-len", str(heal["seq_len"]),
                 "--batch-size", str(heal["batch_size"]), "--lr", str(heal["lr"]), "--train", heal["train"],
                 "--ce-weight", str(heal["ce_weight"]), "--device", "cpu"]  # fmt: skip
    for percent in percents:
        for allocation in allocations:
            at = f"{percent:g}% {allocation}"
            name = f"hybrid-p{percent:g}-{allocation}"
            prune = ["prune", "smollm2", "--scorer", "hybrid", "--percent", f"{percent:g}", "--allocation",
                     allocation, *CALIBRATION, "--device", "cpu"]  # fmt: skip
            steps += [
                {"label": f"{at} cut", "step": "cut", "model": name, "command": [*prune, "--name", name]},
                {"label": f"{at} repair oneshot", "step": "repair oneshot", "model": f"{name}-oneshot",
                 "after": f"{at} cut", "command": [*prune, "--repair", "oneshot", "--name", f"{name}-oneshot"]},
                {"label": f"{at} repair oneshot + heal{tag and ' ' + tag}", "step": "repair oneshot + heal",
                 "model": f"{name}-oneshot-healed{tag}", "after": f"{at} repair oneshot",
                 "command": ["heal", f"{name}-oneshot", *heal_args, "--name", f"{name}-oneshot-healed{tag}"]},
            ]  # fmt: skip
            if allocation == "uniform":
                steps.append({"label": f"{at} optipfair", "step": "optipfair", "model": f"optipfair-p{percent:g}",
                              "percent": percent})  # fmt: skip
            steps += [
                {"label": f"{at} heal{tag and ' ' + tag}", "step": "heal", "model": f"{name}-healed{tag}",
                 "after": f"{at} cut", "command": ["heal", name, *heal_args, "--name", f"{name}-healed{tag}"]},
                {"label": f"{at} repair sequential", "step": "repair sequential", "model": f"{name}-sequential",
                 "after": f"{at} cut",
                 "command": [*prune, "--repair", "sequential", "--name", f"{name}-sequential"]},
            ]  # fmt: skip
    return steps


class Workbench:
    def __init__(self, store: str) -> None:
        self.store = store
        self.env = os.environ | {"PYTHONPATH": str(REPO)}
        self.env.setdefault("WORKBENCH_DATA", str(REPO.parent / "shared" / "benchdata"))

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "workbench", "--store", self.store, *args], env=self.env,
                              capture_output=True, text=True, check=True)  # fmt: skip

    def step(self, command: list[str]) -> dict:
        measured, out = _measured(lambda: self.run(*command, "--json"))
        report = json.loads(out.stdout)
        measured["peak_memory_bytes"] = report.get("peak_memory_bytes")
        if "parameters_after" in report:
            measured["parameters"] = report["parameters_after"]
            measured["stage_seconds"] = report["stage_seconds"]
        if "heal_id" in report:
            measured |= {k: report[k] for k in ("steps", "tokens_seen", "passes", "first_loss", "last_loss")}
        return measured

    def optipfair(self, step: dict) -> dict:
        folder = Path(self.store) / "bench-optipfair" / step["model"]
        job = {"store": self.store, "percent": step["percent"], "out": str(folder)}
        measured, out = _measured(lambda: subprocess.run(
            [sys.executable, __file__, "--optipfair-worker", json.dumps(job)], env=self.env, capture_output=True,
            text=True, check=True))  # fmt: skip
        measured |= json.loads(out.stdout.strip().splitlines()[-1])
        self.run("models", "import", str(folder), "--name", step["model"], "--if-missing")
        return measured

    def evaluate(self, model: str, args: argparse.Namespace) -> dict:
        self.run("eval", model, "--tasks", TASKS, "--limit", str(args.limit), "--device", "cpu")
        sys.path.insert(0, str(REPO))
        from store import queries
        from store.db import Store

        store = Store.open(self.store)
        found = {(e.task, e.metric): e.value for e in queries.evaluations(store, [queries.get_model(store, model).id])}
        return {
            "parameters": queries.get_model(store, model).parameters,
            "ppl_wikitext2": found[("ppl:wikitext2", "perplexity")],
            "ppl_sms": found[("ppl:sms", "perplexity")],
            "arc_easy": found[("arc_easy", "acc,none")],
            "piqa": found[("piqa", "acc,none")],
        }


def _measured(fn) -> tuple[dict, object]:
    """Wall and CPU seconds of a function that runs one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu}, out


def optipfair_worker(job: dict) -> None:
    """optipfair 0.4.2's data-driven cut (MAW + activations) on the same calibration tokens, as
    bench/prune_vs_optipfair.py calls it; the model saved for the workbench to import and evaluate."""
    sys.path.insert(0, str(REPO))
    import torch
    from optipfair import prune_model

    from store import queries
    from store.db import Store
    from workbench import calibration, model_io
    from workbench.devices import MemoryMeter
    from workbench.texts import load_source

    store = Store.open(job["store"])
    folder = store.model_path(queries.get_model(store, "smollm2"))
    tokenizer = model_io.load_tokenizer(folder)
    sequences = calibration.build_sequences(tokenizer, load_source("wikitext2").calibration, 32, 512, "wikitext2")
    meter = MemoryMeter(torch.device("cpu"))
    meter.reset()
    model = model_io.load_model(folder, torch.device("cpu"), torch.float32)
    batch = max(1, calibration.TOKENS_PER_BATCH // 512)
    loader = [(s, torch.ones_like(s)) for s in sequences.split(batch)]
    prune_model(model, pruning_type="MLP_GLU", neuron_selection_method="MAW", pruning_percentage=job["percent"],
                dataloader=loader, show_progress=False)  # fmt: skip
    model.save_pretrained(job["out"])
    tokenizer.save_pretrained(job["out"])
    print(json.dumps({"peak_memory_bytes": meter.peak()}))


def markdown(rows: list[dict]) -> str:
    lines = [
        "| configuration | parameters | WikiText-2 ppl | SMS ppl | arc_easy acc | piqa acc | step CPU (s) "
        "| step wall (s) | pipeline CPU (s) | pipeline wall (s) | peak memory |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        peak = f"{r['peak_memory_bytes'] / 2**30:.1f} GiB" if r.get("peak_memory_bytes") else "-"
        cpu, wall, pipeline, pipeline_wall = (f"{r[k]:.0f}" if k in r else "-"
                                              for k in ("cpu_s", "wall_s", "pipeline_cpu_s", "pipeline_wall_s"))
        lines.append(
            f"| {r['label']} | {r['parameters'] / 1e6:.1f}M | {r['ppl_wikitext2']:.2f} | {r['ppl_sms']:.2f} "
            f"| {r['arc_easy']:.3f} | {r['piqa']:.3f} | {cpu} | {wall} | {pipeline} | {pipeline_wall} | {peak} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
