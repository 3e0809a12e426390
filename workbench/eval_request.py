"""An evaluation request against the store, before anything loads: light, as workbench.prune_request
is, so that the CLI refuses bad input at once and leaves the job to a warm job process. It settles
requests of stored models on the workbench's own measurements (speed, memory, perplexity); lm-eval
tasks are prepared by the engine's check (workbench.evaluation.check_request, which the job runs again
before it loads a weight), which imports lm-eval and builds each task from its data.
"""

from __future__ import annotations

from pathlib import Path

from store.db import Store
from workbench.errors import UserError
from workbench.jobs.gpus import check_device
from workbench.model_files import check_stored, count_tokens
from workbench.sources import lookup
from workbench.spec import PPL_PREFIX, EvalSpec
from workbench.texts import load_source

MEASUREMENTS = ("speed", "memory")  # with ppl:SOURCE, the tasks the workbench measures itself


def check_request(spec: EvalSpec, store: Store, data: Path | None = None) -> bool:
    """What is wrong with the request that shows without the engine (UserError), writing nothing.
    True when nothing is left to check before queueing; False when the engine must still look:
    a model not stored yet, a tokenizer only transformers reads, an lm-eval task."""
    spec.validate()
    check_device(spec.device)
    named: dict[int, str] = {}
    folders = []
    for name in spec.models:
        row, _ = lookup(store, name)
        if row is None:
            return False
        if row.id in named:
            raise UserError(f"{name!r} and {named[row.id]!r} are the same model")
        named[row.id] = name
        check_stored(store, row)
        folders.append(store.model_path(row))
    for task in spec.tasks:
        if task.startswith(PPL_PREFIX):
            load_source(task.removeprefix(PPL_PREFIX), data)
    if any(count_tokens(folder, []) is None for folder in folders):
        return False
    return all(task in MEASUREMENTS or task.startswith(PPL_PREFIX) for task in spec.tasks)
