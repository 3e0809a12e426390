"""Studies: a named sweep of one base model and what it asked for (store.tables.Study, StudyItem).

Read as plain frozen dataclasses, like store.queries; writes take a session from `store.write()`
so that a sweep records its study, its items and their jobs in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, distinct, exists, func, not_, select, true, update
from sqlalchemy.orm import aliased
from sqlmodel import Session

from store.db import NotFoundError
from store.jobs import JobInfo, jobs_by_id
from store.queries import (
    HealInfo,
    RunSummary,
    Source,
    _heals_select,
    _matches_words,
    _reading,
    _require_write,
    _rows,
    _runs_select,
    sort_order,
)
from store.tables import HealRun, Job, PruningRun, Study, StudyItem, utcnow

ROLES = ("import", "prune", "heal", "eval")
BASE_KEY = "base"  # the item key of the base model's evaluations (and its import)
FAILED = ("failed", "cancelled", "interrupted")


@dataclass(frozen=True)
class StudyInfo:
    id: int
    name: str
    base_model: str  # MODEL as the sweep named it
    base_model_id: int | None  # None while its import is pending
    request: dict[str, Any]  # the latest sweep request
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StudySummary(StudyInfo):
    """A study with its counts, as the list shows it."""

    configurations: int
    jobs: int  # less those that ended badly and were queued again since
    done: int
    running: int
    queued: int
    failed: int  # failed, cancelled or interrupted, and not queued again since

    @property
    def status(self) -> str:
        if self.running or self.queued:
            return "running" if self.running else "queued"
        return "failed" if self.failed else "done"


@dataclass(frozen=True)
class StudyItemInfo:
    id: int
    study_id: int
    key: str  # canonical JSON of the configuration; "base" for the base model
    config: dict[str, Any]
    role: str  # import | prune | heal | eval
    job_id: int | None
    run_id: int | None  # a finished run reused
    created_at: datetime
    heal_id: int | None = None  # a finished heal reused


_STUDY = (Study.id, Study.name, Study.base_model, Study.base_model_id, Study.request, Study.created_at,
          Study.updated_at)  # fmt: skip
_ITEM = (StudyItem.id, StudyItem.study_id, StudyItem.key, StudyItem.config, StudyItem.role, StudyItem.job_id,
         StudyItem.run_id, StudyItem.created_at, StudyItem.heal_id)  # fmt: skip


_later = aliased(StudyItem)
# A job that ended badly and was queued again (a later item of the same configuration and role)
# is history: the study's counts leave it out.
_SUPERSEDED = and_(Job.status.in_(FAILED), exists().where(
    _later.study_id == StudyItem.study_id, _later.key == StudyItem.key, _later.role == StudyItem.role,
    _later.id > StudyItem.id, _later.job_id.is_not(None),
))  # fmt: skip


def _job_count(*statuses: str) -> Any:
    stmt = (
        select(func.count(Job.id))
        .join(StudyItem, StudyItem.job_id == Job.id)
        .where(StudyItem.study_id == Study.id, not_(_SUPERSEDED))
    )
    if statuses:
        stmt = stmt.where(Job.status.in_(statuses))
    return stmt.correlate(Study).scalar_subquery()


_SUMMARY = (
    *_STUDY,
    select(func.count(distinct(StudyItem.key)))
    .where(StudyItem.study_id == Study.id, StudyItem.role == "prune")
    .correlate(Study)
    .scalar_subquery(),
    _job_count(),
    _job_count("done"),
    _job_count("running"),
    _job_count("queued"),
    _job_count(*FAILED),
)
STUDY_SORTS: dict[str, ColumnElement[Any]] = {
    "name": Study.name,
    "base": Study.base_model,
    "created": Study.created_at,
    "updated": Study.updated_at,
}


def find_study(source: Source, name: str) -> StudyInfo | None:
    with _reading(source) as session:
        row = _rows(session, select(*_STUDY).where(Study.name == name)).first()
    return None if row is None else StudyInfo(*row)


def get_study(source: Source, name: str) -> StudyInfo:
    study = find_study(source, name)
    if study is None:
        raise NotFoundError(f"no study named {name!r} in the store (`workbench study list` lists them)")
    return study


def list_studies(
    source: Source,
    text: str = "",
    *,
    sort: str = "updated",
    descending: bool = True,
    limit: int | None = None,
    offset: int = 0,
) -> list[StudySummary]:
    """Studies whose name or base model holds every word of `text`, with their counts."""
    key = STUDY_SORTS[sort]
    with _reading(source) as session:
        stmt = (
            select(*_SUMMARY)
            .where(*_matching(session, text))
            .order_by(sort_order(key, descending), Study.id)
            .limit(limit)
            .offset(offset)
        )
        return [StudySummary(*r) for r in _rows(session, stmt)]


def count_studies(source: Source, text: str = "") -> int:
    with _reading(source) as session:
        return session.scalar(select(func.count(Study.id)).where(*_matching(session, text))) or 0


def _matching(session: Session, text: str) -> list[ColumnElement[bool]]:
    return _matches_words(session, text, [Study.name, Study.base_model])


def items(source: Source, study_id: int) -> list[StudyItemInfo]:
    """What the study asked for, oldest first."""
    with _reading(source) as session:
        stmt = select(*_ITEM).where(StudyItem.study_id == study_id).order_by(StudyItem.id)
        return [StudyItemInfo(*r) for r in _rows(session, stmt)]


def study_jobs(source: Source, study_id: int) -> dict[int, JobInfo]:
    """The jobs the study queued, by id."""
    with _reading(source) as session:
        ids = session.scalars(select(StudyItem.job_id).where(StudyItem.study_id == study_id,
                                                             StudyItem.job_id.is_not(None)))  # fmt: skip
        return jobs_by_id(session, ids)


def save_study(
    session: Session, name: str, base_model: str, base_model_id: int | None, request: dict[str, Any]
) -> int:
    """Create the study, or bring an existing one's request and base up to date; its id."""
    _require_write(session)
    found = session.scalar(select(Study.id).where(Study.name == name))
    if found is not None:
        values: dict[str, Any] = {"request": request, "updated_at": utcnow()}
        if base_model_id is not None:
            values["base_model_id"] = base_model_id
        session.execute(update(Study).where(Study.id == found).values(**values))
        return found
    study = Study(name=name, base_model=base_model, base_model_id=base_model_id, request=request)
    session.add(study)
    session.flush()
    assert study.id is not None
    return study.id


def add_item(
    session: Session,
    study_id: int,
    key: str,
    config: dict[str, Any],
    role: str,
    *,
    job_id: int | None = None,
    run_id: int | None = None,
    heal_id: int | None = None,
) -> int:
    _require_write(session)
    assert role in ROLES
    item = StudyItem(study_id=study_id, key=key, config=config, role=role, job_id=job_id, run_id=run_id,
                     heal_id=heal_id)
    session.add(item)
    session.flush()
    assert item.id is not None
    return item.id


def matching_runs(
    source: Source,
    base_model_id: int,
    *,
    scorer: str,
    target_kind: str,
    target_value: float,
    divisor: int,
    allocation: str,
    layers: str,
    calibration_source: str | None,
    calibration_samples: int | None,
    calibration_seq_len: int | None,
    calibration_hash: str | None,
    dtypes: tuple[str, ...] | None,
    repair: str | None = None,
) -> list[RunSummary]:
    """Finished runs of this base with exactly this configuration whose model is still stored,
    newest first: what a sweep reuses instead of pruning again. The calibration hash (of the token
    ids) makes calibration text that changed on disk a different configuration; `dtypes` are those
    its forward passes may have run in (None: any)."""
    r = PruningRun
    stmt = (
        _runs_select()
        .where(
            r.base_model_id == base_model_id, r.status == "done", r.result_model_id.is_not(None), r.scorer == scorer,
            r.target_kind == target_kind, r.target_value == target_value, r.divisor == divisor,
            r.allocation == allocation, r.layers == layers, r.calibration_source.is_(None)
            if calibration_source is None else r.calibration_source == calibration_source,
            r.calibration_hash.is_(None) if calibration_hash is None else r.calibration_hash == calibration_hash,
            r.dtype.in_(dtypes) if dtypes is not None else true(),
            r.repair.is_(None) if repair is None else r.repair == repair,
        )  # fmt: skip
        .order_by(r.id.desc())
    )
    if calibration_source is not None:
        stmt = stmt.where(r.calibration_samples == calibration_samples, r.calibration_seq_len == calibration_seq_len)
    with _reading(source) as session:
        return [RunSummary(*row) for row in _rows(session, stmt)]


def matching_heals(
    source: Source,
    model_id: int,
    *,
    data_source: str,
    tokens: int,
    seq_len: int,
    batch_size: int,
    lr: float,
    temperature: float,
    train: str,
    ce_weight: float,
) -> list[HealInfo]:
    """Heals of this model with exactly these settings whose result is still stored, newest first:
    what a sweep reuses instead of healing again."""
    h = HealRun
    stmt = _heals_select().where(
        h.model_id == model_id, h.result_model_id.is_not(None), h.data_source == data_source, h.tokens == tokens,
        h.seq_len == seq_len, h.batch_size == batch_size, h.lr == lr, h.temperature == temperature, h.train == train,
    ).order_by(h.id.desc())  # fmt: skip
    with _reading(source) as session:
        found = [HealInfo(*row) for row in _rows(session, stmt)]
    return [h for h in found if h.ce_weight == ce_weight]  # (a setting kept in the JSON)
