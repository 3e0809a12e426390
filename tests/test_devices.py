"""Devices and dtypes: where a model's weights go (whole, spread over GPUs, or refused with the numbers),
the engine on a model dispatched by accelerate (hooks on every layer, as a spread model has), and the
dtype a cut is saved in, config included, on every path."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import tiny_model
from safetensors.torch import load_file

from workbench import calibration, repair
from workbench.cli.main import main
from workbench.devices import SPREAD_RESERVE, MemoryMeter, Placement, input_device, model_devices, plan_placement
from workbench.errors import UserError
from workbench.plan import plan_pruning
from workbench.spec import PruneSpec
from workbench.surgery import apply_plan

GIB = 2**30
CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_a_model_that_fits_goes_whole_onto_its_device():
    assert plan_placement(10 * 2**20, torch.bfloat16, CPU, [GIB]) == Placement(CPU)
    placed = plan_placement(2**29, torch.float32, CUDA, [3 * GIB, GIB])  # 2 GiB on a GPU with 3 free
    assert placed == Placement(CUDA) and not placed.spread and str(placed) == "cuda"
    assert placed.load_arguments() == {"device_map": {"": CUDA}}
    assert Placement(CPU).load_arguments() == {}  # read into the process, no device map


def test_a_model_no_gpu_holds_is_spread_over_them_with_room_kept_for_activations():
    placed = plan_placement(7 * 2**29, torch.bfloat16, CUDA, [4 * GIB, 2 * GIB, 3 * GIB])  # 7 GiB
    assert placed.spread and str(placed) == "cuda:0+1+2" and placed.device == torch.device("cuda", 0)
    budget = {gpu: int(free * (1 - SPREAD_RESERVE)) for gpu, free in enumerate([4 * GIB, 2 * GIB, 3 * GIB])}
    assert placed.max_memory == budget
    assert placed.load_arguments() == {"device_map": "auto", "max_memory": budget}


@pytest.mark.parametrize(
    ("device", "free", "message"),
    [
        (CPU, [GIB], r"the model needs 4\.0 GiB \(1,073,741,824 parameters x 4 bytes\) but cpu has 1\.0 GiB free"),
        (CUDA, [3 * GIB], r"needs 4\.0 GiB .* but cuda has 3\.0 GiB free$"),
        (CUDA, [2 * GIB, 2 * GIB], r"no GPU holds it and the 2 GPUs together can take 3\.6 GiB \(90% of their free "
                                   r"GiB: cuda:0 2\.0, cuda:1 2\.0\)"),
    ],
)
def test_a_model_that_fits_nowhere_is_refused_with_the_numbers(device, free, message):
    with pytest.raises(UserError, match=message):
        plan_placement(2**30, torch.float32, device, free)


def test_the_cpu_memory_meter_sees_an_allocation():
    meter = MemoryMeter(CPU)
    meter.reset()
    before = meter.peak()
    block = torch.ones(64 * 2**20, dtype=torch.uint8)  # 64 MiB, touched
    assert meter.peak() >= before + 60 * 2**20 and meter.current() >= 60 * 2**20
    del block


def dispatched(model):
    """The model with accelerate's device hooks on each of its parts, as a model spread over GPUs
    has them (here every part on the CPU, so the results can be compared exactly)."""
    from accelerate import dispatch_model

    parts = ["model.embed_tokens", "model.rotary_emb", "model.norm", "lm_head"]
    parts += [f"model.layers.{i}" for i in range(len(model.model.layers))]
    return dispatch_model(model, device_map=dict.fromkeys(parts, "cpu"), force_hooks=True)


def test_calibration_repair_and_surgery_work_on_a_dispatched_model():
    model = tiny_model("llama")
    ids = torch.randint(0, 320, (3, 12), generator=torch.Generator().manual_seed(8))
    hooked = dispatched(copy.deepcopy(model))
    assert hasattr(hooked.model.layers[0], "_hf_hook") and input_device(hooked) == CPU
    assert model_devices(hooked) == [CPU]
    plain_stats, hooked_stats = calibration.capture(model, ids), calibration.capture(hooked, ids)
    for a, b in zip(plain_stats.layers, hooked_stats.layers, strict=True):
        assert torch.equal(a.sum_squares, b.sum_squares)
        assert torch.equal(a.sequence_mean_abs_squares, b.sequence_mean_abs_squares)
    spec = PruneSpec(model="tiny", scorer="wanda", percent=30).validate()
    plans = plan_pruning(model, spec, plain_stats)
    assert [p.keep.tolist() for p in plans] == [p.keep.tolist() for p in plan_pruning(hooked, spec, hooked_stats)]
    for m in (model, hooked):
        repair.repair(m, plans, ids, "sequential", 0.01)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, hooked(ids).logits)
    cut, hooked_cut = tiny_model("llama"), dispatched(tiny_model("llama"))
    apply_plan(cut, plans)
    apply_plan(hooked_cut, plans)
    with torch.no_grad():
        assert torch.equal(cut(ids).logits, hooked_cut(ids).logits)



@pytest.mark.parametrize(
    ("parent", "args", "saved"),
    [
        ("bfloat16", ["--scorer", "ppm"], "bfloat16"),
        ("bfloat16", ["--scorer", "hybrid", "--dtype", "float32"], "bfloat16"),
        ("bfloat16", ["--scorer", "hybrid", "--dtype", "float32", "--repair"], "bfloat16"),
        ("float32", ["--scorer", "act_l2", "--dtype", "bfloat16"], "float32"),
        ("float32", ["--scorer", "wanda", "--dtype", "bfloat16", "--repair", "sequential"], "float32"),
        ("float32", ["--scorer", "ppm", "--save-dtype", "float16"], "float16"),
    ],
)
def test_the_saved_weights_and_config_keep_the_parents_dtype_on_every_path(parent, args, saved, parents, tmp_path,
                                                                          capsys):
    code = main(["--store", str(tmp_path / "s"), "prune", str(parents[parent]), *args, "--percent", "30",
                 "--device", "cpu", "--samples", "4", "--seq-len", "32", "--out", str(tmp_path / "out"), "--json"])
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["save_dtype"] == saved
    assert json.loads((tmp_path / "out" / "config.json").read_text())["dtype"] == saved
    assert {str(t.dtype) for t in load_file(tmp_path / "out" / "model.safetensors").values()} == {f"torch.{saved}"}


def test_a_sweep_reuses_a_static_cut_whatever_dtype_its_run_recorded(parents, tmp_path, capsys):
    """A static scorer's run records the dtype of the weights it read (a bfloat16 parent's), not the
    one `--dtype auto` gives here (float32 on the CPU, bfloat16 on a GPU): the same cut either way."""
    from store.db import Store
    from workbench.studies.request import SweepRequest
    from workbench.studies.sweep import plan

    store_dir = tmp_path / "s"
    assert main(["--store", str(store_dir), "prune", str(parents["bfloat16"]), "--scorer", "ppm", "--percent", "20",
                 "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dtype"] == "bfloat16"
    request = SweepRequest(model=parents["bfloat16"].name, scorers=("ppm", "wanda"), tasks=("ppl:sms",),
                           percents=(20.0,), calibrations=("sms",), samples=4, seq_len=32, device="cpu")
    counts = plan(Store.open(store_dir), request, None).counts()
    assert (counts["runs reused"], counts["prune"]) == (1, 1)  # ppm reused; wanda (a forward pass) to do
