"""`workbench eval`: benchmark models and record every figure in the store."""

from __future__ import annotations

import argparse

from workbench.cli.foreground import add_detach_option
from workbench.cli.lists import comma_list
from workbench.spec import CHAT_TEMPLATE_MODES, CPU_AUTO_BATCH, DEVICES, DTYPES, TASKS, EvalSpec, parse_batch_size

EPILOG = """tasks:
{tasks}
  ppl:SOURCE      perplexity on any text source calibration takes (wikitext2, sms, a .txt/.jsonl file)
  any task (or group) defined in --include-path

Benchmarks run through lm-eval on the loaded model, one task at a time, with lm-eval's own prompts,
filters, metrics and seeds; with a data folder (--data-dir / WORKBENCH_DATA) they read its local
copies (HellaSwag's is approximate), without one lm-eval's hub datasets. Every metric is recorded
with its lm-eval key (e.g. acc_norm,none), stderr, documents used, few-shot count, chat-template
use, device, dtype and time; parameters and size on disk are recorded with every evaluation.

chat templates:
{chat}
"""


def register(subparsers, common: argparse.ArgumentParser) -> None:
    tasks = "\n".join(f"  {t.name:<15} {_shots(t.fewshot)}{t.description}" for t in TASKS.values())
    chat = "\n".join(f"  {mode:<5} {text}" for mode, text in CHAT_TEMPLATE_MODES.items())
    p = subparsers.add_parser(
        "eval",
        parents=[common],
        help="evaluate models (lm-eval benchmarks, perplexity, speed, memory) and record the results",
        description="Evaluate stored models (or anything prune accepts as MODEL, imported first); "
        "each model loads once for all its tasks.",
        epilog=EPILOG.format(tasks=tasks, chat=chat),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="stored model name or id, smollm2, a folder, a .gguf")
    p.add_argument("--tasks", required=True, metavar="T1,T2,...", help="comma-separated tasks (see below)")
    p.add_argument("--limit", type=float, metavar="N", help="documents per task (below 1: a share of them)")
    p.add_argument("--fewshot", type=int, metavar="K", help="few-shot examples (default: each task's own)")
    p.add_argument("--batch-size", default="auto", metavar="auto|N",
                   help=f"lm-eval batch size (auto: lm-eval's search on CUDA, else {CPU_AUTO_BATCH})")
    p.add_argument("--chat-template", choices=list(CHAT_TEMPLATE_MODES), default="auto")
    p.add_argument("--include-path", metavar="DIR", help="a folder of your own lm-eval task YAMLs")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--dtype", choices=DTYPES, default="auto")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_detach_option(p)
    p.set_defaults(func=run)


def eval_spec_from(args: argparse.Namespace) -> EvalSpec:
    return EvalSpec(
        models=tuple(args.models),
        tasks=comma_list(args.tasks, "--tasks"),
        limit=args.limit,
        fewshot=args.fewshot,
        batch_size=parse_batch_size(args.batch_size),
        chat_template=args.chat_template,
        include_path=args.include_path,
        device=args.device,
        dtype=args.dtype,
    ).validate()


def run(args: argparse.Namespace) -> int:
    """Runs as a job (see workbench.cli.foreground); the report is the job's result."""
    spec = eval_spec_from(args)
    from workbench import eval_request
    from workbench.cli.common import open_store, print_json
    from workbench.cli.foreground import run_as_job
    from workbench.texts import data_dir

    store = open_store(args, create=True)
    data = data_dir(getattr(args, "data_dir", None))
    # Bad input fails here, before a job row exists; the engine is imported only for what the
    # light check cannot tell (lm-eval tasks, say): a job process may have it already.
    if not eval_request.check_request(spec, store, data):
        from workbench.evaluation import check_request

        check_request(spec, store, data)
    job = run_as_job(args, store, "eval", spec.to_dict(), data=data, bar=not args.json)
    if job is None:  # --detach
        return 0
    if args.json:
        print_json(job.result)
    else:
        print_report(job.result)
    return 0


def print_report(report: dict) -> None:
    from workbench.tabular import Table
    from workbench.tradeoff import BYTE_METRICS, Bytes

    source = f"local data {report['data']}" if report["data"] else "lm-eval hub datasets"
    print(f"{report['device']} {report['dtype']}, batch size {report['batch_size']}, {source}")
    for result in report["models"]:
        # Sizes in binary units and parameter counts in short form (102.7M, not 1.027e+08), as Compare shows them.
        rows = [m | {"name": metric_label(m), "value": Bytes(m["value"]) if m["metric"] in BYTE_METRICS else m["value"]}
                for m in result["metrics"]]  # fmt: skip
        title = (
            f"{result['model_name']} (model {result['model_id']}): loaded in {result['load_seconds']:.1f}s, "
            f"{result['seconds']:.1f}s in all"
        )
        Table.of(title, _columns(), rows).render()


def metric_label(row: dict) -> str:
    """The task as shown: approximate data says so."""
    return row["task"] + (" (approximate)" if row["settings"].get("approximate") else "")


def _columns():
    from workbench.tabular import Column, fixed
    from workbench.tradeoff import figure

    return [
        Column("name", "task"),
        Column("metric"),
        Column("value", fmt=figure, numeric=True),
        Column("stderr", numeric=True),
        Column("samples", "docs", numeric=True),
        Column("fewshot", "shots", numeric=True),
        Column("seconds", "s", fixed(1), numeric=True),
    ]


def _shots(fewshot: int | None) -> str:
    return f"{fewshot}-shot  " if fewshot is not None else " " * 8
