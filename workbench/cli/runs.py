"""`workbench runs list|show`: the pruning runs in the store."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from store import queries
from store.queries import RunDetail, RunSummary
from workbench.cli.common import open_store, print_json
from workbench.tabular import Column, Table, count, fixed, size


def register(subparsers, common: argparse.ArgumentParser) -> None:
    runs = subparsers.add_parser("runs", parents=[common], help="list and show pruning runs")
    sub = runs.add_subparsers(dest="runs_command", metavar="COMMAND", required=True)

    p = sub.add_parser("list", parents=[common], help="list pruning runs, newest first")
    p.add_argument("--filter", default="", metavar="TEXT", help="words to find in scorer, model names, settings, error")
    p.add_argument("--scorer", help="only runs of this scorer")
    p.add_argument("--base", metavar="MODEL", help="only runs that pruned this model (name or id)")
    p.add_argument("--status", choices=queries.RUN_STATUSES)
    p.add_argument("--sort", choices=list(queries.RUN_SORTS), default="created")
    p.add_argument("--reverse", action="store_true", help="ascending (default: descending)")
    p.add_argument("--limit", type=int, metavar="N", help="at most N runs")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=list_)

    p = sub.add_parser("show", parents=[common], help="a run: its whole configuration and per-layer retention")
    p.add_argument("run", type=int, metavar="ID")
    p.add_argument("--json", action="store_true", help="print JSON (kept indices in store.bitset's encoding)")
    p.set_defaults(func=show)


RUN_COLUMNS = [
    Column("id", numeric=True),
    Column("status"),
    Column("base_model_name", "base"),
    Column("scorer"),
    Column("target_kind", "target"),
    Column("target_value", "value", numeric=True),
    Column("divisor", "div", numeric=True),
    Column("allocation"),
    Column("layers"),
    Column("calibration_source", "calibration"),
    Column("parameters_after", "params after", count, numeric=True),
    Column("result_model_name", "result"),
    Column("created_at", "created"),
]
RETENTION_COLUMNS = [
    Column("layer", numeric=True),
    Column("original_width", "width", numeric=True),
    Column("kept_width", "kept", numeric=True),
    Column("percent_kept", "% kept", fixed(1), numeric=True),
    Column("kept_score_min", "kept min", numeric=True),
    Column("kept_score_mean", "kept mean", numeric=True),
    Column("kept_score_max", "kept max", numeric=True),
    Column("removed_score_min", "removed min", numeric=True),
    Column("removed_score_mean", "removed mean", numeric=True),
    Column("removed_score_max", "removed max", numeric=True),
]
REPAIR_COLUMNS = [
    Column("repair_error_before", "error cut", fixed(4), numeric=True),
    Column("repair_error_after", "error repaired", fixed(4), numeric=True),
]


def runs_table(title: str, runs: list[RunSummary]) -> Table:
    return Table.of(title, RUN_COLUMNS, runs)


def retention_table(run: RunDetail) -> Table:
    columns = RETENTION_COLUMNS + (REPAIR_COLUMNS if run.repair else [])
    return Table.of(f"retention of run {run.id}", columns, run.retention)


def config_table(run: RunDetail) -> Table:
    """A run's configuration and outcome as (field, value) pairs."""
    calibration = ""
    if run.calibration_source:
        calibration = (
            f"{run.calibration_source}, {run.calibration_samples} x {run.calibration_seq_len} tokens, "
            f"token hash {(run.calibration_hash or '')[:16]}"
        )
    params = ""
    if run.parameters_before and run.parameters_after:
        removed = 100 * (1 - run.parameters_after / run.parameters_before)
        params = f"{run.parameters_before:,} -> {run.parameters_after:,} ({removed:.1f}% fewer)"
    pairs = [
        ("status", run.status),
        ("error", run.error or ""),
        ("base model", f"{run.base_model_name} (id {run.base_model_id})"),
        ("result model", f"{run.result_model_name} (id {run.result_model_id})" if run.result_model_id else ""),
        ("scorer", run.scorer),
        ("target", f"{run.target_kind} {run.target_value:g}"),
        ("divisor", run.divisor),
        ("allocation", run.allocation),
        ("layers", run.layers),
        ("calibration", calibration),
        ("repair", f"{run.repair}, damping {run.repair_damping:g} x mean diag G[K,K]" if run.repair else ""),
        ("device", run.device),
        ("dtype", run.dtype),
        ("parameters", params),
        ("peak memory", size(run.peak_memory_bytes)),
        ("stage seconds", ", ".join(f"{k} {v:.1f}" for k, v in run.stage_seconds.items())),
        ("versions", ", ".join(f"{k} {v}" for k, v in run.versions.items())),
        ("job", run.job_id or ""),
        ("created", run.created_at),
    ]
    return Table.of_pairs(f"run {run.id}", [(k, v) for k, v in pairs if v != ""])


def list_(args: argparse.Namespace) -> int:
    runs = queries.list_runs(
        open_store(args),
        args.filter,
        scorer=args.scorer,
        base=args.base,
        status=args.status,
        sort=args.sort,
        descending=not args.reverse,
        limit=args.limit,
    )
    if args.json:
        print_json([asdict(r) for r in runs])
    elif runs:
        runs_table("pruning runs", runs).render()
    else:
        print("no runs match" if args.filter or args.scorer or args.base or args.status else "no runs in the store yet")
    return 0


def show(args: argparse.Namespace) -> int:
    run = queries.run_detail(open_store(args), args.run)
    if args.json:
        print_json(asdict(run))
        return 0
    config_table(run).render()
    if run.retention:
        print()
        retention_table(run).render()
    return 0
