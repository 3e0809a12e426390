"""store.bitset: kept neuron indices as a bit mask over the original width."""

from __future__ import annotations

import random

import pytest

from store import bitset


@pytest.mark.parametrize("width", [1, 7, 8, 96, 1536])
def test_encode_decode_round_trips(width):
    rng = random.Random(width)
    for kept in (0, 1, width // 2, width):
        indices = sorted(rng.sample(range(width), kept))
        encoded = bitset.encode(indices, width)
        assert encoded.startswith(f"{width}:") and bitset.decode(encoded) == indices


def test_overlap_and_bounds():
    assert bitset.overlap(bitset.encode([0, 1, 5], 8), bitset.encode([1, 5, 7], 8)) == 2
    with pytest.raises(ValueError, match="outside width"):
        bitset.encode([8], 8)
