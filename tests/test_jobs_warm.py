"""Warm workers: a job process started ahead of its job (torch and the engine imported) takes the
next job through its stdin, a foreground command leaves its job to it, and it never outlives its
worker. The suite runs with WORKBENCH_WARM_S=0 (tests/conftest.py); these tests set it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import DATA

from store import jobs
from store.db import Store
from workbench.cli.main import main
from workbench.errors import UserError
from workbench.jobs import submit, worker_running
from workbench.jobs.worker import log_path
from workbench.spec import EvalSpec, HealSpec, PruneSpec

LIMIT_S = 240  # generous: the machine may be busy; nothing here asserts on speed
# As a host without GPUs sees it (CUDA_VISIBLE_DEVICES empty), whatever this one has: on a host of
# several GPUs a command runs its job itself and leaves no worker (the first test sets two apart).
WARM = os.environ | {"WORKBENCH_WARM_S": "300", "CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture
def stored(store, tiny_model_dirs) -> Store:
    """A store holding the tiny Llama as `tiny` (a stored model: the command checks it without torch)."""
    assert main(["--store", str(store.location), "models", "import", str(tiny_model_dirs["llama"]), "--name",
                 "tiny"]) == 0
    return store


def workbench(store: Store, *args: str, env: dict[str, str] = WARM) -> tuple[int, subprocess.CompletedProcess[str]]:
    """`workbench --store STORE ARGS` as a process: its pid and how it ended."""
    process = subprocess.Popen([sys.executable, "-m", "workbench", "--store", str(store.location), *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out, err = process.communicate(timeout=LIMIT_S)
    return process.pid, subprocess.CompletedProcess(process.args, process.returncode, out, err)


def prune(store: Store, name: str, env: dict[str, str] = WARM) -> tuple[int, jobs.JobInfo]:
    """A foreground static prune of `tiny`: the command's pid, and its job (done)."""
    pid, done = workbench(store, "prune", "tiny", "--scorer", "ppm", "--percent", "25", "--device", "cpu",
                          "--name", name, "--json", env=env)
    assert done.returncode == 0, done.stderr
    job = max(jobs.list_jobs(store), key=lambda j: j.id)
    assert job.status == "done" and job.result["model_name"] == name, job
    return pid, job


def waiting(log: Path, after: int = 0) -> int:
    """The pid of the warm job process the worker's log names past `after` characters, once it does."""
    deadline = time.monotonic() + LIMIT_S
    while True:
        text = log.read_text() if log.exists() else ""
        found = re.search(r"a warm job process waits for work: pid (\d+)", text[after:])
        if found:
            return int(found.group(1))
        assert time.monotonic() < deadline, text
        time.sleep(0.1)


def gone(pid: int) -> bool:
    deadline = time.monotonic() + LIMIT_S
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_command_leaves_its_job_to_the_warm_job_process_its_predecessor_left(stored):
    store = stored
    # On a host of several GPUs a command runs its job itself (it takes every GPU), and leaves no worker.
    several_pid, several = prune(store, "several", env=WARM | {"CUDA_VISIBLE_DEVICES": "0,1"})
    assert several.pid == several_pid and several.device == "cpu"
    assert not worker_running(store)

    first_pid, first = prune(store, "first")
    assert first.pid == first_pid  # no worker ran: the command ran its job itself...
    log = log_path(store)
    warm_pid = waiting(log)  # ...then left a worker with a job process ready for the next
    assert worker_running(store)
    assert "workbench.jobs.child" in psutil.Process(warm_pid).cmdline()

    second_pid, second = prune(store, "second")
    assert second.pid == warm_pid != second_pid  # started before the command was typed
    job_log = (store.root / second.log_path).read_text()
    assert f"made second (model {second.result['model_id']}" in job_log  # its output went to the job's log
    assert "done after" in job_log.splitlines()[-1]

    # The worker readies another; killed, it takes that one along (its stdin ends).
    next_pid = waiting(log, after=log.read_text().index(f"pid {warm_pid}") + 1)
    worker_pid = int(re.search(r"worker pid (\d+)", log.read_text()).group(1))
    os.kill(worker_pid, signal.SIGKILL)
    assert gone(next_pid)
    assert not worker_running(store)


def test_an_idle_warm_worker_waits_its_seconds_then_exits_with_its_warm_process(store):
    began = time.monotonic()
    pid, done = workbench(store, "jobs", "work", "--warm", "1")
    assert done.returncode == 0, done.stderr
    spare = int(re.search(r"a warm job process waits for work: pid (\d+)", done.stdout).group(1))
    assert "queue empty after 0 jobs and 1 s without work: worker exits" in done.stdout
    assert time.monotonic() - began >= 1
    assert gone(spare)


def test_a_warm_process_that_dies_leaves_jobs_to_processes_of_their_own(stored, tmp_path):
    store = stored
    output = (tmp_path / "worker.out").open("w")
    worker = subprocess.Popen([sys.executable, "-m", "workbench", "--store", str(store.location), "jobs", "work",
                               "--warm", "300"], stdout=output, stderr=subprocess.STDOUT, text=True, env=WARM)
    try:
        said = tmp_path / "worker.out"
        spare = waiting(said)
        os.kill(spare, signal.SIGKILL)
        deadline = time.monotonic() + LIMIT_S
        while f"a warm job process (pid {spare}) ended by itself, exit status -9" not in said.read_text():
            assert time.monotonic() < deadline, said.read_text()
            time.sleep(0.1)
        job_id = submit(store, "prune", PruneSpec(model="tiny", scorer="ppm", percent=25, device="cpu").to_dict(),
                        data_dir=DATA)
        deadline = time.monotonic() + LIMIT_S
        while not (job := jobs.get_job(store, job_id)).finished:
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        assert job.status == "done" and job.pid != spare, job
        assert f"job {job_id} (prune) started: pid {job.pid}\n" in said.read_text()  # a fresh process, not "(warm)"
    finally:
        worker.terminate()
        worker.wait(timeout=LIMIT_S)


def test_a_bad_warm_setting_is_one_line_and_exit_2(store):
    _, done = workbench(store, "jobs", "list", env=os.environ | {"WORKBENCH_WARM_S": "soon"})
    assert done.returncode == 2
    assert done.stderr.strip() == "workbench: error: WORKBENCH_WARM_S must be seconds (0 or more), got 'soon'"
    _, done = workbench(store, "jobs", "work", "--warm", "-1")
    assert done.returncode == 2
    assert done.stderr.strip() == "workbench: error: --warm must be seconds (0 or more), got -1"


def test_a_prune_of_a_stored_model_is_checked_without_torch(stored, tiny_model_dirs):
    """What lets the command leave its job to a warm process: its checks import no engine, and say
    where only the engine can tell (a model to import first; too little calibration text to be sure)."""
    code = f"""
import sys
from pathlib import Path
from store.db import Store
from workbench.errors import UserError
from workbench.prune_request import check_request
from workbench.spec import PruneSpec

store, data = Store.open({str(stored.location)!r}), Path({str(DATA)!r})
def check(**fields):
    try:
        return check_request(PruneSpec(**{{"scorer": "ppm", "percent": 25, "device": "cpu"}} | fields), store, data)
    except UserError as e:
        return str(e)
print(check(model="tiny"), check(model="tiny", scorer="wanda", samples=4, seq_len=64),
      check(model="tiny", scorer="wanda", samples=100000, seq_len=64), check(model={str(tiny_model_dirs["qwen2"])!r}),
      check(model="tiny", percent=25, name="tiny"), sep="|")
print(sorted(m for m in ("torch", "transformers") if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=LIMIT_S)
    assert done.returncode == 0, done.stderr
    said, imported = done.stdout.splitlines()
    assert said.split("|") == ["True", "True", "False", "False",
                               "the store already has a model named 'tiny': choose another --name"]
    assert imported == "[]"


def test_an_eval_of_stored_models_on_measurements_and_local_tasks_is_checked_without_torch(stored, tmp_path):
    damaged = tmp_path / "data"
    for split in ("train", "validation", "test"):
        file = damaged / "arc" / "ARC-Easy" / f"{split}.jsonl"
        file.parent.mkdir(parents=True, exist_ok=True)
        rows = (DATA / "arc" / "ARC-Easy" / f"{split}.jsonl").read_text(encoding="utf-8").split("\n")[:2]
        file.write_text("\n".join([*rows, "{oops", ""]), encoding="utf-8")
    code = f"""
import sys
from pathlib import Path
from store.db import Store
from workbench.errors import UserError
from workbench.eval_request import check_request
from workbench.spec import EvalSpec

store = Store.open({str(stored.location)!r})
def check(tasks, data={str(DATA)!r}, **fields):
    try:
        return check_request(EvalSpec(**{{"models": ("tiny",), "tasks": tasks}} | fields), store, Path(data))
    except UserError as e:
        return str(e)
print(check(("speed", "ppl:wikitext2")), check(("arc_easy", "piqa")), check(("gsm8k",)),
      check(("arc_easy",), fewshot=2), check(("gsm8k",), fewshot=7474), check(("mmlu",)),
      check(("arc_easy",), data={str(damaged)!r}), check(("speed",), models=("tiny", "1")), sep="|")
print(sorted(m for m in ("torch", "transformers", "lm_eval") if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=LIMIT_S)
    assert done.returncode == 0, done.stderr
    said, imported = done.stdout.splitlines()
    assert said.split("|") == ["True", "True", "True", "True",
                               "gsm8k: 7474 few-shot examples asked, but its few-shot split holds 7473 (at most 7473)",
                               "False",  # a group of 57 tasks: the engine builds them
                               f"{damaged / 'arc' / 'ARC-Easy' / 'test.jsonl'} is damaged: line 3 is not JSON "
                               "(Expecting property name enclosed in double quotes: line 1 column 2 (char 1))",
                               "'1' and 'tiny' are the same model"]
    assert imported == "[]"
    # The command says it in one line, and queues nothing.
    _, done = workbench(stored, "--data-dir", str(damaged), "eval", "tiny", "--tasks", "arc_easy")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "is damaged: line 3" in done.stderr
    assert [j.kind for j in jobs.list_jobs(stored)] == ["import"]


@pytest.mark.parametrize(("task", "fewshot"), [("gsm8k", None), ("gsm8k", 7473), ("gsm8k", 7474), ("arc_easy", 3),
                                               ("arc_easy", 100000), ("hellaswag", None), ("hellaswag", 3),
                                               ("ifeval", 3), ("lambada_openai", 3)])  # fmt: skip
def test_the_light_few_shot_check_says_what_the_engine_says(task, fewshot, tmp_path):
    """Counted in the local files, the few-shot examples a task can draw agree with lm-eval's own
    count of the task it builds: the same verdict, the same words."""
    from workbench.eval_request import _lm_eval_settled
    from workbench.evaluation.harness import prepare

    def verdict(check) -> str:
        try:
            return str(check())
        except UserError as e:
            return str(e)

    spec = EvalSpec(models=("m",), tasks=(task,), fewshot=fewshot)
    light = verdict(lambda: _lm_eval_settled(spec, [task], DATA))
    engine = verdict(lambda: prepare(spec, [task], DATA, tmp_path) and True)
    assert light == engine


def test_a_heal_of_stored_models_is_checked_without_torch(stored, tmp_path):
    """A heal of a cut by its parent settles without the engine on the CPU (their tokenizer files
    differ only in where they were read from); where only the engine can tell (a tokenizer setting
    that differs, too little text to be sure) the light check says so."""
    prune(stored, "cut")
    assert main(["--store", str(stored.location), "models", "import", str(stored.model_path(_row(stored, "tiny"))),
                 "--name", "twin"]) == 0  # the same weights, its tokenizer settings written apart
    config = stored.model_path(_row(stored, "twin")) / "tokenizer_config.json"
    config.write_text(json.dumps(json.loads(config.read_text()) | {"clean_up_tokenization_spaces": True}))
    parent = stored.model_path(_row(stored, "tiny")) / "tokenizer_config.json"  # as a model saved where it was made
    parent.write_text(json.dumps({k: v for k, v in json.loads(parent.read_text()).items() if k != "is_local"}))
    (tmp_path / "short.txt").write_text("a few words, fewer tokens than one batch of two windows of 64")
    code = f"""
import sys
from pathlib import Path
from store.db import Store
from workbench.errors import UserError
from workbench.heal_request import check_request
from workbench.spec import HealSpec

store = Store.open({str(stored.location)!r})
def check(**fields):
    spec = HealSpec(**{{"model": "cut", "data": "wikitext2", "tokens": 4096, "seq_len": 64, "batch_size": 2}} | fields)
    try:
        return check_request(spec, store, Path({str(DATA)!r}))
    except UserError as e:
        return str(e)
print(check(), check(device="cpu"), check(data={str(tmp_path / "short.txt")!r}), check(teacher="twin"),
      check(name="tiny"), check(seq_len=2**20, batch_size=2**10).split(" (")[0], sep="|")
print(sorted(m for m in ("torch", "transformers") if m in sys.modules))
"""
    env = os.environ | {"CUDA_VISIBLE_DEVICES": ""}  # `auto` is the CPU, as on a host without GPUs
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=LIMIT_S, env=env)
    assert done.returncode == 0, done.stderr
    said, imported = done.stdout.splitlines()
    assert said.split("|")[:5] == ["True", "True", "False", "False",
                                   "the store already has a model named 'tiny': choose another --name"]
    assert re.fullmatch(r"healing needs about \d+\.\d GiB on cpu", said.split("|")[5])
    assert imported == "[]"
    # The engine, asked what the light check left to it, passes the twin (its vocabulary is the same).
    from workbench.heal import check_request

    check_request(HealSpec(model="cut", teacher="twin", data="wikitext2", tokens=4096, seq_len=64, batch_size=2,
                           device="cpu"),
                  stored, DATA)


def _row(store: Store, name: str):
    from store import queries

    return queries.find_model(store, name)
