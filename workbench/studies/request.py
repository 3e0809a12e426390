"""What a sweep asks for: every combination of scorers, targets, allocations and (for data-driven
scorers) calibration sources, each pruned once and evaluated on the same tasks, plus the base;
with `repairs`, a repaired cut of each of them too, and with `heal_tokens`, a healed model of every
cut (plain and repaired) per token count, evaluated alike.

Light (no torch): the CLI validates with it before loading anything, and the views read a study's
settings through it. A configuration's identity is its `config` (the fields a finished run
records), written as canonical JSON in `key`; two sweeps asking for the same configuration of the
same base share its run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from store.jobs import JobInfo
from store.queries import EvaluationInfo
from workbench.errors import UserError
from workbench.names import check_name
from workbench.spec import PPL_PREFIX, REPAIRS, SCORERS, TASKS, EvalSpec, HealSpec, PruneSpec
from workbench.texts import source_name

HEAL_FIELDS = ("heal_tokens", "heal_data")  # what a healed configuration adds to its cut's

# What `dtype auto` gives on each kind of device (workbench.devices.resolve_dtype), known without
# asking CUDA which half precision it supports: that would open a context in a process that only queues.
AUTO_DTYPES = {"cpu": ("float32",), "cuda": ("bfloat16", "float16"), "mps": ("float16",)}
DEVICE_BOUND = ("speed", "memory")  # figures that depend on the device, not only the dtype


@dataclass(frozen=True)
class SweepRequest:
    model: str
    scorers: tuple[str, ...]
    tasks: tuple[str, ...]
    percents: tuple[float, ...] = ()
    expansions: tuple[float, ...] = ()
    allocations: tuple[str, ...] = ("uniform",)
    calibrations: tuple[str, ...] = ("wikitext2",)
    divisor: int = 1
    samples: int = PruneSpec.samples
    seq_len: int = PruneSpec.seq_len
    layers: str = "all"
    limit: float | None = None
    fewshot: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    name: str | None = None  # the study's; made up from the settings when absent
    repairs: tuple[str, ...] = ()  # a repaired cut per mode, beside each plain one
    heal_tokens: tuple[int, ...] = ()  # a healed model of every cut per token count
    heal_data: str = "wikitext2"

    def validate(self) -> SweepRequest:
        """Every check that needs no model: each configuration's and the evaluation's own."""
        for what, values in (("scorer", self.scorers), ("percent", self.percents), ("expansion", self.expansions),
                             ("allocation", self.allocations), ("calibration source", self.calibrations),
                             ("task", self.tasks), ("repair", self.repairs),
                             ("heal token count", self.heal_tokens)):  # fmt: skip
            repeated = sorted({str(v) for v in values if values.count(v) > 1})
            if repeated:
                raise UserError(f"{what} {repeated[0]} is named twice")
        if not self.scorers:
            raise UserError("name at least one scorer, e.g. --scorers ppm,wanda")
        if not self.percents and not self.expansions:
            raise UserError("name at least one target: --percent 20,40 and/or --expansion 2.4")
        if not self.allocations:
            raise UserError("name at least one allocation: uniform or global")
        if any(SCORERS.get(s) and SCORERS[s].data_driven for s in self.scorers) and not self.calibrations:
            raise UserError("data-driven scorers need at least one calibration source")
        if self.name is not None:
            check_name(self.name.strip(), "study", may_be_smollm2=True)
        for repair in self.repairs:
            if repair not in REPAIRS:
                raise UserError(f"unknown repair {repair!r}; choose one of {', '.join(REPAIRS)}")
        for spec in self.configurations():
            spec.validate()
        for tokens in self.heal_tokens:
            self.heal_spec("x", tokens).validate()
        self.eval_spec(self.model).validate()
        return self

    def heal_spec(self, model: str, tokens: int) -> HealSpec:
        """The heal of a cut (MODEL as `job:N` or a stored name) that a healed configuration asks for."""
        return HealSpec(model=model, data=self.heal_data, tokens=tokens, device=self.device, dtype=self.dtype)

    def configurations(self) -> list[PruneSpec]:
        """One pruning per combination; a static scorer reads no calibration, so it has one per
        scorer, target and allocation whatever the sources."""
        targets = [("percent", p) for p in self.percents] + [("expansion", x) for x in self.expansions]
        found = []
        for scorer in self.scorers:
            data_driven = scorer in SCORERS and SCORERS[scorer].data_driven
            for allocation in self.allocations:
                for kind, value in targets:
                    for calibration in self.calibrations if data_driven else (None,):
                        for repair in (None, *self.repairs):
                            found.append(PruneSpec(
                                model=self.model, scorer=scorer, divisor=self.divisor, allocation=allocation,
                                layers=self.layers, calibration=calibration if data_driven or repair else None,
                                samples=self.samples, seq_len=self.seq_len, device=self.device, dtype=self.dtype,
                                repair=repair, **{kind: value},
                            ))  # fmt: skip
        return found

    def eval_spec(self, *models: str) -> EvalSpec:
        return EvalSpec(models=models, tasks=self.tasks, limit=self.limit, fewshot=self.fewshot, device=self.device,
                        dtype=self.dtype)  # fmt: skip

    def default_name(self) -> str:
        """E.g. smollm2-ppm+hybrid-p20+40-wikitext2+sms: the base, scorers, targets, sources."""
        targets = []
        if self.percents:
            targets.append("p" + "+".join(f"{p:g}" for p in self.percents))
        if self.expansions:
            targets.append("x" + "+".join(f"{x:g}" for x in self.expansions))
        parts = [_short(self.model), "+".join(self.scorers), *targets]
        if self.allocations != ("uniform",):
            parts.append("+".join(self.allocations))
        if any(SCORERS[s].data_driven for s in self.scorers if s in SCORERS):
            parts.append("+".join(Path(c).stem for c in self.calibrations))
        if self.repairs:
            parts.append("r" + "+".join(self.repairs))
        if self.heal_tokens:
            parts.append("heal" + "+".join(map(str, self.heal_tokens)))
        return "-".join(parts)

    def command(self) -> str:
        """The `workbench sweep` command line that asks for this (defaults left out)."""
        def joined(values: tuple) -> str:
            return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)

        parts = ["workbench sweep", self.model, f"--scorers {joined(self.scorers)}"]
        defaults = SweepRequest(self.model, self.scorers, self.tasks)
        for flag, value, default in (("--percent", self.percents, ()), ("--expansion", self.expansions, ()),
                                     ("--allocation", self.allocations, defaults.allocations),
                                     ("--calibration", self.calibrations, defaults.calibrations),
                                     ("--repair", self.repairs, ()),
                                     ("--heal-tokens", self.heal_tokens, ())):  # fmt: skip
            if value and value != default:
                parts.append(f"{flag} {joined(value)}")
        for flag, value, default in (("--divisor", self.divisor, 1), ("--layers", self.layers, "all"),
                                     ("--heal-data", self.heal_data, defaults.heal_data),
                                     ("--samples", self.samples, defaults.samples),
                                     ("--seq-len", self.seq_len, defaults.seq_len)):  # fmt: skip
            if value != default:
                parts.append(f"{flag} {value}")
        parts.append(f"--tasks {joined(self.tasks)}")
        for flag, value in (("--limit", self.limit), ("--fewshot", self.fewshot)):
            if value is not None:
                parts.append(f"{flag} {value:g}")
        for flag, value in (("--device", self.device), ("--dtype", self.dtype)):
            if value != "auto":
                parts.append(f"{flag} {value}")
        if self.name:
            parts.append(f"--name {self.name}")
        return " ".join(parts)

    @property
    def study_name(self) -> str:
        return (self.name or "").strip() or self.default_name()

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepRequest:
        known = {f.name: f for f in fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**values)


def _short(model: str) -> str:
    path = Path(model)
    return path.stem if path.suffix == ".gguf" else path.name or model


def config_of(spec: PruneSpec) -> dict[str, Any]:
    """The fields that make a configuration: what a finished run records of its request (a plain
    cut's has no `repair` key, so studies made before repair existed keep their keys)."""
    calibrated = spec.calibrated
    config = {
        "scorer": spec.scorer,
        "target_kind": spec.target_kind,
        "target_value": float(spec.target_value),
        "divisor": spec.divisor,
        "allocation": spec.allocation,
        "layers": spec.layers,
        "calibration": source_name(spec.calibration_source) if calibrated else None,  # type: ignore[arg-type]
        "samples": spec.samples if calibrated else None,
        "seq_len": spec.seq_len if calibrated else None,
        "dtype": spec.dtype,
    }
    if spec.repair:
        config["repair"] = spec.repair
    return config


def healed_config(config: dict[str, Any], tokens: int, data: str) -> dict[str, Any]:
    """A cut's configuration healed on `tokens` tokens of `data`."""
    return config | {"heal_tokens": tokens, "heal_data": source_name(data)}


def cut_config(config: dict[str, Any]) -> dict[str, Any]:
    """The cut a configuration starts from: itself, or the cut a healed one healed."""
    return {k: v for k, v in config.items() if k not in HEAL_FIELDS}


def step_text(config: dict[str, Any] | None) -> str:
    """What recovery a configuration had: cut, repair oneshot, heal 65536, repair oneshot + heal 65536."""
    if config is None:
        return ""
    steps = [f"repair {config['repair']}"] if config.get("repair") else []
    if config.get("heal_tokens"):
        steps.append(f"heal {config['heal_tokens']}")
    return " + ".join(steps) or "cut"


def config_key(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


def target_text(config: dict[str, Any]) -> str:
    """20% or x2.4, as tables show a target."""
    if config["target_kind"] == "percent":
        return f"{config['target_value']:g}%"
    return f"x{config['target_value']:g}"


def calibration_text(config: dict[str, Any]) -> str:
    """The calibration source as tables show it: a file by its name alone."""
    source = config.get("calibration")
    if source is None:
        return "-"
    return source if source.startswith("hf:") or "/" not in source else Path(source).name


@dataclass(frozen=True)
class EvalSettings:
    """The settings a study's figures are read at: an evaluation row counts for the study only when
    it was measured this way (the same documents, shots, prompts, data and precision)."""

    limit: float | None
    fewshot: int | None  # as asked: None is each task's default
    chat_template: str
    data: str  # local | hub: where lm-eval's catalogue tasks read their documents
    dtypes: tuple[str, ...]  # what the asked dtype gives on the device
    device_type: str

    @classmethod
    def of(cls, request: SweepRequest, device_type: str, local_data: bool) -> EvalSettings:
        dtypes = AUTO_DTYPES.get(device_type, ()) if request.dtype == "auto" else (request.dtype,)
        return cls(request.limit, request.fewshot, EvalSpec.chat_template, "local" if local_data else "hub",
                   tuple(dtypes), device_type)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"dtypes": list(self.dtypes)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalSettings:
        return cls(data.get("limit"), data.get("fewshot"), data.get("chat_template", "auto"), data.get("data", "local"),
                   tuple(data.get("dtypes", ())), data.get("device_type", "cpu"))  # fmt: skip

    def counts(self, row: EvaluationInfo, task: str, jobs: dict[int, JobInfo]) -> bool:
        """Whether `row` measures `task` (the task asked for itself, not a subtask) this way.
        `jobs` holds the job that made the row, where it has one: its request says the few-shot
        count asked for, which a row records only as lm-eval applied it."""
        if row.task != task or row.dtype not in self.dtypes:
            return False
        if task in DEVICE_BOUND and row.device.split(":")[0] != self.device_type:
            return False
        if row.harness != "lm-eval":
            return True  # the workbench's own measurements have one fixed protocol each
        if row.limit != self.limit or row.settings.get("chat_template_mode", "auto") != self.chat_template:
            return False
        if task in TASKS and row.settings.get("data") != self.data:
            return False
        job = jobs.get(row.job_id) if row.job_id is not None else None
        if job is not None:
            return job.request.get("fewshot") == self.fewshot
        expected = self.fewshot if self.fewshot is not None else (TASKS[task].fewshot if task in TASKS else None)
        return row.fewshot == expected


def is_perplexity(task: str) -> bool:
    return task.startswith(PPL_PREFIX)
