"""`workbench models import|list|show|rm`: the models in the store."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from store import queries
from store.queries import ModelInfo
from workbench.cli.common import open_store, print_json
from workbench.cli.foreground import add_detach_option, run_as_job
from workbench.sources import ImportRequest
from workbench.tabular import Column, Table, count, fixed, size


def register(subparsers, common: argparse.ArgumentParser) -> None:
    models = subparsers.add_parser("models", parents=[common], help="import, list, show and remove models")
    sub = models.add_subparsers(dest="models_command", metavar="COMMAND", required=True)

    # `models import` runs as a job (workbench.model_io.import_model), as `prune` does.
    p = sub.add_parser("import", parents=[common], help="import a model into the store as safetensors")
    p.add_argument("source", metavar="SOURCE", help="smollm2, a Hugging Face model folder, a .gguf file, or a hub id")
    p.add_argument("--name", help="its name in the store (default: from the source)")
    p.add_argument("--if-missing", action="store_true",
                   help="do nothing when it is already in the store (and queue no job)")  # fmt: skip
    add_detach_option(p)
    p.set_defaults(func=import_)

    p = sub.add_parser("list", parents=[common], help="list the models in the store")
    p.add_argument("--filter", default="", metavar="TEXT", help="words to find in name, family, source or tags")
    p.add_argument("--sort", choices=list(queries.MODEL_SORTS), default="name")
    p.add_argument("--reverse", action="store_true", help="sort descending")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=list_)

    p = sub.add_parser("show", parents=[common], help="a model: architecture, lineage, evaluations, files")
    p.add_argument("model", metavar="NAME|ID")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=show)

    p = sub.add_parser(
        "rm",
        parents=[common],
        help="remove a model and its files",
        description="Remove a model's row and then its files. Refused while runs, evaluations or child models "
        "depend on it, unless --force: that deletes the runs that pruned it (with their retention rows) and its "
        "evaluations, keeps the run that made it (with no result model) and keeps its children (with no parent).",
    )
    p.add_argument("model", metavar="NAME|ID")
    p.add_argument("--force", action="store_true", help="remove it together with what depends on it (see above)")
    p.set_defaults(func=rm)


def import_(args: argparse.Namespace) -> int:
    """Runs as a job (see workbench.cli.foreground); bad input fails before a job row exists."""
    request = ImportRequest(args.source, args.name, args.if_missing).validate()
    from workbench.model_io import check_import  # the engine: torch and transformers load here

    store = open_store(args, create=True)
    existing = check_import(store, request)
    if existing is not None:  # --if-missing, and it is there
        print(f"model {existing.name!r} (id {existing.id}) in {store.model_path(existing)}")
        return 0
    job = run_as_job(args, store, "import", request.to_dict(), data=None)
    if job is not None:  # else --detach: queued
        print(f"model {job.result['model_name']!r} (id {job.result['model_id']}) in {job.result['folder']}")
    return 0


MODEL_COLUMNS = [
    Column("id", numeric=True),
    Column("name"),
    Column("source"),
    Column("family"),
    Column("num_layers", "layers", numeric=True),
    Column("hidden_size", "hidden", numeric=True),
    Column("width_text", "width", numeric=True),
    Column("expansion", "ratio", fixed(2), numeric=True),
    Column("parameters", "params", count, numeric=True),
    Column("dtype"),
    Column("size_bytes", "size", size, numeric=True),
    Column("parent_name", "parent"),
    Column("eval_count", "evals", numeric=True),
    Column("created_at", "created"),
]


def models_table(title: str, models: list[ModelInfo]) -> Table:
    return Table.of(title, MODEL_COLUMNS, models)


def list_(args: argparse.Namespace) -> int:
    models = queries.list_models(open_store(args), args.filter, sort=args.sort, descending=args.reverse)
    if args.json:
        print_json([asdict(m) for m in models])
    elif models:
        models_table("models", models).render()
    else:
        print("no models" + (f" match {args.filter!r}" if args.filter else " in the store yet"))
    return 0


def show(args: argparse.Namespace) -> int:
    store = open_store(args)
    detail = queries.model_detail(store, args.model)
    folder = store.model_path(detail.model)
    files = _files(folder)
    if args.json:
        print_json(asdict(detail) | {"folder": str(folder), "files": files})
        return 0
    m = detail.model
    widths = str(m.intermediate_size)
    if m.intermediate_sizes:
        widths = "per layer: " + " ".join(map(str, m.intermediate_sizes))
    fields = [
        ("id", m.id),
        ("source", f"{m.source} {m.source_ref}".strip()),
        ("architecture", f"{m.architecture} ({m.family})"),
        ("layers", m.num_layers),
        ("hidden size", m.hidden_size),
        ("MLP width", widths),
        ("expansion", f"{m.expansion:.3f}"),
        ("parameters", f"{m.parameters:,} ({count(m.parameters)})"),
        ("dtype", m.dtype),
        ("size on disk", size(m.size_bytes)),
        ("created", m.created_at),
        ("tags", ", ".join(m.tags)),
        ("note", m.note),
        ("parent", f"{m.parent_name} (id {m.parent_id})" if m.parent_id is not None else ""),
        ("made by", _run_line(detail.made_by) if detail.made_by else ""),
        ("healed by", _heal_line(detail.healed_by) if detail.healed_by else ""),
        ("lineage", " -> ".join(a.name for a in detail.lineage) if len(detail.lineage) > 1 else ""),
        ("children", ", ".join(f"{c.name} (id {c.id})" for c in detail.children)),
    ]
    Table.of_pairs(f"model {m.name}", [(k, v) for k, v in fields if v != ""]).render()
    if detail.runs:
        print()
        Table.of(f"runs that pruned {m.name}", RUN_BRIEF, detail.runs).render()
    if detail.healed_by and detail.healed_by.loss_curve:
        from workbench.cli.heal import loss_line

        print(f"\n{detail.healed_by.loss_name} by step: {loss_line(detail.healed_by.loss_curve)}")
    if detail.heals:
        print()
        print(f"heals of {m.name}: " + ", ".join(_heal_line(h) for h in detail.heals))
    print()
    if detail.evaluations:
        Table.of("evaluations (newest per task and metric, newest first)", EVAL_COLUMNS, detail.evaluations).render()
    else:
        print("no evaluations")
    print()
    if files is None:
        print(f"files: {folder} is missing (see `workbench store check`)")
    else:
        Table.of(f"files in {folder}", [Column("path"), Column("bytes", "size", size, numeric=True)], files).render()
    return 0


def rm(args: argparse.Namespace) -> int:
    removal = queries.remove_model(open_store(args), args.model, force=args.force)
    m = removal.model
    done = [f"removed model {m.name!r} (id {m.id})" + (" and its files" if removal.folder_removed else "")]
    if removal.runs_deleted:
        done.append(f"deleted runs {', '.join(map(str, removal.runs_deleted))}")
    if removal.evaluations_deleted:
        done.append(f"deleted {removal.evaluations_deleted} evaluations")
    if removal.runs_detached:
        done.append(f"run {', '.join(map(str, removal.runs_detached))} kept with no result model")
    if removal.children_detached:
        done.append(f"children kept with no parent: {', '.join(removal.children_detached)}")
    print("; ".join(done))
    return 0


RUN_BRIEF = [
    Column("id", numeric=True),
    Column("status"),
    Column("scorer"),
    Column("target_kind", "target"),
    Column("target_value", "value", numeric=True),
    Column("allocation"),
    Column("result_model_name", "result"),
    Column("created_at", "created"),
]
EVAL_COLUMNS = [
    Column("task"),
    Column("metric"),
    Column("value", fmt=fixed(4), numeric=True),
    Column("stderr", fmt=fixed(4), numeric=True),
    Column("fewshot", "shots", numeric=True),
    Column("limit", numeric=True),
    Column("harness"),
    Column("device"),
    Column("created_at", "created"),
]


def _run_line(run: queries.RunSummary) -> str:
    target = f"{run.target_kind} {run.target_value:g}"
    return f"run {run.id}: {run.scorer}, {target}, {run.allocation}, from {run.base_model_name}"


def _files(folder: Path) -> list[dict[str, object]] | None:
    if not folder.is_dir():
        return None
    files = sorted(f for f in folder.rglob("*") if f.is_file())
    return [{"path": str(f.relative_to(folder)), "bytes": f.stat().st_size} for f in files]


def _heal_line(heal) -> str:
    return (f"heal {heal.id} ({heal.result_name or 'model removed'}): from {heal.teacher_name} on {heal.data_source}, "
            f"{heal.tokens_seen:,} tokens, train {heal.train}, lr {heal.lr:g}")
