"""Small helpers every command shares: opening the store, printing JSON."""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import suppress
from pathlib import Path
from typing import Any

from rich.console import Console

from store.db import Store
from workbench.errors import UserError
from workbench.progress import Progress

_created: list[Store] = []  # stores this command made, removed again if it fails before using them


def open_store(args: argparse.Namespace, *, create: bool = False) -> Store:
    """The store the command names. Only commands that write one (`create`) may create it, and only
    in a new or empty folder: reading a mistyped path says so instead of making a store there."""
    store = Store.open(getattr(args, "store", None), create=create)
    if store.created:
        _created.append(store)
    return store


def remove_unused_stores() -> None:
    """After bad input: a store this command created and never wrote a row into goes again."""
    while _created:
        _created.pop().remove_if_unused()


def take_up_queued(store: Store) -> None:
    """Jobs queued with no job process left to run them (the last one was killed, say) get one, as
    --detach would start it; said on stderr, so that JSON on stdout stays whole. Commands that show
    jobs call it."""
    from store.jobs import count_jobs
    from workbench.jobs.worker import ensure_worker, log_path

    if ensure_worker(store):
        print(f"started a job process for the queued jobs (its output: {log_path(store)})", file=sys.stderr)
    elif store.read_only and (queued := count_jobs(store, "queued")):
        print(f"{queued} jobs queued, and none can run while the store {store.root} {store.read_only}", file=sys.stderr)


def write_file(out: Path, text: str) -> None:
    """Write a file whole or not at all (a temporary file beside it, renamed into place); what
    stands in the way (a folder of that name, no such folder, no permission, a full disk) is one
    line (UserError), and no temporary file stays."""
    if out.is_dir():
        raise UserError(f"cannot write {out}: it is a folder (give a file name)")
    if not out.parent.is_dir():
        raise UserError(f"cannot write {out}: no folder {out.parent}")
    partial = out.with_name(f".{out.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, out)
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        with suppress(OSError):
            partial.unlink(missing_ok=True)


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def clock(seconds: float | None) -> str:
    """A duration as a clock reads: 1:15, 2:03:04."""
    if seconds is None:
        return ""
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


class TerminalProgress(Progress):
    """A progress bar on stderr while work runs in this process (none when not a terminal): the
    stage, the share done, the time so far, the job's one estimate of the time left, its message."""

    def __init__(self, enabled: bool = True, console: Console | None = None) -> None:
        super().__init__()
        from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        console = console or Console(stderr=True)
        self._bar = Bar(
            TextColumn("{task.fields[stage]:<10}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[left]}"),
            TextColumn("{task.fields[message]}"),
            console=console,
            disable=not (enabled and console.is_terminal),
        )
        self._task = self._bar.add_task("", total=1.0, stage="", left="", message="")

    def __enter__(self) -> TerminalProgress:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def emit(self, stage: str, fraction: float, message: str, eta_seconds: float | None = None) -> None:
        left = f"{clock(eta_seconds)} left" if eta_seconds is not None and fraction < 1 else ""
        self._bar.update(self._task, completed=fraction, stage=stage, left=left, message=message)
