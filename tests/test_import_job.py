"""Importing a model as a job: the `import` kind end to end on a tiny model folder, `models import`
in the foreground and with --detach, and bad input refused before any job row exists."""

from __future__ import annotations

import os
import time

import pytest
from store_fixtures import snapshot

from store import jobs, queries
from store.db import Store
from workbench.cli.main import main
from workbench.errors import UserError
from workbench.jobs import submit
from workbench.jobs.execution import execute
from workbench.sources import ImportRequest

LIMIT_S = 240  # a job process loads torch; a busy machine may take a while


def run_cli(store_dir, *args: str, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["--store", str(store_dir), "models", "import", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_import_kind_queues_a_checked_request_and_runs_it(store, tiny_model_dirs, monkeypatch):
    folder = tiny_model_dirs["gemma3_text"]
    monkeypatch.chdir(folder.parent)
    job_id = submit(store, "import", ImportRequest(folder.name, " tiny-gemma ").to_dict())
    queued = jobs.get_job(store, job_id)
    assert queued.request == {"source": str(folder), "name": "tiny-gemma", "if_missing": False}  # made absolute
    with pytest.raises(UserError, match="no model 'missing'"):
        submit(store, "import", {"source": "missing"})

    job = execute(store, jobs.claim(store, os.getpid(), job_id=job_id))
    assert (job.status, job.stage, job.progress, job.device) == ("done", "done", 1.0, "cpu"), job.error
    model = queries.get_model(store, "tiny-gemma")
    assert job.result == {"model_id": model.id, "model_name": "tiny-gemma", "folder": str(store.model_path(model))}
    assert (model.source, model.source_ref, model.family, model.intermediate_size) == (
        "folder", str(folder), "gemma3_text", 96)  # fmt: skip
    assert (store.model_path(model) / "model.safetensors").is_file()
    log = (store.root / job.log_path).read_text()
    lines = [line.split(" ", 1)[1] for line in log.splitlines()]  # each after its time of day
    assert f"reading {folder}" in lines and f"loading {folder}" in lines and "saving tiny-gemma" in lines
    assert f"stored tiny-gemma as model {model.id} in {store.model_path(model)}" in lines


def test_models_import_runs_in_the_foreground_and_keeps_its_output(tiny_model_dirs, tmp_path, capsys):
    store_dir, folder = tmp_path / "s", tiny_model_dirs["llama"]
    code, out, err = run_cli(store_dir, str(folder), "--name", "tiny", capsys=capsys)
    assert code == 0, err
    store = Store.open(store_dir)
    model = queries.get_model(store, "tiny")
    assert out == f"model 'tiny' (id {model.id}) in {store.model_path(model)}\n"
    [job] = jobs.list_jobs(store)
    assert (job.kind, job.status, job.result["model_id"]) == ("import", "done", model.id)

    code, out, err = run_cli(store_dir, str(folder), "--if-missing", capsys=capsys)  # there: nothing queued
    assert (code, out) == (0, f"model 'tiny' (id {model.id}) in {store.model_path(model)}\n")
    assert len(jobs.list_jobs(store)) == 1


def test_models_import_detach_queues_a_job_a_worker_runs(tiny_model_dirs, tmp_path, capsys):
    store_dir = tmp_path / "s"
    code, out, err = run_cli(store_dir, str(tiny_model_dirs["qwen2"]), "--detach", capsys=capsys)
    assert code == 0, err
    job_id = int(out)
    deadline = time.monotonic() + LIMIT_S
    while not (job := jobs.get_job(Store.open(store_dir), job_id)).finished:
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job.status == "done", job.error
    assert queries.get_model(Store.open(store_dir), tiny_model_dirs["qwen2"].name).id == job.result["model_id"]


@pytest.fixture
def not_glu(tmp_path, tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=320)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


BAD = [
    (["MISSING"], "no model"),
    (["NO_CONFIG"], "is not a Hugging Face model folder (no config.json)"),
    (["MISSING.gguf"], "GGUF file"),
    (["NOT_GLU"], "not a GLU model: GPT2LMHeadModel"),
    (["nobody/no-such-model"], "cannot load nobody/no-such-model"),  # no hub here (HF_HUB_OFFLINE)
    (["LLAMA"], "is already in the store as 'tiny'"),
    (["QWEN", "--name", "tiny"], "the store already has a model named 'tiny': choose another name"),
]


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_input_exits_2_with_one_line_and_queues_nothing(args, message, tiny_model_dirs, not_glu, tmp_path,
                                                            capsys):  # fmt: skip
    store_dir = tmp_path / "s"
    assert run_cli(store_dir, str(tiny_model_dirs["llama"]), "--name", "tiny", capsys=capsys)[0] == 0
    (tmp_path / "empty").mkdir()
    places = {"MISSING": tmp_path / "missing", "NO_CONFIG": tmp_path / "empty", "NOT_GLU": not_glu,
              "LLAMA": tiny_model_dirs["llama"], "QWEN": tiny_model_dirs["qwen2"]}  # fmt: skip
    args = [str(places[a]) if a in places else a.replace("MISSING", str(tmp_path / "missing")) for a in args]
    before = {k: v for k, v in snapshot(store_dir).items() if "sqlite" not in k}
    code, out, err = run_cli(store_dir, *args, "--detach", capsys=capsys)
    assert (code, out) == (2, "") and message in err and err.count("\n") == 1, err
    assert {k: v for k, v in snapshot(store_dir).items() if "sqlite" not in k} == before
    assert len(jobs.list_jobs(Store.open(store_dir))) == 1  # the first import's
