"""Activation statistics: masked padding, batch-size independence, and how text becomes tokens."""

from __future__ import annotations

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
