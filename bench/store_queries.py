"""Time the queries the TUI asks of a store with 10,000 pruning runs, on SQLite or PostgreSQL.

    .venv/bin/python bench/store_queries.py [--store FOLDER | --store URL | --postgres] [--repeat N]

Fills a new store (a temporary folder unless --store names a new folder or an empty database;
--postgres: a database of a throw-away PostgreSQL server, tests/postgres_server.py, on a unix
socket of this machine): 500 imported models, 10,000 runs of them (nine in ten done, each with
its result model, so ~9,500 models; one in ten failed), 30 retention rows per run over a width of
1536, and 5 tasks evaluated per model (a fifth of them twice). Then times each query over
--repeat runs with time.perf_counter, each in its own read session as the TUI asks it, prints a
table and writes bench/results/store_queries-<backend>.json. Target: under 50 ms each.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, insert, select, text  # noqa: E402

from store import bitset, queries  # noqa: E402
from store.db import Store  # noqa: E402
from store.tables import Evaluation, LayerRetention, Model, PruningRun  # noqa: E402
from workbench.tabular import Column, Table, fixed  # noqa: E402

BASE_MODELS = 500
RUNS = 10_000
LAYERS = 30
WIDTH = 1536
TASKS = [("arc_easy", "acc_norm,none"), ("piqa", "acc,none"), ("hellaswag", "acc_norm,none"),
         ("winogrande", "acc,none"), ("wikitext", "word_perplexity,none")]  # fmt: skip
SCORERS = ["ppm", "vow", "pon", "l2", "act_l2", "wanda", "minitron", "hybrid"]
FAMILIES = ["llama", "qwen2", "gemma3_text", "mistral"]
TARGET_MS = 50.0
OUT = Path(__file__).resolve().parent / "results" / "store_queries.json"


def model_values(i: int, name: str, when: datetime, rng: random.Random, parent_id: int | None = None) -> dict[str, Any]:
    family = FAMILIES[i % len(FAMILIES)]
    width = WIDTH if parent_id is None else rng.choice([768, 1024, 1152])
    return dict(
        name=name, source="pruned" if parent_id else "folder", source_ref="" if parent_id else f"/models/{name}",
        family=family, architecture=f"{family.title()}ForCausalLM", num_layers=LAYERS, hidden_size=576,
        intermediate_size=width, intermediate_sizes=None, expansion=width / 576, parameters=rng.randint(10**8, 10**9),
        dtype="bfloat16", size_bytes=rng.randint(10**8, 10**9), path=f"models/{name}", parent_id=parent_id,
        created_at=when, tags=["bench", family], note="",
    )  # fmt: skip


def fill(store: Store, seed: int = 0) -> dict[str, int]:
    rng = random.Random(seed)
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    masks = [bitset.encode(sorted(rng.sample(range(WIDTH), WIDTH // 2)), WIDTH) for _ in range(8)]
    with store.write() as session:
        session.execute(insert(Model), [model_values(i, f"base-{i}", t0, rng) for i in range(BASE_MODELS)])
        base_ids = list(session.scalars(select(Model.id).order_by(Model.id)))
        for start in range(0, RUNS, 1000):
            runs, results = [], []
            for r in range(start, start + 1000):
                when = t0 + timedelta(minutes=r)
                base = rng.choice(base_ids)
                scorer = rng.choice(SCORERS)
                done = r % 10 != 9
                runs.append(dict(
                    base_model_id=base, scorer=scorer, target_kind="percent", target_value=rng.choice([25.0, 50.0]),
                    divisor=rng.choice([1, 8, 64]), allocation=rng.choice(["uniform", "global"]), layers="all",
                    calibration_source=rng.choice([None, "wikitext2", "sms"]), calibration_samples=64,
                    calibration_seq_len=512, calibration_hash="ab" * 32, device="cuda:0", dtype="bfloat16",
                    versions={"torch": "2.13.0", "transformers": "5.0.0", "workbench": "0.1.0"},
                    stage_seconds={"load": 1.0, "score": 2.0, "save": 3.0}, peak_memory_bytes=2**32,
                    parameters_before=10**9, parameters_after=7 * 10**8, status="done" if done else "failed",
                    error=None if done else "CUDA out of memory", created_at=when,
                    result_model_id=f"pruned-{r}-{scorer}" if done else None,  # a name until the id is known
                ))  # fmt: skip
                if done:
                    results.append(model_values(r, f"pruned-{r}-{scorer}", when, rng, parent_id=base))
            session.execute(insert(Model), results)
            names = [m["name"] for m in results]
            made = dict(session.execute(select(Model.name, Model.id).where(Model.name.in_(names))).all())
            for run in runs:
                run["result_model_id"] = made.get(run["result_model_id"])
            session.execute(insert(PruningRun), runs)
        run_ids = list(session.scalars(select(PruningRun.id)))
        for start in range(0, len(run_ids), 500):
            session.execute(insert(LayerRetention), [
                dict(run_id=run_id, layer=layer, original_width=WIDTH, kept_width=WIDTH // 2, percent_kept=50.0,
                     kept_score_min=0.5, kept_score_mean=1.0, kept_score_max=2.0, removed_score_min=0.0,
                     removed_score_mean=0.25, removed_score_max=0.49, kept_indices=masks[(run_id + layer) % 8])
                for run_id in run_ids[start:start + 500] for layer in range(LAYERS)
            ])  # fmt: skip
        model_ids = list(session.scalars(select(Model.id)))
        evaluations = []
        for model_id in model_ids:
            for again in range(2 if model_id % 5 == 0 else 1):
                for task, metric in TASKS:
                    evaluations.append(dict(
                        model_id=model_id, harness="lm-eval", harness_version="0.4.9", task=task, metric=metric,
                        value=rng.random(), stderr=0.01, samples=1000, limit=None, fewshot=0, settings={},
                        device="cuda:0", dtype="bfloat16", seconds=30.0, created_at=t0 + timedelta(days=again),
                    ))  # fmt: skip
        session.execute(insert(Evaluation), evaluations)
    with store.session() as session:
        return {
            table.__name__: session.scalar(select(func.count()).select_from(table)) or 0
            for table in (Model, PruningRun, LayerRetention, Evaluation)
        }


def timed(query: Callable[[], Any], repeat: int) -> dict[str, float | int]:
    query()  # warm: the first call also compiles the statement
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = query()
        times.append((time.perf_counter() - start) * 1000)
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "rows": len(result) if hasattr(result, "__len__") else 1,
    }


PAGE = 100  # rows a screen asks for at a time


def tui_queries(store: Store) -> dict[str, Callable[[], Any]]:
    """The questions the TUI's screens ask, as they ask them: a page of rows, and the total."""
    rng = random.Random(1)
    run_id = rng.randint(1, RUNS)
    base = queries.get_model(store, "base-7")
    compared = [m.id for m in queries.list_models(store, "llama", limit=5)]

    def retention_decoded() -> list[list[int]]:
        return [row.kept() for row in queries.retention(store, run_id)]

    return {
        "models: page by name": lambda: queries.list_models(store, limit=PAGE),
        "models: page, newest first": lambda: queries.list_models(store, sort="created", descending=True, limit=PAGE),
        "models: page deep (offset 5000)": lambda: queries.list_models(store, limit=PAGE, offset=5000),
        "models: filter 'llama wanda', page": lambda: queries.list_models(store, "llama wanda", limit=PAGE),
        "models: page by evaluations": lambda: queries.list_models(store, sort="evals", descending=True, limit=PAGE),
        "models: count all": lambda: queries.count_models(store),
        "models: count 'llama wanda'": lambda: queries.count_models(store, "llama wanda"),
        "models: find by name": lambda: queries.find_model(store, "pruned-5000-ppm"),
        "models: one model's detail": lambda: queries.model_detail(store, base.id),
        "runs: page, newest first": lambda: queries.list_runs(store, limit=PAGE),
        "runs: page deep (offset 5000)": lambda: queries.list_runs(store, limit=PAGE, offset=5000),
        "runs: scorer wanda, page": lambda: queries.list_runs(store, scorer="wanda", limit=PAGE),
        "runs: of one base model (all)": lambda: queries.list_runs(store, base=base.id),
        "runs: failed, page": lambda: queries.list_runs(store, status="failed", limit=PAGE),
        "runs: filter 'sms global', page": lambda: queries.list_runs(store, "sms global", limit=PAGE),
        "runs: page sorted by params": lambda: queries.list_runs(store, sort="params", limit=PAGE),
        "runs: count all": lambda: queries.count_runs(store),
        "runs: count 'sms global'": lambda: queries.count_runs(store, "sms global"),
        "run: detail with retention": lambda: queries.run_detail(store, run_id),
        "run: retention, indices decoded": retention_decoded,
        "evals: one model, newest": lambda: queries.evaluations(store, [base.id]),
        "evals: 5 models aligned": lambda: queries.aligned_evaluations(store, compared),
    }


def whole_lists(store: Store) -> dict[str, Callable[[], Any]]:
    """Every row at once: what an export reads. For reference; no screen asks for these."""
    return {
        "all models": lambda: queries.list_models(store),
        "all runs": lambda: queries.list_runs(store),
    }


def database_bytes(store: Store) -> int:
    with store.session() as session:
        if store.is_sqlite:
            return session.execute(text("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"))\
                .scalar_one()
        return session.execute(text("SELECT pg_database_size(current_database())")).scalar_one()


def server_version(store: Store) -> str:
    with store.session() as session:
        if store.is_sqlite:
            return f"SQLite {sqlite3.sqlite_version}"
        return f"PostgreSQL {session.execute(text('SHOW server_version')).scalar_one()}"


def measure(location: str | Path, repeat: int) -> dict[str, Any]:
    with Store.open(location) as store:
        if queries.count_models(store):
            raise SystemExit(f"{location} already holds a store: give a new folder or an empty database")
        start = time.perf_counter()
        counts = fill(store)
        fill_s = time.perf_counter() - start
        if not store.is_sqlite:
            # PostgreSQL plans from table statistics, which autovacuum gathers within a minute or so
            # of a bulk load (`store copy` gathers them at once): without them these queries plan
            # blind, 10-70x slower. (SQLite keeps none unless asked; its figures are without.)
            with store.engine.connect() as connection:
                connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
        return {
            "backend": store.engine.dialect.name, "server": server_version(store), "counts": counts,
            "fill_s": fill_s, "db_bytes": database_bytes(store),
            "results": {name: timed(query, repeat) for name, query in tui_queries(store).items()},
            "reference": {name: timed(query, max(3, repeat // 4)) for name, query in whole_lists(store).items()},
        }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--store", help="a new folder or an empty database (URL) to fill (default: a temporary folder)")
    where.add_argument("--postgres", action="store_true", help="a database of a throw-away PostgreSQL server")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.postgres:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
            from postgres_server import PostgresServer, server_binaries

            binaries = server_binaries()
            if binaries is None:
                parser.error("PostgreSQL is not installed (Debian: apt-get install postgresql)")
            server = PostgresServer(binaries)
            try:
                os.environ["WORKBENCH_ARTIFACTS"] = str(Path(tmp) / "files")
                measured = measure(server.new_database(), args.repeat)
            finally:
                server.stop()
        else:
            measured = measure(args.store or Path(tmp) / "store", args.repeat)
    counts, fill_s, db_bytes = measured["counts"], measured["fill_s"], measured["db_bytes"]
    results, reference = measured["results"], measured["reference"]

    columns = [
        Column("query"), Column("median_ms", "median ms", fixed(2), numeric=True),
        Column("min_ms", "min ms", fixed(2), numeric=True), Column("max_ms", "max ms", fixed(2), numeric=True),
        Column("rows", numeric=True), Column("ok"),
    ]  # fmt: skip

    def row(name: str, r: dict[str, Any], target: bool = True) -> list[Any]:
        verdict = ("yes" if r["median_ms"] < TARGET_MS else "NO") if target else "-"
        return [name, r["median_ms"], r["min_ms"], r["max_ms"], r["rows"], verdict]

    title = (f"store queries ({measured['server']}): {counts['PruningRun']:,} runs, {counts['Model']:,} models, "
             f"median of {args.repeat}")
    Table(title, columns, [row(n, r) for n, r in results.items()]).render()
    print()
    Table("whole lists (exports; no target)", columns, [row(n, r, False) for n, r in reference.items()]).render()
    print(f"filled in {fill_s:.1f} s; database {db_bytes / 2**20:.0f} MiB")
    out = OUT.with_name(f"{OUT.stem}-{measured['backend']}.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({
        "measured": {
            "clock": "time.perf_counter, wall time per call, each call in its own read session",
            "repeat": args.repeat, "warm_up_calls": 1, "target_ms": TARGET_MS, "page_rows": PAGE,
            "python": platform.python_version(), "database": measured["server"], "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(), "system": platform.platform(),
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        "store": counts | {"layers_per_run": LAYERS, "width": WIDTH, "database_bytes": db_bytes,
                           "fill_seconds": fill_s},
        "queries": results,
        "whole_lists": reference,
    }, indent=2) + "\n")  # fmt: skip
    print(f"wrote {out}")
    return 0 if all(r["median_ms"] < TARGET_MS for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
