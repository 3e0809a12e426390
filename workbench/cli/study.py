"""`workbench study list|show|report`: the studies `sweep` made, their trade-off and specialisation
tables, and the Markdown report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.cli.common import open_store, print_json, take_up_queued, write_file
from workbench.studies.view import StudyView
from workbench.tabular import Column, Table, plain


def register(subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("study", parents=[common], help="studies made by `sweep`: list, tables, report")
    sub = p.add_subparsers(dest="study_command", metavar="COMMAND", required=True)

    p = sub.add_parser("list", parents=[common], help="studies, the latest first, with where their jobs stand")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=list_)

    p = sub.add_parser(
        "show",
        parents=[common],
        help="a study's trade-off table (the best of each column marked) and its specialisation tables",
        description="Rows: the base, then each configuration with its status; columns: parameters, share removed, "
        "expansion, and each metric at the study's settings (task and exact metric key). * marks the best "
        "configuration in a column (highest accuracy, lowest perplexity).",
    )
    p.add_argument("name", metavar="NAME")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON (raw values, stderrs, notes)")
    output.add_argument("--markdown", action="store_true", help="print Markdown tables")
    output.add_argument("--csv", action="store_true", help="print the trade-off table as CSV (full precision)")
    p.set_defaults(func=show)

    p = sub.add_parser("report", parents=[common], help="write the study's Markdown report (settings, versions, "
                       "how each figure was measured, tables, findings)")  # fmt: skip
    p.add_argument("name", metavar="NAME")
    p.add_argument("--out", type=Path, metavar="FILE", help="write it here (default: print it)")
    p.set_defaults(func=report)


LIST_COLUMNS = [
    Column("name"),
    Column("base_model", "base"),
    Column("configurations", "configs", numeric=True),
    Column("status"),
    Column("jobs", "jobs done", numeric=True),
    Column("running", numeric=True),
    Column("queued", numeric=True),
    Column("failed", numeric=True),
    Column("updated_at", "updated", plain),
]


def list_(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from store import studies

    store = open_store(args)
    take_up_queued(store)
    found = studies.list_studies(store)
    if args.json:
        print_json([asdict(s) | {"status": s.status} for s in found])
        return 0
    if not found:
        print("no studies yet: `workbench sweep` makes one")
        return 0
    rows = [[getattr(s, c.key) if c.key not in ("jobs", "status") else
             (f"{s.done}/{s.jobs}" if c.key == "jobs" else s.status) for c in LIST_COLUMNS] for s in found]  # fmt: skip
    Table("studies", LIST_COLUMNS, rows).render()
    return 0


def show(args: argparse.Namespace) -> int:
    from workbench.studies.specialisation import overlap_table, perplexity_table
    from workbench.studies.view import gather

    store = open_store(args)
    take_up_queued(store)
    view = gather(store, args.name)
    if args.json:
        groups = view.specialisation()
        print_json(view.to_dict() | {
            "specialisation": perplexity_table(groups).records() if groups else [],
            "overlap": overlap_table(groups).records() if groups else [],
        })  # fmt: skip
    elif args.csv:
        sys.stdout.write(view.table("raw").to_csv())
    elif args.markdown:
        sys.stdout.write(view.table("markdown").to_markdown())
        sys.stdout.write("".join(f"\n- {n}" for n in view.notes()) + "\n")
        groups = view.specialisation()
        if groups:
            sys.stdout.write("\n" + perplexity_table(groups, markdown=True).to_markdown())
            sys.stdout.write("\n" + overlap_table(groups).to_markdown())
    else:
        print_view(view)
    return 0


def print_view(view: StudyView) -> None:
    from workbench.studies.specialisation import overlap_table, perplexity_table

    view.table("text").render()
    for note in view.notes():
        print(f"  {note}")
    groups = view.specialisation()
    if groups:
        print()
        perplexity_table(groups).render()
        print()
        overlap_table(groups).render()


def report(args: argparse.Namespace) -> int:
    from workbench.studies.report import report as write
    from workbench.studies.view import gather

    text = write(gather(open_store(args), args.name))
    if args.out is None:
        sys.stdout.write(text)
        return 0
    write_file(args.out, text)
    print(f"wrote {args.out}")
    return 0
