"""Which way is better for a metric, keyed as the store holds it (lm-eval's `name,filter`)."""

from __future__ import annotations

LOWER_IS_BETTER = ("perplexity", "bits_per_byte", "loss", "memory", "seconds", "latency")


def higher_is_better(task: str, metric: str) -> bool:
    name = metric.partition(",")[0].lower()
    return not any(word in name for word in LOWER_IS_BETTER)
