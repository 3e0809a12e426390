"""A sweep from request to queued jobs: check everything, find what is already done, queue the rest.

`plan` checks the whole request before anything is written: every configuration (its widths on
this model), the calibration text of each source (read and tokenised: its hash identifies the
text), and the evaluation (tasks built, text sources read). It then finds, for each
configuration, a finished run with the same configuration of the same base (reused: not pruned
again) or a queued or running pruning of the study (not queued twice), and which of the study's
tasks each model already has with the study's settings, or will have from a queued or running
evaluation of the study. `queue` records the study, its items and the new jobs in one
transaction: an import of the base when it is not stored yet, a pruning per configuration left,
an evaluation per model of the tasks it lacks, each waiting for the job that makes its model.

Healed configurations (`--heal-tokens`) work alike one step further: a finished heal of the cut's
model with the same settings is reused, else a heal job waits for the cut's pruning job (reading
its model as `job:N`), and the healed model's evaluation waits for the heal.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from store import studies
from store.db import Store
from store.jobs import JobInfo, jobs_by_id
from store.queries import HealInfo, ModelInfo, RunSummary, evaluations
from store.studies import BASE_KEY, StudyInfo, StudyItemInfo
from workbench import evaluation, model_io, pruning
from workbench.devices import resolve_device
from workbench.errors import UserError
from workbench.jobs import submit
from workbench.sources import ImportRequest
from workbench.spec import PPL_PREFIX, PruneSpec, planned_widths
from workbench.studies.request import EvalSettings, SweepRequest, config_key, config_of, healed_config
from workbench.texts import load_source, shares_text, source_name


@dataclass
class Configuration:
    spec: PruneSpec
    config: dict
    key: str
    calibration_hash: str | None = None
    run: RunSummary | None = None  # a finished run with this configuration: reused
    live_prune: int | None = None  # a queued or running pruning of the study: waited for
    evaluated: tuple[str, ...] = ()  # tasks its model has at the study's settings
    pending: tuple[str, ...] = ()  # tasks a queued or running evaluation of the study will measure
    overlaps: tuple[str, ...] = ()  # perplexity tasks that read its calibration text

    def missing(self, tasks: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(t for t in tasks if t not in self.evaluated and t not in self.pending)


@dataclass
class Healed:
    """A cut healed on a number of tokens: a finished heal reused, a live one waited for, or one to queue."""

    cut: Configuration
    tokens: int
    config: dict
    key: str
    heal: HealInfo | None = None
    live_heal: int | None = None
    evaluated: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()
    overlaps: tuple[str, ...] = ()  # perplexity tasks that read its calibration or heal text

    def missing(self, tasks: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(t for t in tasks if t not in self.evaluated and t not in self.pending)


@dataclass
class SweepPlan:
    request: SweepRequest
    name: str
    settings: EvalSettings
    base: ModelInfo | None  # None: not stored yet, an import job brings it in
    study: StudyInfo | None  # the study as it is, when it exists
    data: Path | None
    live_jobs: tuple[int, ...] = ()  # the study's queued and running jobs
    live_import: int | None = None
    base_evaluated: tuple[str, ...] = ()
    base_pending: tuple[str, ...] = ()
    configurations: list[Configuration] = field(default_factory=list)
    healed: list[Healed] = field(default_factory=list)

    @property
    def base_missing(self) -> tuple[str, ...]:
        return tuple(t for t in self.request.tasks if t not in self.base_evaluated and t not in self.base_pending)

    @property
    def needs_import(self) -> bool:
        return self.base is None and self.live_import is None

    def counts(self) -> dict[str, int]:
        """What queueing this plan adds and reuses."""
        tasks = self.request.tasks
        new_prunes = [c for c in self.configurations if c.run is None and c.live_prune is None]
        evals = sum(1 for c in self.configurations if c.missing(tasks) or c in new_prunes) + bool(self.base_missing)
        new_heals = [h for h in self.healed if h.heal is None and h.live_heal is None]
        evals += sum(1 for h in self.healed if h.missing(tasks) or h in new_heals)
        return {
            "configurations": len(self.configurations) + len(self.healed),
            "import": int(self.needs_import),
            "prune": len(new_prunes),
            "heal": len(new_heals),
            "eval": evals,
            "runs reused": sum(1 for c in self.configurations if c.run is not None),
            "prunings waited for": sum(1 for c in self.configurations if c.live_prune is not None),
            "heals reused": sum(1 for h in self.healed if h.heal is not None),
        }


@dataclass(frozen=True)
class Queued:
    study_id: int
    name: str
    new_jobs: tuple[int, ...]
    live_jobs: tuple[int, ...]  # the study's jobs that were queued or running already

    @property
    def watched(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.new_jobs) | set(self.live_jobs)))


def plan(store: Store, request: SweepRequest, data: Path | None) -> SweepPlan:
    """Check the sweep and find what is done and what is on its way; writes nothing (UserError)."""
    request.validate()
    target = model_io.resolve(store, request.model)
    hidden, widths = target.shape()
    for spec in request.configurations():
        planned_widths(spec, hidden, widths)  # a target this model cannot meet fails here
    device = resolve_device(request.device)
    settings = EvalSettings.of(request, device.type, data is not None)
    evaluation.check_request(request.eval_spec(request.model), store, data)
    name = request.study_name
    study = studies.find_study(store, name)
    base = target.row
    if study is not None and not _same_base(study, base, request.model):
        raise UserError(f"study {name!r} prunes {study.base_model}, not {request.model}: name another study (--name)")
    result = SweepPlan(request, name, settings, base, study, data)
    items = studies.items(store, study.id) if study is not None else []
    live = _live(studies.study_jobs(store, study.id)) if study is not None else {}
    result.live_jobs = tuple(sorted(live))
    result.live_import = next((i.job_id for i in items if i.role == "import" and i.job_id in live), None)

    hashes: dict[tuple[str | None, int, int], str | None] = {}
    for spec in request.configurations():
        config = config_of(spec)
        key = config_key(config)
        calibration = (config["calibration"], spec.samples, spec.seq_len)
        if calibration not in hashes:
            hashes[calibration] = pruning.check_request(spec, store, data)  # reads and tokenises the text
        c = Configuration(spec, config, key, hashes[calibration])
        c.overlaps = tuple(t for t in request.tasks if t.startswith(PPL_PREFIX)
                           and shares_text(config["calibration"], t.removeprefix(PPL_PREFIX)))  # fmt: skip
        mine = [i for i in items if i.key == key]
        c.live_prune = next((i.job_id for i in reversed(mine) if i.role == "prune" and i.job_id in live), None)
        if base is not None and c.live_prune is None:
            c.run = next(iter(_matching(store, base.id, c, settings)), None)
        result.configurations.append(c)

    if request.heal_tokens:
        load_source(request.heal_data, data)  # a heal source that cannot be read fails here
    for c in result.configurations:
        for tokens in request.heal_tokens:
            config = healed_config(c.config, tokens, request.heal_data)
            h = Healed(c, tokens, config, config_key(config))
            h.overlaps = tuple(t for t in request.tasks if t.startswith(PPL_PREFIX) and (
                t in c.overlaps or shares_text(config["heal_data"], t.removeprefix(PPL_PREFIX))))  # fmt: skip
            mine = [i for i in items if i.key == h.key]
            h.live_heal = next((i.job_id for i in reversed(mine) if i.role == "heal" and i.job_id in live), None)
            if c.run is not None and c.run.result_model_id and h.live_heal is None:
                spec = request.heal_spec(c.run.result_model_name or "", tokens)
                h.heal = next(iter(studies.matching_heals(
                    store, c.run.result_model_id, data_source=source_name(spec.data), tokens=tokens,
                    seq_len=spec.seq_len, batch_size=spec.batch_size, lr=spec.lr, temperature=spec.temperature,
                    train=spec.train, ce_weight=spec.ce_weight)), None)  # fmt: skip
            result.healed.append(h)

    models = [base.id] if base is not None else []
    models += [c.run.result_model_id for c in result.configurations if c.run and c.run.result_model_id]
    models += [h.heal.result_model_id for h in result.healed if h.heal and h.heal.result_model_id]
    done = _evaluated(store, models, request.tasks, settings)
    if base is not None:
        result.base_evaluated = done.get(base.id, ())
    result.base_pending = _pending([i for i in items if i.key == BASE_KEY], live, request)
    for c in result.configurations:
        if c.run is not None:
            c.evaluated = done.get(c.run.result_model_id, ())  # type: ignore[arg-type]
        if c.run is not None or c.live_prune is not None:
            c.pending = _pending([i for i in items if i.key == c.key], live, request)
    for h in result.healed:
        if h.heal is not None:
            h.evaluated = done.get(h.heal.result_model_id, ())  # type: ignore[arg-type]
        if h.heal is not None or h.live_heal is not None:
            h.pending = _pending([i for i in items if i.key == h.key], live, request)
    return result


def queue(store: Store, plan: SweepPlan) -> Queued:
    """Record the study and queue what the plan lacks, in one transaction."""
    request, tasks = plan.request, plan.request.tasks
    new: list[int] = []
    stored = request.to_dict() | {"settings": plan.settings.to_dict()}
    with store.write() as session:
        study_id = studies.save_study(session, plan.name, request.model, plan.base.id if plan.base else None, stored)
        earlier = studies.items(session, study_id)
        known = {(i.key, i.run_id) for i in earlier if i.run_id is not None}
        known_heals = {(i.key, i.heal_id) for i in earlier if i.heal_id is not None}
        made_by: dict[str, int | None] = {}  # configuration key -> the pruning job making its model (None: stored)

        def add(key: str, config: dict, role: str, kind: str, job_request: dict, after: int | None) -> int:
            job = submit(session, kind, job_request, data_dir=plan.data, after=after)
            studies.add_item(session, study_id, key, config, role, job_id=job)
            new.append(job)
            return job

        after_import = plan.live_import
        if plan.needs_import:
            import_request = ImportRequest(request.model, if_missing=True).validate().to_dict()
            after_import = add(BASE_KEY, {}, "import", "import", import_request, None)
        if plan.base_missing:
            model = plan.base.name if plan.base else request.model
            add(BASE_KEY, {}, "eval", "eval", _eval(request, model, plan.base_missing), after_import)
        for c in plan.configurations:
            if c.run is not None:
                made_by[c.key] = None
                if (c.key, c.run.id) not in known:
                    studies.add_item(session, study_id, c.key, c.config, "prune", run_id=c.run.id)
                missing = c.missing(tasks)
                if missing:
                    add(c.key, c.config, "eval", "eval", _eval(request, c.run.result_model_name, missing), None)
                continue
            prune_job = c.live_prune
            if prune_job is None:
                prune_job = add(c.key, c.config, "prune", "prune", c.spec.to_dict(), after_import)
                missing = tasks
            else:
                missing = c.missing(tasks)
            made_by[c.key] = prune_job
            if missing:
                add(c.key, c.config, "eval", "eval", _eval(request, f"job:{prune_job}", missing), prune_job)
        for h in plan.healed:
            if h.heal is not None:
                if (h.key, h.heal.id) not in known_heals:
                    studies.add_item(session, study_id, h.key, h.config, "heal", heal_id=h.heal.id)
                missing = h.missing(tasks)
                if missing:
                    add(h.key, h.config, "eval", "eval", _eval(request, h.heal.result_name, missing), None)
                continue
            heal_job = h.live_heal
            if heal_job is None:
                prune_job = made_by[h.cut.key]
                student = f"job:{prune_job}" if prune_job is not None else h.cut.run.result_model_name  # type: ignore[union-attr]
                heal = request.heal_spec(student, h.tokens).to_dict()  # type: ignore[arg-type]
                heal_job = add(h.key, h.config, "heal", "heal", heal, prune_job)
                missing = tasks
            else:
                missing = h.missing(tasks)
            if missing:
                add(h.key, h.config, "eval", "eval", _eval(request, f"job:{heal_job}", missing), heal_job)
    return Queued(study_id, plan.name, tuple(new), plan.live_jobs)


def _eval(request: SweepRequest, model: str | None, tasks: tuple[str, ...]) -> dict:
    assert model is not None
    return replace(request.eval_spec(model), tasks=tasks).to_dict()


def _same_base(study: StudyInfo, base: ModelInfo | None, model: str) -> bool:
    if study.base_model_id is not None and base is not None:
        return study.base_model_id == base.id
    return study.base_model == model


def _live(jobs: dict[int, JobInfo]) -> dict[int, JobInfo]:
    """The queued and running jobs, less those waiting for a job that failed (they fail when a
    worker next claims)."""
    def doomed(job: JobInfo) -> bool:
        while job.after_job_id is not None and job.after_job_id in jobs:
            job = jobs[job.after_job_id]
            if job.finished and job.status != "done":
                return True
        return False

    return {i: j for i, j in jobs.items() if not j.finished and not doomed(j)}


def _matching(store: Store, base_id: int, c: Configuration, settings: EvalSettings) -> list[RunSummary]:
    config = c.config
    return studies.matching_runs(
        store, base_id, scorer=config["scorer"], target_kind=config["target_kind"],
        target_value=config["target_value"], divisor=config["divisor"], allocation=config["allocation"],
        layers=config["layers"], calibration_source=config["calibration"], calibration_samples=config["samples"],
        calibration_seq_len=config["seq_len"], calibration_hash=c.calibration_hash, repair=config.get("repair"),
        # A static cut without repair runs no forward pass: its run records the dtype of the weights it
        # read (the parent's), and any asked dtype gives the same cut.
        dtypes=settings.dtypes if config["calibration"] is not None or config.get("repair") else None,
    )  # fmt: skip


def _evaluated(
    store: Store, model_ids: list[int], tasks: tuple[str, ...], settings: EvalSettings
) -> dict[int, tuple[str, ...]]:
    """For each model, the tasks it has at least one figure of at these settings."""
    rows = evaluations(store, model_ids, all_rows=True) if model_ids else []
    makers = jobs_by_id(store, {r.job_id for r in rows if r.job_id is not None})
    found: dict[int, set[str]] = {}
    for row in rows:
        for task in tasks:
            if settings.counts(row, task, makers):
                found.setdefault(row.model_id, set()).add(task)
    return {m: tuple(t for t in tasks if t in found_) for m, found_ in found.items()}


def _pending(items: list[StudyItemInfo], live: dict[int, JobInfo], request: SweepRequest) -> tuple[str, ...]:
    """Tasks that queued or running evaluations among these items will measure as `request` asks."""
    tasks: list[str] = []
    asked = (request.limit, request.fewshot, request.device, request.dtype)
    for item in items:
        job = live.get(item.job_id) if item.role == "eval" and item.job_id is not None else None
        if job is None:
            continue
        r = job.request
        if (r.get("limit"), r.get("fewshot"), r.get("device"), r.get("dtype")) == asked:
            tasks += [t for t in r.get("tasks", []) if t not in tasks]
    return tuple(tasks)
