"""The store's tables. Every change to them comes with an Alembic migration (store/migrations).

JSON columns hold small structured values (per-layer widths, stage times, versions, settings);
anything a view filters or sorts on is a plain column. A row id inside a JSON value sits under a
key named after what it points at (`model_id`, `run_id`, `job_id`, `evaluation_ids`), or in a
`job:N` model reference: `store copy --merge` renumbers those with the rows (store/copy.py).
Counts of parameters and bytes are BIGINT: PostgreSQL's INTEGER stops at 2^31.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    # Aware: sqlmodel's datetime columns refuse naive values, and read back in UTC.
    return datetime.now(UTC)


class Model(SQLModel, table=True):
    """A model the store holds: imported (bundled, folder, GGUF, hub) or made by a pruning run."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    source: str  # bundled | folder | gguf | hub | pruned | healed
    source_ref: str = ""  # what it was imported from (path, hub id, "smollm2"); empty for pruned
    family: str  # config.model_type, e.g. "llama"
    architecture: str  # e.g. "LlamaForCausalLM"
    num_layers: int
    hidden_size: int
    intermediate_size: int  # the widest MLP layer
    intermediate_sizes: list[int] | None = Field(default=None, sa_column=Column(JSON))  # per layer, when they differ
    expansion: float  # mean intermediate width / hidden size
    parameters: int = Field(sa_type=BigInteger)
    dtype: str
    size_bytes: int = Field(sa_type=BigInteger)
    path: str  # folder of its files, relative to the store's artifacts/ folder
    parent_id: int | None = Field(default=None, foreign_key="model.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)
    tags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    note: str = ""


class PruningRun(SQLModel, table=True):
    """One pruning of a base model: its full configuration, how it went, and what it made."""

    id: int | None = Field(default=None, primary_key=True)
    base_model_id: int = Field(foreign_key="model.id", index=True)
    result_model_id: int | None = Field(default=None, foreign_key="model.id", index=True)
    job_id: int | None = Field(default=None, foreign_key="job.id")
    scorer: str = Field(index=True)
    target_kind: str  # percent | expansion
    target_value: float
    divisor: int
    allocation: str  # uniform | global
    layers: str  # the layer selection as given, e.g. "all" or "0-9,20"
    calibration_source: str | None = None
    calibration_samples: int | None = None
    calibration_seq_len: int | None = None
    calibration_hash: str | None = None  # sha256 of the calibration token ids
    repair: str | None = None  # None | oneshot | sequential: down_proj refit on calibration activations
    repair_damping: float | None = None  # lambda over the mean diagonal of G[K, K]
    device: str
    dtype: str
    versions: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    stage_seconds: dict[str, float] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    peak_memory_bytes: int | None = Field(default=None, sa_type=BigInteger)
    parameters_before: int | None = Field(default=None, sa_type=BigInteger)
    parameters_after: int | None = Field(default=None, sa_type=BigInteger)
    status: str = "done"  # done | failed
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow, index=True)


class LayerRetention(SQLModel, table=True):
    """How much of one layer's MLP a run kept, and how the kept and removed neurons scored."""

    __table_args__ = (Index("ix_layerretention_run_layer", "run_id", "layer", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="pruningrun.id")
    layer: int
    original_width: int
    kept_width: int
    percent_kept: float
    kept_score_min: float | None = None
    kept_score_mean: float | None = None
    kept_score_max: float | None = None
    removed_score_min: float | None = None
    removed_score_mean: float | None = None
    removed_score_max: float | None = None
    kept_indices: str  # store.bitset encoding of the kept neuron indices
    # A repaired run's relative reconstruction error of the layer on its calibration tokens,
    # plain cut and repaired, and the absolute damping its refit used.
    repair_error_before: float | None = None
    repair_error_after: float | None = None
    repair_lambda: float | None = None


class HealRun(SQLModel, table=True):
    """One healing of a model: distillation from a teacher on a text source, and the model it made.
    Only a finished heal is recorded (a failed or cancelled one leaves its job row alone)."""

    id: int | None = Field(default=None, primary_key=True)
    model_id: int = Field(foreign_key="model.id", index=True)  # the model healed (the student)
    teacher_model_id: int = Field(foreign_key="model.id")
    result_model_id: int | None = Field(default=None, foreign_key="model.id", index=True)
    job_id: int | None = Field(default=None, foreign_key="job.id")
    data_source: str  # a text source; heal reads its calibration part only
    data_hash: str  # sha256 of the token ids of its windows
    tokens: int = Field(sa_type=BigInteger)  # asked for
    tokens_seen: int = Field(sa_type=BigInteger)
    passes: float  # tokens seen over the tokens the source holds
    steps: int
    seq_len: int
    batch_size: int
    lr: float
    temperature: float
    train: str  # all | mlp | lora:RANK
    device: str
    dtype: str
    settings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))  # the rest
    loss_curve: list[list[float]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    seconds: float | None = None
    peak_memory_bytes: int | None = Field(default=None, sa_type=BigInteger)
    versions: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, index=True)


class Evaluation(SQLModel, table=True):
    """One metric of one evaluation of one model, keyed exactly as the harness names it."""

    __table_args__ = (Index("ix_evaluation_model_task_metric", "model_id", "task", "metric"),)

    id: int | None = Field(default=None, primary_key=True)
    model_id: int = Field(foreign_key="model.id")
    job_id: int | None = Field(default=None, foreign_key="job.id")
    harness: str  # lm-eval | workbench
    harness_version: str
    task: str
    metric: str  # e.g. "acc_norm,none" or "exact_match,flexible-extract"
    value: float
    stderr: float | None = None
    samples: int | None = None
    limit: float | None = None
    fewshot: int | None = None
    settings: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    device: str
    dtype: str
    seconds: float | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Job(SQLModel, table=True):
    """A unit of background work (a pruning, an evaluation, an import) and where it stands."""

    id: int | None = Field(default=None, primary_key=True)
    kind: str  # prune | eval | import
    spec: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="queued", index=True)  # queued|running|done|failed|cancelled|interrupted
    stage: str = ""
    progress: float = 0.0  # 0..1 over the whole job
    message: str = ""
    eta_seconds: float | None = None
    cancel_requested: bool = False
    pid: int | None = None  # the process doing the work: a job process, or a CLI running it in the foreground
    host: str | None = None
    device: str | None = None  # where it runs, e.g. "cuda:0", once the job process has resolved "auto"
    # The job process's peak so far: allocated device memory on CUDA, else its resident set.
    peak_memory_bytes: int | None = Field(default=None, sa_type=BigInteger)
    heartbeat_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    log_path: str | None = None  # relative to the store folder
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # Claimed only once this job is done; its failing (or being cancelled) fails this one.
    after_job_id: int | None = Field(default=None, foreign_key="job.id")


class Study(SQLModel, table=True):
    """A named sweep over scorers, targets and calibration sources of one base model."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    base_model: str  # MODEL as the sweep named it (a stored name, smollm2, a folder...)
    base_model_id: int | None = Field(default=None, foreign_key="model.id")  # None until it is imported
    request: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))  # the latest
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class StudyItem(SQLModel, table=True):
    """What a study asked for: one configuration's pruning (a job, or a finished run reused), one
    evaluation job of a configuration's model (`key` "base" for the base model), or the import
    of the base model."""

    __table_args__ = (Index("ix_studyitem_study_key", "study_id", "key"),)

    id: int | None = Field(default=None, primary_key=True)
    study_id: int = Field(foreign_key="study.id")
    key: str  # the configuration, as canonical JSON; "base" for the base model
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    role: str  # import | prune | heal | eval
    job_id: int | None = Field(default=None, foreign_key="job.id")
    run_id: int | None = Field(default=None, foreign_key="pruningrun.id")  # a finished run reused
    heal_id: int | None = Field(default=None, foreign_key="healrun.id")  # a finished heal reused
    created_at: datetime = Field(default_factory=utcnow)


class Setting(SQLModel, table=True):
    """A setting of the whole store, kept in its database: where a URL store keeps its files
    (`files`) and the id the `store-id` file there holds (`store_id`); see store.db."""

    key: str = Field(primary_key=True)
    value: str
