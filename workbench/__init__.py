"""Width Pruning Workbench: GLU MLP width pruning, evaluation and comparison of LLMs."""

__version__ = "0.1.0"
