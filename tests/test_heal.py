"""`workbench heal` on tiny models: the KL to the teacher falls, the healed model reloads with plain
transformers, the record and lineage are kept; a cancel stops it and records nothing; a heal killed
with SIGKILL is interrupted and its retry resumes from its checkpoint; bad input exits 2 with one
line and writes nothing."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from conftest import DATA, tiny_model
from test_jobs_processes import assert_clean, cli, wait_for
from transformers import AutoModelForCausalLM, AutoTokenizer

from store import jobs, queries
from store.db import Store
from workbench.calibration import token_stream
from workbench.cli.main import main
from workbench.heal import distillation_loss, kl_loss
from workbench.jobs import submit
from workbench.model_io import load_model
from workbench.spec import HealSpec
from workbench.texts import load_source

PRUNED = "tiny-ppm"


def make_store(location: Path, folder: Path, *prune_args: str) -> None:
    """A store holding `folder` imported and a 50% cut of it named tiny-ppm."""
    args = prune_args or ("--scorer", "ppm", "--percent", "50")
    assert main(["--store", str(location), "prune", str(folder), *args, "--device", "cpu", "--name", PRUNED,
                 "--json"]) == 0


def heal_json(location: Path, *args: str, capsys) -> dict:
    capsys.readouterr()
    code = main(["--store", str(location), "heal", PRUNED, "--data", "wikitext2", "--device", "cpu", *args, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def kl_on(model, teacher, ids: torch.Tensor) -> float:
    with torch.no_grad():
        return float(kl_loss(model(ids).logits, teacher(ids).logits, 1.0))


@pytest.mark.parametrize("ce_weight", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_chunked_loss_equals_the_plain_formula_in_value_and_gradient(temperature, dtype, ce_weight):
    # 3 x 70 rows over a 50k vocabulary: several chunks, the last one partial.
    gen = torch.Generator().manual_seed(0)
    student = (torch.randn(3, 70, 50_000, generator=gen) * 3).to(dtype).requires_grad_(True)
    teacher = (torch.randn(3, 70, 50_000, generator=gen) * 3).to(dtype)
    ids = torch.randint(0, 50_000, (3, 70), generator=gen)
    s = torch.nn.functional.log_softmax(student.float() / temperature, dim=-1)
    t = torch.nn.functional.log_softmax(teacher.float() / temperature, dim=-1)
    kl = (t.exp() * (t - s)).sum(-1).mean() * temperature**2
    ce = torch.nn.functional.cross_entropy(student[:, :-1].float().reshape(-1, 50_000), ids[:, 1:].reshape(-1))
    plain = (1 - ce_weight) * kl + ce_weight * ce
    (expected,) = torch.autograd.grad(plain, student)
    ours = distillation_loss(student, teacher, temperature, ids, ce_weight)
    (grad,) = torch.autograd.grad(ours * 1.5, student)
    assert ours.dtype == torch.float32 and grad.dtype == dtype and grad.shape == student.shape
    assert ours.item() == pytest.approx(plain.item(), rel=1e-5)
    bf16 = dtype == torch.bfloat16  # (where the KL's and the CE's gradients nearly cancel, bf16 rounds to ~1e-8)
    torch.testing.assert_close(grad.float(), 1.5 * expected.float(), rtol=1e-2 if bf16 else 1e-4,
                               atol=1e-7 if bf16 else 1e-9)
    if ce_weight == 0:
        assert kl_loss(student, teacher, temperature).item() == ours.item()


def test_heal_lowers_the_kl_and_the_result_reloads_with_plain_transformers(tiny_model_dirs, tmp_path, capsys):
    location = tmp_path / "s"
    make_store(location, tiny_model_dirs["llama"])
    report = heal_json(location, "--tokens", "16384", "--seq-len", "64", "--batch-size", "8", "--lr", "2e-3",
                       "--ce-weight", "0", capsys=capsys)
    store = Store.open(location)
    healed, pruned = queries.get_model(store, report["model_id"]), queries.get_model(store, PRUNED)
    base = queries.get_model(store, pruned.parent_id)
    cpu = torch.device("cpu")
    teacher = load_model(store.model_path(base), cpu, torch.float32)
    stream = token_stream(AutoTokenizer.from_pretrained(store.model_path(base)), load_source("wikitext2").calibration)
    ids = torch.tensor(stream[: 8 * 64]).view(8, 64)
    before = kl_on(load_model(store.model_path(pruned), cpu, torch.float32), teacher, ids)
    ours = load_model(store.model_path(healed), cpu, torch.float32)
    after = kl_on(ours, teacher, ids)
    assert after < 0.8 * before, (before, after)

    plain = AutoModelForCausalLM.from_pretrained(store.model_path(healed)).eval()
    with torch.no_grad():
        assert torch.equal(plain(ids).logits, ours(ids).logits)
    assert healed.dtype == pruned.dtype and healed.parent_id == pruned.id and healed.source == "healed"

    heal = queries.get_heal(store, report["heal_id"])
    assert (heal.model_name, heal.teacher_name, heal.result_name) == (PRUNED, base.name, healed.name)
    assert heal.steps == 32 and heal.tokens_seen == 32 * 8 * 64 and len(heal.loss_curve) == 32
    assert heal.settings["ce_weight"] == 0 and heal.loss_name == "KL"
    assert heal.loss_curve[-1][2] < heal.loss_curve[0][2]
    assert heal.passes == pytest.approx(heal.tokens_seen / (len(stream) // 64 * 64))
    assert heal.versions["transformers"] and heal.peak_memory_bytes > 0 and heal.seconds > 0
    detail = queries.model_detail(store, healed.id)
    assert [m.name for m in detail.lineage] == [base.name, PRUNED, healed.name]
    assert detail.healed_by.id == heal.id
    assert queries.model_detail(store, PRUNED).heals[0].id == heal.id
    assert_clean(store)
    assert not any((store.artifacts / "checkpoints").iterdir())


def test_the_default_heal_mixes_in_the_cross_entropy_and_lowers_what_it_records(tiny_model_dirs, tmp_path, capsys):
    location = tmp_path / "s"
    make_store(location, tiny_model_dirs["llama"])
    report = heal_json(location, "--tokens", "8192", "--seq-len", "64", "--batch-size", "8", "--lr", "2e-3",
                       capsys=capsys)
    store = Store.open(location)
    heal = queries.get_heal(store, report["heal_id"])
    assert heal.settings["ce_weight"] == HealSpec.ce_weight == 0.5 and heal.loss_name == "0.5 KL + 0.5 CE"
    pruned, healed = queries.get_model(store, PRUNED), queries.get_model(store, report["model_id"])
    cpu = torch.device("cpu")
    teacher = load_model(store.model_path(queries.get_model(store, pruned.parent_id)), cpu, torch.float32)
    stream = token_stream(AutoTokenizer.from_pretrained(store.model_path(pruned)), load_source("wikitext2").calibration)
    ids = torch.tensor(stream[: 8 * 64]).view(8, 64)  # the first batch the heal could have seen

    def losses(path: Path) -> tuple[float, float]:
        with torch.no_grad():
            logits, taught = load_model(path, cpu, torch.float32)(ids).logits, teacher(ids).logits
            ce = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
            return float(distillation_loss(logits, taught, 1.0, ids, 0.5)), float(ce)

    mixed_before, ce_before = losses(store.model_path(pruned))
    mixed_after, ce_after = losses(store.model_path(healed))
    assert mixed_after < 0.95 * mixed_before and ce_after < ce_before, (mixed_before, mixed_after, ce_before, ce_after)
    assert heal.loss_curve[-1][2] < heal.loss_curve[0][2]


@pytest.mark.parametrize("train", ["mlp", "lora:4"])
def test_heal_trains_only_what_it_is_asked_to(train, tiny_model_dirs, tmp_path, capsys):
    location = tmp_path / "s"
    make_store(location, tiny_model_dirs["qwen2"], "--scorer", "wanda", "--percent", "40", "--allocation", "global")
    report = heal_json(location, "--tokens", "2048", "--seq-len", "32", "--batch-size", "4", "--lr", "1e-3",
                       "--train", train, capsys=capsys)
    store = Store.open(location)
    before = load_model(store.model_path(queries.get_model(store, PRUNED)), torch.device("cpu"), torch.float32)
    folder = store.model_path(queries.get_model(store, report["model_id"]))
    after = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)  # per-layer widths
    changed = {n for n, p in after.named_parameters() if not torch.equal(p, before.get_parameter(n))}
    assert changed and all(".mlp." in n for n in changed) if train == "mlp" else changed
    assert [m.mlp.down_proj.in_features for m in after.model.layers] == report_widths(store, PRUNED)
    assert queries.get_heal(store, report["heal_id"]).settings["trained_parameters"] < before.num_parameters()


def report_widths(store: Store, name: str) -> list[int]:
    return list(queries.get_model(store, name).widths)


def heal_request(**overrides) -> dict:
    values = dict(model=PRUNED, data="wikitext2", tokens=40 * 8 * 64, seq_len=64, batch_size=8, lr=1e-3,
                  device="cpu", checkpoint_every_s=0.0)
    return HealSpec(**(values | overrides)).to_dict()


@pytest.fixture
def wide_store(tmp_path, tokenizer) -> Path:
    """A store with a wider tiny model and its cut: heal steps of tens of milliseconds."""
    folder = tmp_path / "wide"
    tiny_model("llama", vocab_size=len(tokenizer), hidden_size=128, intermediate_size=512, num_hidden_layers=4,
               head_dim=32).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    location = tmp_path / "s"
    make_store(location, folder)
    return location


def checkpoints(location: Path, job_id: int) -> list[Path]:
    with Store.open(location) as store:
        folder = store.artifacts / jobs.get_job(store, job_id).spec["checkpoint"]
    return sorted(p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").is_file())


def last_checkpoint_step(location: Path, job_id: int) -> int:
    kept = checkpoints(location, job_id)
    return max((int(p.name.split("-")[1]) for p in kept), default=0)


def test_cancel_mid_heal_stops_at_a_step_and_records_nothing(wide_store):
    with Store.open(wide_store) as store:
        job_id = submit(store, "heal", heal_request(), data_dir=DATA)
        models = len(queries.list_models(store))
    worker = cli(wide_store, "jobs", "work")
    wait_for(wide_store, job_id, lambda j: not j.finished and j.stage == "heal" and "step 2/" in j.message or
             (j.stage == "heal" and j.progress > 0.1))
    assert main(["--store", str(wide_store), "jobs", "cancel", str(job_id)]) == 0
    job = wait_for(wide_store, job_id, lambda j: j.finished)
    worker.communicate(timeout=240)
    assert job.status == "cancelled" and job.message == "cancelled during heal"
    with Store.open(wide_store) as store:
        assert queries.list_heals(store) == [] and len(queries.list_models(store)) == models
        assert not (store.artifacts / job.spec["checkpoint"]).exists()
        assert_clean(store)


def test_a_heal_killed_with_sigkill_is_interrupted_and_its_retry_resumes_from_its_checkpoint(wide_store):
    with Store.open(wide_store) as store:
        job_id = submit(store, "heal", heal_request(), data_dir=DATA)
    worker = cli(wide_store, "jobs", "work")
    # Trainer keeps one checkpoint (save_total_limit=1), so wait for one past the first step
    job = wait_for(wide_store, job_id, lambda j: j.finished or last_checkpoint_step(wide_store, job_id) >= 2)
    assert job.status == "running", job
    os.kill(job.pid, signal.SIGKILL)
    job = wait_for(wide_store, job_id, lambda j: j.finished)
    worker.communicate(timeout=240)
    assert job.status == "interrupted"
    kept = checkpoints(wide_store, job_id)
    assert kept, "the checkpoint survives the job process"
    with Store.open(wide_store) as store:
        assert queries.list_heals(store) == []
        assert_clean(store)  # the checkpoint folder is claimed by its job

    assert main(["--store", str(wide_store), "jobs", "retry", str(job_id)]) == 0  # starts a worker too
    with Store.open(wide_store) as store:
        again = jobs.list_jobs(store)[0]
    assert again.id != job_id
    again = wait_for(wide_store, again.id, lambda j: j.finished, every_s=0.5)
    assert again.status == "done", again.error
    with Store.open(wide_store) as store:
        log = (store.root / again.log_path).read_text()
        resumed = again.result["resumed_from_step"]
        assert resumed >= int(kept[0].name.split("-")[1]) and f"resuming from step {resumed}" in log
        heal = queries.get_heal(store, again.result["heal_id"])
        assert heal.settings["resumed_from_step"] == resumed and heal.steps == 40
        assert [int(s) for s, _, _ in heal.loss_curve] == list(range(1, 41))  # the curve before the kill is kept
        assert not (store.artifacts / again.spec["checkpoint"]).exists()
        assert_clean(store)


@pytest.fixture(scope="module")
def bad_input_store(tmp_path_factory, tiny_model_dirs, tokenizer_dir) -> Path:
    location = tmp_path_factory.mktemp("heal-bad") / "s"
    make_store(location, tiny_model_dirs["llama"])
    other = tmp_path_factory.mktemp("other-tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.add_tokens(["<other>"])
    tiny_model("llama", vocab_size=len(tokenizer)).save_pretrained(other)
    tokenizer.save_pretrained(other)
    assert main(["--store", str(location), "models", "import", str(other), "--name", "other"]) == 0
    return location


@pytest.fixture(scope="module")
def short_text(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "short.txt"
    path.write_text("just a few words")
    return path


BAD = [
    (["--tokens", "0"], "--tokens must be a positive"),
    (["--tokens", "100", "--train", "lora"], "--train must be"),
    (["--tokens", "100", "--lr", "0"], "--lr must be"),
    (["--tokens", "100", "--teacher", "other"], "tokenises differently"),
    (["--tokens", "100", "--data", "SHORT"], "one batch of 4 x 256"),
    (["--tokens", "100", "--data", "nope.jsonl"], "does not exist"),
    (["--tokens", "100", "--batch-size", "100000", "--seq-len", "100000"], "healing needs about"),
    (["--tokens", "100", "--temperature", "-1"], "--temperature must be"),
    (["--tokens", "100", "--ce-weight", "1.5"], "--ce-weight must be a share of the loss, from 0 to 1, got 1.5"),
    (["--tokens", "100", "--name", "5"], "'5' cannot name a model: it is a bare number"),
    (["--tokens", "100", "--name", "other"], "the store already has a model named 'other': choose another --name"),
    (["--tokens", "100", "--teacher", "nosuch"], "the teacher must be a model in the store; nosuch is not one"),
    (["--tokens", "100", "--teacher", "job:99"], "job:99 names no job: there is no job 99"),
]


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_heal_input_exits_2_with_one_line_and_writes_nothing(args, message, bad_input_store, short_text,
                                                                  capsys):
    location = bad_input_store
    before = sorted(p.relative_to(location) for p in location.rglob("*") if "sqlite" not in p.name)
    with Store.open(location) as store:
        jobs_before = len(jobs.list_jobs(store))
    args = [a.replace("SHORT", str(short_text)) for a in args]
    if "--data" not in args:
        args += ["--data", "wikitext2"]
    capsys.readouterr()
    assert main(["--store", str(location), "heal", PRUNED, *args, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert sorted(p.relative_to(location) for p in location.rglob("*") if "sqlite" not in p.name) == before
    with Store.open(location) as store:
        assert len(jobs.list_jobs(store)) == jobs_before and queries.list_heals(store) == []


def test_a_model_without_a_parent_needs_a_teacher(bad_input_store, capsys):
    base = queries.get_model(Store.open(bad_input_store), PRUNED).parent_name
    capsys.readouterr()
    assert main(["--store", str(bad_input_store), "heal", base, "--data", "wikitext2", "--tokens", "10"]) == 2
    assert "has no parent in the store to learn from: name a --teacher" in capsys.readouterr().err
