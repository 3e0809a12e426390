"""Activation statistics: masked padding, batch-size independence, the Gram matrices a one-shot repair
solves with, cache files, and how text becomes tokens."""

from __future__ import annotations

import os

import pytest
import torch
from conftest import tiny_model

from workbench import calibration
from workbench.errors import UserError
from workbench.texts import load_source


def assert_same_stats(a, b):
    assert (a.tokens, a.sequences) == (b.tokens, b.sequences)
    for x, y in zip(a.layers, b.layers, strict=True):
        torch.testing.assert_close(x.sum_squares, y.sum_squares, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(x.sequence_mean_abs_squares, y.sequence_mean_abs_squares, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", ["llama", "gemma3_text"])
def test_padding_does_not_change_statistics(family):
    model = tiny_model(family)
    lengths = [12, 5, 9]
    seqs = [torch.randint(0, 320, (n,), generator=torch.Generator().manual_seed(n)) for n in lengths]
    one_by_one = [calibration.capture(model, s[None]) for s in seqs]
    padded = torch.zeros(3, 12, dtype=torch.long)
    mask = torch.zeros(3, 12, dtype=torch.long)
    for row, s in enumerate(seqs):
        padded[row, : len(s)] = s
        padded[row, len(s) :] = 7  # a real token id, so only the mask can hide it
        mask[row, : len(s)] = 1
    together = calibration.capture(model, padded, mask)
    assert together.tokens == sum(lengths) and together.sequences == 3
    for layer, stats in enumerate(together.layers):
        torch.testing.assert_close(
            stats.sum_squares, sum(o.layers[layer].sum_squares for o in one_by_one), rtol=1e-5, atol=1e-6
        )
        torch.testing.assert_close(
            stats.sequence_mean_abs_squares,
            sum(o.layers[layer].sequence_mean_abs_squares for o in one_by_one),
            rtol=1e-5,
            atol=1e-6,
        )


def test_batch_size_does_not_change_statistics():
    model = tiny_model("qwen2")
    ids = torch.randint(0, 320, (6, 16), generator=torch.Generator().manual_seed(3))
    assert_same_stats(calibration.capture(model, ids, batch_size=1), calibration.capture(model, ids, batch_size=4))


def test_statistics_round_trip_through_a_file(tmp_path):
    stats = calibration.capture(tiny_model("llama"), torch.randint(0, 320, (2, 8)))
    stats.save(tmp_path / "stats.safetensors")
    assert_same_stats(calibration.ActivationStats.load(tmp_path / "stats.safetensors"), stats)


def test_gram_matrices_sum_the_outer_products_of_real_tokens_down_proj_inputs():
    model = tiny_model("llama")
    lengths = [12, 5]
    seqs = [torch.randint(0, 320, (n,), generator=torch.Generator().manual_seed(n)) for n in lengths]
    padded, mask = torch.full((2, 12), 7), torch.zeros(2, 12, dtype=torch.long)
    for row, s in enumerate(seqs):
        padded[row, : len(s)], mask[row, : len(s)] = s, 1
    inputs: list[list[torch.Tensor]] = [[] for _ in model.model.layers]
    handles = [layer.mlp.down_proj.register_forward_pre_hook(lambda _m, args, i=i: inputs[i].append(args[0][0]))
               for i, layer in enumerate(model.model.layers)]
    with torch.no_grad():
        for s in seqs:
            model(s[None])
    for h in handles:
        h.remove()
    stats = calibration.capture(model, padded, mask, grams=True)
    assert calibration.capture(model, padded, mask).grams is None
    for gram, xs in zip(stats.grams, inputs, strict=True):
        x = torch.cat(xs).double()
        torch.testing.assert_close(gram.double(), x.T @ x, rtol=1e-5, atol=1e-5)


def test_a_cache_goes_through_a_file_of_its_own_and_never_into_a_removed_models_folder(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    path = folder / "calibration" / "key.safetensors"
    assert not calibration.save_cache({"x": torch.ones(3)}, path)  # the model's folder is gone
    assert not folder.exists()
    written = []
    save_file = calibration.save_file
    monkeypatch.setattr(calibration, "save_file", lambda t, p, **k: (written.append(p), save_file(t, p, **k)))
    folder.mkdir()
    assert calibration.save_cache({"x": torch.ones(3)}, path)
    assert written == [path.with_suffix(f".{os.getpid()}.partial")]  # two jobs saving at once never share one
    assert [p.name for p in path.parent.iterdir()] == ["key.safetensors"]


def test_sequences_are_evenly_spaced_windows_of_the_stream(tokenizer):
    docs = load_source("wikitext2").calibration
    seqs = calibration.build_sequences(tokenizer, docs, samples=4, seq_len=32, source="wikitext2")
    assert seqs.shape == (4, 32)
    again = calibration.build_sequences(tokenizer, docs, samples=4, seq_len=32, source="wikitext2")
    assert torch.equal(seqs, again) and calibration.token_hash(seqs) == calibration.token_hash(again)
    assert len({tuple(s.tolist()) for s in seqs}) == 4


def test_too_short_source_is_an_error(tokenizer):
    with pytest.raises(UserError, match="need 4000"):
        calibration.build_sequences(tokenizer, ["a short text"], samples=8, seq_len=500, source="x.txt")


def test_builtin_sources_keep_calibration_and_evaluation_apart():
    wiki = load_source("wikitext2")
    assert not wiki.overlapping and not set(wiki.calibration) & set(wiki.heldout)
    sms = load_source("sms")
    assert len(sms.heldout) == (5574 + 4) // 5 and len(sms.calibration) + len(sms.heldout) == 5574


def test_empty_text_file_is_an_error(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(UserError, match="holds no text"):
        load_source(str(empty))


def test_statistics_are_their_definition_over_the_real_tokens():
    """sum of X^2 over real tokens, and the sum over sequences of (mean |X| over its real tokens)^2,
    computed here in float64 from every layer's down_proj input."""
    model = tiny_model("llama")
    ids = torch.randint(0, 320, (3, 10), generator=torch.Generator().manual_seed(4))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 1:] = 0
    inputs: list[torch.Tensor] = []
    handles = [layer.mlp.down_proj.register_forward_pre_hook(lambda _m, a: inputs.append(a[0].double()))
               for layer in model.model.layers]
    with torch.no_grad():
        model.model(input_ids=ids, attention_mask=mask)
    for h in handles:
        h.remove()
    stats = calibration.capture(model, ids, mask)
    real = mask.bool()
    for x, layer in zip(inputs, stats.layers, strict=True):
        sum_squares = (x[real] ** 2).sum(0)
        means = torch.stack([x[row][real[row]].abs().mean(0) for row in range(3)])
        torch.testing.assert_close(layer.sum_squares.double(), sum_squares, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(layer.sequence_mean_abs_squares.double(), (means**2).sum(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_token_sums_equal_the_plain_ones(dtype):
    """The GPU's fused reductions (float32 accumulation straight from the model's dtype) give what
    the plain float32 ops give."""
    x = (torch.randn(3, 7, 40, generator=torch.Generator().manual_seed(2)) * 3).to(dtype)
    plain, fused = calibration.token_sums(x, fused=False), calibration.token_sums(x, fused=True)
    for a, b in zip(plain, fused, strict=True):
        assert a.dtype == b.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    exact = x.double()
    torch.testing.assert_close(plain[0].double(), (exact**2).sum((0, 1)), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain[1].double(), exact.abs().sum(1), rtol=1e-5, atol=1e-5)


def test_a_cpu_batch_holds_tokens_per_batch_tokens():
    model = tiny_model("llama")
    assert calibration.batch_size_for(model, 512) == calibration.TOKENS_PER_BATCH // 512
    assert calibration.batch_size_for(model, 2 * calibration.TOKENS_PER_BATCH) == 1


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.cuda
@cuda
def test_on_cuda_bfloat16_statistics_match_the_cpus_float32():
    model = tiny_model("llama")
    ids = torch.randint(0, 320, (4, 16), generator=torch.Generator().manual_seed(6))
    mask = torch.ones_like(ids)
    mask[3, 9:] = 0
    on_cpu = calibration.capture(model, ids, mask)
    on_cuda = calibration.capture(model.to("cuda", torch.bfloat16), ids, mask)
    for a, b in zip(on_cpu.layers, on_cuda.layers, strict=True):
        assert b.sum_squares.device.type == "cuda" and b.sum_squares.dtype == torch.float32
        torch.testing.assert_close(b.sum_squares.cpu(), a.sum_squares, rtol=0.05, atol=1e-3)
        torch.testing.assert_close(b.sequence_mean_abs_squares.cpu(), a.sequence_mean_abs_squares, rtol=0.05,
                                   atol=1e-3)


@pytest.mark.cuda
@cuda
def test_on_cuda_the_batch_follows_free_memory():
    model = tiny_model("llama").to("cuda", torch.bfloat16)
    per_token = 2 * (4 * 96 + 8 * 32) + (4 * 2 * 4 * 64 if model.config._attn_implementation == "eager" else 0)
    free = 1000 * 64 * per_token * 2  # half of it holds 1000 sequences of 64 tokens
    assert calibration.batch_size_for(model, 64, free_bytes=free) == 1000
    assert calibration.batch_size_for(model, 64, free_bytes=10**15) == calibration.MAX_TOKENS_PER_BATCH // 64
    assert calibration.batch_size_for(model, 64, free_bytes=0) == 1
