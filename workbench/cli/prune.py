"""`workbench prune`: make a smaller model and record the run."""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.cli.foreground import add_detach_option
from workbench.spec import ALLOCATIONS, DEVICES, DTYPES, REPAIRS, SAVE_DTYPES, SCORERS, PruneSpec

EPILOG = """scorers:
{scorers}

calibration (data-driven scorers; default wikitext2): wikitext2 (WikiText-2 validation), sms (four
fifths of the SMS Spam Collection; the other fifth is kept for perplexity), a .txt or .jsonl
(field "text") file, or hf:DATASET[:CONFIG][@SPLIT]. Documents are tokenised, joined with the
end-of-text token into one stream and cut into consecutive windows of --seq-len tokens;
--samples windows are taken evenly spaced across the stream.

repair (--repair; reads calibration text, also with a static scorer): each pruned layer's kept
down_proj columns are refit by least squares so that the layer's output on the calibration tokens
changes as little as possible, W = D G[:, K] (G[K, K] + lambda I)^-1 with G = sum x x^T of down_proj
inputs and lambda = --repair-damping x the mean diagonal of G[K, K]. oneshot fits every layer on the
parent's activations (cached with the statistics); sequential fits layer i on the activations of the
model already cut and repaired below it. The run records each layer's relative reconstruction error
before and after.

dtypes: --dtype is that of the forward passes (calibration, repair); the saved model keeps the
parent's weights bit for bit in the parent's dtype unless --save-dtype names another.
"""


def register(subparsers, common: argparse.ArgumentParser) -> None:
    scorers = "\n".join(
        f"  {s.name:<9}{'data' if s.data_driven else 'static':<7}{s.description}" for s in SCORERS.values()
    )
    p = subparsers.add_parser(
        "prune",
        parents=[common],
        help="prune a model's MLP width and record the run",
        description="Remove MLP neurons (gate/up rows and down columns together) and save a smaller dense model.",
        epilog=EPILOG.format(scorers=scorers),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_prune_arguments(p)
    p.add_argument("--out", type=Path, help="also copy the pruned model's folder here")
    p.add_argument("--json", action="store_true", help="print the report as JSON (with --detach: the job id)")
    add_detach_option(p)
    p.set_defaults(func=run)


def add_prune_arguments(p: argparse.ArgumentParser) -> None:
    """The options that make a PruneSpec (shared with `sweep`)."""
    p.add_argument(
        "model", metavar="MODEL", help="stored model name or id, smollm2, a model folder, a .gguf file, or a hub id"
    )
    p.add_argument("--scorer", required=True, choices=list(SCORERS), metavar="S", help="neuron scorer (see below)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--percent", type=float, metavar="P", help="remove P%% of each pruned layer's neurons")
    target.add_argument("--expansion", type=float, metavar="X", help="target intermediate/hidden ratio, e.g. 2.4")
    p.add_argument("--divisor", type=int, default=1, metavar="D", help="round kept widths down to a multiple of D")
    p.add_argument("--allocation", choices=list(ALLOCATIONS), default="uniform")
    p.add_argument("--layers", default="all", metavar="SPEC", help="layers to prune, e.g. 0-9,20 (default: all)")
    p.add_argument("--calibration", metavar="SRC", help="calibration text for data-driven scorers (default wikitext2)")
    p.add_argument("--samples", type=int, default=PruneSpec.samples, metavar="N", help="calibration sequences")
    p.add_argument("--seq-len", type=int, default=PruneSpec.seq_len, metavar="L", help="tokens per sequence")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--dtype", choices=DTYPES, default="auto", help="dtype of the forward passes")
    p.add_argument("--name", help="name of the pruned model (default: made from the settings)")
    p.add_argument("--save-dtype", choices=SAVE_DTYPES, default="parent",
                   help="dtype of the saved weights (default: the parent's, bit for bit)")
    add_repair_options(p)


def add_repair_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repair", nargs="?", const="oneshot", choices=list(REPAIRS), metavar="MODE",
                   help="refit down_proj on calibration activations: oneshot (default) or sequential")
    p.add_argument("--repair-damping", type=float, default=PruneSpec.repair_damping, metavar="F",
                   help="repair damping, times the mean diagonal of G[K,K] (default %(default)s)")


def spec_from(args: argparse.Namespace) -> PruneSpec:
    return PruneSpec(
        model=args.model,
        scorer=args.scorer,
        percent=args.percent,
        expansion=args.expansion,
        divisor=args.divisor,
        allocation=args.allocation,
        layers=args.layers,
        calibration=args.calibration,
        samples=args.samples,
        seq_len=args.seq_len,
        device=args.device,
        dtype=args.dtype,
        name=args.name,
        save_dtype=args.save_dtype,
        repair=args.repair,
        repair_damping=args.repair_damping,
    ).validate()


def run(args: argparse.Namespace) -> int:
    """Runs as a job (see workbench.cli.foreground); the report is the job's result."""
    spec = spec_from(args)
    from workbench import prune_request
    from workbench.cli.common import open_store, print_json
    from workbench.cli.foreground import run_as_job

    if args.out is not None:
        prune_request.check_out(args.out.absolute())
    from workbench.texts import data_dir

    store = open_store(args, create=True)
    data = data_dir(getattr(args, "data_dir", None))
    # Bad input fails here, before a job row exists; the engine is imported only for what the
    # light check cannot tell (a model to import first, say): a job process may have it already.
    if not prune_request.check_request(spec, store, data):
        from workbench.pruning import check_request

        check_request(spec, store, data)
    job = run_as_job(args, store, "prune", spec.to_dict(), data=data, out=args.out, bar=not args.json)
    if job is None:  # --detach
        return 0
    if args.json:
        print_json(job.result)
    else:
        print_report(job.result)
    return 0


def print_report(report: dict) -> None:
    from workbench.tabular import Table

    mb = 1024 * 1024
    print(f"run {report['run_id']}: {report['base_model']} -> {report['model_name']} (model {report['model_id']})")
    before, after = report["parameters_before"], report["parameters_after"]
    print(
        f"parameters {before:,} -> {after:,} ({100 * (1 - after / before):.1f}% fewer); "
        f"MLP expansion {report['expansion_before']:.3g} -> {report['expansion_after']:.3g}; "
        f"{report['size_bytes'] / mb:.1f} MiB on disk"
    )
    stages = ", ".join(f"{k} {v:.2f}s" for k, v in report["stage_seconds"].items())
    saved = f", saved {report['save_dtype']}" if report.get("save_dtype", report["dtype"]) != report["dtype"] else ""
    print(f"{report['device']} {report['dtype']}{saved}; {stages}; "
          f"peak memory {report['peak_memory_bytes'] / mb:.0f} MiB")
    if report["calibration"]:
        c = report["calibration"]
        print(f"calibration {c['source']}: {c['samples']} x {c['seq_len']} tokens (sha256 {c['hash'][:12]})")
    if report.get("repair"):
        r = report["repair"]
        print(f"repair {r['mode']} (damping {r['damping']:g}): {r['refit_layers']} layers refit")
    Table.of("per-layer retention", _retention_columns(bool(report.get("repair"))), report["layers"]).render()


def _retention_columns(repaired: bool = False):
    from workbench.tabular import Column, fixed, plain

    score = plain  # four significant digits, as `runs show` prints them: a variance score may be 1e-5
    return [
        Column("layer", numeric=True),
        Column("original_width", "width", numeric=True),
        Column("kept_width", "kept", numeric=True),
        Column("percent_kept", "% kept", fixed(1), numeric=True),
        Column("kept_score_min", "kept min", score, numeric=True),
        Column("kept_score_mean", "kept mean", score, numeric=True),
        Column("removed_score_mean", "removed mean", score, numeric=True),
        Column("removed_score_max", "removed max", score, numeric=True),
        *([Column("repair_error_before", "error cut", fixed(4), numeric=True),
           Column("repair_error_after", "error repaired", fixed(4), numeric=True)] if repaired else []),
    ]
