"""Evaluation: lm-eval benchmarks (on local data where a data folder is given), perplexity, speed,
memory and size, recorded in the store for every model. `evaluate` is the entry point.

The names below load the engine when first used, so that a light module of this package
(local_tasks, which the CLI's light checks read) imports no torch and no lm-eval."""

from __future__ import annotations

from typing import Any

__all__ = ["EvalReport", "ModelResult", "check_request", "evaluate"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from workbench.evaluation import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
