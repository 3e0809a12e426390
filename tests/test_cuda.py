"""On CUDA (skipped cleanly without it): static scorers keep the neurons the CPU keeps, a cut keeps its
parent's dtype, the memory meter, the fit refusal, a worker placing jobs on GPUs; with two GPUs, a model
spread over them is calibrated, repaired, cut, saved and evaluated where its layers are."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import DATA
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from store import jobs, queries
from store.db import Store
from workbench import calibration, repair
from workbench.cli.main import main
from workbench.devices import MemoryMeter, Placement, model_devices
from workbench.jobs import submit
from workbench.model_io import load_model, save_folder
from workbench.perplexity import perplexity
from workbench.plan import plan_pruning
from workbench.spec import PruneSpec
from workbench.surgery import apply_plan
from workbench.texts import load_source

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
two_gpus = pytest.mark.skipif(torch.cuda.is_available() and torch.cuda.device_count() < 2, reason="needs 2 GPUs")



def prune(store_dir: Path, model: str, *args: str, capsys) -> dict:
    code = main(["--store", str(store_dir), "prune", model, *args, "--samples", "4", "--seq-len", "32", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def kept(store_dir: Path, run_id: int) -> list[list[int]]:
    return [r.kept() for r in queries.retention(Store.open(store_dir), run_id)]


@pytest.mark.parametrize("parent", ["float32", "bfloat16"])
@pytest.mark.parametrize("scorer", ["ppm", "vow", "pon", "l2"])
def test_static_scorers_keep_the_same_neurons_on_cuda_bfloat16_as_on_the_cpu_in_float32(scorer, parent, parents,
                                                                                        tmp_path, capsys):
    args = [str(parents[parent]), "--scorer", scorer, "--percent", "40"]
    on_cpu = prune(tmp_path / "s", *args, "--device", "cpu", "--dtype", "float32", capsys=capsys)
    on_cuda = prune(tmp_path / "s", *args, "--device", "cuda", "--dtype", "bfloat16", capsys=capsys)
    assert on_cuda["device"].startswith("cuda") and on_cuda["save_dtype"] == parent
    assert kept(tmp_path / "s", on_cpu["run_id"]) == kept(tmp_path / "s", on_cuda["run_id"])


def test_a_cut_on_cuda_is_saved_in_its_parents_dtype_config_included(parents, tmp_path, capsys):
    report = prune(tmp_path / "s", str(parents["float32"]), "--scorer", "hybrid", "--percent", "40",
                   "--out", str(tmp_path / "out"), capsys=capsys)  # --device auto: CUDA, bfloat16 passes
    assert (report["device"], report["dtype"], report["save_dtype"]) == ("cuda", "bfloat16", "float32")
    assert json.loads((tmp_path / "out" / "config.json").read_text())["dtype"] == "float32"
    assert {t.dtype for t in load_file(tmp_path / "out" / "model.safetensors").values()} == {torch.float32}
    assert queries.get_model(Store.open(tmp_path / "s"), report["model_id"]).dtype == "float32"


def test_the_cuda_memory_meter_sees_this_processs_allocations():
    meter = MemoryMeter(torch.device("cuda"))
    meter.reset()
    before = meter.current()
    block = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")
    assert meter.current() - before >= 256 * 2**20 and meter.peak() >= before + 256 * 2**20
    del block
    torch.cuda.empty_cache()
    meter.reset()
    assert meter.peak() < before + 256 * 2**20
    assert MemoryMeter(torch.device("cuda", 0)).peak() <= meter.peak()  # one GPU's share of all of them


def test_a_model_that_fits_no_gpu_is_refused_with_the_numbers(tmp_path, capsys):
    from transformers import LlamaConfig

    folder = tmp_path / "huge"  # a config, no weights: over 400 billion parameters
    LlamaConfig(hidden_size=16384, intermediate_size=2**20, num_hidden_layers=8, num_attention_heads=128,
                num_key_value_heads=8, vocab_size=32000).save_pretrained(folder)
    code = main(["--store", str(tmp_path / "s"), "prune", str(folder), "--scorer", "ppm", "--percent", "10",
                 "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert re.search(r"the model needs [\d.]+ GiB \(4\d\d,[\d,]+ parameters x 4 bytes\) but (cuda has [\d.]+ GiB "
                     r"free|no GPU holds it and the \d+ GPUs together can take)", err), err


def test_a_worker_runs_each_job_on_its_own_gpu(store, tiny_model_dirs):
    from workbench.model_io import import_model

    base = import_model(store, str(tiny_model_dirs["llama"]))
    count = min(torch.cuda.device_count(), 4)
    ids = [submit(store, "prune", PruneSpec(model=base.name, scorer="wanda", percent=10 + i, samples=64,
                                            seq_len=64).to_dict(), data_dir=DATA) for i in range(count)]
    done = subprocess.run([sys.executable, "-m", "workbench", "--store", str(store.root), "jobs", "work"],
                          capture_output=True, text=True, timeout=600, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    ran = jobs.jobs_by_id(store, ids)
    assert [ran[i].status for i in ids] == ["done"] * count, [ran[i].error for i in ids]
    assert sorted(ran[i].device for i in ids) == [f"cuda:{g}" for g in range(count)]
    assert all(ran[i].started_at < min(ran[j].finished_at for j in ids) for i in ids)  # all at once
    assert all(queries.run_detail(store, ran[i].result["run_id"]).device == "cuda" for i in ids)


def split_over_two_gpus(folder: Path, dtype=torch.float32):
    """The model with its first decoder layers on GPU 0 and the rest (norm, head) on GPU 1."""
    config = json.loads((folder / "config.json").read_text())
    layers = config["num_hidden_layers"]
    device_map = {"model.embed_tokens": 0, "model.rotary_emb": 0, "model.norm": 1, "lm_head": 1}
    device_map |= {f"model.layers.{i}": 0 if i < layers // 2 else 1 for i in range(layers)}
    return AutoModelForCausalLM.from_pretrained(folder, device_map=device_map, dtype=dtype).eval()


@two_gpus
def test_a_model_spread_over_two_gpus_is_calibrated_repaired_and_cut_where_its_layers_are(parents, tmp_path):
    folder = parents["float32"]
    one = load_model(folder, torch.device("cuda", 0), torch.float32)
    two = split_over_two_gpus(folder)
    assert [d.index for d in model_devices(two)] == [0, 1]
    ids = calibration.build_sequences(AutoTokenizer.from_pretrained(folder), load_source("wikitext2").calibration,
                                      4, 32, "wikitext2")
    stats_one, stats_two = calibration.capture(one, ids), calibration.capture(two, ids)
    assert stats_two.layers[-1].sum_squares.device == torch.device("cuda", 1)
    for a, b in zip(stats_one.layers, stats_two.layers, strict=True):
        torch.testing.assert_close(b.sum_squares.cpu(), a.sum_squares.cpu(), rtol=1e-4, atol=1e-5)
    spec = PruneSpec(model="tiny", scorer="wanda", percent=40).validate()
    plans = plan_pruning(one, spec, stats_one)
    for model in (one, two):
        repair.repair(model, plans, ids, "sequential", 0.01)
    assert two.model.layers[-1].mlp.down_proj.weight.device == torch.device("cuda", 1)
    with torch.no_grad():
        torch.testing.assert_close(two(ids.to("cuda:0")).logits.cpu(), one(ids.to("cuda:0")).logits.cpu(),
                                   rtol=1e-3, atol=1e-4)
    save_folder(two, AutoTokenizer.from_pretrained(folder), tmp_path / "two", [p.kept_width for p in plans])
    save_folder(one, AutoTokenizer.from_pretrained(folder), tmp_path / "one", [p.kept_width for p in plans])
    a, b = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-3, atol=1e-5)


@two_gpus
def test_a_spread_model_cut_in_place_gives_the_single_gpu_cuts_logits(parents):
    folder = parents["bfloat16"]
    one = load_model(folder, torch.device("cuda", 0), torch.bfloat16)
    two = split_over_two_gpus(folder, torch.bfloat16)
    plans = plan_pruning(one, PruneSpec(model="tiny", scorer="ppm", percent=50).validate(), None)
    apply_plan(one, plans)
    apply_plan(two, plans)
    for a, b in zip(one.model.layers, two.model.layers, strict=True):
        assert torch.equal(a.mlp.down_proj.weight.cpu(), b.mlp.down_proj.weight.cpu())  # the same slices, bit for bit


@two_gpus
def test_a_model_placed_over_two_gpus_loads_there_and_measures_like_one(parents, tokenizer):
    folder = parents["float32"]
    size = sum(t.numel() * 4 for t in load_file(folder / "model.safetensors").values())
    spread = load_model(folder, Placement(torch.device("cuda", 0), {0: size // 2, 1: 4 * size}), torch.float32)
    assert {d.index for d in model_devices(spread)} == {0, 1}
    one = load_model(folder, torch.device("cuda", 0), torch.float32)
    text = load_source("wikitext2").heldout
    a, b = perplexity(one, tokenizer, text, 4, 64), perplexity(spread, tokenizer, text, 4, 64)
    assert b.perplexity == pytest.approx(a.perplexity, rel=1e-4)
