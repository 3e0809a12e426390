"""What kinds of job there are, and how each is checked, described and run.

A kind's `normalize` and `summarize` are light (no torch): `submit` and the TUI use them. Its
`run` is called only in a job process, and imports the engine there.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmodel import Session

from store import jobs
from store.db import Store
from workbench.errors import UserError
from workbench.progress import Progress
from workbench.sources import ImportRequest
from workbench.spec import HealSpec, PruneSpec
from workbench.tabular import count, size


@dataclass(frozen=True)
class JobContext:
    """What a running job gets besides its request."""

    store: Store
    job_id: int
    data: Path | None  # local benchmark and calibration data, as the submitter had it
    out: Path | None  # where to copy the result too, when the submitter asked
    progress: Progress  # writes the job row; `check()` raises Cancelled once cancel is asked


@dataclass(frozen=True)
class JobKind:
    name: str
    normalize: Callable[[dict[str, Any]], dict[str, Any]]  # the request validated, with its defaults (UserError)
    summarize: Callable[[dict[str, Any]], str]  # one line for listings
    run: Callable[[dict[str, Any], JobContext], dict[str, Any]]  # does the work; the report (the job's result)
    tell: Callable[[dict[str, Any]], str] = lambda report: ""  # the report in a line or a few: its log's end
    # Keeps checkpoints in artifacts/<spec["checkpoint"]>, named at submit so that a retry (which
    # copies the spec) resumes from them; the job claims the folder for `store check`.
    checkpointed: bool = False


def _run_prune(request: dict[str, Any], job: JobContext) -> dict[str, Any]:
    from workbench.pruning import prune

    spec = PruneSpec.from_dict(request)
    return prune(spec, job.store, job.data, job.progress, out=job.out, job_id=job.job_id).to_dict()


def _summarize_prune(request: dict[str, Any]) -> str:
    target = f"{request['percent']:g}%" if request.get("percent") is not None else f"x{request.get('expansion'):g}"
    calibration = f" ({Path(request['calibration']).name})" if request.get("calibration") else ""
    return f"{request.get('model')} {request.get('scorer')} {target}{calibration}"


def _tell_prune(report: dict[str, Any]) -> str:
    before, after = report["parameters_before"], report["parameters_after"]
    return (
        f"made {report['model_name']} (model {report['model_id']}, run {report['run_id']}) from "
        f"{report['base_model']}: {count(before)} -> {count(after)} parameters ({100 * (1 - after / before):.1f}% "
        f"fewer), expansion {report['expansion_before']:.2f} -> {report['expansion_after']:.2f}, "
        f"{size(report['size_bytes'])} on disk"
    )


def _normalize_eval(request: dict[str, Any]) -> dict[str, Any]:
    from workbench.spec import EvalSpec  # (evaluation is landing alongside: looked up when used)

    return EvalSpec.from_dict(request).validate().to_dict()


def _run_eval(request: dict[str, Any], job: JobContext) -> dict[str, Any]:
    from workbench.evaluation import evaluate
    from workbench.spec import EvalSpec

    return evaluate(EvalSpec.from_dict(request), job.store, job.data, job.progress, job_id=job.job_id).to_dict()


def _run_heal(request: dict[str, Any], job: JobContext) -> dict[str, Any]:
    from workbench.heal import heal

    return heal(HealSpec.from_dict(request), job.store, job.data, job.progress, job_id=job.job_id).to_dict()


def _summarize_heal(request: dict[str, Any]) -> str:
    teacher = f" from {request['teacher']}" if request.get("teacher") else ""
    source = Path(str(request.get("data"))).name
    return f"heal {request.get('model')}{teacher} on {source}, {request.get('tokens'):,} tokens"


def _tell_heal(report: dict[str, Any]) -> str:
    resumed = f", resumed from step {report['resumed_from_step']}" if report.get("resumed_from_step") else ""
    loss = ""
    if report.get("first_loss") is not None and report.get("last_loss") is not None:
        loss = f", loss {report['first_loss']:.4g} -> {report['last_loss']:.4g}"
    return (
        f"made {report['model_name']} (model {report['model_id']}, heal {report['heal_id']}) from {report['student']}, "
        f"distilled from {report['teacher']} on {report['data']}: {report['tokens_seen']:,} tokens "
        f"({report['passes']:.2f} passes) in {report['steps']} steps{resumed}{loss}"
    )


def _summarize_eval(request: dict[str, Any]) -> str:
    return f"{', '.join(request.get('models', []))}: {', '.join(request.get('tasks', []))}"


def _tell_eval(report: dict[str, Any]) -> str:
    """A line per model: each figure measured (the model facts aside), with its stderr."""
    lines = []
    for model in report["models"]:
        figures = [
            f"{m['task']} {m['metric']} {m['value']:.4g}" + (f" ± {m['stderr']:.3f}" if m["stderr"] is not None else "")
            for m in model["metrics"]
            if m["task"] != "model"
        ]
        lines.append(f"{model['model_name']}: {'; '.join(figures) or 'no figures'} ({model['seconds']:.0f} s)")
    return "\n".join(lines)


def _run_import(request: dict[str, Any], job: JobContext) -> dict[str, Any]:
    from workbench.model_io import import_model

    r = ImportRequest.from_dict(request)
    model = import_model(job.store, r.source, name=r.name, if_missing=r.if_missing, progress=job.progress)
    return {"model_id": model.id, "model_name": model.name, "folder": str(job.store.model_path(model))}


def _tell_import(report: dict[str, Any]) -> str:
    return f"stored {report['model_name']} as model {report['model_id']} in {report['folder']}"


def _summarize_import(request: dict[str, Any]) -> str:
    name = request.get("name")
    return f"import {request.get('source')}" + (f" as {name}" if name else "")


KINDS: dict[str, JobKind] = {
    k.name: k
    for k in [
        JobKind("prune", lambda r: PruneSpec.from_dict(r).validate().to_dict(), _summarize_prune, _run_prune,
                _tell_prune),
        JobKind("eval", _normalize_eval, _summarize_eval, _run_eval, _tell_eval),
        JobKind("import", lambda r: ImportRequest.from_dict(r).validate().to_dict(), _summarize_import, _run_import,
                _tell_import),
        JobKind("heal", lambda r: HealSpec.from_dict(r).validate().to_dict(), _summarize_heal, _run_heal,
                _tell_heal, checkpointed=True),
    ]
}


def kind_of(name: str) -> JobKind:
    try:
        return KINDS[name]
    except KeyError:
        raise UserError(f"unknown job kind {name!r}; choose one of {', '.join(KINDS)}") from None


def submit(
    store: Store | Session,
    kind: str,
    request: dict[str, Any],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    after: int | None = None,
) -> int:
    """Queue a request (a spec's `to_dict()`) as a job; its id. Checks the request (UserError) but
    loads nothing: pair it with `ensure_worker(store)` so that a job process runs it.

    The job keeps what the request means where it was made: relative paths in it resolve against
    `cwd` (default: this process's), and `data_dir` is the local data folder to use (the TUI and
    the CLI pass theirs; None: none, hub datasets). With `after`, it is claimed only once job
    `after` is done. Given a session from `store.write()`, the job is queued in that transaction.
    """
    job_kind = kind_of(kind)
    normalized = job_kind.normalize(request)
    spec = {
        "request": normalized,
        "cwd": os.fspath(Path(cwd or os.getcwd()).absolute()),
        "data_dir": os.fspath(Path(data_dir).absolute()) if data_dir is not None else None,
        "out": os.fspath(Path(out).absolute()) if out is not None else None,
    }
    if job_kind.checkpointed:
        spec["checkpoint"] = f"checkpoints/{kind}-{secrets.token_hex(6)}"
    return jobs.add_job(store, kind, spec, after=after)
