"""An evaluation request against the store, before anything loads: light, as workbench.prune_request
is, so that the CLI refuses bad input at once and leaves the job to a warm job process. It settles
requests of stored models on the workbench's own measurements (speed, memory, perplexity) and on
catalogue tasks read from the local data folder (their few-shot examples counted in its files).
The rest (mmlu's group of tasks; --include-path tasks; hub datasets; a chat template demanded) is
for the engine's check (workbench.evaluation.check_request, which the job runs again before it loads a
weight): it imports lm-eval and builds each task from its data.
"""

from __future__ import annotations

import json
from pathlib import Path

from store.db import Store
from workbench.errors import UserError
from workbench.evaluation.local_tasks import LOCAL_FILES, check_local_data, fewshot_settled
from workbench.jobs.gpus import check_device
from workbench.model_files import check_stored, count_tokens
from workbench.sources import lookup, refuse_one_model_twice
from workbench.spec import PPL_PREFIX, TASKS, EvalSpec
from workbench.texts import load_source

MEASUREMENTS = ("speed", "memory")  # with ppl:SOURCE, the tasks the workbench measures itself


def check_request(spec: EvalSpec, store: Store, data: Path | None = None) -> bool:
    """What is wrong with the request that shows without the engine (UserError), writing nothing.
    True when nothing is left to check before queueing; False when the engine must still look:
    a model not stored yet, a tokenizer only transformers reads, an lm-eval task it cannot vouch for."""
    spec.validate()
    check_device(spec.device)
    rows = [lookup(store, name)[0] for name in spec.models]
    if any(row is None for row in rows):
        return False
    refuse_one_model_twice(spec.models, [row.id for row in rows])
    folders = []
    for row in rows:
        check_stored(store, row)
        folders.append(store.model_path(row))
    for task in spec.tasks:
        if task.startswith(PPL_PREFIX):
            load_source(task.removeprefix(PPL_PREFIX), data)
    if any(count_tokens(folder, []) is None for folder in folders):
        return False
    return _lm_eval_settled(spec, [t for t in spec.tasks if t not in MEASUREMENTS and not t.startswith(PPL_PREFIX)],
                            data)


def _lm_eval_settled(spec: EvalSpec, names: list[str], data: Path | None) -> bool:
    """Whether these lm-eval tasks need no engine to check: catalogue tasks on the data folder's
    files, each there and whole JSON lines (the engine's building of the task reads no more than
    those), whose few-shot examples the files can serve."""
    if not names:
        return True
    if data is None or spec.include_path or spec.chat_template == "on" or any(n not in LOCAL_FILES for n in names):
        return False
    check_local_data(data, names)
    for file in sorted({data / f for name in names for f in LOCAL_FILES[name].values()}):
        _require_json_lines(file)
    asked = {name: spec.fewshot if spec.fewshot is not None else TASKS[name].fewshot for name in names}
    return all(fewshot_settled(data, name, asked[name]) for name in names)


def _require_json_lines(file: Path) -> None:
    with file.open(encoding="utf-8") as lines:  # (not splitlines(): rows hold U+2028)
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                json.loads(line)
            except ValueError as e:
                raise UserError(f"{file} is damaged: line {number} is not JSON ({e})") from None
