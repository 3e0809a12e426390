"""Cuts keep their parent's weights bit for bit in the parent's dtype, whatever the compute dtype;
`--repair` refits down_proj by least squares, never raising a layer's reconstruction error on its
calibration data, and sequential repair differs from one-shot and is recorded so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from store import queries
from store.db import Store
from workbench import calibration, repair
from workbench.cli.main import main
from workbench.texts import load_source

SAMPLES, SEQ_LEN = 4, 32


def prune(store_dir: Path, model: str, *args: str, capsys) -> dict:
    code = main(["--store", str(store_dir), "prune", model, *args, "--samples", str(SAMPLES),
                 "--seq-len", str(SEQ_LEN), "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def weights(store_dir: Path, model_id: int) -> dict[str, torch.Tensor]:
    store = Store.open(store_dir)
    folder = store.model_path(queries.get_model(store, model_id))
    return load_file(folder / "model.safetensors")


def kept(store_dir: Path, run_id: int) -> list[torch.Tensor]:
    return [torch.tensor(r.kept()) for r in queries.retention(Store.open(store_dir), run_id)]



def assert_cut_of(parent: dict[str, torch.Tensor], child: dict[str, torch.Tensor], keeps, repaired: bool) -> None:
    """Every weight of the child is the parent's, or its slice, bit for bit and in its dtype."""
    assert child.keys() == parent.keys()
    for name, tensor in child.items():
        assert tensor.dtype == parent[name].dtype, name
        expected = parent[name]
        if ".mlp." in name:
            keep = keeps[int(name.split(".layers.")[1].split(".")[0])]
            if "down_proj" in name:
                if repaired:
                    assert tensor.shape == (expected.shape[0], len(keep))
                    continue
                expected = expected[:, keep]
            else:
                expected = expected[keep]
        assert torch.equal(tensor, expected), name


@pytest.mark.parametrize(("parent_dtype", "compute"), [("bfloat16", "float32"), ("float32", "bfloat16")])
@pytest.mark.parametrize("scorer", ["hybrid", "ppm"])
def test_a_cut_keeps_the_parents_weights_in_the_parents_dtype(parent_dtype, compute, scorer, parents, tmp_path,
                                                               capsys):
    report = prune(tmp_path / "s", str(parents[parent_dtype]), "--scorer", scorer, "--percent", "40",
                   "--device", "cpu", "--dtype", compute, capsys=capsys)
    assert report["save_dtype"] == parent_dtype
    assert report["dtype"] == (compute if scorer == "hybrid" else parent_dtype)  # a static scorer reads the weights
    assert queries.get_model(Store.open(tmp_path / "s"), report["model_id"]).dtype == parent_dtype
    parent = load_file(parents[parent_dtype] / "model.safetensors")
    assert_cut_of(parent, weights(tmp_path / "s", report["model_id"]), kept(tmp_path / "s", report["run_id"]), False)


def test_a_repaired_cut_keeps_the_parents_dtype_and_its_other_weights(parents, tmp_path, capsys):
    report = prune(tmp_path / "s", str(parents["bfloat16"]), "--scorer", "wanda", "--percent", "40", "--device",
                   "cpu", "--dtype", "float32", "--repair", capsys=capsys)
    parent = load_file(parents["bfloat16"] / "model.safetensors")
    assert_cut_of(parent, weights(tmp_path / "s", report["model_id"]), kept(tmp_path / "s", report["run_id"]), True)


def test_save_dtype_asks_for_another(parents, tmp_path, capsys):
    report = prune(tmp_path / "s", str(parents["float32"]), "--scorer", "l2", "--percent", "25", "--device", "cpu",
                   "--save-dtype", "float16", capsys=capsys)
    assert report["save_dtype"] == "float16"
    assert {t.dtype for t in weights(tmp_path / "s", report["model_id"]).values()} == {torch.float16}


def down_inputs(folder: Path) -> list[torch.Tensor]:
    """Every layer's down_proj inputs over the run's calibration tokens, from the parent itself."""
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = calibration.build_sequences(AutoTokenizer.from_pretrained(folder), load_source("wikitext2").calibration,
                                      SAMPLES, SEQ_LEN, "wikitext2")
    found: list[torch.Tensor] = []
    handles = [layer.mlp.down_proj.register_forward_pre_hook(lambda _m, args: found.append(args[0].reshape(
        -1, args[0].shape[-1]).double())) for layer in model.model.layers]
    with torch.no_grad():
        model(ids)
    for h in handles:
        h.remove()
    return found


def test_oneshot_repair_is_the_least_squares_solution_and_never_worse(parents, tmp_path, capsys):
    store_dir = tmp_path / "s"
    report = prune(store_dir, str(parents["float32"]), "--scorer", "hybrid", "--percent", "40", "--device", "cpu",
                   "--repair", "oneshot", capsys=capsys)
    store = Store.open(store_dir)
    run = queries.run_detail(store, report["run_id"])
    assert (run.repair, run.repair_damping) == ("oneshot", 0.01)
    parent = load_file(parents["float32"] / "model.safetensors")
    child = weights(store_dir, report["model_id"])
    for layer, (x, row) in enumerate(zip(down_inputs(parents["float32"]), run.retention, strict=True)):
        keep = torch.tensor(row.kept())
        down = parent[f"model.layers.{layer}.mlp.down_proj.weight"].double()
        target = x @ down.T  # the parent layer's outputs
        lam = row.repair_lambda
        assert lam == pytest.approx(0.01 * float((x[:, keep] ** 2).sum(0).mean()), rel=1e-4)
        # Damped least squares as a plain least-squares problem: [X_K; sqrt(lam) I] W^T = [Y; 0].
        a = torch.cat([x[:, keep], lam**0.5 * torch.eye(len(keep), dtype=torch.float64)])
        b = torch.cat([target, torch.zeros(len(keep), down.shape[0], dtype=torch.float64)])
        solved = torch.linalg.lstsq(a, b).solution.T
        saved = child[f"model.layers.{layer}.mlp.down_proj.weight"].double()
        torch.testing.assert_close(saved, solved, rtol=1e-4, atol=1e-5)

        def error(w, x=x, keep=keep, target=target):
            return float(((target - x[:, keep] @ w.T) ** 2).sum() / (target**2).sum())

        assert error(saved) < error(down[:, keep])
        assert row.repair_error_before == pytest.approx(error(down[:, keep]), rel=1e-4)
        assert row.repair_error_after == pytest.approx(error(saved), rel=1e-4)


def test_sequential_repair_differs_from_oneshot_and_is_recorded_so(parents, tmp_path, capsys):
    store_dir = tmp_path / "s"
    args = ["--scorer", "act_l2", "--percent", "50", "--device", "cpu"]
    oneshot = prune(store_dir, str(parents["float32"]), *args, "--repair", capsys=capsys)
    sequential = prune(store_dir, str(parents["float32"]), *args, "--repair", "sequential", capsys=capsys)
    assert (oneshot["repair"]["mode"], sequential["repair"]["mode"]) == ("oneshot", "sequential")
    assert queries.run_detail(Store.open(store_dir), sequential["run_id"]).repair == "sequential"
    a, b = weights(store_dir, oneshot["model_id"]), weights(store_dir, sequential["model_id"])
    first, later = "model.layers.0.mlp.down_proj.weight", "model.layers.2.mlp.down_proj.weight"
    assert torch.equal(a[first], b[first])  # nothing below layer 0 moved
    assert not torch.equal(a[later], b[later])
    for layer in sequential["layers"]:
        assert layer["repair_error_after"] <= layer["repair_error_before"]


def test_oneshot_gram_matrices_are_cached_and_give_the_same_repair(parents, tmp_path, capsys):
    store_dir = tmp_path / "s"
    args = ["--scorer", "minitron", "--percent", "30", "--device", "cpu", "--repair"]
    first = prune(store_dir, str(parents["float32"]), *args, capsys=capsys)
    store = Store.open(store_dir)
    base = queries.find_model(store, parents["float32"].name)
    cached = sorted(p.name for p in (store.model_path(base) / "calibration").iterdir())
    assert len(cached) == 2 and sum(name.endswith("-gram.safetensors") for name in cached) == 1
    second = prune(store_dir, base.name, *args, capsys=capsys)
    a, b = weights(store_dir, first["model_id"]), weights(store_dir, second["model_id"])
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_data_driven_oneshot_repair_takes_its_gram_matrices_from_the_calibration_pass(parents, tmp_path, capsys,
                                                                                       monkeypatch):
    """No second pass over the decoder, and the same repair as the layer-by-layer pass gives."""
    store_dir = tmp_path / "s"
    args = ["--scorer", "hybrid", "--percent", "40", "--device", "cpu", "--repair"]
    passes = []
    layer_by_layer = repair._pass
    monkeypatch.setattr(repair, "_pass", lambda *a: (passes.append(a[4]), layer_by_layer(*a)))
    folded = prune(store_dir, str(parents["float32"]), *args, capsys=capsys)
    assert passes == []
    store = Store.open(store_dir)
    base = queries.find_model(store, parents["float32"].name)
    next((store.model_path(base) / "calibration").glob("*-gram.safetensors")).unlink()  # statistics stay cached
    again = prune(store_dir, base.name, *args, capsys=capsys)
    assert passes == ["oneshot"]
    a, b = weights(store_dir, folded["model_id"]), weights(store_dir, again["model_id"])
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)


def test_a_repaired_model_reloads_with_plain_transformers(parents, tmp_path, capsys):
    report = prune(tmp_path / "s", str(parents["float32"]), "--scorer", "hybrid", "--percent", "40",
                   "--allocation", "global", "--device", "cpu", "--repair", "--out", str(tmp_path / "out"),
                   capsys=capsys)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out", trust_remote_code=True).eval()
    widths = [r["kept_width"] for r in report["layers"]]
    assert [layer.mlp.down_proj.in_features for layer in model.model.layers] == widths


BAD = [
    (["--scorer", "ppm", "--percent", "10", "--repair", "twice"], "invalid choice"),
    (["--scorer", "ppm", "--percent", "10", "--repair", "--repair-damping", "-1"], "0 or more"),
    (["--scorer", "ppm", "--percent", "10", "--save-dtype", "int8"], "invalid choice"),
]


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_repair_input_exits_2_with_one_line(args, message, parents, tmp_path, capsys):
    store_dir = tmp_path / "s"
    if "invalid choice" in message:
        with pytest.raises(SystemExit) as exit_:
            main(["--store", str(store_dir), "prune", str(parents["float32"]), *args])
        assert exit_.value.code == 2
    else:
        assert main(["--store", str(store_dir), "prune", str(parents["float32"]), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (store_dir / "artifacts" / "models").exists()


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("scorer", ["hybrid", "ppm"])
def test_on_cuda_a_float32_parent_is_saved_in_float32_bit_for_bit(scorer, parents, tmp_path, capsys):
    report = prune(tmp_path / "s", str(parents["float32"]), "--scorer", scorer, "--percent", "40",
                   "--device", "cuda", capsys=capsys)
    assert report["save_dtype"] == "float32" and report["device"].startswith("cuda")
    parent = load_file(parents["float32"] / "model.safetensors")
    assert_cut_of(parent, weights(tmp_path / "s", report["model_id"]), kept(tmp_path / "s", report["run_id"]), False)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("scorer", ["ppm", "vow", "pon", "l2"])
def test_on_cuda_static_scorers_keep_the_same_neurons_as_on_the_cpu(scorer, parents, tmp_path, capsys):
    on_cpu = prune(tmp_path / "s", str(parents["float32"]), "--scorer", scorer, "--percent", "40", "--device", "cpu",
                   capsys=capsys)
    on_cuda = prune(tmp_path / "s", str(parents["float32"]), "--scorer", scorer, "--percent", "40", "--device",
                    "cuda", capsys=capsys)
    assert [k.tolist() for k in kept(tmp_path / "s", on_cpu["run_id"])] == [
        k.tolist() for k in kept(tmp_path / "s", on_cuda["run_id"])
    ]


@pytest.mark.cuda
@cuda
def test_on_cuda_a_repaired_bfloat16_parent_stays_bfloat16(parents, tmp_path, capsys):
    report = prune(tmp_path / "s", str(parents["bfloat16"]), "--scorer", "hybrid", "--percent", "40", "--device",
                   "cuda", "--repair", "sequential", capsys=capsys)
    parent = load_file(parents["bfloat16"] / "model.safetensors")
    assert_cut_of(parent, weights(tmp_path / "s", report["model_id"]), kept(tmp_path / "s", report["run_id"]), True)
