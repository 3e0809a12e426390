"""The queries the TUI and the CLI need, answered with plain frozen dataclasses.

No caller holds a live ORM object or session (elia's way). A read takes a Store (it opens a short
read session) or a Session (to read inside a transaction the caller holds). A write takes a
session from `store.write()`, so that the caller decides what lands in one transaction.

Lists page with `limit` and `offset` (and `count_*` gives the total): a screen asks for a page of
a few hundred rows, which answers in milliseconds on a store with 10,000 runs, where building all
10,000 dataclasses alone takes longer than a screen should wait (see bench/store_queries.py).
Reads run as Core statements on the session's connection: the rows are plain tuples, which skips
the ORM's per-row bookkeeping.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath
from typing import Any

from sqlalchemy import ColumnElement, Float, Result, Select, String, cast, delete, func, or_, select, update
from sqlalchemy.orm import aliased
from sqlmodel import Session

from store import bitset
from store.db import WRITE_SESSION, NotFoundError, Store, StoreError
from store.tables import Evaluation, HealRun, Job, LayerRetention, Model, PruningRun, Study, StudyItem

Source = Store | Session


@dataclass(frozen=True)
class ModelInfo:
    id: int
    name: str
    source: str
    source_ref: str
    family: str
    architecture: str
    num_layers: int
    hidden_size: int
    intermediate_size: int
    intermediate_sizes: tuple[int, ...] | None  # per layer, when they differ
    expansion: float
    parameters: int
    dtype: str
    size_bytes: int
    path: str  # relative to the store's artifacts/ folder: Store.model_path() gives the folder
    parent_id: int | None
    parent_name: str | None
    made_by_run_id: int | None  # the pruning run whose result it is
    eval_count: int  # evaluation rows, older ones included
    created_at: datetime
    tags: tuple[str, ...]
    note: str

    @property
    def widths(self) -> tuple[int, ...]:
        return self.intermediate_sizes or (self.intermediate_size,) * self.num_layers

    @property
    def width_text(self) -> str:
        """The MLP width as views show it: one number, or "per-layer min-max"."""
        if not self.intermediate_sizes:
            return str(self.intermediate_size)
        return f"per-layer {min(self.intermediate_sizes)}-{max(self.intermediate_sizes)}"


@dataclass(frozen=True)
class RunSummary:
    id: int
    status: str
    base_model_id: int
    base_model_name: str
    result_model_id: int | None
    result_model_name: str | None
    scorer: str
    target_kind: str
    target_value: float
    divisor: int
    allocation: str
    layers: str
    calibration_source: str | None
    device: str
    dtype: str
    parameters_before: int | None
    parameters_after: int | None
    error: str | None
    job_id: int | None
    created_at: datetime


@dataclass(frozen=True)
class RetentionInfo:
    layer: int
    original_width: int
    kept_width: int
    percent_kept: float
    kept_score_min: float | None
    kept_score_mean: float | None
    kept_score_max: float | None
    removed_score_min: float | None
    removed_score_mean: float | None
    removed_score_max: float | None
    kept_indices: str  # store.bitset encoding; kept() decodes it
    repair_error_before: float | None = None  # a repaired run's relative reconstruction errors
    repair_error_after: float | None = None
    repair_lambda: float | None = None

    def kept(self) -> list[int]:
        return bitset.decode(self.kept_indices)


@dataclass(frozen=True)
class RunDetail(RunSummary):
    calibration_samples: int | None
    calibration_seq_len: int | None
    calibration_hash: str | None
    versions: dict[str, str]
    stage_seconds: dict[str, float]
    peak_memory_bytes: int | None
    repair: str | None
    repair_damping: float | None
    retention: tuple[RetentionInfo, ...]


@dataclass(frozen=True)
class HealInfo:
    """One heal: the model healed, its teacher, the model it made, and how it went."""

    id: int
    model_id: int
    model_name: str
    teacher_model_id: int
    teacher_name: str
    result_model_id: int | None
    result_name: str | None
    job_id: int | None
    data_source: str
    data_hash: str
    tokens: int
    tokens_seen: int
    passes: float
    steps: int
    seq_len: int
    batch_size: int
    lr: float
    temperature: float
    train: str
    device: str
    dtype: str
    settings: dict[str, Any]
    loss_curve: list[list[float]]  # [step, tokens seen, loss] per optimiser step
    seconds: float | None
    peak_memory_bytes: int | None
    versions: dict[str, str]
    created_at: datetime

    @property
    def ce_weight(self) -> float:
        """The cross-entropy's share of the loss (heals recorded before --ce-weight distilled alone)."""
        return self.settings.get("ce_weight", 0.0)

    @property
    def loss_name(self) -> str:
        return loss_name(self.ce_weight)


def loss_name(ce_weight: float) -> str:
    """What a heal's loss curve measures: the KL divergence, or its mix with the cross-entropy (--ce-weight)."""
    return f"{1 - ce_weight:g} KL + {ce_weight:g} CE" if ce_weight else "KL"


@dataclass(frozen=True)
class EvaluationInfo:
    id: int
    model_id: int
    model_name: str
    job_id: int | None
    harness: str
    harness_version: str
    task: str
    metric: str
    value: float
    stderr: float | None
    samples: int | None
    limit: float | None
    fewshot: int | None
    settings: dict[str, Any]
    device: str
    dtype: str
    seconds: float | None
    created_at: datetime


@dataclass(frozen=True)
class AlignedRow:
    """One (task, metric) across several models: the newest evaluation of each that has one."""

    task: str
    metric: str
    cells: dict[int, EvaluationInfo]  # model id -> its newest evaluation


@dataclass(frozen=True)
class ModelDetail:
    model: ModelInfo
    made_by: RunSummary | None
    children: tuple[ModelInfo, ...]
    runs: tuple[RunSummary, ...]  # runs that pruned it
    evaluations: tuple[EvaluationInfo, ...]  # newest per (task, metric), newest first
    healed_by: HealInfo | None = None  # the heal that made it
    heals: tuple[HealInfo, ...] = ()  # heals of it
    lineage: tuple[ModelInfo, ...] = ()  # its ancestors, root first (base -> pruned -> ...), itself last


@dataclass(frozen=True)
class Recorded:
    run_id: int
    model_id: int


@dataclass(frozen=True)
class Removal:
    """What `remove_model` removed; the lists are empty unless it was forced."""

    model: ModelInfo
    folder_removed: bool
    runs_deleted: tuple[int, ...]  # runs that pruned it, with their retention rows
    runs_detached: tuple[int, ...]  # the run that made it, kept with no result model
    evaluations_deleted: int
    children_detached: tuple[str, ...]  # its child models, kept with no parent


@contextmanager
def _reading(source: Source) -> Iterator[Session]:
    if isinstance(source, Session):
        yield source
    else:
        with source.session() as session:
            yield session


def _rows(session: Session, stmt: Select[Any]) -> Result[Any]:
    return session.connection().execute(stmt)


def _require_write(session: Session) -> None:
    if not session.info.get(WRITE_SESSION):
        raise ValueError("writes need a session from store.write() (it begins with the write lock)")


def _matches_words(
    session: Session, text: str, columns: Sequence[ColumnElement[Any]]
) -> list[ColumnElement[bool]]:
    """One condition per word of the filter text: the word is in one of the columns, in any case.
    SQLite's LIKE already ignores (ASCII) case, at half the cost of lower() on every value."""
    if session.get_bind().dialect.name == "sqlite":
        return [or_(*(c.contains(word, autoescape=True) for c in columns)) for word in text.split()]
    return [or_(*(c.icontains(word, autoescape=True) for c in columns)) for word in text.split()]


def _page(
    session: Session,
    rows: Select[Any],
    ids: Select[Any],
    matching: Sequence[ColumnElement[bool]],
    order: Sequence[Any],
    limit: int | None,
    offset: int,
    page_order: Sequence[Any] | None = None,
) -> Result[Any]:
    """The `rows` that match, in this order, cut to a page. A page is cut from the ids alone and
    then only its rows are fetched: sorting narrow (id, key) rows and joining names for one page
    is several times cheaper than sorting the whole rows of 10,000 runs. `page_order`, when given,
    is the same order said in terms of `ids`."""
    if limit is None and not offset:
        return _rows(session, rows.where(*matching).order_by(*order))
    page = ids.where(*matching).order_by(*(page_order or order)).limit(limit).offset(offset).correlate(None)
    return _rows(session, rows.where(rows.selected_columns[0].in_(page)).order_by(*order))


def sort_order(key: ColumnElement[Any], descending: bool) -> ColumnElement[Any]:
    """A sort on `key` with rows lacking a value (NULL) first, or last when descending: SQLite's
    way, which PostgreSQL reverses. Said only for what may be NULL (an expression, a nullable
    column, a column of an outer-joined table), so a sort on a NOT NULL column can still walk its
    index."""
    try:
        may_be_null = key.parent.is_aliased_class or key.nullable  # type: ignore[attr-defined]
    except AttributeError:
        may_be_null = True
    if descending:
        return key.desc().nulls_last() if may_be_null else key.desc()
    return key.asc().nulls_first() if may_be_null else key.asc()


# Models -----------------------------------------------------------------------------------------

_parent = aliased(Model)
_made_by = (
    select(PruningRun.id)
    .where(PruningRun.result_model_id == Model.id)
    .order_by(PruningRun.id)
    .limit(1)
    .correlate(Model)
    .scalar_subquery()
    .label("made_by_run_id")
)
_eval_count = (
    select(func.count(Evaluation.id))
    .where(Evaluation.model_id == Model.id)
    .correlate(Model)
    .scalar_subquery()
    .label("eval_count")
)
MODEL_SORTS: dict[str, ColumnElement[Any]] = {
    "name": Model.name,
    "id": Model.id,
    "created": Model.created_at,
    "family": Model.family,
    "layers": Model.num_layers,
    "params": Model.parameters,
    "expansion": Model.expansion,
    "size": Model.size_bytes,
    "evals": _eval_count,
    "hidden": Model.hidden_size,
    "intermediate": Model.intermediate_size,
    "parent": _parent.name,
}


def _models_select() -> Select[Any]:
    return select(
        Model.id, Model.name, Model.source, Model.source_ref, Model.family, Model.architecture,
        Model.num_layers, Model.hidden_size, Model.intermediate_size, Model.intermediate_sizes,
        Model.expansion, Model.parameters, Model.dtype, Model.size_bytes, Model.path,
        Model.parent_id, _parent.name.label("parent_name"), _made_by, _eval_count,
        Model.created_at, Model.tags, Model.note,
    ).outerjoin(_parent, _parent.id == Model.parent_id)  # fmt: skip


def _model_info(row: Any) -> ModelInfo:
    # Positional, in _models_select's order: the JSON lists become tuples.
    sizes, tags = row[9], row[20]
    return ModelInfo(*row[:9], tuple(sizes) if sizes else None, *row[10:20], tuple(tags), row[21])


def _models_matching(session: Session, text: str) -> list[ColumnElement[bool]]:
    """Every word of `text` is in the name, family, architecture, source or tags."""
    searched = [Model.name, Model.family, Model.architecture, Model.source, cast(Model.tags, String)]
    return _matches_words(session, text, searched)


def list_models(
    source: Source,
    text: str = "",
    *,
    sort: str = "name",
    descending: bool = False,
    limit: int | None = None,
    offset: int = 0,
) -> list[ModelInfo]:
    """Models whose name, family, architecture, source or tags hold every word of `text`."""
    key = MODEL_SORTS[sort]
    order = (sort_order(key, descending), Model.id)
    ids, page_order = select(Model.id), None
    if sort == "parent":  # only then does the page need the parent's name
        ids = ids.outerjoin(_parent, _parent.id == Model.parent_id)
    with _reading(source) as session:
        if sort == "evals" and session.get_bind().dialect.name != "sqlite":
            # Every model's count in one grouped scan, not one lookup per model: 2x faster on
            # PostgreSQL, a third slower in SQLite (bench/store_queries.py, 9,500 models).
            counts = select(Evaluation.model_id, func.count().label("n")).group_by(Evaluation.model_id).subquery()
            ids = ids.outerjoin(counts, counts.c.model_id == Model.id)
            page_order = (sort_order(func.coalesce(counts.c.n, 0), descending), Model.id)
        matching = _models_matching(session, text)
        rows = _page(session, _models_select(), ids, matching, order, limit, offset, page_order)
        return [_model_info(r) for r in rows]


def count_models(source: Source, text: str = "") -> int:
    """How many models list_models(text) lists in all."""
    with _reading(source) as session:
        return session.scalar(select(func.count(Model.id)).where(*_models_matching(session, text))) or 0


def find_model(source: Source, ref: str | int) -> ModelInfo | None:
    """The model named `ref`, else (when it is a number) the one with that id."""
    stmt = _models_select()
    with _reading(source) as session:
        row = _rows(session, stmt.where(Model.name == str(ref))).first()
        if row is None and str(ref).isdigit():
            row = _rows(session, stmt.where(Model.id == int(ref))).first()
    return None if row is None else _model_info(row)


def get_model(source: Source, ref: str | int) -> ModelInfo:
    model = find_model(source, ref)
    if model is None:
        raise NotFoundError(f"no model named {str(ref)!r} in the store")
    return model


def model_by_source(source: Source, kind: str, ref: str) -> ModelInfo | None:
    """The first model imported from this source (kind as Model.source, ref as Model.source_ref)."""
    stmt = _models_select().where(Model.source == kind, Model.source_ref == ref).order_by(Model.id).limit(1)
    with _reading(source) as session:
        row = _rows(session, stmt).first()
    return None if row is None else _model_info(row)


def unique_model_name(source: Source, name: str) -> str:
    """`name` if no model has it, else the first free of name-2, name-3, ..."""
    with _reading(source) as session:
        taken = set(session.scalars(select(Model.name).where(Model.name.startswith(name, autoescape=True))))
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def children(source: Source, model_id: int) -> list[ModelInfo]:
    stmt = _models_select().where(Model.parent_id == model_id).order_by(Model.created_at, Model.id)
    with _reading(source) as session:
        return [_model_info(r) for r in _rows(session, stmt)]


def model_detail(source: Source, ref: str | int) -> ModelDetail:
    """A model with its lineage (parent, the run that made it, children, the runs that pruned it)
    and its newest evaluations."""
    with _reading(source) as session:
        model = get_model(session, ref)
        made_by = run_summary(session, model.made_by_run_id) if model.made_by_run_id else None
        healed_by = list_heals(session, result=model.id)
        return ModelDetail(
            model=model,
            made_by=made_by,
            children=tuple(children(session, model.id)),
            runs=tuple(list_runs(session, base=model.id)),
            evaluations=tuple(evaluations(session, [model.id])),
            healed_by=healed_by[0] if healed_by else None,
            heals=tuple(list_heals(session, model=model.id)),
            lineage=tuple(lineage(session, model)),
        )


def lineage(source: Source, model: ModelInfo) -> list[ModelInfo]:
    """The model's ancestors, root first, and the model itself last."""
    chain = [model]
    with _reading(source) as session:
        while chain[0].parent_id is not None and len(chain) < 100:
            parent = find_model(session, chain[0].parent_id)
            if parent is None or parent.id in {m.id for m in chain}:
                break
            chain.insert(0, parent)
    return chain


# Runs -------------------------------------------------------------------------------------------

_base = aliased(Model)
_result = aliased(Model)
RUN_SORTS: dict[str, ColumnElement[Any]] = {
    "created": PruningRun.created_at,
    "id": PruningRun.id,
    "scorer": PruningRun.scorer,
    "base": _base.name,
    "target": PruningRun.target_value,
    "params": PruningRun.parameters_after,
    "status": PruningRun.status,
    "result": _result.name,
    "allocation": PruningRun.allocation,
    "calibration": PruningRun.calibration_source,
    "divisor": PruningRun.divisor,
    # The share of parameters removed (NULL for a failed run).
    "removed": (PruningRun.parameters_before - PruningRun.parameters_after)
    / cast(PruningRun.parameters_before, Float),
}
_NAMED_SORTS = ("base", "result")
RUN_STATUSES = ("done", "failed")
_SUMMARY_COLUMNS = (
    PruningRun.id, PruningRun.status, PruningRun.base_model_id, _base.name.label("base_model_name"),
    PruningRun.result_model_id, _result.name.label("result_model_name"), PruningRun.scorer,
    PruningRun.target_kind, PruningRun.target_value, PruningRun.divisor, PruningRun.allocation,
    PruningRun.layers, PruningRun.calibration_source, PruningRun.device, PruningRun.dtype,
    PruningRun.parameters_before, PruningRun.parameters_after, PruningRun.error, PruningRun.job_id,
    PruningRun.created_at,
)  # fmt: skip
_DETAIL_COLUMNS = (
    PruningRun.calibration_samples, PruningRun.calibration_seq_len, PruningRun.calibration_hash,
    PruningRun.versions, PruningRun.stage_seconds, PruningRun.peak_memory_bytes, PruningRun.repair,
    PruningRun.repair_damping,
)  # fmt: skip


def _with_names(stmt: Select[Any]) -> Select[Any]:
    # Outer joins both (a run always has its base), so that a count or a page of ids can go
    # without them when nothing there reads a name.
    return stmt.outerjoin(_base, _base.id == PruningRun.base_model_id).outerjoin(
        _result, _result.id == PruningRun.result_model_id
    )


def _runs_select(*extra: Any) -> Select[Any]:
    return _with_names(select(*_SUMMARY_COLUMNS, *extra))


def _runs_matching(
    session: Session, text: str, scorer: str | None, base: str | int | None, status: str | None
) -> list[ColumnElement[bool]]:
    searched = [
        PruningRun.scorer, _base.name, _result.name, PruningRun.allocation, PruningRun.layers,
        PruningRun.calibration_source, PruningRun.status, PruningRun.error,
    ]  # fmt: skip
    conditions = _matches_words(session, text, searched)
    if scorer is not None:
        conditions.append(PruningRun.scorer == scorer)
    if status is not None:
        conditions.append(PruningRun.status == status)
    if base is not None:
        conditions.append(PruningRun.base_model_id == get_model(session, base).id)
    return conditions


def list_runs(
    source: Source,
    text: str = "",
    *,
    scorer: str | None = None,
    base: str | int | None = None,
    status: str | None = None,
    sort: str = "created",
    descending: bool = True,
    limit: int | None = None,
    offset: int = 0,
) -> list[RunSummary]:
    """Runs, newest first unless sorted otherwise. `base` is a model name or id (NotFoundError if
    there is none); every word of `text` must be in the scorer, a model name, the allocation,
    the layers, the calibration source, the status or the error."""
    key = RUN_SORTS[sort]
    order = (sort_order(key, descending), PruningRun.id.desc() if descending else PruningRun.id.asc())
    with _reading(source) as session:
        matching = _runs_matching(session, text, scorer, base, status)
        ids = select(PruningRun.id)
        if text.split() or sort in _NAMED_SORTS:  # only then does the page need the model names
            ids = _with_names(ids)
        return [RunSummary(*r) for r in _page(session, _runs_select(), ids, matching, order, limit, offset)]


def count_runs(
    source: Source,
    text: str = "",
    *,
    scorer: str | None = None,
    base: str | int | None = None,
    status: str | None = None,
) -> int:
    """How many runs list_runs lists in all with these filters."""
    with _reading(source) as session:
        stmt = select(func.count()).select_from(PruningRun)
        if text.split():  # the words may be in the model names
            stmt = _with_names(stmt)
        return session.scalar(stmt.where(*_runs_matching(session, text, scorer, base, status))) or 0


def run_summary(source: Source, run_id: int) -> RunSummary:
    with _reading(source) as session:
        row = _rows(session, _runs_select().where(PruningRun.id == run_id)).first()
    if row is None:
        raise NotFoundError(f"no run {run_id} in the store")
    return RunSummary(*row)


def run_detail(source: Source, run_id: int) -> RunDetail:
    """A run's whole configuration, how it went, and its retention rows."""
    with _reading(source) as session:
        row = _rows(session, _runs_select(*_DETAIL_COLUMNS).where(PruningRun.id == run_id)).first()
        if row is None:
            raise NotFoundError(f"no run {run_id} in the store")
        return RunDetail(*row, retention=tuple(retention(session, run_id)))


def retention(source: Source, run_id: int) -> list[RetentionInfo]:
    """A run's per-layer retention rows, by layer (kept indices decode on demand)."""
    c = LayerRetention
    stmt = (
        select(
            c.layer, c.original_width, c.kept_width, c.percent_kept, c.kept_score_min,
            c.kept_score_mean, c.kept_score_max, c.removed_score_min, c.removed_score_mean,
            c.removed_score_max, c.kept_indices, c.repair_error_before, c.repair_error_after, c.repair_lambda,
        )  # fmt: skip
        .where(c.run_id == run_id)
        .order_by(c.layer)
    )
    with _reading(source) as session:
        return [RetentionInfo(*r) for r in _rows(session, stmt)]


def record_run(
    session: Session,
    run: PruningRun,
    retention_rows: Iterable[LayerRetention],
    result_model: Model,
) -> Recorded:
    """Add a finished run, its retention rows and the model it made, in the caller's transaction
    (a session from `store.write()`: nothing is visible until it commits, all of it then).

    The result model may already be added (and flushed) in that session. Its parent becomes the
    run's base model, and the run points at it.
    """
    _require_write(session)
    result_model.parent_id = run.base_model_id
    session.add(result_model)
    session.flush()
    run.result_model_id = result_model.id
    run.status = "done"
    run.error = None
    run_id = _add_run(session, run)
    for row in retention_rows:
        row.run_id = run_id
        session.add(row)
    session.flush()
    assert result_model.id is not None
    return Recorded(run_id, result_model.id)


def record_failed_run(session: Session, run: PruningRun, error: str) -> int:
    """Add a run that made no model, with the one-line error that stopped it; returns its id."""
    _require_write(session)
    run.result_model_id = None
    run.status = "failed"
    run.error = error
    return _add_run(session, run)


def _add_run(session: Session, run: PruningRun) -> int:
    session.add(run)
    session.flush()
    assert run.id is not None
    return run.id


# Heals ------------------------------------------------------------------------------------------

_student = aliased(Model)
_teacher = aliased(Model)
_healed = aliased(Model)


def _heals_select() -> Select[Any]:
    h = HealRun
    return (
        select(
            h.id, h.model_id, _student.name, h.teacher_model_id, _teacher.name, h.result_model_id, _healed.name,
            h.job_id, h.data_source, h.data_hash, h.tokens, h.tokens_seen, h.passes, h.steps, h.seq_len,
            h.batch_size, h.lr, h.temperature, h.train, h.device, h.dtype, h.settings, h.loss_curve, h.seconds,
            h.peak_memory_bytes, h.versions, h.created_at,
        )  # fmt: skip
        .outerjoin(_student, _student.id == h.model_id)
        .outerjoin(_teacher, _teacher.id == h.teacher_model_id)
        .outerjoin(_healed, _healed.id == h.result_model_id)
    )


def list_heals(
    source: Source, *, model: int | None = None, result: int | None = None, limit: int | None = None
) -> list[HealInfo]:
    """Heals, newest first: of model id `model`, or the one that made model id `result`."""
    stmt = _heals_select().order_by(HealRun.id.desc()).limit(limit)
    if model is not None:
        stmt = stmt.where(HealRun.model_id == model)
    if result is not None:
        stmt = stmt.where(HealRun.result_model_id == result)
    with _reading(source) as session:
        return [HealInfo(*r) for r in _rows(session, stmt)]


def get_heal(source: Source, heal_id: int) -> HealInfo:
    with _reading(source) as session:
        row = _rows(session, _heals_select().where(HealRun.id == heal_id)).first()
    if row is None:
        raise NotFoundError(f"no heal {heal_id} in the store")
    return HealInfo(*row)


def record_heal(session: Session, heal: HealRun, result_model: Model) -> int:
    """Add a finished heal and the model it made (its parent: the model healed), in the caller's
    write transaction; the heal's id."""
    _require_write(session)
    result_model.parent_id = heal.model_id
    session.add(result_model)
    session.flush()
    heal.result_model_id = result_model.id
    session.add(heal)
    session.flush()
    assert heal.id is not None
    return heal.id


# Evaluations ------------------------------------------------------------------------------------


def add_evaluations(session: Session, rows: Iterable[Evaluation]) -> list[int]:
    """Add evaluation rows in the caller's write transaction; returns their ids."""
    _require_write(session)
    rows = list(rows)
    session.add_all(rows)
    session.flush()
    return [r.id for r in rows if r.id is not None]


def evaluations(
    source: Source, model_ids: Sequence[int] | None = None, *, all_rows: bool = False
) -> list[EvaluationInfo]:
    """Evaluations of these models (of all, given None), newest first: only the newest of each
    (model, task, metric) unless `all_rows`."""
    e = Evaluation
    stmt = select(
        e.id, e.model_id, Model.name, e.job_id, e.harness, e.harness_version, e.task, e.metric,
        e.value, e.stderr, e.samples, e.limit, e.fewshot, e.settings, e.device, e.dtype, e.seconds,
        e.created_at,
    ).join(Model, Model.id == e.model_id)  # fmt: skip
    if model_ids is not None:
        stmt = stmt.where(e.model_id.in_(model_ids))
    if not all_rows:
        rank = (
            func.row_number()
            .over(partition_by=(e.model_id, e.task, e.metric), order_by=(e.created_at.desc(), e.id.desc()))
            .label("rank")
        )
        ranked = select(e.id, rank)
        if model_ids is not None:
            ranked = ranked.where(e.model_id.in_(model_ids))
        newest = ranked.subquery()
        stmt = stmt.join(newest, newest.c.id == e.id).where(newest.c.rank == 1)
    stmt = stmt.order_by(e.created_at.desc(), e.id.desc())
    with _reading(source) as session:
        return [EvaluationInfo(*r) for r in _rows(session, stmt)]


def aligned_evaluations(source: Source, model_ids: Sequence[int]) -> list[AlignedRow]:
    """Rows by (task, metric), sorted, each with the newest evaluation of every model that has it:
    the side-by-side comparison table."""
    rows: dict[tuple[str, str], dict[int, EvaluationInfo]] = {}
    for ev in evaluations(source, model_ids):
        rows.setdefault((ev.task, ev.metric), {})[ev.model_id] = ev
    return [AlignedRow(task, metric, cells) for (task, metric), cells in sorted(rows.items())]


# Removing a model -------------------------------------------------------------------------------


def remove_model(store: Store, ref: str | int, *, force: bool = False) -> Removal:
    """Remove a model's row and then its files.

    Refused (StoreError naming them) while anything depends on it: the run that made it, runs
    that pruned it, its evaluations, its child models. With `force`, in one transaction: the runs
    that pruned it and their retention rows are deleted (a run cannot outlive its base model),
    its evaluations are deleted, and the rest is kept with the link cut: the run that made it
    stays in the history with no result model, and its children stay, with no parent. The
    folder goes after the commit; a crash in between leaves an orphan that `check --fix` removes.
    """
    with store.write() as session:
        model = get_model(session, ref)
        if busy := jobs_using(session, model):
            ids = ", ".join(map(str, busy))
            raise StoreError(
                f"model {model.name!r} is in use by job {ids} (queued or running): `workbench jobs cancel "
                f"{busy[0]}` first, or wait for it to end"
            )
        made_by = tuple(session.scalars(select(PruningRun.id).where(PruningRun.result_model_id == model.id)))
        pruned_by = tuple(session.scalars(select(PruningRun.id).where(PruningRun.base_model_id == model.id)))
        evals = session.scalar(select(func.count(Evaluation.id)).where(Evaluation.model_id == model.id)) or 0
        kids = tuple(session.scalars(select(Model.name).where(Model.parent_id == model.id).order_by(Model.id)))
        healed_from = tuple(session.scalars(select(HealRun.id).where(
            or_(HealRun.model_id == model.id, HealRun.teacher_model_id == model.id))))
        needed = _dependants(made_by, pruned_by, evals, kids, healed_from)
        if needed and not force:
            raise StoreError(
                f"model {model.name!r} is still needed: {needed}. Remove those first, or force it "
                "(deletes the runs that pruned it and its evaluations, unlinks the rest)"
            )
        # Studies keep their history: what pointed at the model or its deleted runs points nowhere.
        session.execute(update(Study).where(Study.base_model_id == model.id).values(base_model_id=None))
        session.execute(update(StudyItem).where(StudyItem.run_id.in_(pruned_by)).values(run_id=None))
        session.execute(update(StudyItem).where(StudyItem.heal_id.in_(healed_from)).values(heal_id=None))
        session.execute(delete(HealRun).where(HealRun.id.in_(healed_from)))
        session.execute(update(HealRun).where(HealRun.result_model_id == model.id).values(result_model_id=None))
        session.execute(delete(LayerRetention).where(LayerRetention.run_id.in_(pruned_by)))
        session.execute(delete(PruningRun).where(PruningRun.id.in_(pruned_by)))
        session.execute(update(PruningRun).where(PruningRun.id.in_(made_by)).values(result_model_id=None))
        session.execute(delete(Evaluation).where(Evaluation.model_id == model.id))
        session.execute(update(Model).where(Model.parent_id == model.id).values(parent_id=None))
        session.execute(delete(Model).where(Model.id == model.id))
        shared = session.scalar(select(func.count(Model.id)).where(Model.path == model.path))
    folder = store.model_path(model).resolve()
    # Never outside artifacts/, never a folder another row still names.
    inside = folder.is_relative_to(store.artifacts.resolve()) and folder != store.artifacts.resolve()
    removed = not shared and inside and folder.is_dir()
    if removed:
        shutil.rmtree(folder)
    return Removal(model, removed, pruned_by, made_by, evals, kids)


def jobs_using(session: Session, model: ModelInfo) -> list[int]:
    """The queued or running jobs whose request names this model: by name, id, the source it was
    imported from, or `job:N` for the job that made it."""
    using = []
    live = select(Job.id, Job.spec).where(Job.status.in_(("queued", "running"))).order_by(Job.id)
    for id_, spec in session.execute(live).all():
        request = (spec or {}).get("request", {})
        refs = [str(r) for r in (request.get("model"), request.get("source"), *(request.get("models") or [])) if r]
        if any(_names(session, ref, spec.get("cwd") or "/", model) for ref in refs):
            using.append(id_)
    return using


def _names(session: Session, ref: str, cwd: str, model: ModelInfo) -> bool:
    if ref in (model.name, str(model.id)):
        return True
    if model.source_ref and model.source_ref in (ref, PurePath(cwd, ref).as_posix()):  # a path, as the job reads it
        return True
    if ref.startswith("job:") and ref[4:].isdigit():
        result = session.scalar(select(Job.result).where(Job.id == int(ref[4:]), Job.status == "done"))
        return isinstance(result, dict) and result.get("model_id") == model.id
    return False


def _dependants(
    made_by: Sequence[int], pruned_by: Sequence[int], evals: int, kids: Sequence[str], heals: Sequence[int] = ()
) -> str:
    parts = []
    if made_by:
        parts.append(f"run {', '.join(map(str, made_by))} made it")
    if pruned_by:
        parts.append(f"{_plural(len(pruned_by), 'run')} pruned it ({', '.join(map(str, pruned_by))})")
    if evals:
        parts.append(f"{_plural(evals, 'evaluation')}")
    if kids:
        parts.append(f"{_plural(len(kids), 'child model')} ({', '.join(kids)})")
    if heals:
        parts.append(f"{_plural(len(heals), 'heal')} read it ({', '.join(map(str, heals))})")
    return "; ".join(parts)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
