"""Shared fixtures: tiny random GLU models (Llama, Qwen2, Gemma 3) with a real tokenizer.

The tokenizer is a byte-level BPE trained in a second on local WikiText-2 text, so tests need
no hub and still tokenise real text.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("WORKBENCH_DATA", REPO.parent / "shared" / "benchdata")).resolve()
os.environ.setdefault("WORKBENCH_DATA", str(DATA))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FAMILIES = ("llama", "qwen2", "gemma3_text")
TINY = dict(
    hidden_size=32,
    intermediate_size=96,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    max_position_embeddings=256,
)


def tiny_config(family: str, vocab_size: int, **overrides):
    from transformers import AutoConfig

    return AutoConfig.for_model(family, vocab_size=vocab_size, **(TINY | overrides))


def tiny_model(family: str, vocab_size: int = 320, seed: int = 0, **overrides):
    """A random model in float32; weights scaled up so activations are far from zero."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = tiny_config(family, vocab_size, **overrides)
    config.initializer_range = 0.2
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    lines = [json.loads(line)["text"] for line in (DATA / "calibration" / "wikitext2_valid.jsonl").open()][:8]
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(lines, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    folder = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory, tokenizer) -> dict[str, Path]:
    """A saved Hugging Face folder (weights and tokenizer) for each family."""
    folders = {}
    for family in FAMILIES:
        folder = tmp_path_factory.mktemp(f"tiny-{family}")
        tiny_model(family, vocab_size=len(tokenizer)).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders[family] = folder
    return folders


@pytest.fixture
def store(tmp_path):
    from store.db import Store

    return Store.open(tmp_path / "store")
