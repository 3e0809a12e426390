"""Job dependencies (a job claimed only once the one it waits for is done; its failing fails the
waiting ones) and `job:N`, the model a job made, wherever MODEL is resolved."""

from __future__ import annotations

import os

import pytest
from jobs_helper import claim_at_once
from store_fixtures import add_model

from store import jobs
from store.db import Store, StoreError
from store.tables import Job
from workbench import model_io
from workbench.errors import UserError
from workbench.jobs import submit
from workbench.sources import job_model
from workbench.spec import PruneSpec

pytestmark = pytest.mark.backends("sqlite", "postgresql")


def request() -> dict:
    return PruneSpec(model="some-model", scorer="ppm", percent=25).to_dict()


def finish_claimed(store: Store, status: str, job_id: int | None = None, **kw) -> int:
    job = jobs.claim(store, os.getpid(), job_id=job_id)
    assert job is not None
    assert jobs.finish(store, job.id, status, status, **kw)
    return job.id


def test_a_job_is_claimed_only_once_the_job_it_waits_for_is_done(store):
    first = submit(store, "prune", request())
    second = submit(store, "eval", {"models": [f"job:{first}"], "tasks": ["ppl:wikitext2"]}, after=first)
    assert jobs.get_job(store, second).message == f"waits for job {first}"
    assert jobs.claim(store, 1, job_id=second) is None  # asked for by id: still waits
    claimed = jobs.claim(store, 1)
    assert claimed is not None and claimed.id == first
    assert jobs.claim(store, 1) is None  # the other waits while the first runs
    jobs.finish(store, first, "done", "done")
    after = jobs.claim(store, 1)
    assert after is not None and after.id == second and after.after_job_id == first


@pytest.mark.parametrize("ending, said", [("failed", "failed"), ("cancelled", "was cancelled"),
                                          ("interrupted", "was interrupted")])  # fmt: skip
def test_a_job_that_does_not_finish_well_fails_those_waiting_for_it_in_turn(store, ending, said):
    first = submit(store, "prune", request())
    second = submit(store, "prune", request(), after=first)
    third = submit(store, "prune", request(), after=second)
    unrelated = submit(store, "prune", request())
    if ending == "cancelled":
        jobs.request_cancel(store, first)  # before it started
    else:
        finish_claimed(store, ending, first)
    claimed = jobs.claim(store, 1)
    assert claimed is not None and claimed.id == unrelated
    waiting = jobs.get_job(store, second), jobs.get_job(store, third)
    assert [j.status for j in waiting] == ["failed", "failed"]
    assert waiting[0].error == f"waits for job {first}, which {said}"
    assert waiting[1].error == f"waits for job {second}, which failed"
    assert waiting[0].result == {"error_type": "DependencyFailed"} and waiting[0].finished_at is not None
    with pytest.raises(StoreError, match=f"job {second} waits for job {first}, which {ending}"):
        jobs.retry(store, second)


def test_processes_claiming_a_chain_at_once_claim_each_job_once_and_in_order(location, tmp_path):
    with Store.open(location) as store:
        ids = [submit(store, "prune", request())]
        for _ in range(24):
            ids.append(submit(store, "prune", request(), after=ids[-1]))
    claimed = claim_at_once(location, tmp_path)
    # A claimer stops when nothing is claimable, which a chain leaves it while another holds the
    # link in hand: whoever holds it claims on, so every job is claimed exactly once.
    assert sorted(claimed) == ids
    with Store.open(location) as store, store.session() as session:
        rows = {j.id: j for j in session.query(Job).all()}  # type: ignore[attr-defined]
    for earlier, later in zip(ids, ids[1:], strict=False):
        assert rows[later].started_at >= rows[earlier].finished_at


def test_job_n_names_the_model_a_job_made_once_it_has_made_it(store):
    model_id = add_model(store, "made-by-a-job")
    prune = submit(store, "prune", request())
    with pytest.raises(UserError, match=f"job:{prune}: job {prune} is queued, so it has made no model yet"):
        model_io.resolve(store, f"job:{prune}")
    finish_claimed(store, "done", prune, result={"run_id": None, "model_id": model_id})
    target = model_io.resolve(store, f"job:{prune}")
    assert target.row is not None and target.row.name == "made-by-a-job" and target.source is None

    evaluation = submit(store, "eval", {"models": ["made-by-a-job"], "tasks": ["ppl:sms"]})
    finish_claimed(store, "done", evaluation, result={"models": []})
    with pytest.raises(UserError, match=f"job {evaluation} \\(eval\\) makes no model"):
        job_model(store, evaluation)
    failed = submit(store, "prune", request())
    finish_claimed(store, "failed", failed, error="boom")
    with pytest.raises(UserError, match=f"job {failed} failed, so it made no model"):
        model_io.resolve(store, f"job:{failed}")
    with pytest.raises(UserError, match="job:999 names no job"):
        model_io.resolve(store, "job:999")
