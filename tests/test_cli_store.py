"""The store's CLI commands: models list|show|rm, runs list|show, export, store check."""

from __future__ import annotations

import csv
import io
import json

import pytest
from store_fixtures import add_model, add_pruned, eval_row, snapshot

from store import queries
from store.db import Store
from workbench.cli.main import main


@pytest.fixture
def filled(store):
    base = add_model(store, "base", tags=["baseline"])
    add_pruned(store, base, "base-ppm")
    with store.write() as session:
        queries.add_evaluations(session, [eval_row(base, value=0.5), eval_row(base, task="piqa", value=0.7)])
    return store


def run(capsys, *argv):
    """Exit status, standard output and standard error of one command."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_models_list_as_text_and_json(filled, capsys):
    code, out, _ = run(capsys, "models", "list", "--store", str(filled.root))
    lines = out.splitlines()
    assert code == 0 and lines[0] == "models"
    assert lines[1].split()[:3] == ["id", "name", "source"]
    assert [line.split()[1] for line in lines[2:]] == ["base", "base-ppm"]

    code, out, _ = run(capsys, "--store", str(filled.root), "models", "list", "--json", "--sort", "id", "--reverse")
    models = json.loads(out)
    assert [m["name"] for m in models] == ["base-ppm", "base"]
    assert models[0]["parent_name"] == "base" and models[1]["eval_count"] == 2 and models[1]["tags"] == ["baseline"]

    code, out, _ = run(capsys, "models", "list", "--store", str(filled.root), "--filter", "nothing-like-it")
    assert code == 0 and out == "no models match 'nothing-like-it'\n"


def test_models_show_lineage_evaluations_and_files(filled, capsys):
    code, out, _ = run(capsys, "models", "show", "base-ppm", "--store", str(filled.root))
    assert code == 0
    assert "parent        base (id 1)" in out
    assert "made by       run 1: ppm, percent 50, uniform, from base" in out
    assert "model.safetensors" in out and "no evaluations" in out

    code, out, _ = run(capsys, "models", "show", "1", "--json", "--store", str(filled.root))
    shown = json.loads(out)
    assert shown["model"]["name"] == "base" and [c["name"] for c in shown["children"]] == ["base-ppm"]
    assert [e["task"] for e in shown["evaluations"]] == ["piqa", "arc_easy"]  # newest first
    assert shown["files"] == [{"path": "config.json", "bytes": 23}]


def test_errors_are_one_line_with_status_2_and_write_nothing(filled, capsys):
    code, out, err = run(capsys, "models", "show", "nosuch", "--store", str(filled.root))
    assert (code, out, err) == (2, "", "workbench: error: no model named 'nosuch' in the store\n")
    code, out, err = run(capsys, "runs", "show", "42", "--store", str(filled.root))
    assert (code, out, err) == (2, "", "workbench: error: no run 42 in the store\n")
    code, out, err = run(capsys, "runs", "list", "--base", "nosuch", "--store", str(filled.root))
    assert (code, out) == (2, "") and err.count("\n") == 1
    target = filled.root / "out.csv"
    code, out, err = run(capsys, "export", "run", "42", "--out", str(target), "--store", str(filled.root))
    assert code == 2 and not target.exists()
    code, _, err = run(capsys, "models", "show", "x", "--store", str(filled.root / "workbench.sqlite"))
    assert code == 2 and "is a file, not a store folder" in err


def test_models_rm_refuses_then_force_removes_rows_and_files(filled, capsys):
    folder = filled.model_path(queries.get_model(filled, "base"))
    code, out, err = run(capsys, "models", "rm", "base", "--store", str(filled.root))
    assert code == 2 and out == "" and "is still needed" in err and err.count("\n") == 1
    assert folder.is_dir()
    code, out, _ = run(capsys, "models", "rm", "base", "--force", "--store", str(filled.root))
    assert code == 0 and out.startswith("removed model 'base' (id 1) and its files; deleted runs 1")
    assert not folder.exists() and queries.get_model(filled, "base-ppm").parent_id is None


def test_runs_list_and_show(filled, capsys):
    code, out, _ = run(capsys, "runs", "list", "--json", "--scorer", "ppm", "--store", str(filled.root))
    [listed] = json.loads(out)
    assert (listed["id"], listed["base_model_name"], listed["result_model_name"]) == (1, "base", "base-ppm")
    code, out, _ = run(capsys, "runs", "list", "--status", "failed", "--store", str(filled.root))
    assert code == 0 and out == "no runs match\n"

    code, out, _ = run(capsys, "runs", "show", "1", "--store", str(filled.root))
    assert code == 0 and "scorer         ppm" in out and "retention of run 1" in out
    code, out, _ = run(capsys, "runs", "show", "1", "--json", "--store", str(filled.root))
    shown = json.loads(out)
    assert shown["stage_seconds"]["score"] == 0.25 and len(shown["retention"]) == 3


def test_export_runs_evals_and_one_run(filled, capsys, tmp_path):
    code, out, _ = run(capsys, "export", "runs", "--store", str(filled.root))
    [row] = list(csv.DictReader(io.StringIO(out)))
    assert (row["id"], row["scorer"], row["result_model_name"], row["error"]) == ("1", "ppm", "base-ppm", "")

    code, out, _ = run(capsys, "export", "evals", "--format", "json", "--store", str(filled.root))
    exported = {(e["model_name"], e["task"], e["value"]) for e in json.loads(out)}
    assert exported == {("base", "arc_easy", 0.5), ("base", "piqa", 0.7)}

    code, out, _ = run(capsys, "export", "evals", "--format", "md", "--store", str(filled.root))
    assert out.startswith("### evaluations\n\n| id | model_id |") and "| piqa |" in out

    target = tmp_path / "run.json"
    argv = ["export", "run", "1", "--format", "json", "--out", str(target), "--store", str(filled.root)]
    code, out, err = run(capsys, *argv)
    assert (code, out, err) == (0, "", f"wrote run 1 to {target}\n")
    exported = json.loads(target.read_text())
    assert exported["retention"][0]["kept"] == list(range(48))

    code, out, _ = run(capsys, "export", "run", "1", "--format", "md", "--store", str(filled.root))
    assert "### run 1" in out and "### retention of run 1" in out


def test_store_check_exit_status_and_fix(filled, capsys):
    code, out, _ = run(capsys, "store", "check", "--store", str(filled.root))
    assert code == 0 and out == f"store {filled.root}: clean\n"
    (filled.artifacts / "models" / "orphan").mkdir()
    code, out, _ = run(capsys, "store", "check", "--json", "--store", str(filled.root))
    report = json.loads(out)
    assert code == 1 and report["clean"] is False and report["orphans"] == ["models/orphan"]
    code, out, _ = run(capsys, "store", "check", "--fix", "--store", str(filled.root))
    assert code == 0 and out.splitlines() == ["removed orphan artifacts/models/orphan", f"store {filled.root}: clean"]


READING = [
    ["models", "list"],
    ["models", "show", "x"],
    ["runs", "list"],
    ["jobs", "list"],
    ["study", "list"],
    ["export", "runs"],
    ["compare", "a", "b"],
    ["store", "check"],
    ["store", "check", "--fix"],
]


@pytest.mark.parametrize("place", ["missing", "unrelated"])
def test_reading_commands_never_create_a_store(tmp_path, capsys, place):
    folder = tmp_path / "typo"
    if place == "unrelated":
        folder.mkdir()
        (folder / "notes.txt").write_text("mine\n")
    before = snapshot(tmp_path)
    for argv in READING:
        code, out, err = run(capsys, *argv, "--store", str(folder))
        assert (code, out, err) == (2, "", f"workbench: error: no workbench store at {folder}\n"), argv
        assert snapshot(tmp_path) == before and folder.exists() == (place == "unrelated")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ([] if place == "missing" else ["notes.txt", "typo"])


def test_a_writing_command_creates_a_store_only_in_a_new_or_empty_folder(tmp_path, capsys, tiny_model_dirs):
    unrelated = tmp_path / "unrelated"
    unrelated.mkdir()
    (unrelated / "notes.txt").write_text("mine\n")
    source = str(tiny_model_dirs["llama"])
    code, out, err = run(capsys, "models", "import", source, "--detach", "--store", str(unrelated))
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert err == (f"workbench: error: {unrelated} is not empty and holds no workbench store (it has notes.txt): "
                   "a new store needs a new or empty folder\n")
    assert [p.name for p in unrelated.iterdir()] == ["notes.txt"]

    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = run(capsys, "prune", source, "--scorer", "ppm", "--percent", "20", "--store", str(empty))
    assert code == 0, err
    assert {"artifacts", "workbench.sqlite"} <= {p.name for p in empty.iterdir()}
    names = sorted(m.name for m in queries.list_models(Store.open(empty, create=False)))
    assert names == ["tiny-llama0", "tiny-llama0-ppm-p20"]
