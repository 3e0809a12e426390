"""`workbench export runs|evals|run ID`: the store's tables as CSV, JSON or Markdown.

Exports carry every field at full precision: CSV and JSON hold raw values (times in ISO 8601),
Markdown the formatted ones. With --out the file appears whole or not at all.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from store import queries
from store.queries import EvaluationInfo, RetentionInfo, RunSummary
from workbench.cli.common import open_store, write_file
from workbench.cli.runs import config_table
from workbench.tabular import Table, json_default

FORMATS = ("csv", "json", "md")


def register(subparsers, common: argparse.ArgumentParser) -> None:
    export = subparsers.add_parser("export", parents=[common], help="export runs, evaluations or one run")
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--format", choices=FORMATS, default="csv", help="default: csv")
    options.add_argument("--out", type=Path, metavar="FILE", help="write to FILE (default: standard output)")
    sub = export.add_subparsers(dest="export_command", metavar="WHAT", required=True)

    p = sub.add_parser("runs", parents=[common, options], help="every pruning run, one row each")
    p.set_defaults(func=export_runs)
    p = sub.add_parser("evals", parents=[common, options], help="evaluations: the newest per model, task and metric")
    p.add_argument("--all", action="store_true", help="every evaluation, older ones too")
    p.set_defaults(func=export_evals)
    p = sub.add_parser("run", parents=[common, options], help="one run: configuration and per-layer retention")
    p.add_argument("run", type=int, metavar="ID")
    p.set_defaults(func=export_run)


def export_runs(args: argparse.Namespace) -> int:
    runs = queries.list_runs(open_store(args), sort="id", descending=False)
    return _write(args, Table.of_dataclasses("pruning runs", runs, RunSummary), len(runs))


def export_evals(args: argparse.Namespace) -> int:
    rows = queries.evaluations(open_store(args), all_rows=args.all)
    return _write(args, Table.of_dataclasses("evaluations", rows, EvaluationInfo), len(rows))


def export_run(args: argparse.Namespace) -> int:
    run = queries.run_detail(open_store(args), args.run)
    retention = Table.of_dataclasses(f"retention of run {run.id}", run.retention, RetentionInfo)
    if args.format == "json":
        # Kept indices decoded as well, for tools that do not read store.bitset's encoding.
        record = asdict(run)
        for row, info in zip(record["retention"], run.retention, strict=True):
            row["kept"] = info.kept()
        text = json.dumps(record, indent=2, default=json_default) + "\n"
    elif args.format == "md":
        text = f"{config_table(run).to_markdown()}\n{retention.to_markdown()}"
    else:
        text = retention.to_csv()
    return _write_text(args.out, text, f"run {run.id}")


def _write(args: argparse.Namespace, table: Table, n: int) -> int:
    text = {"csv": table.to_csv, "json": table.to_json, "md": table.to_markdown}[args.format]()
    return _write_text(args.out, text, f"{n} rows")


def _write_text(out: Path | None, text: str, what: str) -> int:
    if out is None:
        sys.stdout.write(text)
        return 0
    write_file(out, text)
    print(f"wrote {what} to {out}", file=sys.stderr)
    return 0
