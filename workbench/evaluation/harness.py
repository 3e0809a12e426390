"""lm-eval on a model the workbench has already loaded: every figure exactly as lm-eval's CLI gives it.

One `TrackedHFLM` per model serves all of its tasks; each task is one `simple_evaluate` call with
lm-eval's own defaults (seeds, bootstrap iterations), so a task's numbers do not depend on which
other tasks ran with it and match `lm_eval --tasks TASK` with the same settings. Tracking reads
lm-eval's per-request cache hook and never touches batching.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from lm_eval.api.model import CacheHook
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
from lm_eval.tasks._index import TaskIndex
from lm_eval.utils import get_rolling_token_windows

from workbench.errors import UserError
from workbench.evaluation.local_tasks import (
    LocalTask,
    builtin_folders,
    check_fewshot_count,
    check_local_data,
    effective_shots,
    go_offline,
    no_fewshot_split,
    write_local_tasks,
)
from workbench.progress import Progress
from workbench.spec import TASKS, EvalSpec

HARNESS = "lm-eval"
REPORT_EVERY_S = 0.2  # progress updates and cancel checks at most this often


@dataclass(frozen=True)
class PreparedTask:
    name: str
    fewshot: int | None  # passed as num_fewshot; None leaves the task's own default
    generates: bool  # some request is generate_until (where chat templates matter most)
    local: LocalTask | None  # None: lm-eval's hub task, or a task from --include-path


@dataclass
class Harness:
    """The lm-eval side of one evaluation, prepared (and so validated) before any model loads."""

    task_manager: TaskManager
    tasks: list[PreparedTask]
    version: str


def prepare(spec: EvalSpec, names: list[str], data: Path | None, folder: Path) -> Harness:
    """Index, write and build every lm-eval task once: unknown names, missing files, datasets that
    cannot load and few-shot counts the local data cannot serve fail here, before any model loads."""
    local = {}
    if data is not None:
        catalogue = [n for n in names if n in TASKS]
        check_local_data(data, catalogue)  # before anything changes in this process
        go_offline(data)
        local = write_local_tasks(data, folder, catalogue)
    user = Path(spec.include_path).expanduser().resolve() if spec.include_path else None
    paths = builtin_folders(names) + ([folder] if local else []) + ([user] if user else [])
    with quiet():
        manager = TaskManager(include_defaults=False, include_path=paths)
        user_names = set(TaskIndex.build([user])) if user else set()
    prepared = []
    for name in names:
        if name not in TASKS and name not in user_names:
            if user is None:
                raise UserError(f"unknown task {name!r}: not a workbench task (and no --include-path given)")
            broken = _unreadable_yaml(user)
            why = f"; {broken[0]} cannot be read: {broken[1]}" if broken else ""
            raise UserError(f"unknown task {name!r}: not a workbench task and not in --include-path {user}{why}")
        fewshot = spec.fewshot if spec.fewshot is not None else (TASKS[name].fewshot if name in TASKS else None)
        try:
            with quiet():
                built = manager.load([name])["tasks"]
        except Exception as e:  # any failure to build the task or read its data: one line, before loading
            raise UserError(f"cannot prepare task {name}: {_first_line(e)}") from None
        shots = {t.get_config("num_fewshot") for t in built.values()}
        effective = max(effective_shots(fewshot, s) for s in shots)
        task_local = local.get(name)
        if task_local is not None and effective > 0 and task_local.fewshot_source is None:
            raise no_fewshot_split(name, effective)
        if effective > 0:
            _require_fewshot_docs(name, built.values(), effective)
        generates = any(t.get_config("output_type") == "generate_until" for t in built.values())
        prepared.append(PreparedTask(name, fewshot, generates, task_local))
    return Harness(manager, prepared, version("lm_eval"))


def _unreadable_yaml(folder: Path) -> tuple[Path, str] | None:
    """The first task YAML under `folder` that lm-eval's index skips (it only logs that), and why."""
    from lm_eval.tasks._index import TaskIndex
    from lm_eval.tasks._yaml_loader import load_yaml

    for path in TaskIndex._iter_yaml_files(folder):
        try:
            with quiet():
                load_yaml(path, resolve_func=False, recursive=True)
        except Exception as e:  # a YAML error, an include that is missing: what the index skipped
            return path, " ".join(str(e).split())[:200]
    return None


def _require_fewshot_docs(name: str, tasks, shots: int) -> None:
    for task in tasks:
        try:
            available = len(task.fewshot_docs())
            split = getattr(getattr(task, "fewshot_cfg", None), "split", None)
            same = split is not None and split == task.config.test_split
        except Exception:  # no split to count (examples made by a function): lm-eval's own check stands
            continue
        check_fewshot_count(name, shots, available, same)


class RequestCounter(CacheHook):
    """lm-eval hands every finished request to its LM's cache hook: count them into a Progress."""

    def __init__(self, progress: Progress) -> None:
        super().__init__(None)
        self.progress = progress
        self.task = ""
        self.kind = ""
        self.total = self.done = self._pending = 0
        self._last = 0.0

    def start(self, kind: str, total: int) -> None:
        self.kind, self.total, self.done, self._pending = kind, total, 0, 0
        self._last = time.monotonic()
        self.progress.set_total(total, f"{self.task}: 0/{total} {kind}")

    def add_partial(self, attr: str, req: Any, res: Any) -> None:
        if attr != "loglikelihood_rolling":  # rolling requests are counted by their windows
            self.count(1)

    def count(self, steps: int) -> None:
        self._pending += steps
        if time.monotonic() - self._last >= REPORT_EVERY_S:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        self.done += self._pending
        # Counts only: the time left is the job's one estimate (Progress.eta_seconds), not a second one.
        self.progress.advance(self._pending, f"{self.task}: {self.done}/{self.total} {self.kind}")
        self._pending = 0
        self._last = time.monotonic()


class TrackedHFLM(HFLM):
    """HFLM that reports finished requests (and windows of rolling log-likelihood) as they come."""

    def __init__(self, counter: RequestCounter, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.counter = counter
        self.set_cache_hook(counter)
        self._rolling = False

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        self.counter.start("log-likelihood requests", len(requests))
        try:
            return super().loglikelihood(requests, disable_tqdm=True)
        finally:
            self.counter.flush()

    def generate_until(self, requests, disable_tqdm: bool = False):
        self.counter.start("generations", len(requests))
        try:
            return super().generate_until(requests, disable_tqdm=True)
        finally:
            self.counter.flush()

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        # The same windows lm-eval cuts next, counted first so that the total is known.
        windows = sum(
            sum(1 for _ in get_rolling_token_windows(self.tok_encode(r.args[0]), self.prefix_token_id,
                                                     self.max_length, 1))
            for r in requests
        )
        self.counter.start("rolling windows", windows)
        self._rolling = True
        try:
            return super().loglikelihood_rolling(requests, disable_tqdm=True)
        finally:
            self._rolling = False
            self.counter.flush()

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        result = super()._loglikelihood_tokens(requests, disable_tqdm=True, override_bs=override_bs)
        if self._rolling:
            self.counter.count(len(requests))
        return result


class CancelCheck:
    """A forward pre-hook that asks the Progress whether to stop (at most every REPORT_EVERY_S), so a
    cancel lands within one forward pass, even inside a long generation."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self._last = time.monotonic()

    def __call__(self, module: Any, args: Any) -> None:
        now = time.monotonic()
        if now - self._last >= REPORT_EVERY_S:
            self._last = now
            self.progress.check()


def build_lm(model, tokenizer, batch_size: int | str, progress: Progress) -> TrackedHFLM:
    with quiet():
        return TrackedHFLM(RequestCounter(progress), pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


def run_task(lm: TrackedHFLM, harness: Harness, task: PreparedTask, limit: float | None, chat: bool) -> dict:
    """lm-eval's results for one task (the dict simple_evaluate returns)."""
    from lm_eval import simple_evaluate

    lm.counter.task = task.name
    with quiet(), no_git_probe():
        return simple_evaluate(
            model=lm,
            tasks=[task.name],
            num_fewshot=task.fewshot,
            limit=limit,
            task_manager=harness.task_manager,
            log_samples=False,
            apply_chat_template=chat,
            fewshot_as_multiturn=chat,  # what lm-eval's CLI does with --apply_chat_template
        )


@dataclass(frozen=True)
class Metric:
    task: str
    metric: str  # exactly as lm-eval keys it: "acc_norm,none", "exact_match,flexible-extract"
    value: float
    stderr: float | None
    samples: int | None
    fewshot: int | None
    settings: dict[str, Any]


def metrics(results: dict, requested: str) -> list[Metric]:
    """Every metric in lm-eval's results, for the task and (for a group such as mmlu) its
    subgroups and subtasks, with lm-eval's stderr ("N/A" -> None)."""
    shots: dict[str, int] = results.get("n-shot", {})
    parents = {child: group for group, children in results.get("group_subtasks", {}).items() for child in children}
    found = []
    for task, entry in results["results"].items():
        fewshot = shots.get(task, _shared(shots, _leaves(task, results.get("group_subtasks", {}))))
        higher = results.get("higher_is_better", {}).get(task, {})
        for key, value in entry.items():
            if "," not in key or "_stderr," in key or not isinstance(value, int | float):
                continue
            if math.isnan(value):  # no figure to record or compare (SQLite would store NULL)
                continue
            name, _, filter_name = key.partition(",")
            stderr = entry.get(f"{name}_stderr,{filter_name}")
            settings = {
                "requested": requested,
                "task_version": results.get("versions", {}).get(task),
                "higher_is_better": higher.get(name),
            }
            if task in parents:
                settings["group"] = parents[task]
            found.append(
                Metric(
                    task=task,
                    metric=key,
                    value=float(value),
                    stderr=float(stderr) if isinstance(stderr, int | float) and math.isfinite(stderr) else None,
                    samples=int(entry["sample_len"]) if "sample_len" in entry else None,
                    fewshot=fewshot,
                    settings=settings,
                )
            )
    found.sort(key=lambda m: _depth(m, requested))  # the task asked for, then its subgroups, then the rest
    return found


def _depth(m: Metric, requested: str) -> int:
    return 0 if m.task == requested else 1 if m.settings.get("group") == requested else 2


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """lm-eval's info logs, prints and progress bars off the terminal (stdout stays clean for --json;
    the workbench's own bar shows the progress); errors still show."""
    import datasets

    logger = logging.getLogger("lm_eval")
    level = logger.level
    bars = datasets.utils.logging.is_progress_bar_enabled()
    logger.setLevel(logging.ERROR)
    datasets.disable_progress_bars()
    try:
        with contextlib.redirect_stdout(sys.stderr), no_tqdm_bars():
            yield
    finally:
        logger.setLevel(level)
        if bars:
            datasets.enable_progress_bars()


@contextlib.contextmanager
def no_tqdm_bars() -> Iterator[None]:
    """lm-eval draws tqdm bars of its own ("building contexts" for every task, cached requests,
    bootstrap stderrs) that no argument turns off. A job process has tqdm off from the start
    ($TQDM_DISABLE, read when tqdm loads), but a foreground command runs its job in a process that
    loaded tqdm long before: there the bars would draw over its own. So while lm-eval runs, the
    tqdm it reaches draws nothing."""
    import lm_eval.api.model
    import lm_eval.api.task
    import tqdm

    class Silent(tqdm.tqdm):  # type: ignore[misc, type-arg]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs | {"disable": True})

    # Where lm-eval looks tqdm up: its modules' own names for it, and the package (imported inside functions).
    holders = [lm_eval.api.task, lm_eval.api.model, tqdm]
    before = [holder.tqdm for holder in holders]
    for holder in holders:
        holder.tqdm = Silent
    try:
        yield
    finally:
        for holder, original in zip(holders, before, strict=True):
            holder.tqdm = original


@contextlib.contextmanager
def no_git_probe() -> Iterator[None]:
    """lm-eval records the git commit of the folder the process runs in by running `git describe`,
    which prints "fatal: not a git repository" into the job's log from anywhere else. That folder
    is the user's, not the evaluation's (each row records the versions that matter), so the probe
    is left out while a task runs."""
    import lm_eval.evaluator

    probe = lm_eval.evaluator.get_git_commit_hash
    lm_eval.evaluator.get_git_commit_hash = lambda: None
    try:
        yield
    finally:
        lm_eval.evaluator.get_git_commit_hash = probe


def _leaves(task: str, group_subtasks: dict[str, list[str]]) -> list[str]:
    children = group_subtasks.get(task)
    if not children:
        return [task]
    return [leaf for child in children for leaf in _leaves(child, group_subtasks)]


def _shared(shots: dict[str, int], tasks: list[str]) -> int | None:
    values = {shots[t] for t in tasks if t in shots}
    return values.pop() if len(values) == 1 else None


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__
