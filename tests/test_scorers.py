"""Each scorer's formula against a hand computation on small known weights."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from workbench.calibration import LayerStats
from workbench.scorers import score_layer

GATE = [[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]]  # 2 neurons x hidden 3
UP = [[2.0, 2.0, -4.0], [-1.0, 1.0, 1.0]]
DOWN = [[1.0, -3.0], [2.0, 0.5], [-1.0, 1.5]]  # hidden 3 x 2 neurons
SUM_SQUARES = [4.0, 9.0]
SEQ_MEAN_ABS_SQUARES = [1.0, 16.0]


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gate_proj, self.up_proj = nn.Linear(3, 2, bias=False), nn.Linear(3, 2, bias=False)
        self.down_proj = nn.Linear(2, 3, bias=False)
        with torch.no_grad():
            self.gate_proj.weight.copy_(torch.tensor(GATE))
            self.up_proj.weight.copy_(torch.tensor(UP))
            self.down_proj.weight.copy_(torch.tensor(DOWN))


def var(xs):  # unbiased, as torch.var and optipfair use
    m = sum(xs) / len(xs)
    return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)


def ptp(xs):
    return max(xs) + abs(min(xs))


COLUMNS = [[row[i] for row in DOWN] for i in range(2)]
ACT_L2 = [math.sqrt(s) for s in SUM_SQUARES]
EXPECTED = {
    "ppm": [ptp(g) + ptp(u) for g, u in zip(GATE, UP, strict=True)],
    "vow": [var(g) + var(u) for g, u in zip(GATE, UP, strict=True)],
    "pon": [sum(map(abs, g)) * sum(map(abs, u)) for g, u in zip(GATE, UP, strict=True)],
    "l2": [math.hypot(*g) + math.hypot(*u) for g, u in zip(GATE, UP, strict=True)],
    "act_l2": ACT_L2,
    "wanda": [sum(map(abs, c)) / 3 * a for c, a in zip(COLUMNS, ACT_L2, strict=True)],
    "minitron": [math.sqrt(s) for s in SEQ_MEAN_ABS_SQUARES],
}
gate_p, up_p, down_p = [ptp(g) for g in GATE], [ptp(u) for u in UP], [ptp(c) for c in COLUMNS]
EXPECTED["hybrid"] = [
    (gate_p[i] / max(gate_p) + up_p[i] / max(up_p) + down_p[i] / max(down_p)) * ACT_L2[i] for i in range(2)
]


@pytest.mark.parametrize("scorer", list(EXPECTED))
def test_score_matches_hand_computation(scorer):
    stats = LayerStats(torch.tensor(SUM_SQUARES), torch.tensor(SEQ_MEAN_ABS_SQUARES))
    scores = score_layer(scorer, MLP(), stats)
    assert scores.dtype == torch.float32
    assert scores.tolist() == pytest.approx(EXPECTED[scorer], rel=1e-6)


def test_static_scores_are_float32_for_half_precision_weights():
    scores = score_layer("ppm", MLP().to(torch.bfloat16))
    assert scores.dtype == torch.float32
    assert scores.tolist() == pytest.approx(EXPECTED["ppm"], rel=1e-2)


def test_data_driven_scorer_without_statistics_is_refused():
    with pytest.raises(ValueError, match="calibration"):
        score_layer("wanda", MLP())
