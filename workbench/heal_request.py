"""A heal request against the store, before anything loads: the model healed and its teacher
found, and the healed model's name free. Light (store queries, no torch): the engine's own check
(`heal.check_request`, which the CLI calls before queueing) begins with it, and the TUI's Heal form
calls it as the form is typed, so both refuse the same requests in the same words. What needs the
models' files (their tokenizers, whether both fit the device, how many tokens the text holds) the
engine checks next, before it loads a weight."""

from __future__ import annotations

from dataclasses import dataclass

from store import queries
from store.db import Store
from store.queries import ModelInfo
from workbench.errors import UserError
from workbench.sources import classify, job_model, job_reference
from workbench.spec import HealSpec


@dataclass(frozen=True)
class HealModels:
    student: ModelInfo  # the model healed
    teacher: ModelInfo  # the model it learns from


def stored_model(store: Store, model: str) -> ModelInfo | None:
    """The stored model a MODEL argument names (`job:N`, a name or id, or a source imported
    before), else None: a heal takes stored models only, so a source not imported yet and what
    names nothing at all are refused alike (UserError for a `job:N` that has made no model)."""
    job_id = job_reference(model)
    if job_id is not None:
        return job_model(store, job_id)
    found = queries.find_model(store, model)
    if found is not None:
        return found
    try:
        source = classify(model)
    except UserError:
        return None
    return queries.model_by_source(store, source.kind, source.ref)


def check_models(spec: HealSpec, store: Store) -> HealModels:
    """The spec validated, its student and teacher (default: the student's parent), the teacher
    not the student itself, and no model holding the healed model's name yet (UserError)."""
    spec.validate()
    student = stored_model(store, spec.model)
    if student is None:
        raise UserError(f"heal takes a model in the store; {spec.model} is not one (import or prune it first)")
    if spec.teacher is not None:
        teacher = stored_model(store, spec.teacher)
        if teacher is None:
            raise UserError(f"the teacher must be a model in the store; {spec.teacher} is not one")
    elif student.parent_id is None:
        raise UserError(f"{student.name} has no parent in the store to learn from: name a --teacher")
    else:
        teacher = queries.get_model(store, student.parent_id)
    if teacher.id == student.id:
        raise UserError("the teacher is the model itself: nothing to learn")
    if spec.name is not None and queries.find_model(store, spec.name) is not None:
        raise UserError(f"the store already has a model named {spec.name!r}: choose another --name")
    return HealModels(student, teacher)
