"""Evaluation: lm-eval benchmarks (on local data where a data folder is given), perplexity, speed,
memory and size, recorded in the store for every model. `evaluate` is the entry point."""

from workbench.evaluation.runner import EvalReport, ModelResult, check_request, evaluate

__all__ = ["EvalReport", "ModelResult", "check_request", "evaluate"]
