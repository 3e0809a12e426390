"""`workbench compare`: models side by side, each metric with its change against a baseline."""

from __future__ import annotations

import argparse
import sys

from workbench.cli.common import open_store, print_json
from workbench.tradeoff import NOISE_SIGMAS, compare


def register(subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "compare",
        parents=[common],
        help="compare models' recorded metrics: values, changes, and whether a change exceeds noise",
        description="Every recorded metric aligned by task and key (the newest evaluation of each). Each model "
        "is compared with its nearest ancestor among those named (a pruned model with its parent), else "
        "with the first model named; one pruned model alone is compared with its parent. A change exceeds "
        f"noise when |delta| > {NOISE_SIGMAS:g} * sqrt(se1^2 + se2^2), judged where both have a stderr. The "
        "last column names the best model of a row only where its value beats every other beyond that "
        "noise (the rule the workbench's Compare and Trade-off use); parameters and sizes print in short form.",
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="stored model names or ids")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON (values, stderrs and changes per row)")
    output.add_argument("--markdown", action="store_true", help="print a Markdown table")
    output.add_argument("--csv", action="store_true", help="print CSV (full precision)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    comparison = compare(open_store(args), args.models)
    if args.json:
        print_json(comparison.to_dict())
        return 0
    table = comparison.table()
    if args.markdown:
        sys.stdout.write(table.to_markdown())
    elif args.csv:
        sys.stdout.write(table.to_csv())
    else:
        table.render()
    return 0
