"""The slower tier: the bundled SmolLM2-135M-Instruct end to end (minutes on a CPU)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from store import queries
from store.db import Store
from workbench.cli.main import main
from workbench.model_io import _load_gguf, load_model
from workbench.perplexity import perplexity
from workbench.sources import bundled_gguf
from workbench.texts import load_source

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2_store(tmp_path_factory):
    store_dir = tmp_path_factory.mktemp("smollm2") / "store"
    assert main(["--store", str(store_dir), "models", "import", "smollm2"]) == 0
    return store_dir


def wikitext_ppl(model, tokenizer) -> float:
    return perplexity(model, tokenizer, load_source("wikitext2").heldout, windows=4, window_len=256).perplexity


def test_bundled_gguf_imports_as_safetensors_with_the_same_logits(smollm2_store):
    store = Store.open(smollm2_store)
    row = queries.get_model(store, "smollm2")
    assert (row.source, row.family, row.num_layers, row.hidden_size, row.intermediate_size) == (
        "bundled", "llama", 30, 576, 1536)
    assert row.parameters == 134_515_008 and row.dtype == "float32"
    folder = store.model_path(row)
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.gguf"))
    stored = load_model(folder, torch.device("cpu"), torch.float32)
    dequantised, tokenizer = _load_gguf(bundled_gguf())
    ids = tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(stored(ids).logits, dequantised(ids).logits)


@pytest.mark.parametrize("scorer", ["ppm", "wanda"])
def test_prune_40_percent_and_reload_with_plain_transformers(scorer, smollm2_store, tmp_path, capsys):
    extra = ["--samples", "16", "--seq-len", "256"] if scorer == "wanda" else []
    code = main(["--store", str(smollm2_store), "prune", "smollm2", "--scorer", scorer, "--percent", "40",
                 "--out", str(tmp_path / "out"), "--json", *extra])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and [r["kept_width"] for r in report["layers"]] == [922] * 30
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert model.config.intermediate_size == 922
    assert sum(p.numel() for p in model.parameters()) == report["parameters_after"] < report["parameters_before"]
    store = Store.open(smollm2_store)
    base = load_model(store.model_path(queries.get_model(store, "smollm2")), torch.device("cpu"), torch.float32)
    pruned_ppl, base_ppl = wikitext_ppl(model, tokenizer), wikitext_ppl(base, tokenizer)
    assert math.isfinite(pruned_ppl) and pruned_ppl > base_ppl > 1
