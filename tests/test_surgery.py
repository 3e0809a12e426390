"""Surgery is exact: a pruned model computes what the original computes with the removed
neurons zeroed, for every scorer, both allocations, and three families."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import FAMILIES, tiny_model

from workbench import calibration
from workbench.architecture import glu_mlps
from workbench.plan import LayerPlan, plan_pruning
from workbench.spec import SCORERS, PruneSpec
from workbench.surgery import apply_plan


def sample_ids(vocab: int = 320, batch: int = 3, length: int = 20) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def zero_removed(model: torch.nn.Module, plans: list[LayerPlan]) -> None:
    for mlp, plan in zip(glu_mlps(model), plans, strict=True):
        removed = torch.ones(plan.original_width, dtype=torch.bool)
        removed[plan.keep] = False
        mlp.gate_proj.weight[removed] = 0
        mlp.up_proj.weight[removed] = 0
        mlp.down_proj.weight[:, removed] = 0


def plan_for(model, scorer: str, **spec_args) -> list[LayerPlan]:
    spec = PruneSpec(model="tiny", scorer=scorer, **spec_args).validate()
    stats = calibration.capture(model, sample_ids()) if spec.data_driven else None
    return plan_pruning(model, spec, stats)


@pytest.mark.parametrize("allocation", ["uniform", "global"])
@pytest.mark.parametrize("scorer", list(SCORERS))
@pytest.mark.parametrize("family", FAMILIES)
def test_pruned_logits_equal_original_with_removed_neurons_zeroed(family, scorer, allocation):
    model = tiny_model(family)
    plans = plan_for(model, scorer, percent=40, allocation=allocation)
    reference = copy.deepcopy(model)
    zero_removed(reference, plans)

    widths = apply_plan(model, plans)

    ids = sample_ids()
    assert sum(widths) == sum(p.kept_width for p in plans) < 3 * 96
    assert [m.gate_proj.weight.shape[0] for m in glu_mlps(model)] == widths
    assert [m.down_proj.weight.shape[1] for m in glu_mlps(model)] == widths
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reference(ids).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_zero_percent_changes_nothing(family):
    model = tiny_model(family)
    ids = sample_ids()
    with torch.no_grad():
        before = model(ids).logits
    widths = apply_plan(model, plan_for(model, "wanda", percent=0))
    assert widths == [96, 96, 96]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, before)


def test_surgery_keeps_dtype_and_config():
    model = tiny_model("llama").to(torch.bfloat16)
    widths = apply_plan(model, plan_for(model, "ppm", expansion=1.5))
    assert widths == [48, 48, 48]
    assert model.config.intermediate_size == 48
    assert not hasattr(model.config, "intermediate_sizes")
    assert all(m.gate_proj.weight.dtype == torch.bfloat16 for m in glu_mlps(model))


def test_biases_are_sliced_with_their_rows():
    model = tiny_model("llama", mlp_bias=True)
    with torch.no_grad():
        for mlp in glu_mlps(model):
            for linear in (mlp.gate_proj, mlp.up_proj, mlp.down_proj):
                linear.bias.normal_()
    plans = plan_for(model, "l2", percent=25)
    reference = copy.deepcopy(model)
    zero_removed(reference, plans)
    for mlp, plan in zip(glu_mlps(reference), plans, strict=True):
        removed = torch.ones(plan.original_width, dtype=torch.bool)
        removed[plan.keep] = False
        with torch.no_grad():  # a removed neuron must contribute nothing, bias included
            mlp.gate_proj.bias[removed] = 0
            mlp.up_proj.bias[removed] = 0
    apply_plan(model, plans)
    ids = sample_ids()
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reference(ids).logits, atol=1e-5, rtol=0)


def test_global_allocation_moves_width_to_where_scores_are_high_with_the_uniform_total():
    model = tiny_model("llama", num_hidden_layers=4)
    with torch.no_grad():  # in layer 1, 40 of 96 neurons are nearly dead: far below the layer's median
        for proj in ("gate_proj", "up_proj"):
            getattr(glu_mlps(model)[1], proj).weight[:40].mul_(0.01)
    uniform = plan_for(model, "l2", percent=25, divisor=8)
    global_ = plan_for(model, "l2", percent=25, divisor=8, allocation="global")
    assert sum(p.kept_width for p in global_) == sum(p.kept_width for p in uniform) == 4 * 72
    widths = [p.kept_width for p in global_]
    assert widths[1] == min(widths) <= 56 and max(widths) > 72
    assert not set(range(40)) & set(global_[1].keep.tolist())  # the dead neurons go first
    assert all(w % 8 == 0 and w >= 16 for w in widths)  # multiples of 8, floor 10% -> 16


def test_layer_selection_prunes_only_named_layers():
    model = tiny_model("qwen2")
    plans = plan_for(model, "vow", percent=50, layers="0,2")
    assert [p.kept_width for p in plans] == [48, 96, 48]
    assert plans[1].scores is None
