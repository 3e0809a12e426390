"""Compact encoding of a layer's kept neuron indices: a bit mask over the original width.

"1536:<base64>" holds 1536 bits (192 bytes, 256 characters) whatever the selection, and two
selections intersect with one integer AND, which is all the overlap views need.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable


def encode(indices: Iterable[int], width: int) -> str:
    mask = 0
    for i in indices:
        if not 0 <= i < width:
            raise ValueError(f"neuron index {i} outside width {width}")
        mask |= 1 << i
    data = mask.to_bytes((width + 7) // 8, "little")
    return f"{width}:{base64.b64encode(data).decode('ascii')}"


def mask_of(encoded: str) -> tuple[int, int]:
    """The (bit mask, width) an encoded selection stands for."""
    width, _, data = encoded.partition(":")
    return int.from_bytes(base64.b64decode(data), "little"), int(width)


def decode(encoded: str) -> list[int]:
    mask, _ = mask_of(encoded)
    bits = bin(mask)[:1:-1]  # least significant first: a string scan is faster than shifting a big int
    return [i for i, bit in enumerate(bits) if bit == "1"]


def overlap(a: str, b: str) -> int:
    """How many neuron indices two selections share."""
    return (mask_of(a)[0] & mask_of(b)[0]).bit_count()
