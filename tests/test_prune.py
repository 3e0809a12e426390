"""`workbench prune` end to end on tiny models: the saved model reloads exactly, the run is
recorded, and bad input exits 2 with one line and writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FAMILIES
from transformers import AutoModelForCausalLM

from store import bitset, queries
from store.db import Store
from workbench.cli.main import main
from workbench.devices import resolve_device
from workbench.model_io import load_model

IDS = torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(5))


def prune_json(store_dir: Path, model: str, *args: str, capsys) -> dict:
    """A prune on the CPU: these tests compare with float32 computations on the CPU (tests/test_cuda.py
    has those on CUDA)."""
    code = main(["--store", str(store_dir), "prune", model, *args, "--samples", "4", "--seq-len", "32",
                 "--device", "cpu", "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits


@pytest.mark.parametrize("family", FAMILIES)
def test_uniform_result_loads_with_plain_transformers(family, tiny_model_dirs, tmp_path, capsys):
    report = prune_json(tmp_path / "s", str(tiny_model_dirs[family]), "--scorer", "act_l2", "--percent", "25",
                        "--out", str(tmp_path / "out"), capsys=capsys)
    assert [r["kept_width"] for r in report["layers"]] == [72, 72, 72]
    assert report["parameters_after"] == report["parameters_before"] - 3 * 24 * 3 * 32
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert plain.config.intermediate_size == 72

    store = Store.open(tmp_path / "s")
    ours = load_model(store.model_path(queries.get_model(store, report["model_id"])), resolve_device("cpu"),
                      torch.float32)
    assert torch.equal(logits(plain), logits(ours))


def test_per_layer_result_reloads_exactly_and_says_how_to_load_it(tiny_model_dirs, tmp_path, capsys):
    report = prune_json(tmp_path / "s", str(tiny_model_dirs["llama"]), "--scorer", "ppm", "--percent", "50",
                        "--layers", "0,2", "--out", str(tmp_path / "out"), capsys=capsys)
    widths = [r["kept_width"] for r in report["layers"]]
    assert widths == [48, 96, 48]
    ours = load_model(tmp_path / "out", resolve_device("cpu"), torch.float32)
    assert [m.mlp.down_proj.in_features for m in ours.model.layers] == widths
    # Plain transformers (a process without the workbench's classes registered) asks for the flag.
    plain = ("import sys; from transformers import AutoModelForCausalLM as A\n"
             "try: A.from_pretrained(sys.argv[1])\nexcept ValueError as e: print(e)")
    said = subprocess.run([sys.executable, "-c", plain, str(tmp_path / "out")], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env=os.environ | {"TRANSFORMERS_VERBOSITY": "error"})
    assert "trust_remote_code=True" in said.stdout, said
    remote = AutoModelForCausalLM.from_pretrained(tmp_path / "out", trust_remote_code=True).eval()
    assert torch.equal(logits(remote), logits(ours))


def test_a_per_layer_model_loads_without_the_custom_code_prompt_and_a_copy_of_it_imports(
    tiny_model_dirs, tmp_path, capsys
):
    store_dir, out = tmp_path / "s", tmp_path / "out"
    report = prune_json(store_dir, str(tiny_model_dirs["llama"]), "--scorer", "ppm", "--percent", "50",
                        "--layers", "0,2", "--out", str(out), capsys=capsys)
    # Pruned again in a process whose input stays open, as a terminal's does: transformers would ask
    # "Do you wish to run the custom code?" there, and wait 15 s for an answer.
    waiting, keep_open = os.pipe()
    try:
        again = subprocess.run(
            [sys.executable, "-m", "workbench", "--store", str(store_dir), "prune", report["model_name"],
             "--scorer", "ppm", "--percent", "10", "--json"], stdin=waiting, capture_output=True, text=True,
        )  # fmt: skip
    finally:
        os.close(waiting)
        os.close(keep_open)
    assert again.returncode == 0, again.stderr
    assert "custom code" not in again.stdout + again.stderr
    assert [r["original_width"] for r in json.loads(again.stdout)["layers"]] == [48, 96, 48]

    assert main(["--store", str(store_dir), "models", "import", str(out), "--name", "copy"]) == 0
    capsys.readouterr()
    store = Store.open(store_dir)
    copy = queries.get_model(store, "copy")
    assert list(copy.intermediate_sizes) == [48, 96, 48] and copy.source == "folder"
    reloaded = load_model(store.model_path(copy), resolve_device("cpu"), torch.float32)
    assert torch.equal(logits(reloaded), logits(load_model(out, resolve_device("cpu"), torch.float32)))


def test_saved_model_gives_the_pruned_models_logits(tiny_model_dirs, tmp_path, capsys, monkeypatch):
    """Prune in memory and through the CLI with the same settings: same logits after reload."""
    import copy

    from workbench import calibration
    from workbench.plan import plan_pruning
    from workbench.spec import PruneSpec
    from workbench.surgery import apply_plan
    from workbench.texts import load_source

    folder = tiny_model_dirs["qwen2"]
    report = prune_json(tmp_path / "s", str(folder), "--scorer", "minitron", "--percent", "40",
                        "--allocation", "global", "--out", str(tmp_path / "out"), capsys=capsys)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    from transformers import AutoTokenizer

    seqs = calibration.build_sequences(AutoTokenizer.from_pretrained(folder), load_source("wikitext2").calibration,
                                       4, 32, "wikitext2")
    assert calibration.token_hash(seqs) == report["calibration"]["hash"]
    spec = PruneSpec(model="x", scorer="minitron", percent=40, allocation="global")
    plans = plan_pruning(model, spec, calibration.capture(copy.deepcopy(model), seqs))
    apply_plan(model, plans)
    reloaded = load_model(tmp_path / "out", resolve_device("cpu"), torch.float32)
    assert torch.equal(logits(model), logits(reloaded))


def test_run_retention_and_lineage_are_recorded(tiny_model_dirs, tmp_path, capsys):
    store_dir = tmp_path / "s"
    report = prune_json(store_dir, str(tiny_model_dirs["gemma3_text"]), "--scorer", "wanda", "--expansion", "2",
                        "--divisor", "8", capsys=capsys)

    store = Store.open(store_dir)
    run = queries.run_detail(store, report["run_id"])
    assert (run.scorer, run.target_kind, run.target_value, run.divisor) == ("wanda", "expansion", 2.0, 8)
    assert run.calibration_source == "wikitext2" and run.calibration_hash == report["calibration"]["hash"]
    assert set(run.stage_seconds) == {"load", "calibrate", "score", "surgery", "save"}
    assert run.versions["torch"] == torch.__version__
    rows = queries.retention(store, run.id)
    assert [(r.layer, r.original_width, r.kept_width) for r in rows] == [(i, 96, 64) for i in range(3)]
    assert all(len(bitset.decode(r.kept_indices)) == 64 for r in rows)
    result = queries.get_model(store, report["model_id"])
    assert result.parent_name == tiny_model_dirs["gemma3_text"].name and result.intermediate_size == 64
    assert result.source == "pruned" and result.made_by_run_id == run.id


def test_repruning_reuses_the_imported_model_and_cached_statistics(tiny_model_dirs, tmp_path, capsys):
    store_dir = tmp_path / "s"
    first = prune_json(store_dir, str(tiny_model_dirs["llama"]), "--scorer", "wanda", "--percent", "20", capsys=capsys)
    second = prune_json(store_dir, str(tiny_model_dirs["llama"]), "--scorer", "act_l2", "--percent", "40",
                        capsys=capsys)

    store = Store.open(store_dir)
    assert len(queries.list_models(store)) == 3  # one base, two pruned
    assert first["calibration"]["hash"] == second["calibration"]["hash"]
    base = queries.find_model(store, tiny_model_dirs["llama"].name)
    cached = list((store.model_path(base) / "calibration").iterdir())
    assert len(cached) == 1
    cached[0].write_bytes(b"")  # a corrupt cache must not be trusted blindly: it is rebuilt
    prune_json(store_dir, base.name, "--scorer", "minitron", "--percent", "10", capsys=capsys)


def test_non_glu_model_is_refused_with_what_was_found(tmp_path, capsys, tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=320)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    store_dir = tmp_path / "s"
    capsys.readouterr()
    code = main(["--store", str(store_dir), "prune", str(folder), "--scorer", "ppm", "--percent", "10"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "not a GLU model: GPT2LMHeadModel (gpt2)" in err and "transformer" in err
    assert not (store_dir / "artifacts" / "models").exists() or not any((store_dir / "artifacts" / "models").iterdir())


BAD = [
    (["--scorer", "ppm", "--percent", "100"], "below 100"),
    (["--scorer", "ppm", "--expansion", "3.5"], "does not shrink"),
    (["--scorer", "ppm", "--percent", "95", "--divisor", "64"], "impossible rounding"),
    (["--scorer", "ppm", "--percent", "10", "--layers", "0-7"], "has 3"),
    (["--scorer", "wanda", "--percent", "10", "--calibration", "EMPTY"], "holds no text"),
    (["--scorer", "wanda", "--percent", "10", "--calibration", "SHORT"], "need 128"),
    (["--scorer", "wanda", "--percent", "10", "--calibration", "missing.jsonl"], "does not exist"),
    (["--scorer", "ppm", "--percent", "10", "--calibration", "sms"], "static scorer"),
    (["--scorer", "nope", "--percent", "10"], "invalid choice"),
]


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(args, message, tiny_model_dirs, tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("\n")
    (tmp_path / "short.txt").write_text("just a few words")
    args = [a.replace("EMPTY", str(tmp_path / "empty.txt")).replace("SHORT", str(tmp_path / "short.txt")) for a in args]
    store_dir = tmp_path / "s"
    Store.open(store_dir).close()  # an empty store exists before
    before = sorted(p.relative_to(store_dir) for p in store_dir.rglob("*") if "sqlite" not in p.name)
    with pytest.raises(SystemExit) if "invalid choice" in message else _no_raise():
        code = main(["--store", str(store_dir), "prune", str(tiny_model_dirs["llama"]), *args,
                     "--samples", "4", "--seq-len", "32"])
        assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    after = sorted(p.relative_to(store_dir) for p in store_dir.rglob("*") if "sqlite" not in p.name)
    assert after == before
    assert queries.list_models(Store.open(store_dir)) == []


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_out_folder_that_is_not_empty_is_refused(tiny_model_dirs, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    code = main(["--store", str(tmp_path / "s"), "prune", str(tiny_model_dirs["llama"]), "--scorer", "ppm",
                 "--percent", "10", "--out", str(tmp_path / "out")])
    assert code == 2 and "not empty" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_the_prune_report_prints_scores_to_four_significant_digits(tiny_model_dirs, tmp_path, capsys):
    """As `runs show` prints them: variance scores of small weights are far below 1, and four
    decimals printed them with few digits, or as 0.0000."""
    store_dir = tmp_path / "s"
    code = main(["--store", str(store_dir), "prune", str(tiny_model_dirs["llama"]), "--scorer", "vow",
                 "--percent", "25", "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0, out
    with Store.open(store_dir) as store:
        first = queries.run_detail(store, queries.list_runs(store)[0].id).retention[0]
    assert f"{first.kept_score_min:.4g}" != f"{first.kept_score_min:.4f}"  # (0.07009, not 0.0701)
    row = next(line.split() for line in out.splitlines() if line.split()[:4] == ["0", "96", "72", "75.0"])
    assert row[4] == f"{first.kept_score_min:.4g}"
