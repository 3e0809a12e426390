"""A separate process that writes to a store, for tests/test_store_processes.py.

    store_worker.py hang-in-run STORE MARKER    record a run of model "base", and halfway through
                                               its retention rows (flushed, not committed) write
                                               MARKER and wait to be killed
    store_worker.py writer STORE GO NAME N     once file GO exists, open STORE (maybe new) and
                                               write N transactions that each read, then insert
    store_worker.py place-and-wait STORE PLACED GO   record a model "placed": with its folder renamed
                                               into place and its row not yet committed, write
                                               PLACED and wait for file GO before committing
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import func, select
from sqlmodel import Session
from store_fixtures import eval_row, model_row, retention_rows, run_row

from store import queries
from store.db import Store
from store.tables import LayerRetention, Model


def hang_in_run(location: str, marker: str) -> None:
    store = Store.open(location, create=False)
    base = queries.get_model(store, "base")
    with store.new_artifact("models") as artifact:
        (artifact.path / "model.safetensors").write_bytes(b"\0" * 1024)
        with store.write() as session:
            result = model_row("half-written", source="pruned", path=artifact.relpath)
            rows = _rows_then_hang(session, marker)
            queries.record_run(session, run_row(base.id), rows, result)
            artifact.commit()
        artifact.keep()


def _rows_then_hang(session: Session, marker: str) -> Iterator[LayerRetention]:
    for i, row in enumerate(retention_rows(layers=6)):
        if i == 3:
            session.flush()  # the model, the run and three retention rows are in the transaction now
            Path(marker).write_text("paused")
            time.sleep(600)
        yield row


def place_and_wait(location: str, placed: str, go: str) -> None:
    store = Store.open(location, create=False)
    with store.new_artifact("models") as artifact:
        (artifact.path / "config.json").write_text("{}")
        with store.write() as session:
            session.add(model_row("placed", path=artifact.relpath))
            session.flush()
            artifact.commit()
            Path(placed).write_text("in place")
            _wait_for_file(go)


def _wait_for_file(path: str) -> None:
    deadline = time.monotonic() + 60
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"no {path}")
        time.sleep(0.005)


def writer(location: str, go: str, name: str, n: int) -> None:
    _wait_for_file(go)
    store = Store.open(location)
    for i in range(n):
        with store.write() as session:
            # Read, then write: the pattern that fails with "database is locked" when a
            # deferred transaction has to upgrade its read snapshot.
            mine = session.scalar(select(func.count(Model.id)).where(Model.name.startswith(f"{name}-"))) or 0
            model = model_row(f"{name}-{mine}")
            if i % 10 == 0:
                base = session.scalar(select(Model.id).where(Model.name == f"{name}-0")) or 0
                if base:
                    queries.record_run(session, run_row(base), retention_rows(), model)
                    continue
            session.add(model)
            session.flush()
            queries.add_evaluations(session, [eval_row(model.id)])
    print("ok")


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    if command == "hang-in-run":
        hang_in_run(*rest)
    elif command == "place-and-wait":
        place_and_wait(*rest)
    elif command == "writer":
        writer(rest[0], rest[1], rest[2], int(rest[3]))
    else:
        raise SystemExit(f"unknown command {command}")
