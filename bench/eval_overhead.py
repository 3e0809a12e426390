"""What evaluating through the workbench costs against lm-eval's own CLI, and one load for many tasks.

    .venv/bin/python bench/eval_overhead.py [--task arc_easy] [--limit 40] [--batch-size 8]
        [--repeat 2] [--tasks arc_easy,piqa,winogrande] [--data-dir DIR]

SmolLM2-135M-Instruct (imported into a temporary store first, not timed), CPU, float32, the local
data (--data-dir, else $WORKBENCH_DATA, else ../shared/benchdata).
1. End to end, each in a fresh process, alternating: `workbench eval smollm2 --tasks TASK --limit N`
   and `lm_eval run --model hf --model_args pretrained=<the stored folder>,dtype=float32 --tasks TASK
   --include_path <the task YAMLs the workbench generates> --limit N`, same batch size and device:
   the wall time of each process (median of --repeat), and whether every metric and stderr is equal.
2. In one process on one loaded model, alternating: lm-eval's simple_evaluate on a plain HFLM, and the
   workbench's run of the same task (its tracked HFLM, cancel hook and progress): the workbench's own
   cost around lm-eval, median of --repeat; the metrics must be equal.
3. Several tasks: `workbench eval smollm2 --tasks T1,T2,T3` in one call, counting model loads in that
   process, against one call per task (wall time of the processes).
Wall and CPU seconds (user + system) of each. Prints a table and writes bench/results/eval_overhead.json
with every timing and the machine's load average: on a shared machine wall times vary with other
work, so compare the two columns of one run (and the CPU seconds), not runs with each other.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from workbench.tabular import Column, Table  # noqa: E402

OUT = REPO / "bench" / "results" / "eval_overhead.json"
BIN = Path(sys.executable).parent
# Run in a fresh process: wraps the engine's model loader in a counter, then runs the CLI.
COUNT_LOADS = """
import json, sys
from workbench import model_io
from workbench.cli.main import main
loads = []
load = model_io.load_model
model_io.load_model = lambda *args: loads.append(args[0]) or load(*args)
code = main(sys.argv[1:])
sys.stderr.write("\\nLOADS " + json.dumps(len(loads)) + "\\n")
sys.exit(code)
"""


def timed(command: list[str], env: dict[str, str], cpu: list[float] | None = None) -> tuple[float, Any]:
    """Wall seconds of a fresh process (its CPU seconds, user + system, appended to `cpu`)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])}... failed ({done.returncode}):\n{done.stderr[-3000:]}")
    if cpu is not None:
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return seconds, done


def workbench_metrics(report: dict) -> dict[tuple[str, str], tuple[float, float | None]]:
    return {(m["task"], m["metric"]): (m["value"], m["stderr"])
            for model in report["models"] for m in model["metrics"] if m["harness"] == "lm-eval"}  # fmt: skip


def lm_eval_metrics(results: dict) -> dict[tuple[str, str], tuple[float, float | None]]:
    found = {}
    for task, entry in results["results"].items():
        for key, value in entry.items():
            if "," in key and "_stderr," not in key and isinstance(value, int | float):
                name, _, filter_name = key.partition(",")
                stderr = entry.get(f"{name}_stderr,{filter_name}")
                found[task, key] = (value, stderr if isinstance(stderr, int | float) else None)
    return found


def end_to_end(args, store: Path, folder: Path, yamls: Path, env: dict[str, str], work: Path) -> dict[str, Any]:
    common = ["--limit", str(args.limit), "--device", "cpu"]
    ours = [str(BIN / "workbench"), "--store", str(store), "eval", "smollm2", "--tasks", args.task, *common,
            "--batch-size", str(args.batch_size), "--dtype", "float32", "--json"]  # fmt: skip
    times: dict[str, list[float]] = {"workbench": [], "lm_eval": []}
    cpu: dict[str, list[float]] = {"workbench": [], "lm_eval": []}
    same = True
    for i in range(args.repeat):
        out = work / f"lm_eval-{i}"
        theirs = [str(BIN / "lm_eval"), "run", "--model", "hf", "--model_args", f"pretrained={folder},dtype=float32",
                  "--tasks", args.task, "--include_path", str(yamls), *common, "--batch_size", str(args.batch_size),
                  "--output_path", str(out)]  # fmt: skip
        runs = [("workbench", ours), ("lm_eval", theirs)]
        for name, command in runs if i % 2 == 0 else runs[::-1]:  # alternate which goes first
            seconds, done = timed(command, env, cpu[name])
            times[name].append(seconds)
            if name == "workbench":
                mine = workbench_metrics(json.loads(done.stdout))
        results = json.loads(max(out.rglob("results_*.json")).read_text())
        same = same and mine == lm_eval_metrics(results)
    return {"seconds": times, "cpu_seconds": cpu, "identical_metrics": same}


def in_process(args, folder: Path, data: Path, work: Path) -> dict[str, Any]:
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    from workbench.evaluation import harness
    from workbench.model_io import load_model, load_tokenizer
    from workbench.progress import Progress
    from workbench.spec import EvalSpec

    spec = EvalSpec(models=("smollm2",), tasks=(args.task,), limit=args.limit, batch_size=args.batch_size)
    prepared = harness.prepare(spec, [args.task], data, work / "tasks")
    task = prepared.tasks[0]
    model = load_model(folder, torch.device("cpu"), torch.float32)
    tokenizer = load_tokenizer(folder)

    def plain() -> dict:
        with harness.quiet():
            lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=args.batch_size)
            return simple_evaluate(model=lm, tasks=[args.task], num_fewshot=task.fewshot, limit=args.limit,
                                   task_manager=prepared.task_manager, log_samples=False)  # fmt: skip

    def workbench() -> dict:
        progress = Progress()
        progress.stage(args.task)
        hook = model.register_forward_pre_hook(harness.CancelCheck(progress))
        try:
            lm = harness.build_lm(model, tokenizer, args.batch_size, progress)
            return harness.run_task(lm, prepared, task, args.limit, chat=False)
        finally:
            hook.remove()

    times: dict[str, list[float]] = {"workbench": [], "lm_eval": []}
    cpu: dict[str, list[float]] = {"workbench": [], "lm_eval": []}
    results = {"workbench": workbench(), "lm_eval": plain()}  # warm-up, untimed: datasets, tokenizer, imports
    for i in range(args.repeat):
        runs = [("workbench", workbench), ("lm_eval", plain)]
        for name, run in runs if i % 2 == 0 else runs[::-1]:
            start, start_cpu = time.perf_counter(), time.process_time()
            results[name] = run()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    same = lm_eval_metrics(results["workbench"]) == lm_eval_metrics(results["lm_eval"])
    return {"seconds": times, "cpu_seconds": cpu, "identical_metrics": same}


def several_tasks(args, store: Path, env: dict[str, str]) -> dict[str, Any]:
    def call(tasks: str) -> tuple[float, int]:
        command = [sys.executable, "-c", COUNT_LOADS, "--store", str(store), "eval", "smollm2", "--tasks", tasks,
                   "--limit", str(args.limit), "--batch-size", str(args.batch_size), "--device", "cpu",
                   "--dtype", "float32", "--json"]  # fmt: skip
        seconds, done = timed(command, env)
        loads = int(done.stderr.rsplit("LOADS ", 1)[1].split()[0])
        return seconds, loads

    together = call(args.tasks)
    apart = [call(t) for t in args.tasks.split(",")]
    return {
        "tasks": args.tasks.split(","),
        "one_call": {"seconds": together[0], "loads": together[1]},
        "one_call_per_task": {"seconds": [s for s, _ in apart], "loads": sum(n for _, n in apart)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="arc_easy")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--tasks", default="arc_easy,piqa,winogrande", help="for the several-tasks measurement")
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args()
    data = (args.data_dir or Path(os.environ.get("WORKBENCH_DATA", REPO.parent / "shared" / "benchdata"))).resolve()
    env = os.environ | {"WORKBENCH_DATA": str(data), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                        "NLTK_DATA": str(data / "nltk_data"), "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    os.environ.update(env)
    load_at_start = os.getloadavg()  # other work on the machine shows in the wall times

    from store import queries
    from store.db import Store
    from workbench.evaluation.local_tasks import write_local_tasks

    with tempfile.TemporaryDirectory(prefix="eval-overhead-") as tmp:
        work = Path(tmp)
        store = work / "store"
        timed([str(BIN / "workbench"), "--store", str(store), "models", "import", "smollm2"], env)
        opened = Store.open(store)
        folder = opened.model_path(queries.get_model(opened, "smollm2"))
        yamls = work / "yamls"
        write_local_tasks(data, yamls, [args.task])
        e2e = end_to_end(args, store, folder, yamls, env, work)
        inproc = in_process(args, folder, data, work)
        several = several_tasks(args, store, env)

    def row(label: str, times: dict[str, list[float]], same: bool | None) -> list[Any]:
        ours, theirs = statistics.median(times["workbench"]), statistics.median(times["lm_eval"])
        flag = "" if same is None else "yes" if same else "NO"
        return [label, ours, theirs, f"{100 * (ours - theirs) / theirs:+.1f}%", flag]

    apart = several["one_call_per_task"]
    what = f"{args.task} limit {args.limit}"
    rows = [
        row(f"end to end, fresh processes: {what}, wall s", e2e["seconds"], e2e["identical_metrics"]),
        row("  the same, CPU s (user + system)", e2e["cpu_seconds"], None),
        row(f"in one process, model loaded: {what}, wall s", inproc["seconds"], inproc["identical_metrics"]),
        row("  the same, CPU s", inproc["cpu_seconds"], None),
        [f"{len(several['tasks'])} tasks in one workbench call vs one call each: seconds",
         several["one_call"]["seconds"], sum(apart["seconds"]), "", ""],
        ["  model loads", several["one_call"]["loads"], apart["loads"], "", ""],
    ]  # fmt: skip
    seconds = lambda v: f"{v:.1f}" if isinstance(v, float) else str(v)  # noqa: E731
    columns = [Column("measurement"), Column("workbench", fmt=seconds, numeric=True),
               Column("lm_eval", "lm_eval (or apart)", fmt=seconds, numeric=True),
               Column("overhead", numeric=True), Column("identical", "same numbers")]  # fmt: skip
    title = f"SmolLM2-135M, cpu float32, batch size {args.batch_size}, median of {args.repeat}"
    Table(title, columns, rows).render()
    from importlib.metadata import version

    import torch

    load = os.getloadavg()
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({
        "settings": vars(args) | {"data_dir": str(data)},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "lm_eval": version("lm_eval"),
                    "load_average_at_start": load_at_start, "load_average_at_end": load},
        "end_to_end": e2e, "in_process": inproc, "several_tasks": several,
    }, indent=2, default=str) + "\n")  # fmt: skip
    print(f"wrote {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
