"""Forms that queue work: a pruning run, an evaluation, a model import."""
