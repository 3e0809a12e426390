"""What a user can ask the engine for, and the checks that need no model loaded.

Light on purpose (no torch): the TUI validates its forms and previews widths with it, the CLI
validates arguments with it, and a job stores the request as `to_dict()`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from workbench.errors import UserError
from workbench.names import check_name


@dataclass(frozen=True)
class ScorerInfo:
    name: str
    data_driven: bool
    description: str


SCORERS: dict[str, ScorerInfo] = {
    s.name: s
    for s in [
        ScorerInfo("ppm", False, "peak-to-peak magnitude (MAW): max + |min| of the gate row, plus that of the up row"),
        ScorerInfo("vow", False, "variance of the gate row plus variance of the up row"),
        ScorerInfo("pon", False, "product of the L1 norms of the gate and up rows"),
        ScorerInfo("l2", False, "L2 norm of the gate row plus L2 norm of the up row"),
        ScorerInfo("act_l2", True, "L2 norm of the neuron's activation (down_proj input) over all calibration tokens"),
        ScorerInfo("wanda", True, "mean |down_proj column| times activation L2 norm (Wanda made structural)"),
        ScorerInfo("minitron", True, "root of the sum over sequences of the squared mean |activation| (Minitron)"),
        ScorerInfo("hybrid", True, "CFSP-style: gate, up, down peak-to-peak magnitudes, each over its max, x act. L2"),
    ]
}

ALLOCATIONS = {
    "uniform": "the same width in every pruned layer",
    "global": "rank scores over all layers (each over its layer's median): widths differ, same total, 10% floor",
}
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "bfloat16", "float16")
SAVE_DTYPES = ("parent", "float32", "bfloat16", "float16")  # "parent": the weights as the parent stores them
REPAIRS = {
    "oneshot": "refit each layer's kept down_proj columns on the parent's activations",
    "sequential": "refit layer by layer on activations of the model already cut and repaired below",
}
REPAIR_DAMPING = 0.01  # lambda = this x the mean diagonal of G[K, K]
GLOBAL_FLOOR = 0.10  # a layer keeps at least this share of its width under global allocation


@dataclass(frozen=True)
class PruneSpec:
    """One pruning request. `model` is anything `resolve_model` accepts."""

    model: str
    scorer: str
    percent: float | None = None
    expansion: float | None = None
    divisor: int = 1
    allocation: str = "uniform"
    layers: str = "all"
    calibration: str | None = None
    samples: int = 64
    seq_len: int = 512
    device: str = "auto"
    dtype: str = "auto"  # of the forward passes (calibration, repair); the saved weights keep save_dtype
    name: str | None = None  # the result model's name; made up from the settings when absent
    save_dtype: str = "parent"
    repair: str | None = None  # None, or a REPAIRS key: refit down_proj on calibration activations
    repair_damping: float = REPAIR_DAMPING

    @property
    def data_driven(self) -> bool:
        return SCORERS[self.scorer].data_driven

    @property
    def calibrated(self) -> bool:
        """Whether the run reads calibration text: a data-driven scorer, or a repair."""
        return self.data_driven or self.repair is not None

    @property
    def target_kind(self) -> str:
        return "percent" if self.percent is not None else "expansion"

    @property
    def target_value(self) -> float:
        return self.percent if self.percent is not None else self.expansion  # type: ignore[return-value]

    def validate(self) -> PruneSpec:
        """Check everything that needs no model; return self so calls chain."""
        if self.scorer not in SCORERS:
            raise UserError(f"unknown scorer {self.scorer!r}; choose one of {', '.join(SCORERS)}")
        if (self.percent is None) == (self.expansion is None):
            raise UserError("give exactly one of --percent and --expansion")
        if self.percent is not None and not (0 <= self.percent < 100):
            raise UserError(f"--percent must be at least 0 and below 100, got {self.percent:g}")
        if self.expansion is not None and not (self.expansion > 0 and math.isfinite(self.expansion)):
            raise UserError(f"--expansion must be a positive ratio such as 2.4, got {self.expansion:g}")
        if self.divisor < 1:
            raise UserError(f"--divisor must be a positive integer, got {self.divisor}")
        if self.allocation not in ALLOCATIONS:
            raise UserError(f"unknown allocation {self.allocation!r}; choose uniform or global")
        if self.device not in DEVICES:
            raise UserError(f"unknown device {self.device!r}; choose one of {', '.join(DEVICES)}")
        if self.dtype not in DTYPES:
            raise UserError(f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}")
        if self.save_dtype not in SAVE_DTYPES:
            raise UserError(f"unknown save dtype {self.save_dtype!r}; choose one of {', '.join(SAVE_DTYPES)}")
        if self.repair is not None and self.repair not in REPAIRS:
            raise UserError(f"unknown repair {self.repair!r}; choose one of {', '.join(REPAIRS)}")
        if not (self.repair_damping >= 0 and math.isfinite(self.repair_damping)):
            raise UserError(f"--repair-damping must be 0 or more, got {self.repair_damping:g}")
        if self.calibrated:
            if self.samples < 1:
                raise UserError(f"--samples must be at least 1, got {self.samples}")
            if self.seq_len < 2:
                raise UserError(f"--seq-len must be at least 2 tokens, got {self.seq_len}")
        elif self.calibration is not None:
            raise UserError(f"{self.scorer} is a static scorer: it takes no --calibration (unless with --repair)")
        layer_ranges(self.layers)
        if self.name is not None:
            check_name(self.name)
        return self

    @property
    def calibration_source(self) -> str | None:
        """The calibration source a data-driven scorer or a repair uses (WikiText-2 unless told)."""
        return (self.calibration or "wikitext2") if self.calibrated else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PruneSpec:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def parse_layers(spec: str, num_layers: int | None) -> list[int] | None:
    """Layer indices named by "all" or e.g. "0-9,20" (sorted, unique); None means all.

    With num_layers given, indices past the last layer are an error (found before any range is
    spelled out, so that "0-99999999999" is an error, not a long wait).
    """
    ranges = layer_ranges(spec)
    if not ranges:
        return None if num_layers is None else list(range(num_layers))
    last = max(end for _, end in ranges)
    if num_layers is not None and last >= num_layers:
        raise UserError(
            f"--layers {spec!r} names layer {last}, but the model has {num_layers} (0-{num_layers - 1})"
        )
    return sorted({i for start, end in ranges for i in range(start, end + 1)})


def layer_ranges(spec: str) -> list[tuple[int, int]]:
    """The (first, last) layer of each part of "0-9,20"; none for "all" (UserError for bad text)."""
    text = spec.strip().lower()
    if not text:
        raise UserError("--layers is empty: give all, or indices and ranges such as 0-9,20")
    if text == "all":
        return []
    ranges = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            start, end = int(lo), int(hi) if dash else int(lo)
        except ValueError:
            raise UserError(f"bad --layers {spec!r}: use indices and ranges such as 0-9,20") from None
        if start < 0 or end < start:
            raise UserError(f"bad --layers {spec!r}: range {part.strip()!r} is empty or negative")
        ranges.append((start, end))
    return ranges


def round_to_divisor(width: int, divisor: int) -> int:
    """The largest multiple of divisor not above width (never grows a layer)."""
    return width // divisor * divisor


def target_width(spec: PruneSpec, width: int, hidden: int) -> int:
    """The width a pruned layer of `width` neurons keeps under spec's target and divisor."""
    if spec.percent is not None:
        raw = width - math.floor(width * spec.percent / 100 + 1e-9)  # removes floor(P% of width), as optipfair
    else:
        raw = min(width, math.floor(spec.expansion * hidden + 1e-9))  # type: ignore[operator]
    kept = round_to_divisor(raw, spec.divisor)
    if kept < 1:
        raise UserError(
            f"impossible rounding: {raw} neurons rounded down to a multiple of {spec.divisor} leaves none"
        )
    return kept


def planned_widths(spec: PruneSpec, hidden: int, widths: list[int]) -> list[int]:
    """Kept width per layer under uniform allocation; unselected layers keep their width.

    Global allocation keeps the same total, spread by score, so this also gives its total.
    """
    selected: list[int] = parse_layers(spec.layers, len(widths))  # type: ignore[assignment]
    if spec.expansion is not None and all(spec.expansion * hidden >= widths[i] for i in selected):
        current = sum(widths[i] for i in selected) / len(selected) / hidden
        raise UserError(
            f"--expansion {spec.expansion:g} does not shrink the model: its expansion is already {current:.3g}"
        )
    kept = list(widths)
    for i in selected:
        kept[i] = target_width(spec, widths[i], hidden)
    if spec.allocation == "global" and (short := [i for i in selected if kept[i] < GLOBAL_FLOOR * widths[i]]):
        # The floor could not hold: the total it spreads is the uniform one, below every floor.
        i = short[0]
        raise UserError(
            f"with --allocation global every layer keeps at least {GLOBAL_FLOOR:.0%} of its width, but this "
            f"target keeps {kept[i]} of layer {i}'s {widths[i]} ({kept[i] / widths[i]:.1%}): keep more, or use "
            "--allocation uniform"
        )
    return kept


# Evaluation -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskInfo:
    """A task the workbench offers by name. `fewshot` is its default shot count (None where shots
    do not apply); `harness` is lm-eval for benchmarks, workbench for the built-in measurements."""

    name: str
    harness: str
    fewshot: int | None
    description: str


# Few-shot defaults follow what width-pruning papers report (Wanda, SliceGPT, LLM-Pruner, Minitron):
# zero-shot for the commonsense and perplexity tasks, five shots for MMLU and GSM8K.
TASKS: dict[str, TaskInfo] = {
    t.name: t
    for t in [
        TaskInfo("gsm8k", "lm-eval", 5, "grade-school maths word problems, generated answers (exact match)"),
        TaskInfo("ifeval", "lm-eval", 0, "instruction following with verifiable constraints (strict/loose acc)"),
        TaskInfo("truthfulqa_mc1", "lm-eval", 0, "TruthfulQA multiple choice, one true answer (acc)"),
        TaskInfo("truthfulqa_mc2", "lm-eval", 0, "TruthfulQA multiple choice, likelihood mass on true answers"),
        TaskInfo("arc_easy", "lm-eval", 0, "ARC-Easy grade-school science questions (acc, acc_norm)"),
        TaskInfo("arc_challenge", "lm-eval", 0, "ARC-Challenge, the harder ARC questions (acc, acc_norm)"),
        TaskInfo("hellaswag", "lm-eval", 0, "HellaSwag sentence completion (the local copy is approximate)"),
        TaskInfo("lambada_openai", "lm-eval", 0, "LAMBADA (OpenAI text): predict a passage's last word"),
        TaskInfo("wikitext", "lm-eval", 0, "WikiText-2 test, rolling log-likelihood (word/byte perplexity)"),
        TaskInfo("mmlu", "lm-eval", 5, "MMLU, multiple-choice questions on 57 subjects (acc)"),
        TaskInfo("boolq", "lm-eval", 0, "BoolQ yes/no questions on a passage (acc)"),
        TaskInfo("piqa", "lm-eval", 0, "PIQA physical commonsense, the better of two solutions"),
        TaskInfo("winogrande", "lm-eval", 0, "WinoGrande pronoun resolution (acc)"),
        TaskInfo("ppl:wikitext2", "workbench", None, "perplexity on WikiText-2 test under the fixed protocol"),
        TaskInfo("ppl:sms", "workbench", None, "perplexity on the held-out fifth of the SMS Spam Collection"),
        TaskInfo("speed", "workbench", None, "prefill and decode tokens/s at batch 1, greedy"),
        TaskInfo("memory", "workbench", None, "peak memory while generating (CUDA allocated or peak RSS)"),
    ]
}
PPL_PREFIX = "ppl:"  # ppl:SOURCE takes any text source that calibration takes (see workbench.texts)
# --batch-size auto off CUDA: lm-eval's own search tries batches of its whole context (64 x 8192 tokens).
CPU_AUTO_BATCH = 8
CHAT_TEMPLATE_MODES = {
    "auto": "on for generated-answer tasks when the model is instruct-tuned and has a chat template",
    "on": "every lm-eval task goes through the model's chat template",
    "off": "plain prompts, as lm-eval runs by default",
}


@dataclass(frozen=True)
class EvalSpec:
    """One evaluation request: every task on every model. `models` items are anything
    `resolve_model` accepts; `fewshot` None means each task's default (TASKS, else the task's own)."""

    models: tuple[str, ...]
    tasks: tuple[str, ...]
    limit: float | None = None  # documents per task; below 1, a fraction of them (as lm-eval reads it)
    fewshot: int | None = None
    batch_size: str | int = "auto"
    chat_template: str = "auto"
    include_path: str | None = None
    device: str = "auto"
    dtype: str = "auto"

    def validate(self) -> EvalSpec:
        """Check everything that needs neither a model nor lm-eval; return self so calls chain.
        Task names outside TASKS are left for the evaluation to look up in the include path.
        Messages name fields in words, not flags: the TUI's form shows them too."""
        if not self.models:
            raise UserError("name at least one model to evaluate")
        if not self.tasks:
            raise UserError(f"name at least one task, e.g. {', '.join(list(TASKS)[:3])}")
        for name, items in (("model", self.models), ("task", self.tasks)):
            repeated = sorted({i for i in items if items.count(i) > 1})
            if repeated:
                raise UserError(f"{name} {repeated[0]!r} is named twice")
        for task in self.tasks:
            if task.startswith(PPL_PREFIX) and not task.removeprefix(PPL_PREFIX):
                raise UserError("ppl: needs a text source, e.g. ppl:wikitext2")
            if task not in TASKS and not task.startswith(PPL_PREFIX) and self.include_path is None:
                raise UserError(
                    f"unknown task {task!r}; choose from {', '.join(TASKS)}, ppl:SOURCE, or a task in the include path"
                )
        if self.limit is not None and not (self.limit > 0 and math.isfinite(self.limit)):
            raise UserError(
                f"the limit must be a positive number of documents (or a share below 1), got {self.limit:g}"
            )
        if self.limit is not None and self.limit > 1 and self.limit != int(self.limit):
            raise UserError(f"a limit above 1 counts documents: a whole number, got {self.limit:g}")
        if self.fewshot is not None and self.fewshot < 0:
            raise UserError(f"few-shot must be 0 or more, got {self.fewshot}")
        if self.batch_size != "auto" and not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise UserError(f"the batch size must be auto or a positive integer, got {self.batch_size!r}")
        if self.chat_template not in CHAT_TEMPLATE_MODES:
            raise UserError(f"unknown chat template mode {self.chat_template!r}; choose auto, on or off")
        if self.include_path is not None and not Path(self.include_path).expanduser().is_dir():
            raise UserError(f"the include path {self.include_path} is not a folder")
        if self.device not in DEVICES:
            raise UserError(f"unknown device {self.device!r}; choose one of {', '.join(DEVICES)}")
        if self.dtype not in DTYPES:
            raise UserError(f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"models": list(self.models), "tasks": list(self.tasks)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalSpec:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("models", "tasks"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def parse_batch_size(text: str) -> str | int:
    """`auto` or a whole number, as --batch-size (and the form's batch size) takes it."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise UserError(f"the batch size must be auto or a positive integer, got {text!r}") from None


# Healing ----------------------------------------------------------------------------------------

HEAL_TRAIN = {
    "all": "every weight of the student",
    "mlp": "the MLP weights only (gate, up, down)",
    "lora:R": "rank-R LoRA adapters on every linear layer of the decoder, merged into the weights at the end",
}


@dataclass(frozen=True)
class HealSpec:
    """One heal request: distil `teacher` (default: the model's parent in the store) into `model`
    on a text source's calibration part: KL divergence on the logits, mixed half and half with the
    cross-entropy on the text's own next tokens. The defaults are the best of the settings
    bench/heal_tuning.py compared on held-out text for SmolLM2-135M at 40% (learning rate, temperature,
    the mix, what trains, window shape: see README); other models may want others."""

    model: str
    data: str
    tokens: int
    teacher: str | None = None
    seq_len: int = 256
    batch_size: int = 4
    lr: float = 3e-4
    temperature: float = 1.0
    ce_weight: float = 0.5  # share of the loss that is cross-entropy on the text's own next tokens
    train: str = "all"
    warmup: float = 0.05  # share of the steps the learning rate warms up over, then cosine decay to zero
    device: str = "auto"
    dtype: str = "auto"
    name: str | None = None
    checkpoint_every_s: float = 300.0
    seed: int = 0

    def validate(self) -> HealSpec:
        if not isinstance(self.tokens, int) or self.tokens < 1:
            raise UserError(f"--tokens must be a positive number of tokens, got {self.tokens}")
        if self.seq_len < 2:
            raise UserError(f"--seq-len must be at least 2 tokens, got {self.seq_len}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserError(f"--lr must be a positive number, got {self.lr:g}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise UserError(f"--temperature must be a positive number, got {self.temperature:g}")
        if not (0 <= self.ce_weight <= 1):
            raise UserError(f"--ce-weight must be a share of the loss, from 0 to 1, got {self.ce_weight:g}")
        if not (0 <= self.warmup < 1):
            raise UserError(f"--warmup must be a share of the steps, at least 0 and below 1, got {self.warmup:g}")
        self.lora_rank  # noqa: B018  (checks --train)
        if self.device not in DEVICES:
            raise UserError(f"unknown device {self.device!r}; choose one of {', '.join(DEVICES)}")
        if self.dtype not in DTYPES:
            raise UserError(f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}")
        if not (self.checkpoint_every_s >= 0 and math.isfinite(self.checkpoint_every_s)):
            raise UserError(f"--checkpoint-every must be 0 or more seconds, got {self.checkpoint_every_s:g}")
        if self.name is not None:
            check_name(self.name)
        return self

    @property
    def lora_rank(self) -> int | None:
        """The LoRA rank of `--train lora:R`, None for all or mlp; UserError for anything else."""
        if self.train in ("all", "mlp"):
            return None
        kind, _, rank = self.train.partition(":")
        if kind != "lora" or not rank.isdigit() or int(rank) < 1:
            raise UserError(f"--train must be all, mlp or lora:RANK (e.g. lora:16), got {self.train!r}")
        return int(rank)

    @property
    def steps(self) -> int:
        """Optimiser steps: enough batches to see `tokens` tokens."""
        return max(1, math.ceil(self.tokens / (self.batch_size * self.seq_len)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HealSpec:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
