"""`workbench eval` on a tiny random model with real lm-eval and the local data: the expected metric
keys are recorded, built-in measurements are sane, progress counts every request, a cancel
records nothing, bad input exits 2 with one line and writes nothing."""

from __future__ import annotations

import json
import math
import re
import time
from importlib.metadata import version
from pathlib import Path

import pytest
from conftest import DATA, tiny_model

from store import jobs, queries
from store.db import Store
from workbench.cli.main import main
from workbench.evaluation import evaluate
from workbench.progress import Cancelled, Progress
from workbench.spec import EvalSpec

LOCAL_TASKS = "gsm8k,ifeval,truthfulqa_mc2,wikitext,arc_easy"
EXPECTED_KEYS = {
    "gsm8k": {"exact_match,strict-match", "exact_match,flexible-extract"},
    "ifeval": {"prompt_level_strict_acc,none", "inst_level_strict_acc,none", "prompt_level_loose_acc,none",
               "inst_level_loose_acc,none"},
    "truthfulqa_mc2": {"acc,none"},
    "wikitext": {"word_perplexity,none", "byte_perplexity,none", "bits_per_byte,none"},
    "arc_easy": {"acc,none", "acc_norm,none"},
    "speed": {"prefill_tokens_per_s", "decode_tokens_per_s"},
    "memory": {"peak_bytes"},
    "ppl:wikitext2": {"perplexity"},
    "model": {"parameters", "size_bytes"},
}  # fmt: skip


class Recording(Progress):
    """Keeps every message per stage; asks to cancel from the first message that shows a task part done."""

    def __init__(self, cancel_midway: bool = False) -> None:
        super().__init__()
        self.messages: dict[str, list[str]] = {}
        self.cancel_midway = cancel_midway
        self.cancelled_at: float | None = None

    def emit(self, stage: str, fraction: float, message: str) -> None:
        assert 0.0 <= fraction <= 1.0
        self.messages.setdefault(stage, []).append(message)
        counts = re.search(r"(\d+)/(\d+)", message)
        if self.cancel_midway and counts and 0 < int(counts[1]) < int(counts[2]) and self.cancelled_at is None:
            self.cancelled_at = time.perf_counter()

    def cancel_requested(self) -> bool:
        return self.cancelled_at is not None


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer) -> Path:
    """A tiny Llama whose context holds lm-eval's generation budgets (GSM8K's 5 shots, IFEval's 1280 tokens)."""
    folder = tmp_path_factory.mktemp("tiny-eval")
    tiny_model("llama", vocab_size=len(tokenizer), max_position_embeddings=2048).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def evaluated(model_dir, tmp_path_factory):
    """One evaluation of every local task the issue names, plus the built-ins, shared by the tests below."""
    store = Store.open(tmp_path_factory.mktemp("evaluated") / "store")
    progress = Recording()
    spec = EvalSpec(models=(str(model_dir),), tasks=(*LOCAL_TASKS.split(","), "speed", "memory", "ppl:wikitext2"),
                    limit=2, device="cpu")
    report = evaluate(spec, store, DATA, progress)
    rows = queries.evaluations(store, all_rows=True)
    return store, report, rows, progress


def test_local_tasks_record_lm_evals_metric_keys_and_settings(evaluated):
    store, report, rows, _ = evaluated
    assert {t: {r.metric for r in rows if r.task == t} for t in EXPECTED_KEYS} == EXPECTED_KEYS
    assert len(rows) == sum(map(len, EXPECTED_KEYS.values())) == len(report.models[0].evaluation_ids)
    for r in rows:
        assert (r.device, r.dtype, r.model_name) == ("cpu", "float32", report.models[0].model_name)
        if r.harness == "lm-eval":
            assert r.harness_version == version("lm_eval") and r.samples == 2 and r.limit == 2
            assert r.fewshot == (5 if r.task == "gsm8k" else 0)
            assert r.seconds > 0 and math.isfinite(r.value)
            assert r.settings["data"] == "local" and r.settings["chat_template"] is False
            assert r.settings["approximate"] is False and r.settings["batch_size"] == 8
    stderr = {(r.task, r.metric): r.stderr for r in rows}
    assert stderr["ifeval", "inst_level_strict_acc,none"] is None  # lm-eval says N/A
    assert stderr["arc_easy", "acc,none"] is not None and stderr["wikitext", "bits_per_byte,none"] is None


def test_builtin_measurements_are_sane_and_say_how_they_were_measured(evaluated):
    store, report, rows, _ = evaluated
    row = {(r.task, r.metric): r for r in rows}
    model = queries.get_model(store, report.models[0].model_id)
    assert row["model", "parameters"].value == model.parameters
    assert row["model", "size_bytes"].value == model.size_bytes
    prefill, decode = row["speed", "prefill_tokens_per_s"], row["speed", "decode_tokens_per_s"]
    assert prefill.value > 0 and decode.value > 0
    assert prefill.settings == decode.settings and prefill.settings["prompt_tokens"] == 128
    assert prefill.settings["new_tokens"] == 64 and prefill.settings["batch"] == 1
    assert row["memory", "peak_bytes"].value > model.size_bytes
    ppl = row["ppl:wikitext2", "perplexity"]
    assert 1 < ppl.value < 10 * 320 and ppl.samples == 24  # a random model over 320 tokens: near uniform or worse
    assert ppl.settings == {
        "windows": 24, "window_len": 512, "tokens_scored": 24 * 511, "stride": 512, "source": "wikitext2",
        "overlapping": False}  # fmt: skip


def test_progress_counts_every_request_lm_eval_makes(evaluated):
    _, report, _, progress = evaluated
    label = report.models[0].model_name

    def last_count(task: str) -> tuple[int, int]:
        done, total = re.search(r"(\d+)/(\d+)", progress.messages[f"{label}:{task}"][-1]).groups()
        return int(done), int(total)

    def first_rows(file: str, n: int = 2) -> list[dict]:
        return [json.loads(line) for line in (DATA / file).open()][:n]

    arc = sum(len(d["choices"]["text"]) for d in first_rows("arc/ARC-Easy/test.jsonl"))
    truthful = sum(len(d["mc2_targets"]["choices"]) for d in first_rows("truthfulqa/multiple_choice_validation.jsonl"))
    assert last_count("arc_easy") == (arc, arc)
    assert last_count("truthfulqa_mc2") == (truthful, truthful)
    assert last_count("gsm8k") == (2, 2) and last_count("ifeval") == (2, 2)
    windows = last_count("wikitext")
    assert windows[0] == windows[1] >= 2
    assert "generations" in progress.messages[f"{label}:ifeval"][-1]
    # Counts only: the time left is the job's one estimate (Progress.eta_seconds), never a second one.
    assert not any("left" in m for messages in progress.messages.values() for m in messages)


def test_cli_prints_approximate_hellaswag_and_json(model_dir, tmp_path, capsys):
    store_dir = str(tmp_path / "s")
    assert main(["--store", store_dir, "eval", str(model_dir), "--tasks", "hellaswag", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "hellaswag (approximate)" in out and "acc_norm,none" in out
    name = queries.list_models(Store.open(store_dir))[0].name
    assert main(["--store", store_dir, "eval", name, "--tasks", "boolq", "--limit", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {m["metric"] for m in report["models"][0]["metrics"] if m["task"] == "boolq"} == {"acc,none"}
    rows = queries.evaluations(Store.open(store_dir))
    assert {r.task: r.settings["approximate"] for r in rows if r.harness == "lm-eval"} == {
        "hellaswag": True, "boolq": False}


def test_include_path_task_runs(model_dir, tmp_path, capsys):
    tasks = tmp_path / "my_tasks"
    tasks.mkdir()
    docs = [{"q": "The sky is", "choices": [" blue", " loud"], "gold": 0},
            {"q": "Fire is", "choices": [" cold", " hot"], "gold": 1},
            {"q": "Ice is", "choices": [" cold", " hot"], "gold": 0}]  # fmt: skip
    (tasks / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (tasks / "tiny_choice.yaml").write_text(
        f"task: tiny_choice\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {tasks / 'docs.jsonl'}\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: '{{q}}'\ndoc_to_choice: '{{choices}}'\n"
        "doc_to_target: gold\nmetric_list:\n  - metric: acc\n"
    )
    code = main(["--store", str(tmp_path / "s"), "eval", str(model_dir), "--tasks", "tiny_choice,arc_easy",
                 "--include-path", str(tasks), "--limit", "3", "--json"])
    assert code == 0, capsys.readouterr().err
    rows = {r.task: r for r in queries.evaluations(Store.open(tmp_path / "s")) if r.harness == "lm-eval"}
    assert rows["tiny_choice"].metric == "acc,none" and rows["tiny_choice"].samples == 3
    assert rows["tiny_choice"].settings["data"] == "include-path"
    assert rows["tiny_choice"].settings["include_path"] == str(tasks) and rows["arc_easy"].settings["data"] == "local"


def test_cancel_mid_task_stops_within_seconds_and_records_nothing(model_dir, tmp_path, capsys):
    store_dir = tmp_path / "s"
    assert main(["--store", str(store_dir), "models", "import", str(model_dir), "--name", "tiny"]) == 0
    store = Store.open(store_dir)
    progress = Recording(cancel_midway=True)
    spec = EvalSpec(models=("tiny",), tasks=("speed", "arc_easy"), limit=100, batch_size=1, device="cpu")
    with pytest.raises(Cancelled):
        evaluate(spec, store, DATA, progress)
    assert progress.cancelled_at is not None and time.perf_counter() - progress.cancelled_at < 3.0
    assert queries.evaluations(store, all_rows=True) == []


def test_several_models_each_load_once_for_all_their_tasks(model_dir, tiny_model_dirs, tmp_path, capsys, monkeypatch):
    from workbench import model_io

    store_dir = str(tmp_path / "s")
    for name, folder in (("llama", model_dir), ("qwen", tiny_model_dirs["qwen2"])):
        assert main(["--store", store_dir, "models", "import", str(folder), "--name", name]) == 0
    capsys.readouterr()
    loads = []
    real = model_io.load_model
    monkeypatch.setattr(model_io, "load_model", lambda folder, *a: loads.append(folder) or real(folder, *a))
    code = main(["--store", store_dir, "eval", "llama", "qwen", "--tasks", "arc_easy,truthfulqa_mc2,speed",
                 "--limit", "1", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert [m["model_name"] for m in report["models"]] == ["llama", "qwen"] and len(loads) == 2
    rows = queries.evaluations(Store.open(store_dir))
    assert {(r.model_name, r.task) for r in rows} == {
        (m, t) for m in ("llama", "qwen") for t in ("arc_easy", "truthfulqa_mc2", "speed", "model")}


def test_chat_template_auto_is_on_for_generation_by_instruct_models_only(tmp_path, tokenizer, capsys):
    folder = tmp_path / "tiny-instruct"
    tiny_model("llama", vocab_size=len(tokenizer), max_position_embeddings=2048).save_pretrained(folder)
    tokenizer.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
    try:
        tokenizer.save_pretrained(folder)
    finally:
        tokenizer.chat_template = None
    code = main(["--store", str(tmp_path / "s"), "eval", str(folder), "--tasks", "gsm8k,arc_easy", "--limit", "1",
                 "--fewshot", "1", "--json"])
    assert code == 0, capsys.readouterr().err
    chat = {r.task: (r.settings["chat_template"], r.fewshot) for r in queries.evaluations(Store.open(tmp_path / "s"))
            if r.harness == "lm-eval"}
    assert chat == {"gsm8k": (True, 1), "arc_easy": (False, 1)}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "nope"], "unknown task 'nope'"),
        (["--tasks", ","], "--tasks ',' has an empty item"),
        (["--tasks", "arc_easy,arc_easy"], "named twice"),
        (["--tasks", "arc_easy", "--limit", "0"], "the limit must be"),
        (["--tasks", "arc_easy", "--limit", "2.5"], "whole number"),
        (["--tasks", "arc_easy", "--fewshot", "-1"], "few-shot must be"),
        (["--tasks", "arc_easy", "--batch-size", "big"], "the batch size must be"),
        (["--tasks", "arc_easy", "--include-path", "MISSING"], "is not a folder"),
        (["--tasks", "mine", "--include-path", "EMPTY"], "unknown task 'mine'"),
        (["--tasks", "ppl:MISSING.txt"], "does not exist"),
        (["--tasks", "piqa", "--fewshot", "3"], "no training split"),
        (["--tasks", "arc_easy", "--chat-template", "on"], "has no chat template"),
        (["--tasks", "arc_easy", "--data-dir", "EMPTY"], "does not exist"),
        (["--tasks", "arc_easy", "--device", "cuda"], "not available"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(args, message, model_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    args = [a.replace("MISSING", str(tmp_path / "missing")).replace("EMPTY", str(tmp_path / "empty")) for a in args]
    if "--device" in args and _cuda():
        pytest.skip("CUDA is available here")
    store_dir = tmp_path / "s"
    code = main(["--store", str(store_dir), "eval", str(model_dir), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    store = Store.open(store_dir)
    assert queries.list_models(store) == [] and queries.evaluations(store, all_rows=True) == []
    assert jobs.list_jobs(store) == []  # refused before a job row exists


def test_eval_runs_as_a_job_and_detach_queues_one_for_a_worker(model_dir, tmp_path, capsys):
    store_dir = str(tmp_path / "s")
    assert main(["--store", store_dir, "eval", str(model_dir), "--tasks", "ppl:wikitext2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    [job] = jobs.list_jobs(Store.open(store_dir))
    assert (job.kind, job.status, job.result) == ("eval", "done", report)

    assert main(["--store", store_dir, "eval", report["models"][0]["model_name"], "--tasks", "speed", "--detach"]) == 0
    job_id = int(capsys.readouterr().out)
    deadline = time.monotonic() + 300
    while not (job := jobs.get_job(Store.open(store_dir), job_id)).finished:
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job.status == "done", job.error
    rows = queries.evaluations(Store.open(store_dir))
    assert {r.task for r in rows} >= {"ppl:wikitext2", "speed"}


def test_unknown_model_exits_2(tmp_path, capsys):
    assert main(["--store", str(tmp_path / "s"), "eval", "no-such-model", "--tasks", "speed"]) == 2
    assert "no model 'no-such-model'" in capsys.readouterr().err


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_without_a_data_folder_lm_evals_hub_tasks_are_asked_for(model_dir, tmp_path, capsys, monkeypatch):
    """No hub is reachable here (and the tests run offline): the hub task fails to prepare, in one line."""
    monkeypatch.delenv("WORKBENCH_DATA")
    code = main(["--store", str(tmp_path / "s"), "eval", str(model_dir), "--tasks", "arc_easy"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot prepare task arc_easy" in err and err.count("\n") == 1, err
    assert queries.list_models(Store.open(tmp_path / "s")) == []


def test_an_evaluation_logs_its_story_and_lm_evals_git_probe_says_nothing(model_dir, tmp_path, capfd, monkeypatch):
    """Outside a git repository lm-eval's `git describe` printed "fatal: not a git repository" into
    every job's log; the log now reads: what was asked, each stage in words, the figures, the end.
    In the foreground the terminal shows no library's bars, and the report reads parameters as counts."""
    monkeypatch.chdir(tmp_path)  # no git repository here, nor above
    store_dir = tmp_path / "s"
    assert main(["--store", str(store_dir), "eval", str(model_dir), "--tasks", "arc_easy", "--limit", "2"]) == 0
    out, err = capfd.readouterr()
    assert "fatal" not in err
    # The job ran here, in the foreground: no library's progress bars on the terminal (lm-eval's
    # "building contexts" for each task, transformers' while the model was stored), its own bar only.
    assert "%|" not in err and "it/s]" not in err, err
    assert re.search(r"parameters +[\d.]+k$", out, re.M) and "e+0" not in out, out  # counts read as counts
    [job] = jobs.list_jobs(Store.open(store_dir))
    log = (store_dir / job.log_path).read_text()
    lines = [line.split(" ", 1)[1] for line in log.splitlines()]  # each after its time of day
    name = job.result["models"][0]["model_name"]
    assert "fatal" not in log and lines[0] == f"job {job.id} (eval): {model_dir}: arc_easy"
    assert f"loading {name}" in lines and f"evaluating {name} on arc_easy" in lines
    assert not any(re.fullmatch(r"(\S+): \1", line) for line in lines)  # no "score: score", "done: done"
    figures = next(line for line in lines if line.startswith(f"{name}: arc_easy acc,none "))
    assert re.search(r"acc,none [\d.]+ ± [\d.]+; arc_easy acc_norm,none [\d.]+ ± [\d.]+ \(\d+ s\)$", figures)
    assert re.fullmatch(r"done after \d+m \d\ds", lines[-1])
