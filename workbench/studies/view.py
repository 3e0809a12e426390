"""A study as its views show it: each configuration (and the base) with its status, model and
figures at the study's settings; the trade-off table with the best of each column marked; the
series of a chart; the specialisation groups (workbench.studies.specialisation).

Light (store queries and arithmetic, no torch): the CLI, the report and the TUI read it alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session

from store import queries, studies
from store.db import Store
from store.jobs import JobInfo, jobs_by_id
from store.queries import ModelInfo, RunDetail
from store.studies import BASE_KEY, StudyInfo, StudyItemInfo
from workbench.studies.request import (
    EvalSettings,
    SweepRequest,
    calibration_text,
    config_key,
    cut_config,
    is_perplexity,
    step_text,
    target_text,
)
from workbench.studies.specialisation import SpecialisationGroup, specialisation_groups
from workbench.tabular import Column, Table, count, fixed
from workbench.texts import shares_text, source_name
from workbench.tradeoff import HIGHER_IS_BETTER


@dataclass(frozen=True)
class Figure:
    value: float
    stderr: float | None
    samples: int | None
    fewshot: int | None
    limit: float | None
    device: str
    dtype: str
    harness: str  # lm-eval | workbench
    harness_version: str
    settings: dict[str, Any]


@dataclass(frozen=True)
class MetricColumn:
    task: str
    metric: str  # exactly as recorded: "acc_norm,none", "perplexity"
    higher_is_better: bool | None
    approximate: bool  # measured on approximate data (the local HellaSwag)

    @property
    def key(self) -> str:
        return f"{self.task} {self.metric}"

    @property
    def label(self) -> str:
        return self.key + (" (approximate)" if self.approximate else "")

    @property
    def noisy(self) -> bool:
        """A sampled estimate whose rows carry a standard error (lm-eval's); perplexity is not."""
        return not is_perplexity(self.task)


@dataclass(frozen=True)
class StudyRow:
    key: str  # "base" or the configuration's key
    config: dict[str, Any] | None  # None for the base
    status: str  # done | queued | pruning 40% | evaluating 10% | prune failed | ...
    problem: str | None  # the failed job's one line
    model: ModelInfo | None
    run: RunDetail | None
    figures: dict[str, Figure]  # MetricColumn.key -> its figure
    overlaps: tuple[str, ...]  # perplexity tasks that read this configuration's calibration text
    base_parameters: int | None
    jobs: tuple[int, ...] = ()  # the jobs the study queued for it

    @property
    def is_base(self) -> bool:
        return self.config is None

    @property
    def scorer(self) -> str:
        return "base" if self.config is None else self.config["scorer"]

    @property
    def allocation(self) -> str:
        return "" if self.config is None else self.config["allocation"]

    @property
    def target(self) -> str:
        return "0%" if self.config is None else target_text(self.config)

    @property
    def calibration(self) -> str:
        return "" if self.config is None else calibration_text(self.config)

    @property
    def step(self) -> str:
        """The recovery it had: cut, repair oneshot, heal N, repair oneshot + heal N ("" for the base)."""
        return step_text(self.config)

    @property
    def plain(self) -> bool:
        """A plain cut (neither repaired nor healed), or the base."""
        return self.step in ("", "cut")

    @property
    def label(self) -> str:
        """E.g. `hybrid 40% (sms)`, `hybrid 40% (wikitext2) repair oneshot`, or the base model's name."""
        if self.config is None:
            return f"base ({self.model.name})" if self.model else "base"
        calibration = f" ({self.calibration})" if self.config.get("calibration") else ""
        allocation = "" if self.allocation == "uniform" else f" {self.allocation}"
        step = "" if self.plain else f" {self.step}"
        return f"{self.scorer}{allocation} {self.target}{calibration}{step}"

    @property
    def parameters(self) -> int | None:
        if self.model is not None:
            return self.model.parameters
        return self.run.parameters_after if self.run is not None else None

    @property
    def removed(self) -> float | None:
        """The share of the base model's parameters removed."""
        if self.is_base:
            return 0.0
        if self.parameters is None or not self.base_parameters:
            return None
        return 1 - self.parameters / self.base_parameters

    @property
    def expansion(self) -> float | None:
        return self.model.expansion if self.model is not None else None


@dataclass(frozen=True)
class Series:
    label: str
    points: tuple[tuple[float, float], ...]  # (x, y), by x


@dataclass(frozen=True)
class StudyView:
    study: StudyInfo
    request: SweepRequest
    settings: EvalSettings
    base: StudyRow
    rows: tuple[StudyRow, ...]  # the configurations, in the order tables list them
    columns: tuple[MetricColumn, ...]
    jobs: dict[int, JobInfo] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return any(not j.finished for j in self.jobs.values())

    @property
    def all_rows(self) -> tuple[StudyRow, ...]:
        return (self.base, *self.rows)

    @property
    def recovered(self) -> bool:
        """Whether the study has repaired or healed configurations (tables then show a recovery column)."""
        return any(not r.plain for r in self.rows)

    def best(self) -> dict[str, set[str]]:
        """Per metric column, the keys of the configurations holding its best value (higher or
        lower, as the metric reads), where at least two differ; the base is the reference, not a
        contender."""
        found: dict[str, set[str]] = {}
        for column in self.columns:
            if column.higher_is_better is None:
                continue
            values = {r.key: r.figures[column.key].value for r in self.rows if column.key in r.figures}
            if len(set(values.values())) < 2:
                continue
            top = (max if column.higher_is_better else min)(values.values())
            found[column.key] = {k for k, v in values.items() if v == top}
        return found

    def table(self, style: str = "text") -> Table:
        """The trade-off table: `text` marks the best with *, `markdown` in bold, `plain` not at
        all (the TUI styles the cells instead); `raw` is every value at full precision, with its
        standard error and the configuration's fields, for CSV and JSON."""
        if style == "raw":
            return self._raw()
        best = self.best()

        def cell(row: StudyRow, column: MetricColumn) -> str:
            figure = row.figures.get(column.key)
            if figure is None:
                return ""
            text = figure_text(figure, column)
            if row.key in best.get(column.key, set()):
                text = f"**{text}**" if style == "markdown" else f"{text} *" if style == "text" else text
            return text

        recovery = [Column("step", "recovery")] if self.recovered else []
        columns = [
            Column("scorer"), Column("allocation", "alloc"), Column("target"), Column("calibration"), *recovery,
            Column("status"), Column("parameters", "params", numeric=True), Column("removed", numeric=True),
            Column("expansion", "exp", numeric=True),
            *(Column(c.key, c.label, numeric=True) for c in self.columns),
            Column("notes"),
        ]  # fmt: skip
        body = [
            [r.scorer, r.allocation, r.target, r.calibration, *([r.step] if recovery else []), r.status,
             count(r.parameters), _percent(r.removed), fixed(3)(r.expansion), *(cell(r, c) for c in self.columns),
             notes(r)]
            for r in self.all_rows
        ]  # fmt: skip
        return Table(f"study {self.study.name}: trade-off", columns, body)

    def grid(self) -> Table:
        """The trade-off as the TUI shows and exports it: raw values (CSV writes them at full
        precision) formatted on screen, a ± column after each metric with a standard error."""
        recovery = [Column("step", "recovery")] if self.recovered else []
        columns = [
            Column("scorer"), Column("allocation", "alloc"), Column("target"), Column("calibration"), *recovery,
            Column("status"), Column("parameters", "params", count, numeric=True),
            Column("removed", fmt=_percent, numeric=True), Column("expansion", "exp", fixed(3), True),
        ]  # fmt: skip
        for c in self.columns:
            shown = lambda v, c=c: "" if v is None else _value(v, c)  # noqa: E731
            columns.append(Column(c.key, c.label, shown, numeric=True))
            if c.noisy:
                columns.append(Column(f"{c.key} stderr", "±", shown, numeric=True))
        columns.append(Column("notes"))
        body = []
        for r in self.all_rows:
            line: list[Any] = [r.scorer, r.allocation, r.target, r.calibration, *([r.step] if recovery else []),
                               r.status, r.parameters, r.removed, r.expansion]  # fmt: skip
            for c in self.columns:
                figure = r.figures.get(c.key)
                line.append(figure.value if figure else None)
                if c.noisy:
                    line.append(figure.stderr if figure else None)
            body.append([*line, notes(r)])
        return Table(f"study {self.study.name}", columns, body)

    def _raw(self) -> Table:
        columns = [Column(k) for k in ("configuration", "scorer", "allocation", "target_kind", "target_value",
                                       "divisor", "layers", "calibration", "samples", "seq_len", "dtype", "repair",
                                       "heal_tokens", "heal_data", "status", "model", "run_id", "parameters",
                                       "removed", "expansion")]  # fmt: skip
        for c in self.columns:
            columns += [Column(c.key), Column(f"{c.key} stderr"), Column(f"{c.key} samples")]
        columns.append(Column("calibration_overlaps"))
        body = []
        for r in self.all_rows:
            config = r.config or {}
            line: list[Any] = [r.label, r.scorer, r.allocation, config.get("target_kind"), config.get("target_value"),
                               config.get("divisor"), config.get("layers"), config.get("calibration"),
                               config.get("samples"), config.get("seq_len"), config.get("dtype"),
                               config.get("repair"), config.get("heal_tokens"), config.get("heal_data"), r.status,
                               r.model.name if r.model else None, r.run.id if r.run else None, r.parameters,
                               r.removed, r.expansion]  # fmt: skip
            for c in self.columns:
                figure = r.figures.get(c.key)
                line += [figure.value, figure.stderr, figure.samples] if figure else [None, None, None]
            line.append(list(r.overlaps))
            body.append(line)
        return Table(f"study {self.study.name}", columns, body)

    def series(self, column_key: str, x: str = "parameters") -> list[Series]:
        """One series per scorer (and calibration source, and allocation where the study has
        several: a series is a curve over the target alone), each starting at the base. `x` is
        `parameters` or `removed` (the share of parameters removed, in percent)."""

        def at(row: StudyRow) -> float | None:
            if x == "removed":
                return None if row.removed is None else 100 * row.removed
            return None if row.parameters is None else float(row.parameters)

        allocations = {r.allocation for r in self.rows}
        grouped: dict[str, list[tuple[float, float]]] = {}
        for r in self.rows:
            label = r.scorer + ("" if len(allocations) < 2 else f" {r.allocation}")
            label += f"/{r.calibration}" if r.config and r.config.get("calibration") else ""
            label += "" if r.plain else f" {r.step}"
            grouped.setdefault(label, [])
            figure, where = r.figures.get(column_key), at(r)
            if figure is not None and where is not None:
                grouped[label].append((where, figure.value))
        start = self.base.figures.get(column_key)
        origin = at(self.base)
        found = []
        for label, points in grouped.items():
            if start is not None and origin is not None:
                points = [(origin, start.value), *points]
            if points:
                found.append(Series(label, tuple(sorted(points))))
        return found

    def specialisation(self) -> list[SpecialisationGroup]:
        """Groups of configurations alike but for their calibration source (two sources or more)."""
        return specialisation_groups([r for r in self.rows if r.plain], self.request.tasks)

    def notes(self) -> list[str]:
        """How the figures were measured, once for the whole table."""
        s = self.settings
        lines = []
        lm = [c for c in self.columns if c.noisy]
        if lm:
            shots = f"{s.fewshot}-shot" if s.fewshot is not None else "each task's default few-shot count"
            fewshots = sorted({f.fewshot for r in self.all_rows for c in lm if (f := r.figures.get(c.key))
                               and f.fewshot is not None})  # fmt: skip
            used = f" ({', '.join(map(str, fewshots))}-shot as run)" if fewshots and s.fewshot is None else ""
            limit = f"limit {s.limit:g} documents per task" if s.limit is not None else "every document"
            lines.append(f"lm-eval metrics: {limit}, {shots}{used}, chat template {s.chat_template}, "
                         f"{s.data} data; value ± stderr")  # fmt: skip
        ppl = [c for c in self.columns if is_perplexity(c.task)]
        for c in ppl:
            f = next((r.figures[c.key] for r in self.all_rows if c.key in r.figures), None)
            if f is not None:
                p = f.settings
                lines.append(f"{c.task}: {p.get('windows')} windows x {p.get('window_len')} tokens of held-out "
                             f"{p.get('source')} text, {p.get('tokens_scored')} tokens scored")  # fmt: skip
        if self.best():
            lines.append("* the best of the pruned configurations in its column (the base is the reference)")
        if any(r.overlaps for r in self.rows):
            lines.append("overlap: the configuration calibrated (or healed) on the text that perplexity measures")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study.name,
            "base_model": self.study.base_model,
            "request": self.request.to_dict(),
            "settings": self.settings.to_dict(),
            "notes": self.notes(),
            "rows": self.table("raw").records(),
            "best": {k: sorted(v) for k, v in self.best().items()},
        }


def figure_text(figure: Figure, column: MetricColumn) -> str:
    value = _value(figure.value, column)
    if figure.stderr is None:
        return value
    return f"{value} ± {_value(figure.stderr, column)}"


def _value(v: float, column: MetricColumn) -> str:
    if abs(v) >= 1e4:
        return count(round(v))
    if is_perplexity(column.task):
        return f"{v:.2f}"
    return f"{v:.3f}" if abs(v) <= 1 else f"{v:.4g}"


def notes(row: StudyRow) -> str:
    config = row.config or {}
    flags = [f"overlap: {'healed' if _heal_reads(config, t) else 'calibrated'} on {t}'s text" for t in row.overlaps]
    if row.problem:
        flags.append(row.problem)
    return "; ".join(flags)


def _heal_reads(config: dict[str, Any], task: str) -> bool:
    return bool(config.get("heal_data")) and shares_text(config["heal_data"], task[len("ppl:"):]) and not (
        shares_text(config.get("calibration"), task[len("ppl:"):]))


def _percent(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.1f}%"


# Gathering ----------------------------------------------------------------------------------------


def gather(store: Store, name: str) -> StudyView:
    """The study named `name` as it stands now (NotFoundError when there is none)."""
    with store.session() as session:
        study = studies.get_study(session, name)
        request = SweepRequest.from_dict(study.request)
        settings = EvalSettings.from_dict(study.request.get("settings", {}))
        items = studies.items(session, study.id)
        jobs = studies.study_jobs(session, study.id)
        base_model = _base_model(session, study, items, jobs)
        keys: dict[str, list[StudyItemInfo]] = {}
        for item in items:
            keys.setdefault(item.key, []).append(item)
        runs = {key: _run(session, its, jobs) for key, its in keys.items() if key != BASE_KEY}
        models: dict[str, ModelInfo | None] = {
            key: queries.find_model(session, run.result_model_id) if run and run.result_model_id else None
            for key, run in runs.items()
        }
        for key, its in keys.items():  # a healed configuration: the heal's model, and its cut's run
            if any(i.role == "heal" for i in its):
                healed = _healed_model(session, its, jobs)
                models[key] = queries.find_model(session, healed) if healed is not None else None
                runs[key] = runs.get(config_key(cut_config(its[0].config)))
        models[BASE_KEY] = base_model
        figures = _figures(session, {k: m.id for k, m in models.items() if m is not None}, request, settings)
    columns = _columns(request, figures)
    base_parameters = base_model.parameters if base_model else None
    base = StudyRow(BASE_KEY, None, *_status(keys.get(BASE_KEY, []), jobs, True, base_model is not None,
                                             _complete(figures.get(BASE_KEY), request)),
                    base_model, None, figures.get(BASE_KEY, {}), (), base_parameters,
                    _job_ids(keys.get(BASE_KEY, [])))  # fmt: skip
    rows = []
    for key, its in keys.items():
        if key == BASE_KEY:
            continue
        config = its[0].config
        read = (config.get("calibration"), config.get("heal_data"))
        overlaps = tuple(t for t in request.tasks
                         if is_perplexity(t) and any(shares_text(s, t[len("ppl:"):]) for s in read))  # fmt: skip
        healed = "heal_tokens" in config
        status, problem = _status(its, jobs, False, (models[key] if healed else runs[key]) is not None,
                                  _complete(figures.get(key), request), "heal" if healed else "prune")
        rows.append(StudyRow(key, config, status, problem, models[key], runs[key], figures.get(key, {}), overlaps,
                             base_parameters, _job_ids(its)))  # fmt: skip
    # As the request lists scorers and sources (a re-run may have added others: those after).
    scorers = {s: i for i, s in enumerate(request.scorers)}
    sources = {source_name(c): i for i, c in enumerate(request.calibrations)}
    rows.sort(key=lambda r: (scorers.get(r.scorer, len(scorers)), r.scorer, r.allocation, r.config["target_kind"],
                             r.config["target_value"], sources.get(r.config["calibration"], len(sources)),
                             r.calibration, r.config.get("repair") or "", r.config.get("heal_tokens") or 0))  # type: ignore[index]
    return StudyView(study, request, settings, base, tuple(rows), columns, jobs)


def _job_ids(items: list[StudyItemInfo]) -> tuple[int, ...]:
    return tuple(sorted({i.job_id for i in items if i.job_id is not None}))


def _base_model(
    session: Session, study: StudyInfo, items: list[StudyItemInfo], jobs: dict[int, JobInfo]
) -> ModelInfo | None:
    if study.base_model_id is not None:
        return queries.find_model(session, study.base_model_id)
    for item in reversed(items):
        job = jobs.get(item.job_id) if item.role == "import" and item.job_id is not None else None
        if job is not None and job.status == "done" and "model_id" in job.result:
            return queries.find_model(session, int(job.result["model_id"]))
    return None


def _healed_model(session: Session, items: list[StudyItemInfo], jobs: dict[int, JobInfo]) -> int | None:
    """The id of the model that stands for a healed configuration: the newest reused or made by its heal job."""
    for item in reversed([i for i in items if i.role == "heal"]):
        if item.heal_id is not None:
            return queries.get_heal(session, item.heal_id).result_model_id
        job = jobs.get(item.job_id) if item.job_id is not None else None
        if job is not None and job.status == "done" and "model_id" in job.result:
            return int(job.result["model_id"])
    return None


def _run(session: Session, items: list[StudyItemInfo], jobs: dict[int, JobInfo]) -> RunDetail | None:
    """The run that stands for this configuration: the newest reused or made by its pruning job."""
    for item in reversed([i for i in items if i.role == "prune"]):
        if item.run_id is not None:
            return queries.run_detail(session, item.run_id)
        job = jobs.get(item.job_id) if item.job_id is not None else None
        if job is not None and job.status == "done" and "run_id" in job.result:
            return queries.run_detail(session, int(job.result["run_id"]))
    return None


def _figures(
    session: Session, models: dict[str, int], request: SweepRequest, settings: EvalSettings
) -> dict[str, dict[str, Figure]]:
    """Per configuration key, the newest figure of each metric of the study's tasks at its settings."""
    rows = queries.evaluations(session, list(set(models.values())), all_rows=True) if models else []
    makers = jobs_by_id(session, {r.job_id for r in rows if r.job_id is not None})
    by_model: dict[int, dict[str, Figure]] = {}
    for row in rows:  # newest first: the first that counts wins
        if not any(settings.counts(row, task, makers) for task in request.tasks):
            continue
        found = by_model.setdefault(row.model_id, {})
        key = f"{row.task} {row.metric}"
        if key not in found:
            settings_ = row.settings | {"task": row.task, "metric": row.metric}
            found[key] = Figure(row.value, row.stderr, row.samples, row.fewshot, row.limit, row.device, row.dtype,
                                row.harness, row.harness_version, settings_)  # fmt: skip
    return {key: by_model.get(model_id, {}) for key, model_id in models.items()}


def _columns(request: SweepRequest, figures: dict[str, dict[str, Figure]]) -> tuple[MetricColumn, ...]:
    seen: dict[str, Figure] = {}
    for found in figures.values():
        for key, figure in found.items():
            seen.setdefault(key, figure)
    columns = []
    for task in request.tasks:
        for key in sorted(k for k, f in seen.items() if f.settings["task"] == task):
            f = seen[key]
            metric = f.settings["metric"]
            higher = f.settings.get("higher_is_better", HIGHER_IS_BETTER.get(metric))
            columns.append(MetricColumn(task, metric, higher, bool(f.settings.get("approximate"))))
    return tuple(columns)


def _complete(found: dict[str, Figure] | None, request: SweepRequest) -> bool:
    tasks = {f.settings["task"] for f in (found or {}).values()}
    return all(t in tasks for t in request.tasks)


def _status(
    items: list[StudyItemInfo], jobs: dict[int, JobInfo], is_base: bool, has_model: bool, complete: bool,
    maker: str = "prune",
) -> tuple[str, str | None]:
    """(status, the failure's one line) of a configuration or the base from its jobs."""
    def newest(role: str) -> JobInfo | None:
        found = [jobs[i.job_id] for i in items if i.role == role and i.job_id in jobs]
        return max(found, key=lambda j: j.id) if found else None

    making = newest("import" if is_base else maker)
    if not has_model:
        if making is None:
            return ("not imported" if is_base else "model removed"), None
        return _job_status("import" if is_base else maker, making)
    if complete:
        return "done", None
    evaluating = newest("eval")
    if evaluating is None:
        return "not evaluated", None
    status, problem = _job_status("eval", evaluating)
    return (status, problem) if evaluating.status != "done" else ("incomplete", None)


def _job_status(what: str, job: JobInfo) -> tuple[str, str | None]:
    doing = {"import": "importing", "prune": "pruning", "heal": "healing", "eval": "evaluating"}[what]
    if job.status == "queued":
        return f"{what} queued", None
    if job.status == "running":
        return f"{doing} {100 * job.progress:.0f}%", None
    if job.status == "done":
        return "done", None
    return f"{what} {job.status}", f"job {job.id}: {job.error}" if job.error else f"job {job.id} {job.status}"

