"""`workbench sweep` on a tiny model: one pruning per configuration and one evaluation per model,
grouped as a study, each evaluation waiting for its pruning; run by real job processes; re-running
reuses what is done; bad input exits 2 writing nothing."""

from __future__ import annotations

import json
import time

import pytest
from conftest import DATA

from store import jobs, studies
from store.db import Store
from store.studies import BASE_KEY
from workbench import model_io
from workbench.cli.main import main
from workbench.errors import UserError
from workbench.jobs import worker_running
from workbench.studies.request import SweepRequest
from workbench.studies.sweep import plan, queue
from workbench.studies.view import gather

pytestmark = pytest.mark.backends("sqlite", "postgresql")

SMALL = ["--samples", "4", "--seq-len", "32"]
LIMIT_S = 300  # generous: the machine may be busy; nothing here asserts on speed


def sweep(model: str, **overrides) -> SweepRequest:
    values = dict(model=model, scorers=("ppm", "wanda"), tasks=("ppl:wikitext2", "ppl:sms"), percents=(20.0, 40.0),
                  calibrations=("wikitext2", "sms"), samples=4, seq_len=32)  # fmt: skip
    return SweepRequest(**(values | overrides))


def wait_for_worker(store: Store) -> None:
    deadline = time.monotonic() + LIMIT_S
    while worker_running(store):
        assert time.monotonic() < deadline, "the worker never finished"
        time.sleep(0.2)


def test_a_sweep_queues_one_pruning_per_configuration_and_one_evaluation_per_model(store, tiny_model_dirs):
    model = str(tiny_model_dirs["llama"])  # not stored yet: an import comes first
    planned = plan(store, sweep(model), DATA)
    assert planned.counts() == {"configurations": 6, "import": 1, "prune": 6, "heal": 0, "eval": 7, "runs reused": 0,
                                "prunings waited for": 0, "heals reused": 0}  # fmt: skip
    queued = queue(store, planned)
    found = jobs.jobs_by_id(store, queued.new_jobs)
    assert len(found) == 14 and set(queued.new_jobs) == set(found)
    [imported] = [j for j in found.values() if j.kind == "import"]
    prunes = [j for j in found.values() if j.kind == "prune"]
    evals = [j for j in found.values() if j.kind == "eval"]
    assert (len(prunes), len(evals)) == (6, 7)
    # ppm is static: one configuration per target; wanda, one per target and source.
    configs = sorted((j.request["scorer"], j.request["percent"], j.request["calibration"]) for j in prunes)
    assert configs == [("ppm", 20.0, None), ("ppm", 40.0, None), ("wanda", 20.0, "sms"), ("wanda", 20.0, "wikitext2"),
                       ("wanda", 40.0, "sms"), ("wanda", 40.0, "wikitext2")]  # fmt: skip
    assert all(j.after_job_id == imported.id for j in prunes)
    waits = {j.after_job_id: j for j in evals}
    for prune in prunes:
        assert waits[prune.id].request["models"] == [f"job:{prune.id}"]
        assert waits[prune.id].request["tasks"] == ["ppl:wikitext2", "ppl:sms"]
    assert waits[imported.id].request["models"] == [model]  # the base, once imported

    study = studies.get_study(store, sweep(model).default_name())
    items = studies.items(store, study.id)
    assert sorted(i.role for i in items) == ["eval"] * 7 + ["import"] + ["prune"] * 6
    assert len({i.key for i in items}) == 7 and {i.key for i in items if i.role == "import"} == {BASE_KEY}
    assert {i.job_id for i in items} == set(queued.new_jobs)

    again = plan(store, sweep(model), DATA)  # everything is on its way: nothing twice
    assert again.counts() | {"configurations": 0} == {"configurations": 0, "import": 0, "prune": 0, "heal": 0,
                                                      "eval": 0, "runs reused": 0, "prunings waited for": 6,
                                                      "heals reused": 0}  # fmt: skip
    assert queue(store, again).new_jobs == ()

    jobs.request_cancel(store, prunes[0].id)  # its evaluation will fail: both are queued again
    [summary] = studies.list_studies(store)
    assert (summary.jobs, summary.failed, summary.status) == (14, 1, "queued")
    retried = queue(store, plan(store, sweep(model), DATA))
    assert sorted(jobs.get_job(store, j).kind for j in retried.new_jobs) == ["eval", "prune"]
    [summary] = studies.list_studies(store)
    assert (summary.jobs, summary.failed) == (15, 0)  # the cancelled one is history now


def test_a_study_keeps_its_base_model(store, tiny_model_dirs):
    model_io.import_model(store, str(tiny_model_dirs["llama"]), name="tiny")
    model_io.import_model(store, str(tiny_model_dirs["qwen2"]), name="other")
    queue(store, plan(store, sweep("tiny", scorers=("ppm",), percents=(20.0,), name="mine"), DATA))
    with pytest.raises(UserError, match="study 'mine' prunes tiny, not other: name another study"):
        plan(store, sweep("other", scorers=("ppm",), percents=(20.0,), name="mine"), DATA)


def test_calibrating_on_the_text_perplexity_measures_is_flagged(store, tiny_model_dirs, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text(" ".join(f"line {i} of the notes that calibrate and measure." for i in range(400)))
    model_io.import_model(store, str(tiny_model_dirs["llama"]), name="tiny")
    planned = plan(store, sweep("tiny", scorers=("wanda",), percents=(20.0,), calibrations=(str(text), "sms"),
                                tasks=(f"ppl:{text}", "ppl:sms")), DATA)  # fmt: skip
    flagged = {c.config["calibration"]: c.overlaps for c in planned.configurations}
    assert flagged == {str(text): (f"ppl:{text}",), "sms": ()}


def test_a_sweep_runs_end_to_end_then_reuses_what_is_done(store, tiny_model_dirs, tmp_path, capsys):
    model_io.import_model(store, str(tiny_model_dirs["llama"]), name="tiny")  # (the import job is tested above)
    location, model = store.location, "tiny"
    args = ["--store", location, "sweep", model, "--scorers", "ppm,wanda", "--percent", "20", "--calibration",
            "wikitext2,sms", "--tasks", "ppl:wikitext2,ppl:sms", "--name", "tiny-study", *SMALL]  # fmt: skip
    code = main(args)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "queues 3 prunings, 4 evaluations" in out and "study tiny-study: trade-off" in out
    wait_for_worker(store)
    view = gather(store, "tiny-study")
    assert [r.status for r in view.all_rows] == ["done"] * 4
    assert [r.label for r in view.rows] == ["ppm 20%", "wanda 20% (wikitext2)", "wanda 20% (sms)"]
    assert {c.key for c in view.columns} == {"ppl:wikitext2 perplexity", "ppl:sms perplexity"}
    assert all(len(r.figures) == 2 for r in view.all_rows)

    ran = jobs.jobs_by_id(store, studies.study_jobs(store, view.study.id))
    for job in ran.values():  # each ran only once the job it waited for was done
        assert job.status == "done", job.error
        if job.after_job_id is not None:
            assert job.started_at >= ran[job.after_job_id].finished_at
    [group] = view.specialisation()
    assert [s for s, _ in group.measured] == ["wikitext2", "sms"] and len(group.overlaps[0].layers) == 3

    assert main([*args, "--detach", "--json"]) == 0  # again: nothing new
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"study": "tiny-study", "new_jobs": [], "waiting_for": []}
    assert "nothing to queue" in captured.err and "3 runs reused" in captured.err
    assert len(jobs.list_jobs(store)) == len(ran)

    wider = plan(store, sweep(model, percents=(20.0, 40.0), name="tiny-study"), DATA)  # a new target: its own jobs
    assert wider.counts() == {"configurations": 6, "import": 0, "prune": 3, "heal": 0, "eval": 3, "runs reused": 3,
                              "prunings waited for": 0, "heals reused": 0}  # fmt: skip

    assert main(["--store", location, "study", "show", "tiny-study", "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and lines[0].startswith("configuration,scorer,")
    assert main(["--store", location, "study", "report", "tiny-study", "--out", str(tmp_path / "r.md")]) == 0
    report = (tmp_path / "r.md").read_text()
    assert all(f"| {r.label} |" in report for r in view.rows) and "## Findings" in report


def test_a_sweep_with_repair_and_heal_shows_cut_repaired_and_healed_side_by_side(store, tiny_model_dirs, tmp_path,
                                                                                 capsys):
    model_io.import_model(store, str(tiny_model_dirs["llama"]), name="tiny")
    args = ["--store", store.location, "sweep", "tiny", "--scorers", "wanda", "--percent", "40", "--repair",
            "oneshot", "--heal-tokens", "1024", "--heal-data", "sms", "--tasks", "ppl:wikitext2,ppl:sms",
            "--name", "recovery", *SMALL]  # fmt: skip
    code = main(args)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "queues 2 prunings, 2 heals, 5 evaluations" in out and "note: heals on sms read" not in out
    wait_for_worker(store)
    view = gather(store, "recovery")
    assert [r.status for r in view.all_rows] == ["done"] * 5, [r.problem for r in view.all_rows]
    assert [r.step for r in view.rows] == ["cut", "heal 1024", "repair oneshot", "repair oneshot + heal 1024"]
    cut, healed, repaired, both = view.rows
    assert healed.model.parent_id == cut.model.id and both.model.parent_id == repaired.model.id
    assert repaired.run.repair == "oneshot" and both.run.id == repaired.run.id
    assert all(len(r.figures) == 2 for r in view.all_rows)
    assert view.table().columns[4].title == "recovery" and view.recovered
    from workbench.studies.findings import findings

    recovery = [f.text for f in findings(view) if f.topic == "recovery"]
    assert len(recovery) == 3 and any(t.startswith(both.label + ": against " + repaired.label) for t in recovery)
    assert all("ppl:wikitext2 perplexity" in t for t in recovery)

    assert main([*args, "--detach", "--json"]) == 0  # again: the heals are reused too
    captured = capsys.readouterr()
    assert json.loads(captured.out)["new_jobs"] == [] and "2 heals reused" in captured.err
    assert main(["--store", store.location, "study", "report", "recovery", "--out", str(tmp_path / "r.md")]) == 0
    report = (tmp_path / "r.md").read_text()
    assert "## Findings" in report and "Recovery: what repair and healing bought and cost" in report


def test_heal_text_that_perplexity_reads_is_flagged(store, tiny_model_dirs, tmp_path):
    text = tmp_path / "mine.txt"
    text.write_text(" ".join(["the workbench heals on this text"] * 400))
    model_io.import_model(store, str(tiny_model_dirs["llama"]), name="tiny")
    planned = plan(store, sweep("tiny", scorers=("ppm",), percents=(40.0,), tasks=("ppl:wikitext2", f"ppl:{text}"),
                                heal_tokens=(1024,), heal_data=str(text)), DATA)  # fmt: skip
    [healed] = planned.healed
    assert healed.overlaps == (f"ppl:{text}",) and planned.configurations[0].overlaps == ()


@pytest.mark.backends("sqlite")  # (the store's side of it runs on both in test_study_jobs.py)
def test_a_pruning_that_fails_fails_the_evaluation_waiting_for_it(store, tiny_model_dirs):
    base = model_io.import_model(store, str(tiny_model_dirs["llama"]), name="tiny")
    queued = queue(store, plan(store, sweep("tiny", scorers=("ppm",), percents=(20.0,), tasks=("ppl:sms",)), DATA))
    (store.model_path(base) / "model.safetensors").unlink()  # checked and queued; now the load will fail
    assert main(["--store", store.location, "jobs", "work"]) == 0
    found = jobs.jobs_by_id(store, queued.new_jobs)
    [prune] = [j for j in found.values() if j.kind == "prune"]
    [waiting] = [j for j in found.values() if j.after_job_id == prune.id]
    assert prune.status == "failed" and waiting.status == "failed"
    assert waiting.error == f"waits for job {prune.id}, which failed" and waiting.started_at is None
    [row] = gather(store, queued.name).rows
    assert row.status == "prune failed" and row.problem.startswith(f"job {prune.id}: ")


BAD = [
    (["--scorers", "ppm,nope"], "unknown scorer 'nope'"),
    (["--scorers", "ppm,ppm"], "scorer ppm is named twice"),
    (["--percent", "100"], "--percent must be at least 0 and below 100"),
    (["--percent", "20,x"], "--percent takes numbers"),
    (["--percent", "", "--expansion", "9"], "does not shrink the model"),
    (["--divisor", "200"], "impossible rounding"),
    (["--calibration", "wikitext2,MISSING"], "does not exist"),
    (["--tasks", "ppl:sms,nope"], "unknown task 'nope'"),
    (["--model", "no-such-model"], "no model 'no-such-model'"),
]


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(args, message, store, tiny_model_dirs, tmp_path, capsys):
    model_io.import_model(store, str(tiny_model_dirs["llama"]), name="tiny")
    options = {"--scorers": "ppm,wanda", "--percent": "20", "--tasks": "ppl:sms", "--model": "tiny"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        options[flag] = value.replace("MISSING", str(tmp_path / "missing.txt"))
    model = options.pop("--model")
    before = sorted(p.relative_to(store.root) for p in store.root.rglob("*") if "sqlite" not in p.name)
    code = main(["--store", store.location, "sweep", model, *(x for kv in options.items() for x in kv if kv[1]),
                 *SMALL])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert sorted(p.relative_to(store.root) for p in store.root.rglob("*") if "sqlite" not in p.name) == before
    assert jobs.list_jobs(store) == [] and studies.list_studies(store) == []
