"""Requests checked before any model is loaded: targets, divisors, layer selections."""

from __future__ import annotations

import pytest

from workbench.errors import UserError
from workbench.spec import PruneSpec, parse_layers, planned_widths, round_to_divisor

HIDDEN, WIDTHS = 576, [1536] * 30


def spec(**kwargs) -> PruneSpec:
    return PruneSpec(model="m", scorer=kwargs.pop("scorer", "ppm"), **kwargs).validate()


def test_percent_and_expansion_targets():
    assert planned_widths(spec(percent=40), HIDDEN, WIDTHS) == [922] * 30
    assert planned_widths(spec(percent=40, divisor=64), HIDDEN, WIDTHS) == [896] * 30
    assert planned_widths(spec(expansion=2.4), HIDDEN, WIDTHS) == [1382] * 30
    assert planned_widths(spec(expansion=2.4, divisor=128), HIDDEN, WIDTHS) == [1280] * 30
    assert planned_widths(spec(percent=0), HIDDEN, WIDTHS) == WIDTHS
    assert planned_widths(spec(percent=50, layers="0-1,29"), HIDDEN, WIDTHS)[:3] == [768, 768, 1536]


@pytest.mark.parametrize("width", range(1, 300, 7))
@pytest.mark.parametrize("divisor", [1, 8, 32, 64, 128])
def test_divisor_rounding_never_grows_a_layer(width, divisor):
    rounded = round_to_divisor(width, divisor)
    assert rounded <= width and rounded % divisor == 0 and width - rounded < divisor


def test_rounding_that_leaves_nothing_is_an_error():
    with pytest.raises(UserError, match="impossible rounding"):
        planned_widths(spec(percent=99, divisor=64), HIDDEN, WIDTHS)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"percent": 100}, "below 100"),
        ({"percent": -1}, "at least 0"),
        ({}, "exactly one"),
        ({"percent": 10, "expansion": 2.0}, "exactly one"),
        ({"expansion": 0}, "positive ratio"),
        ({"percent": 10, "divisor": 0}, "divisor"),
        ({"percent": 10, "allocation": "random"}, "allocation"),
        ({"percent": 10, "scorer": "magic"}, "unknown scorer"),
        ({"percent": 10, "device": "tpu"}, "unknown device"),
        ({"percent": 10, "dtype": "int8"}, "unknown dtype"),
        ({"percent": 10, "layers": "3-1"}, "empty or negative"),
        ({"percent": 10, "layers": "a-b"}, "bad --layers"),
        ({"percent": 10, "calibration": "sms"}, "static scorer"),
        ({"percent": 10, "scorer": "wanda", "samples": 0}, "--samples"),
        ({"percent": 10, "scorer": "wanda", "seq_len": 1}, "--seq-len"),
    ],
)
def test_bad_requests_are_refused(kwargs, message):
    with pytest.raises(UserError, match=message):
        spec(**kwargs)


def test_expansion_that_does_not_shrink_is_an_error():
    with pytest.raises(UserError, match="does not shrink"):
        planned_widths(spec(expansion=2.7), HIDDEN, WIDTHS)


def test_layers_past_the_last_are_an_error():
    assert parse_layers("0-2, 5", 6) == [0, 1, 2, 5]
    with pytest.raises(UserError, match="has 30"):
        planned_widths(spec(percent=10, layers="28-30"), HIDDEN, WIDTHS)


def test_spec_round_trips_through_a_dict():
    original = spec(scorer="hybrid", expansion=2.4, divisor=64, calibration="sms", samples=8)
    assert PruneSpec.from_dict(original.to_dict()) == original
    assert original.calibration_source == "sms"
    assert spec(scorer="wanda", percent=5).calibration_source == "wikitext2"
