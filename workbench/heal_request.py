"""A heal request against the store, before anything loads. `check_models` (store queries only:
the model healed and its teacher found, the healed model's name free) is where the engine's own
check (`heal.check_request`) begins, and the TUI's Heal form calls it as the form is typed, so both
refuse the same requests in the same words. `check_request` goes on, still without torch, as far
as the files show (the stored models' weights and tokenizers, the text's tokens, the memory on the
CPU), so that the CLI refuses bad input at once and leaves the job to a warm job process."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from store import queries
from store.db import Store
from store.queries import ModelInfo
from workbench.errors import UserError
from workbench.jobs.gpus import check_device, light_device
from workbench.model_files import TOKEN_MARGIN, check_stored, count_tokens
from workbench.sources import job_reference, lookup
from workbench.spec import HealSpec
from workbench.texts import load_source

# What makes a tokenizer: two folders whose files say the same tokenise alike.
TOKENIZER_SETTINGS = ("tokenizer.json", "tokenizer.model", "vocab.json", "merges.txt", "tokenizer_config.json",
                      "special_tokens_map.json", "added_tokens.json")  # fmt: skip
# What transformers writes into tokenizer_config.json about where a tokenizer was read from, not
# how it tokenises (a cut's copy gains them when its parent's is read and saved again).
LOADING_KEYS = frozenset({"is_local", "local_files_only", "name_or_path", "_commit_hash"})


@dataclass(frozen=True)
class HealModels:
    student: ModelInfo  # the model healed
    teacher: ModelInfo  # the model it learns from


def stored_model(store: Store, model: str) -> ModelInfo | None:
    """The stored model a MODEL argument names (`job:N`, a name or id, or a source imported
    before), else None: a heal takes stored models only, so a source not imported yet and what
    names nothing at all are refused alike (UserError for a `job:N` that has made no model)."""
    try:
        row, _ = lookup(store, model)
    except UserError:
        if job_reference(model) is not None:
            raise
        return None
    return row


def check_models(spec: HealSpec, store: Store) -> HealModels:
    """The spec validated, its student and teacher (default: the student's parent), the teacher
    not the student itself, and no model holding the healed model's name yet (UserError)."""
    spec.validate()
    student = stored_model(store, spec.model)
    if student is None:
        raise UserError(f"heal takes a model in the store; {spec.model} is not one (import or prune it first)")
    if spec.teacher is not None:
        teacher = stored_model(store, spec.teacher)
        if teacher is None:
            raise UserError(f"the teacher must be a model in the store; {spec.teacher} is not one")
    elif student.parent_id is None:
        raise UserError(f"{student.name} has no parent in the store to learn from: name a --teacher")
    else:
        teacher = queries.get_model(store, student.parent_id)
    if teacher.id == student.id:
        raise UserError("the teacher is the model itself: nothing to learn")
    if spec.name is not None and queries.find_model(store, spec.name) is not None:
        raise UserError(f"the store already has a model named {spec.name!r}: choose another --name")
    return HealModels(student, teacher)


def check_request(spec: HealSpec, store: Store, data: Path | None = None) -> bool:
    """What is wrong with the request that shows without the engine (UserError), writing nothing,
    checked in the engine's order. True when nothing is left to check before queueing; False when
    the engine must still look (heal.check_request): tokenizer files that differ, a GPU's free
    memory, a tokenizer only transformers reads, text near what one batch needs."""
    found = check_models(spec, store)
    folders = [store.model_path(row) for row in (found.student, found.teacher)]
    for row in (found.student, found.teacher):
        check_stored(store, row)
    if _tokenizer_settings(folders[0]) != _tokenizer_settings(folders[1]):
        return False
    check_device(spec.device)
    if light_device(spec.device) != "cpu":
        return False
    import psutil

    check_fits(memory_parts(spec, found.student, found.teacher, "cpu"), "cpu", psutil.virtual_memory().available)
    text = load_source(spec.data, data)
    tokens = count_tokens(folders[0], text.calibration)
    return tokens is not None and tokens >= (1 + TOKEN_MARGIN) * spec.batch_size * spec.seq_len


def _tokenizer_settings(folder: Path) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for name in TOKENIZER_SETTINGS:
        if (folder / name).is_file():
            settings[name] = (folder / name).read_bytes()
    if "tokenizer_config.json" in settings:
        try:
            config = json.loads(settings["tokenizer_config.json"])
        except ValueError:  # the engine says what transformers makes of it
            return {"unreadable": folder}
        settings["tokenizer_config.json"] = {k: v for k, v in config.items() if k not in LOADING_KEYS}
    return settings


def memory_parts(spec: HealSpec, student: ModelInfo, teacher: ModelInfo, device_type: str) -> dict[str, int]:
    """What healing holds on the device, in bytes: the teacher in the compute dtype, the student's
    float32 weights, its gradients and AdamW's two moments for what trains, and the activations of
    a batch (logits of both models dominate at small sizes)."""
    half = spec.dtype in ("bfloat16", "float16") or (spec.dtype == "auto" and device_type != "cpu")
    trained = student.parameters
    if spec.train == "mlp":
        trained = 3 * student.hidden_size * sum(student.widths)
    elif spec.lora_rank is not None:
        trained = spec.lora_rank * 4 * student.hidden_size * student.num_layers * 7
    vocab = max(1, (student.parameters - 3 * student.hidden_size * sum(student.widths)) // student.hidden_size)
    tokens = spec.batch_size * spec.seq_len
    per_token = 4 * vocab + student.num_layers * (16 * student.hidden_size + 3 * max(student.widths))
    return {
        "teacher": teacher.parameters * (2 if half else 4),
        "student": student.parameters * 4,
        "optimiser": trained * 12,
        "activations": tokens * per_token * 4,
    }


def check_fits(parts: dict[str, int], device: str, free: int | None) -> None:
    """Refuse, before loading, what clearly cannot fit in the device's free memory."""
    needed = sum(parts.values())
    if free is not None and needed > free:
        shown = ", ".join(f"{k} {v / 2**30:.1f}" for k, v in parts.items())
        raise UserError(
            f"healing needs about {needed / 2**30:.1f} GiB on {device} ({shown}) but it has {free / 2**30:.1f} GiB "
            "free: lower --batch-size or --seq-len, or train lora:RANK"
        )
