"""Heal: distil a teacher (by default the model's parent) into a pruned model, and store the result.

The loss is the KL divergence between the teacher's and the student's next-token distributions at
temperature T (times T^2, as in Hinton et al.), mixed with the cross-entropy on the text's own next
tokens (`ce_weight` of the loss, Hinton et al.'s hard targets), over every token of consecutive windows
of the text source's calibration part (never the part perplexity reads: see texts.py). transformers' Trainer runs
the loop (AdamW, warmup then cosine decay, checkpoints, resuming, seeded data order); this module
adds only what it lacks: the distillation loss, the job's progress and cancel checks, checkpoints
every few minutes of wall time, and the record.

Checkpoints live in the store under artifacts/checkpoints/<token>, named in the job's spec (a retry
copies the spec, so it finds them) and claimed by the job for `store check`; they survive the job
process's death (recovery removes only artifacts/tmp/<dead pid>.*), a retry resumes from the newest
complete one, and they go when the heal is done or cancelled.

Dtypes: the student trains with float32 master weights (autocast to bfloat16/float16 when the
compute dtype is one), the teacher runs in the compute dtype, and the healed model is saved in
the dtype the student was stored in.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate.hooks import remove_hook_from_module
from transformers import PreTrainedModel, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from store import jobs, queries
from store.db import Store
from store.queries import ModelInfo
from store.tables import HealRun, Model
from workbench import calibration, model_io
from workbench.architecture import glu_mlps
from workbench.devices import (
    MemoryMeter,
    dtype_name,
    free_memories,
    model_devices,
    place,
    resolve_device,
    resolve_dtype,
)
from workbench.errors import UserError
from workbench.heal_request import check_fits, check_models, memory_parts
from workbench.progress import Cancelled, Progress
from workbench.pruning import versions
from workbench.spec import HealSpec
from workbench.texts import load_source

log = logging.getLogger("workbench.heal")

STAGE_WEIGHTS = {"load": 0.05, "heal": 0.9, "save": 0.05}
CHECKPOINTS = "checkpoints"  # artifacts/checkpoints/<token>: a heal job's Trainer checkpoints
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class HealReport:
    heal_id: int
    model_id: int
    model_name: str
    student: str
    teacher: str
    data: str
    tokens_seen: int
    passes: float
    steps: int
    resumed_from_step: int | None
    first_loss: float | None
    last_loss: float | None
    seconds: float
    peak_memory_bytes: int
    device: str
    dtype: str
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Checked:
    student: model_io.Target
    teacher: model_io.Target
    windows: torch.Tensor  # [count, seq_len] token ids of the whole calibration part
    source: str
    device: torch.device


def check_request(spec: HealSpec, store: Store, data: Path | None = None) -> None:
    """Everything a heal checks before it loads weights, writing nothing (UserError)."""
    _checked(spec, store, data)


def _checked(spec: HealSpec, store: Store, data: Path | None) -> _Checked:
    found = check_models(spec, store)  # (what the TUI's Heal form checks too)
    student, teacher = model_io.Target(found.student), model_io.Target(found.teacher)
    student.shape()  # a GLU model
    student_tokens, teacher_tokens = student.tokenizer(store), teacher.tokenizer(store)
    if student_tokens.get_vocab() != teacher_tokens.get_vocab() or (
        student_tokens.eos_token_id != teacher_tokens.eos_token_id
    ):
        raise UserError(
            f"the teacher {teacher.row.name} tokenises differently from {student.row.name}: "
            "distillation compares their logits token by token, so they must share a tokenizer"
        )
    device = resolve_device(spec.device)
    _refuse_if_too_big(spec, student.row, teacher.row, device)
    text = load_source(spec.data, data)
    stream = calibration.token_stream(student_tokens, text.calibration)
    count = len(stream) // spec.seq_len
    if count < spec.batch_size:
        raise UserError(
            f"heal source {text.name} has {len(stream)} tokens: one batch of {spec.batch_size} x {spec.seq_len} "
            f"needs {spec.batch_size * spec.seq_len} (lower --batch-size or --seq-len)"
        )
    windows = torch.tensor(stream[: count * spec.seq_len], dtype=torch.long).view(count, spec.seq_len)
    return _Checked(student, teacher, windows, text.name, device)


def _refuse_if_too_big(spec: HealSpec, student: ModelInfo, teacher: ModelInfo, device: torch.device) -> None:
    parts = memory_parts(spec, student, teacher, device.type)
    free = sum(free_memories(device, sum(parts.values())))  # on CUDA, the GPUs together when one is not enough
    check_fits(parts, str(device), free)


def kl_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over tokens of KL(teacher || student) at temperature T, times T^2, in float32."""
    return distillation_loss(student_logits, teacher_logits, temperature)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    input_ids: torch.Tensor | None = None,
    ce_weight: float = 0.0,
) -> torch.Tensor:
    """(1 - w) T^2 KL(teacher || student) + w CE, in float32: the KL averaged over every token, the
    cross-entropy (at temperature 1, Hinton et al.'s hard targets) over every token whose next token
    is in its window, `input_ids` shifted by one."""
    targets = None
    if ce_weight:
        targets = torch.full(input_ids.shape, -1, dtype=torch.long, device=input_ids.device)
        targets[..., :-1] = input_ids[..., 1:]  # the last token of a window predicts nothing here
    return _ChunkedLoss.apply(student_logits, teacher_logits, temperature, targets, float(ce_weight))


class _ChunkedLoss(torch.autograd.Function):
    """The loss a block of rows (about 4M logits) at a time, its gradient worked out in the same pass.

    Why: over a 49k-token vocabulary the plain formula (two float32 log-softmaxes, the pointwise KL,
    autograd's softmax backward) makes a dozen full-size temporaries; on a 2-core CPU that took a
    fifth of each step. By rows, the temporaries stay small and the backward is one multiply."""

    @staticmethod
    def forward(ctx, student_logits, teacher_logits, temperature, targets, ce_weight):
        vocab = student_logits.shape[-1]
        student, teacher = student_logits.reshape(-1, vocab), teacher_logits.reshape(-1, vocab)
        tokens = student.shape[0]
        grad = torch.empty(student.shape, dtype=torch.float32, device=student.device)
        kl = torch.zeros((), dtype=torch.float64, device=student.device)
        ce = torch.zeros((), dtype=torch.float64, device=student.device)
        if targets is not None:
            targets = targets.reshape(-1).to(student.device)  # (a spread model's logits are on its last GPU)
            labelled = max(1, int((targets >= 0).sum()))
        rows = max(1, 2**22 // vocab)  # a 16 MiB float32 block
        for i in range(0, tokens, rows):
            block = student[i : i + rows].float()
            s = F.log_softmax(block / temperature, dim=-1)
            t = F.log_softmax(teacher[i : i + rows].float() / temperature, dim=-1)
            p = t.exp()
            kl += (p * (t - s)).sum(dtype=torch.float64)
            if targets is not None:
                # d(CE)/d(logits) = softmax(logits) - onehot(target), averaged over the labelled tokens
                target = targets[i : i + rows]
                labelled_rows = (target >= 0).nonzero().squeeze(1)
                log_q = s if temperature == 1 else F.log_softmax(block, dim=-1)
                ce -= log_q[labelled_rows, target[labelled_rows]].sum(dtype=torch.float64)
                ce_grad = log_q.exp()
                ce_grad[labelled_rows, target[labelled_rows]] -= 1
                ce_grad[target < 0] = 0
            # d(T^2 KL)/d(logits) = T (softmax(s / T) - softmax(t / T)), averaged over tokens
            out = grad[i : i + rows]
            torch.sub(s.exp_(), p, out=out).mul_((1 - ce_weight) * temperature / tokens)
            if targets is not None:
                out.add_(ce_grad, alpha=ce_weight / labelled)
        ctx.save_for_backward(grad)
        ctx.logits_shape, ctx.logits_dtype = student_logits.shape, student_logits.dtype
        loss = (1 - ce_weight) * kl * temperature**2 / tokens
        if targets is not None:
            loss = loss + ce_weight * ce / labelled
        return loss.float()

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        return (grad * grad_output).to(ctx.logits_dtype).view(ctx.logits_shape), None, None, None, None


class _Distiller(Trainer):
    """Trainer whose loss is the KL divergence from the teacher's logits (mixed with the cross-entropy on
    the text's next tokens when ce_weight > 0)."""

    def __init__(self, *args, teacher: PreTrainedModel, temperature: float, ce_weight: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.teacher, self.temperature, self.ce_weight = teacher, temperature, ce_weight

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        ids = inputs["input_ids"]
        outputs = model(input_ids=ids, use_cache=False)
        with torch.no_grad():
            teacher = self.teacher(input_ids=ids, use_cache=False).logits
        loss = distillation_loss(outputs.logits, teacher, self.temperature, ids, self.ce_weight)
        return (loss, outputs) if return_outputs else loss


class _Windows(torch.utils.data.Dataset):
    def __init__(self, windows: torch.Tensor) -> None:
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.windows[index]}


class _JobCallback(TrainerCallback):
    """Progress in steps and tokens with the running loss, cancel checks at step boundaries, and a
    checkpoint every `every_s` seconds of wall time."""

    def __init__(self, progress: Progress, spec: HealSpec, every_s: float) -> None:
        self.progress, self.spec, self.every_s = progress, spec, every_s
        self.last_save = time.monotonic()
        self.loss: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step:
            self.progress.advance(state.global_step, message=f"resumed at step {state.global_step}")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.loss = logs["loss"]

    def on_step_end(self, args, state, control, **kwargs):
        tokens = state.global_step * self.spec.batch_size * self.spec.seq_len
        loss = f", loss {self.loss:.4f}" if self.loss is not None else ""
        self.progress.advance(message=f"step {state.global_step}/{state.max_steps}, {tokens:,} tokens{loss}")
        if time.monotonic() - self.last_save >= self.every_s and state.global_step < state.max_steps:
            control.should_save = True
        return control

    def on_save(self, args, state, control, **kwargs):
        self.last_save = time.monotonic()
        log.info("checkpoint at step %d", state.global_step)


def _keep_freed_memory() -> None:
    """Let this process reuse the memory its big tensors free rather than hand it back to the OS.

    glibc maps each allocation over 32 MiB afresh and unmaps it when freed, so every CPU step faulted
    in its logits and their gradient again (a quarter of a SmolLM2 step went to the kernel). A heal
    runs in a process of its own (a job's, or the command's), so the setting ends with it."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, -1)  # never trim


def checkpoint_folder(store: Store, job_id: int | None) -> Path | None:
    """The folder a heal job keeps its checkpoints in (named in its spec), None outside a job."""
    if job_id is None:
        return None
    name = jobs.get_job(store, job_id).spec.get("checkpoint")
    return store.artifacts / name if name else None


def latest_checkpoint(folder: Path | None) -> Path | None:
    """The newest complete checkpoint (its trainer state is written last); incomplete ones, left by a
    process killed while saving, are removed."""
    if folder is None or not folder.is_dir():
        return None
    found = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    complete = [p for p in found if (p / "trainer_state.json").is_file()]
    for p in found:
        if p not in complete:
            shutil.rmtree(p, ignore_errors=True)
    return complete[-1] if complete else None


def heal(
    spec: HealSpec,
    store: Store,
    data: Path | None = None,
    progress: Progress | None = None,
    job_id: int | None = None,
    checkpoints: Path | None = None,
) -> HealReport:
    progress = progress or Progress()
    progress.weights = STAGE_WEIGHTS
    checked = _checked(spec, store, data)
    device = checked.device
    dtype = resolve_dtype(spec.dtype, device)
    student_row, teacher_row = checked.student.row, checked.teacher.row
    save_dtype = getattr(torch, student_row.dtype)
    checkpoints = checkpoints or checkpoint_folder(store, job_id)
    meter = MemoryMeter(device)
    meter.reset()
    started = time.perf_counter()
    if device.type == "cpu":
        _keep_freed_memory()

    progress.stage("load", message=f"loading {student_row.name} and its teacher {teacher_row.name}")
    # Each model on the device, or spread over this process's GPUs when it does not fit one.
    teacher = model_io.load_model(store.model_path(teacher_row), place(teacher_row.parameters, dtype, device), dtype)
    teacher.requires_grad_(False)
    student = model_io.load_model(store.model_path(student_row), place(student_row.parameters, torch.float32, device),
                                  torch.float32)
    tokenizer = model_io.load_tokenizer(store.model_path(student_row))
    _choose_trained(student, spec)
    if spec.lora_rank is not None:
        from peft import LoraConfig, get_peft_model

        rank = spec.lora_rank
        student = get_peft_model(student, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                                                     target_modules=LORA_TARGETS))
    trained = _trained_parameters(student)

    scratch = checkpoints or store.artifacts / CHECKPOINTS / f"unsaved-{time.time_ns()}"
    resume = latest_checkpoint(checkpoints)
    resumed_from = int(resume.name.rsplit("-", 1)[1]) if resume else None
    if resume is not None:
        log.info("resuming from step %d (checkpoint %s)", resumed_from, resume)
    steps = spec.steps
    available = checked.windows.numel()
    args = TrainingArguments(
        output_dir=str(scratch),
        per_device_train_batch_size=spec.batch_size,
        learning_rate=spec.lr,
        max_steps=steps,
        lr_scheduler_type="cosine",
        warmup_steps=int(spec.warmup * steps),  # rounded down: a one-step heal must not warm up from zero
        weight_decay=0.0,
        logging_steps=1,
        save_strategy="no",  # the callback asks for a checkpoint every checkpoint_every_s seconds
        save_total_limit=1,
        report_to=[],
        use_cpu=device.type == "cpu",
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        seed=spec.seed,
        data_seed=spec.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
        remove_unused_columns=False,
    )
    callback = _JobCallback(progress, spec, spec.checkpoint_every_s)
    trainer = _Distiller(model=student, args=args, train_dataset=_Windows(checked.windows), teacher=teacher,
                         temperature=spec.temperature, ce_weight=spec.ce_weight, callbacks=[callback])
    for quiet in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(quiet)
    if len(model_devices(teacher)) == 1:  # (a spread teacher stays spread: its hooks move its inputs)
        teacher.to(args.device)
    tokens_seen = steps * spec.batch_size * spec.seq_len
    progress.stage("heal", total=steps, message=f"{steps} steps of {spec.batch_size} x {spec.seq_len} tokens")
    log.info("heal: %d steps, %d tokens, %.2f passes over %s (%d tokens)", steps, tokens_seen,
             tokens_seen / available, checked.source, available)
    try:
        with model_io._quiet_transformers():  # no progress bars from checkpoint saves
            trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except (Cancelled, KeyboardInterrupt):
        shutil.rmtree(scratch, ignore_errors=True)  # a cancelled heal leaves nothing behind
        raise
    except BaseException:
        if checkpoints is None:
            shutil.rmtree(scratch, ignore_errors=True)  # nothing could resume from it
        raise  # a retry of the job resumes from its checkpoints
    curve = [[float(e["step"]), float(e["step"] * spec.batch_size * spec.seq_len), float(e["loss"])]
             for e in trainer.state.log_history if "loss" in e and "step" in e]
    model = trainer.model
    if spec.lora_rank is not None:
        model = model.merge_and_unload()
    del trainer, teacher
    remove_hook_from_module(model, recurse=True)  # a spread student's device hooks: it is whole on the CPU now
    model = model.to(device="cpu", dtype=save_dtype).eval()
    model.requires_grad_(False)

    progress.stage("save")
    seconds = time.perf_counter() - started
    record = HealRun(
        model_id=student_row.id,
        teacher_model_id=teacher_row.id,
        job_id=job_id,
        data_source=checked.source,
        data_hash=hashlib.sha256(checked.windows.numpy().tobytes()).hexdigest(),
        tokens=spec.tokens,
        tokens_seen=tokens_seen,
        passes=tokens_seen / available,
        steps=steps,
        seq_len=spec.seq_len,
        batch_size=spec.batch_size,
        lr=spec.lr,
        temperature=spec.temperature,
        train=spec.train,
        device=str(device),
        dtype=dtype_name(dtype),
        settings={"warmup": spec.warmup, "schedule": "cosine", "optimizer": "adamw", "weight_decay": 0.0,
                  "ce_weight": spec.ce_weight,
                  "seed": spec.seed, "checkpoint_every_s": spec.checkpoint_every_s, "resumed_from_step": resumed_from,
                  "trained_parameters": trained, "save_dtype": dtype_name(save_dtype)},
        loss_curve=curve,
        versions=versions() | _peft_version(spec),
    )

    def write(session, row: Model) -> None:
        record.seconds = time.perf_counter() - started
        record.peak_memory_bytes = meter.peak()
        queries.record_heal(session, record, row)

    name = spec.name or queries.unique_model_name(store, f"{student_row.name}-healed")
    result = model_io.save_new_model(store, model, tokenizer, name=name, source="healed",
                                     parent_id=student_row.id, record=write)
    shutil.rmtree(scratch, ignore_errors=True)
    progress.finish()
    return HealReport(
        heal_id=record.id, model_id=result.id, model_name=result.name, student=student_row.name,
        teacher=teacher_row.name, data=checked.source, tokens_seen=tokens_seen, passes=record.passes, steps=steps,
        resumed_from_step=resumed_from, first_loss=curve[0][2] if curve else None,
        last_loss=curve[-1][2] if curve else None, seconds=seconds, peak_memory_bytes=record.peak_memory_bytes,
        device=str(device), dtype=dtype_name(dtype), settings=spec.to_dict(),
    )  # fmt: skip


def _choose_trained(model: PreTrainedModel, spec: HealSpec) -> None:
    """Freeze what `--train` leaves alone (LoRA freezes the base itself)."""
    model.requires_grad_(spec.train != "mlp")
    if spec.train == "mlp":
        for mlp in glu_mlps(model):
            mlp.requires_grad_(True)


def _trained_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters() if p.requires_grad}.values())


def _peft_version(spec: HealSpec) -> dict[str, str]:
    if spec.lora_rank is None:
        return {}
    import peft

    return {"peft": peft.__version__}
