"""Shared fixtures: tiny random GLU models (Llama, Qwen2, Gemma 3) with a real tokenizer, and stores.

The tokenizer is a byte-level BPE trained in a second on local WikiText-2 text, so tests need
no hub and still tokenise real text.

Stores: `store` is an open store, `location` where a new one goes (a folder, or a database URL).
Both are SQLite unless the test (or its module, with `pytestmark`) is marked
`@pytest.mark.backends("sqlite", "postgresql")`: then it runs once on each. A PostgreSQL store lives
in a fresh database of a throw-away server the session starts (tests/postgres_server.py), with its
files in the test's folder (`WORKBENCH_ARTIFACTS`, which the processes a test starts inherit). Where
PostgreSQL is not installed those runs are skipped, unless $WORKBENCH_REQUIRE_POSTGRES is set (CI).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from postgres_server import PostgresServer, database_name, server_binaries

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("WORKBENCH_DATA", REPO.parent / "shared" / "benchdata")).resolve()
os.environ.setdefault("WORKBENCH_DATA", str(DATA))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The workers a test's commands start end with their queue, as they did before workers stayed warm:
# a warm one per test store would pile up processes importing torch on CI's two cores.
# tests/test_jobs_warm.py sets it where it tests warm workers.
os.environ["WORKBENCH_WARM_S"] = "0"

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
def parents(tmp_path_factory, tokenizer) -> dict[str, Path]:
    """A tiny Llama saved in float32 and the same weights saved in bfloat16, each with the tokenizer."""
    import torch

    folders = {}
    for dtype in ("float32", "bfloat16"):
        folder = tmp_path_factory.mktemp(f"parent-{dtype}")
        tiny_model("llama", vocab_size=len(tokenizer)).to(getattr(torch, dtype)).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders[dtype] = folder
    return folders


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


def pytest_configure(config):
    config.addinivalue_line("markers", "backends(*names): run the test on each store backend named")


def pytest_generate_tests(metafunc):
    marker = metafunc.definition.get_closest_marker("backends")
    if marker and "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", marker.args, indirect=True)


@pytest.fixture
def backend(request) -> str:
    """The store backend: "sqlite" unless the test is marked with several (then its ids say which)."""
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="session")
def postgres():
    """The session's PostgreSQL server."""
    binaries = server_binaries()
    if binaries is None:
        message = "PostgreSQL is not installed (Debian: apt-get install postgresql)"
        if os.environ.get("WORKBENCH_REQUIRE_POSTGRES"):
            pytest.fail(message)
        pytest.skip(message)
    server = PostgresServer(binaries)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_template(postgres):
    """A database migrated to head once, copied for each test's store (a copy takes a tenth of the time
    that creating the schema does). Its settings are cleared, so that each copy records its own folder."""
    from store.db import Store

    url = postgres.new_database()
    with Store.open(url, files=postgres.folder / "template-files"):
        pass
    postgres.execute("DELETE FROM setting", database_name(url))
    return database_name(url)


@pytest.fixture
def location(backend, tmp_path, request, monkeypatch):
    """Where a new store goes: the folder tmp_path/store, or an empty PostgreSQL database whose
    files go in tmp_path/store."""
    if backend == "sqlite":
        yield tmp_path / "store"
        return
    server = request.getfixturevalue("postgres")
    monkeypatch.setenv("WORKBENCH_ARTIFACTS", str(tmp_path / "store"))
    url = server.new_database()
    yield url
    server.drop_database(url)


@pytest.fixture
def store(backend, tmp_path, request, monkeypatch):
    from store.db import Store

    if backend == "sqlite":
        opened = Store.open(tmp_path / "store")
        yield opened
        opened.close()
        return
    server = request.getfixturevalue("postgres")
    monkeypatch.setenv("WORKBENCH_ARTIFACTS", str(tmp_path / "store"))
    url = server.new_database(template=request.getfixturevalue("postgres_template"))
    opened = Store.open(url)
    yield opened
    opened.close()
    server.drop_database(url)
