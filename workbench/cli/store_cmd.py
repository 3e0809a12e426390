"""`workbench store check [--fix]`: is the store whole? `workbench store copy SOURCE TARGET`: a
store into another (a folder into PostgreSQL, or back).

check: exit status 0 when the store is clean (after --fix, when nothing is left to fix), 1 when
problems remain, 2 when the store cannot be opened.
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

    p = sub.add_parser(
        "copy",
        parents=[common],
        help="copy a store into another: a folder into a database URL (PostgreSQL), or back",
        description="Copies every row and every file of SOURCE into TARGET (a store folder or a database URL; "
        "a new folder or an empty database is made a store), with its ids and lineage, then checks TARGET "
        "(`store check`). A TARGET that already holds rows is refused unless --merge: then every row gets a new "
        "id and what points at it follows; a model or study name both hold is refused. SOURCE must be at rest "
        "(no job running) and whole (`store check` finds nothing but orphans, which are not copied).",
    )
    p.add_argument("source", metavar="SOURCE", help="the store to copy: a folder or a database URL")
    p.add_argument("target", metavar="TARGET", help="where to: a new folder, an empty database, or (--merge) a store")
    p.add_argument("--merge", action="store_true", help="into a store that holds rows: renumber what is copied")
    p.add_argument(
        "--files", metavar="FOLDER",
        help="for a TARGET URL: the folder to keep its files in, which every host mounts (default: "
        "$WORKBENCH_ARTIFACTS, else what its database records)",
    )  # fmt: skip
    p.set_defaults(func=copy_)


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


def copy_(args: argparse.Namespace) -> int:
    from store.copy import copy_store
    from store.db import Store

    with Store.open(args.source, create=False) as source:
        report = copy_store(source, args.target, files=args.files, merge=args.merge, say=lambda s: print(f"  {s}"))
    how = "merged into" if report.merged else "copied to"
    checked = "clean" if report.check.clean else f"nothing new ({len(report.check.problems)} problems it had before)"
    print(f"{sum(report.rows.values())} rows and {report.files} files {how} {report.target} (files in "
          f"{report.target_files}); store check there: {checked}")
    return 0
