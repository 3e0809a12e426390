"""`workbench store check [--fix]`: is the store whole?

Exit status 0 when the store is clean (after --fix, when nothing is left to fix), 1 when problems
remain, 2 when the store cannot be opened.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict

from store.check import check
from workbench.cli.common import open_store, print_json


def register(subparsers, common: argparse.ArgumentParser) -> None:
    store = subparsers.add_parser("store", parents=[common], help="look after the store itself")
    sub = store.add_subparsers(dest="store_command", metavar="COMMAND", required=True)
    p = sub.add_parser(
        "check",
        parents=[common],
        help="check integrity, files rows point at, files no row points at",
        description="Runs SQLite's integrity and foreign key checks, compares the schema with the workbench's, "
        "looks for rows whose files are missing and for entries under artifacts/ that no row points at (orphans, "
        "e.g. left by a killed process). --fix removes orphans, unless the database is damaged; rows pointing at "
        "missing files are reported, never deleted. "
        "Exit status: 0 clean, 1 problems remain.",
    )
    p.add_argument("--fix", action="store_true", help="remove orphans")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=check_)


def check_(args: argparse.Namespace) -> int:
    store = open_store(args)
    report = check(store, fix=args.fix)
    if args.json:
        print_json({"store": str(store.root), "clean": report.clean, "problems": report.problems} | asdict(report))
        return 0 if report.clean else 1
    for path in report.removed:
        print(f"removed orphan artifacts/{path}")
    for line in report.problems:
        print(line)
    for path in report.in_progress:
        print(f"being written by a live process: artifacts/{path}")
    if report.clean:
        print(f"store {store.root}: clean")
        return 0
    hint = ""
    if report.damaged and report.orphans:
        hint = "; orphans are kept while the database is damaged (restore it from a backup first)"
    elif any(o not in report.removed for o in report.orphans):
        hint = "; --fix removes the orphans"
    print(f"store {store.root}: {len(report.problems)} problems{hint}")
    return 1
