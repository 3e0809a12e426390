"""Evaluation requests checked without a model, the task catalogue, and which modules stay light."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import DATA, REPO

from workbench.errors import UserError
from workbench.spec import TASKS, EvalSpec


def spec(**kwargs) -> EvalSpec:
    return EvalSpec(**({"models": ("m",), "tasks": ("arc_easy",)} | kwargs)).validate()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"models": ()}, "at least one model"),
        ({"tasks": ()}, "at least one task"),
        ({"models": ("a", "a")}, "model 'a' is named twice"),
        ({"tasks": ("nope",)}, "unknown task 'nope'"),
        ({"tasks": ("ppl:",)}, "needs a text source"),
        ({"limit": 0}, "the limit must be"),
        ({"limit": float("nan")}, "the limit must be"),
        ({"limit": 3.5}, "whole number"),
        ({"fewshot": -1}, "few-shot must be"),
        ({"batch_size": 0}, "the batch size must be"),
        ({"batch_size": "big"}, "the batch size must be"),
        ({"chat_template": "maybe"}, "unknown chat template mode"),
        ({"include_path": "/no/such/folder"}, "not a folder"),
        ({"device": "tpu"}, "unknown device"),
        ({"dtype": "int4"}, "unknown dtype"),
    ],
)
def test_bad_requests_are_refused_in_one_line(kwargs, message):
    with pytest.raises(UserError, match=message) as caught:
        spec(**kwargs)
    assert "\n" not in str(caught.value)


def test_good_requests_pass_and_survive_a_json_round_trip(tmp_path):
    request = spec(models=("a", "b"), tasks=("gsm8k", "ppl:sms", "speed", "mine"), limit=0.5, fewshot=2,
                   batch_size=4, chat_template="off", include_path=str(tmp_path))  # fmt: skip
    assert EvalSpec.from_dict(json.loads(json.dumps(request.to_dict()))) == request
    assert spec(tasks=("ppl:/some/file.txt",)).tasks == ("ppl:/some/file.txt",)


def test_catalogue_tasks_name_lm_eval_files_and_local_data():
    from workbench.evaluation.local_tasks import BUILTIN, LOCAL_FILES, tasks_root

    lm_eval = {name for name, t in TASKS.items() if t.harness == "lm-eval"}
    assert lm_eval == set(BUILTIN) == set(LOCAL_FILES)
    assert all((tasks_root() / BUILTIN[n]).is_file() for n in lm_eval)
    assert all((DATA / f).is_file() for files in LOCAL_FILES.values() for f in files.values())
    assert TASKS["gsm8k"].fewshot == TASKS["mmlu"].fewshot == 5


def test_every_catalogue_task_builds_from_the_local_data(tmp_path):
    """lm-eval builds each generated task with its dataset (MMLU: all 57 subjects) before any model loads."""
    from workbench.evaluation import harness

    names = [n for n, t in TASKS.items() if t.harness == "lm-eval"]
    prepared = harness.prepare(spec(tasks=tuple(names)), names, DATA, tmp_path)
    assert [t.name for t in prepared.tasks] == names and all(t.local is not None for t in prepared.tasks)
    assert {t.name for t in prepared.tasks if t.generates} == {"gsm8k", "ifeval"}
    assert {t.name for t in prepared.tasks if t.local.approximate} == {"hellaswag"}
    assert {t.name: t.fewshot for t in prepared.tasks} == {n: TASKS[n].fewshot for n in names}


def test_the_request_the_catalogue_and_the_trade_off_stay_light():
    """The TUI imports these: none may pull in torch, transformers or lm-eval."""
    code = ("import sys, workbench.spec, workbench.tradeoff, workbench.cli.evaluate, workbench.cli.compare; "
            "print(sorted({'torch', 'transformers', 'lm_eval'} & set(sys.modules)))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
