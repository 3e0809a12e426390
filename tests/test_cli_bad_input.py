"""Bad input, made for real, through the CLI: one line on stderr, exit status 2, and nothing written
(no job row, no run, no model, no file, not even a new store) or lost."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest
from store_fixtures import snapshot

from store import jobs, queries
from store.db import Store
from workbench.cli.main import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def files(folder, taken=None) -> set[str]:
    """The files under a store folder (as a snapshot took them), but for SQLite's -wal and -shm, which
    this process's open connections keep."""
    return {name for name in (taken or snapshot(folder)) if not name.endswith(("-wal", "-shm"))}


def refused(capsys, *argv, says: str) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, ""), err
    assert err.count("\n") == 1 and err.startswith("workbench: error: ") and says in err, err


@pytest.fixture
def texts(tmp_path):
    """Text files that are not UTF-8: Latin-1 prose, and bytes that are no text at all."""
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "latin1.txt").write_bytes("Caf\u00e9 cr\u00e8me, na\u00efve fa\u00e7ade.\n".encode("latin-1"))
    (folder / "latin1.jsonl").write_bytes(b'{"text": "ok"}\n' + '{"text": "d\u00e9j\u00e0 vu"}\n'.encode("latin-1"))
    (folder / "binary.jsonl").write_bytes(bytes(range(256)) * 4)
    return folder


def test_text_that_is_not_utf8_is_one_line_before_anything_is_queued(tmp_path, capsys, texts, tiny_model_dirs):
    model = str(tiny_model_dirs["llama"])
    new = tmp_path / "new-store"
    refused(capsys, "prune", model, "--scorer", "wanda", "--percent", "20", "--calibration",
            str(texts / "latin1.txt"), "--store", str(new), says=f"{texts / 'latin1.txt'}:1 is not UTF-8 text")
    refused(capsys, "eval", model, "--tasks", f"ppl:{texts / 'binary.jsonl'}", "--store", str(new),
            says=f"{texts / 'binary.jsonl'}:2 is not UTF-8 text (byte 0x80 at offset 128)")
    assert not new.exists()  # the store the commands made before finding the text bad went again
    new.mkdir()
    refused(capsys, "prune", model, "--scorer", "wanda", "--percent", "20", "--calibration",
            str(texts / "latin1.txt"), "--store", str(new), says="is not UTF-8 text")
    assert new.is_dir() and list(new.iterdir()) == []  # an empty folder given stays, empty

    existing = tmp_path / "store"
    Store.open(existing).close()
    before = snapshot(existing)
    refused(capsys, "eval", model, "--tasks", f"ppl:{texts / 'latin1.txt'}", "--store", str(existing),
            says="latin1.txt:1 is not UTF-8 text")
    refused(capsys, "sweep", model, "--scorers", "wanda", "--percent", "20", "--calibration",
            str(texts / "latin1.jsonl"), "--tasks", "ppl:wikitext2", "--dry-run", "--store", str(existing),
            says=f"{texts / 'latin1.jsonl'}:2 is not UTF-8 text (byte 0xe9")
    refused(capsys, "sweep", model, "--scorers", "ppm", "--percent", "20", "--tasks",
            f"ppl:{texts / 'binary.jsonl'}", "--store", str(existing), says="binary.jsonl:2 is not UTF-8 text")
    with Store.open(existing, create=False) as store:
        assert jobs.list_jobs(store) == [] and queries.list_models(store) == []
    assert files(existing) == files(existing, before)  # no log, no model folder, no study


@pytest.fixture
def stored(tmp_path, tiny_model_dirs, capsys):
    """A store holding the tiny Llama as `base` (imported through the CLI)."""
    location = tmp_path / "store"
    assert main(["models", "import", str(tiny_model_dirs["llama"]), "--name", "base", "--store", str(location)]) == 0
    capsys.readouterr()
    return location


def _state(location):
    """What bad input must leave as it was: the rows and the files (SQLite's -wal/-shm aside)."""
    with Store.open(location, create=False) as store:
        rows = ([(j.id, j.status) for j in jobs.list_jobs(store)], [m.name for m in queries.list_models(store)],
                [r.id for r in queries.list_runs(store)])
    return rows, files(location)


def _damaged_copy(source, tmp_path, name, damage):
    import shutil

    folder = tmp_path / name
    shutil.copytree(source, folder)
    damage(folder)
    return folder


def test_what_a_job_would_find_wrong_is_refused_before_queueing(stored, tmp_path, capsys, tiny_model_dirs):
    import json

    from mounts import read_only

    source = tiny_model_dirs["llama"]
    truncated = _damaged_copy(source, tmp_path, "truncated", lambda f: (f / "model.safetensors").write_bytes(
        (f / "model.safetensors").read_bytes()[:20_000]))
    no_weights = _damaged_copy(source, tmp_path, "no-weights", lambda f: (f / "model.safetensors").unlink())
    no_tokenizer = _damaged_copy(source, tmp_path, "no-tokenizer", lambda f: (f / "tokenizer.json").unlink())

    def narrower(folder):
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(config | {"intermediate_size": 64}))

    mismatched = _damaged_copy(source, tmp_path, "mismatched", narrower)
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder\n")
    locked = tmp_path / "locked"
    locked.mkdir()
    before = _state(stored)
    at = ["--store", str(stored)]
    ppm = ["--scorer", "ppm", "--percent", "20"]

    refused(capsys, "prune", "base", *ppm, "--name", "base", *at, says="already has a model named 'base'")
    refused(capsys, "prune", "base", *ppm, "--out", str(a_file), *at, says=f"--out {a_file} is a file, not a folder")
    with read_only(locked):
        refused(capsys, "prune", "base", *ppm, "--out", str(locked / "out"), *at, says=f"{locked} cannot be written")
    refused(capsys, "prune", str(truncated), *ppm, *at,
            says=f"{truncated / 'model.safetensors'} is damaged or truncated (")
    refused(capsys, "prune", str(no_weights), *ppm, *at, says=f"{no_weights} holds no weights")
    refused(capsys, "models", "import", str(no_tokenizer), *at, says=f"{no_tokenizer} holds no tokenizer")
    refused(capsys, "eval", str(mismatched), "--tasks", "ppl:wikitext2", *at,
            says="layers.0.mlp.down_proj.weight has shape [32, 96], but config.json says [32, 64]")
    refused(capsys, "eval", "base", "--tasks", "arc_easy", "--limit", "2", "--fewshot", "100000", *at,
            says="arc_easy: 100000 few-shot examples asked, but its few-shot split holds")
    # One model named twice: stored (the light check), and a folder not imported yet (the engine's).
    refused(capsys, "eval", "base", "1", "--tasks", "speed", *at, says="'1' and 'base' are the same model")
    twin = _damaged_copy(source, tmp_path, "twin", lambda f: None)
    refused(capsys, "eval", str(twin), f"{twin}/", "--tasks", "speed", *at,
            says=f"'{twin}/' and '{twin}' are the same model")
    assert _state(stored) == before


def test_a_failed_copy_to_out_fails_the_job_and_leaves_no_partial_copy(stored, tmp_path, capsys):
    from mounts import small_disk

    with small_disk(tmp_path / "disk", size="64k") as disk:  # room for less than the model's weights
        out = disk / "out"
        code, _, err = run(capsys, "prune", "base", "--scorer", "ppm", "--percent", "20", "--out", str(out),
                           "--store", str(stored))
        assert code == 2 and err.count("\n") == 1
        assert "job 2 failed: model 'base-ppm-p20' (run 1) is in the store, but copying it to --out" in err
        assert "No space left on device" in err
        assert list(disk.iterdir()) == []  # the half-copied folder went
    with Store.open(stored, create=False) as store:
        assert jobs.get_job(store, 2).status == "failed"  # never "done" for work that failed
        assert queries.get_model(store, "base-ppm-p20").parent_id == 1  # what was made is in the store, whole


def test_a_model_folder_deleted_by_hand_is_one_line_and_a_reimport_restores_it(stored, capsys, tiny_model_dirs):
    import shutil

    at = ["--store", str(stored)]
    with Store.open(stored, create=False) as store:
        base = queries.get_model(store, "base")
        shutil.rmtree(store.model_path(base))
    before = _state(stored)
    says = (f"model 'base' (id 1): its folder {stored / 'artifacts' / base.path} is missing: `workbench models rm "
            f"base` removes its row; or `workbench models import {tiny_model_dirs['llama']}` restores its files")
    refused(capsys, "prune", "base", "--scorer", "wanda", "--percent", "20", "--samples", "4", "--seq-len", "32",
            *at, says=says)
    refused(capsys, "prune", "base", "--scorer", "ppm", "--percent", "20", *at, says=says)
    refused(capsys, "eval", "base", "--tasks", "ppl:wikitext2", *at, says=says)
    refused(capsys, "models", "import", str(tiny_model_dirs["llama"]), "--name", "other", *at,
            says="was imported as 'base', whose folder is missing")
    assert _state(stored) == before

    code, out, err = run(capsys, "models", "import", str(tiny_model_dirs["llama"]), *at)
    assert code == 0, err
    with Store.open(stored, create=False) as store:
        restored = queries.get_model(store, "base")
        assert restored.id == base.id and store.model_path(restored).is_dir() and restored.path != base.path
    code, out, err = run(capsys, "prune", "base", "--scorer", "ppm", "--percent", "20", *at)
    assert code == 0, err


def test_an_output_path_that_cannot_be_written_is_one_line_and_leaves_nothing(tmp_path, capsys):
    from mounts import read_only

    location = tmp_path / "store"
    Store.open(location).close()
    folder = tmp_path / "a-folder"
    folder.mkdir()
    locked = tmp_path / "locked"
    locked.mkdir()
    at = ["--store", str(location)]
    refused(capsys, "export", "runs", "--out", str(folder), *at, says=f"cannot write {folder}: it is a folder")
    refused(capsys, "export", "evals", "--out", str(tmp_path / "no" / "x.csv"), *at,
            says=f"cannot write {tmp_path / 'no' / 'x.csv'}: no folder {tmp_path / 'no'}")
    with read_only(locked):
        for argv in (["export", "runs"], ["export", "evals", "--format", "json"]):
            refused(capsys, *argv, "--out", str(locked / "x"), *at,
                    says=f"cannot write {locked / 'x'}: Permission denied" if os.geteuid() else
                    f"cannot write {locked / 'x'}: Read-only file system")
    assert list(folder.iterdir()) == [] and list(locked.iterdir()) == []


BAD_NAMES = [
    ("smollm2", "smollm2 names the bundled SmolLM2-135M-Instruct"),
    ("SmolLM2", "smollm2 names the bundled SmolLM2-135M-Instruct"),
    ("two\nlines", "it holds a character that does not print"),
    ("tab\there", "it holds a character that does not print"),
    ("a/b", "it holds a path separator"),
    ("x" * 300, "it has 300 characters, more than 100"),
    ("job:1", "job:N names the model job N makes"),
    ("5", "it is a bare number, which names a model by its id"),
    ("-x", "it begins with neither a letter nor a digit"),
    ("", None),  # an empty --name is no name: the default is taken
]


def test_names_follow_one_rule_wherever_a_name_is_given(stored, tmp_path, capsys, tiny_model_dirs):
    source = str(tiny_model_dirs["qwen2"])
    at = ["--store", str(stored)]
    before = _state(stored)
    for name, problem in BAD_NAMES[:-1]:
        says = f"{name!r} cannot name a model: {problem}"
        refused(capsys, "models", "import", source, f"--name={name}", *at, says=says)
        refused(capsys, "prune", "base", "--scorer", "ppm", "--percent", "20", f"--name={name}", *at, says=says)
        if name.lower() != "smollm2":  # a study shadows no model
            refused(capsys, "sweep", "base", "--scorers", "ppm", "--percent", "20", "--tasks", "ppl:wikitext2",
                    f"--name={name}", "--dry-run", *at, says=f"{name!r} cannot name a study: {problem}")
    assert _state(stored) == before

    numbered = tmp_path / "5"  # a folder whose name would be the model's
    import shutil

    shutil.copytree(source, numbered)
    refused(capsys, "models", "import", str(numbered), *at, says="'5', the name")
    refused(capsys, "prune", str(numbered), "--scorer", "ppm", "--percent", "20", *at,
            says=f"{numbered} would be stored as '5', which cannot name a model: it is a bare number")
    assert _state(stored) == before
    code, out, err = run(capsys, "models", "import", str(numbered), "--name", "five", *at)
    assert code == 0, err


def test_a_model_called_smollm2_from_elsewhere_is_never_taken_for_the_bundled_one(tmp_path, capsys):
    from store_fixtures import add_model

    location = tmp_path / "store"
    with Store.open(location) as store:  # made before names were checked: a folder import called smollm2
        add_model(store, "smollm2", source="folder", source_ref="/models/other")
    before = _state(location)
    refused(capsys, "models", "import", "smollm2", "--if-missing", "--store", str(location),
            says="the store already has a model named 'smollm2': choose another name")
    assert _state(location) == before


def test_the_workbench_without_a_terminal_says_so_and_draws_nothing(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    location = tmp_path / "store"
    Store.open(location).close()
    before = files(location)
    screen = tmp_path / "screen"
    with screen.open("w") as output:  # input from /dev/null, output to a file: no terminal
        done = subprocess.run([sys.executable, "-m", "workbench", "--store", str(location)], stdin=subprocess.DEVNULL,
                              stdout=output, stderr=subprocess.PIPE, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and screen.read_text() == ""
    assert done.stderr == ("workbench: error: the terminal workbench needs a terminal: its input and output are not "
                           "one; run a command instead (`workbench --help` lists them), or `workbench serve` for a "
                           "browser\n")
    assert files(location) == before

    # On a terminal it starts, and closing the terminal ends it, even when it was started with
    # hang-ups ignored (as under nohup).
    terminal = subprocess.Popen([sys.executable, str(Path(__file__).with_name("terminal.py")), str(screen),
                                 sys.executable, "-m", "workbench", "--store", str(location)],
                                preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))  # fmt: skip
    deadline = time.monotonic() + 120
    while b"Models" not in (screen.read_bytes() if screen.exists() else b""):
        assert terminal.poll() is None and time.monotonic() < deadline, screen.read_bytes()[-2000:]
        time.sleep(0.2)
    (app,) = psutil.Process(terminal.pid).children()
    terminal.kill()
    terminal.wait()
    deadline = time.monotonic() + 30
    while jobs.process_alive(app.pid, None):
        assert time.monotonic() < deadline, "the workbench outlived its terminal"
        time.sleep(0.2)


def test_a_url_store_whose_dialect_is_missing_says_so(tmp_path, capsys, monkeypatch):
    # (A missing driver, psycopg for PostgreSQL, is tested in test_store_open.py.)
    monkeypatch.setenv("WORKBENCH_ARTIFACTS", str(tmp_path / "files"))
    refused(capsys, "models", "list", "--store", "nosuchdb://me:secret@localhost/x",
            says="no database dialect 'nosuchdb' is installed for nosuchdb:// URLs")
    assert "secret" not in capsys.readouterr().err and list(tmp_path.iterdir()) == []


def test_smaller_bad_input_is_one_line_before_anything_is_queued(stored, tmp_path, capsys):
    import struct

    at = ["--store", str(stored)]
    before = _state(stored)
    refused(capsys, "prune", "base", "--scorer", "ppm", "--percent", "99.9", "--allocation", "global", *at,
            says="with --allocation global every layer keeps at least 10% of its width, but this target keeps 1 of "
                 "layer 0's 96 (1.0%)")
    refused(capsys, "prune", "base", "--scorer", "ppm", "--percent", "20", "--layers", "", *at,
            says="--layers is empty")
    refused(capsys, "sweep", "base", "--scorers", "ppm", "--percent", "20,,30", "--tasks", "ppl:wikitext2", *at,
            says="--percent '20,,30' has an empty item")
    refused(capsys, "eval", "base", "--tasks", "ppl:wikitext2,", *at, says="--tasks 'ppl:wikitext2,' has an empty item")

    garbage = tmp_path / "garbage.gguf"  # a valid magic and version, then noise
    garbage.write_bytes(b"GGUF" + struct.pack("<I", 3) + bytes(range(256)) * 16)
    refused(capsys, "prune", str(garbage), "--scorer", "ppm", "--percent", "20", *at,
            says=f"{garbage} is not a GGUF model transformers can read: its header or metadata is damaged (")

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "mine.yaml").write_text("task: mine\ndataset_path: [unclosed\n")
    refused(capsys, "eval", "base", "--tasks", "mine", "--include-path", str(tasks), *at,
            says=f"unknown task 'mine': not a workbench task and not in --include-path {tasks}; "
                 f"{tasks / 'mine.yaml'} cannot be read: ")
    assert _state(stored) == before


def test_nan_or_infinite_weights_are_refused_naming_the_weight(tmp_path, capsys, tiny_model_dirs):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "broken"
    shutil.copytree(tiny_model_dirs["llama"], folder)
    weights = load_file(folder / "model.safetensors")
    weights["model.layers.1.mlp.up_proj.weight"][3, 5] = float("nan")
    weights["model.layers.1.mlp.up_proj.weight"][4, 5] = float("inf")
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    location = tmp_path / "store"
    code, out, err = run(capsys, "prune", str(folder), "--scorer", "ppm", "--percent", "20", "--store", str(location))
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert (f"{folder}: weight model.layers.1.mlp.up_proj.weight holds 2 NaN or infinite values: a model with them "
            "cannot be pruned") in err
    with Store.open(location, create=False) as store:
        assert queries.list_models(store) == [] and queries.list_runs(store) == []  # not even imported
    assert torch.isnan(load_file(folder / "model.safetensors")["model.layers.1.mlp.up_proj.weight"]).any()
