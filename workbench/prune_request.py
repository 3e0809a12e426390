"""A prune request against the store, before anything loads: light (store queries, the weights'
headers, the tokenizer's own file; no torch, no transformers), so that the CLI refuses bad input at
once rather than after the seconds the engine takes to import, and leaves the job to a job process
that has it imported already (workbench.jobs.worker). The engine's own check (`pruning.check_request`,
which the job runs again before it loads a weight) begins with this one and adds what needs the
engine: a model not imported yet (its architecture is built from its config), the tokenizer as
transformers loads it, the calibration windows themselves and their hash, torch's word on the device.
"""

from __future__ import annotations

import os
from pathlib import Path

from store import queries
from store.db import Store
from store.queries import ModelInfo
from workbench.errors import UserError
from workbench.jobs.gpus import check_device
from workbench.model_files import TOKEN_MARGIN, check_stored, count_tokens
from workbench.sources import lookup
from workbench.spec import PruneSpec, planned_widths
from workbench.texts import TextSource, load_source


def check_request(spec: PruneSpec, store: Store, data: Path | None = None) -> bool:
    """What is wrong with the request that shows without the engine (UserError), writing nothing.
    True when nothing is left to check before queueing; False when the engine must still look
    (pruning.check_request): a model not stored yet, a tokenizer only transformers reads, calibration
    text whose tokens come near what the run needs."""
    row, text = check_rules(spec, store, data)
    if row is None:
        return False
    tokens = count_tokens(store.model_path(row), text.calibration if text is not None else [])
    if tokens is None:
        return False
    return text is None or tokens >= (1 + TOKEN_MARGIN) * spec.samples * spec.seq_len


def check_rules(spec: PruneSpec, store: Store, data: Path | None) -> tuple[ModelInfo | None, TextSource | None]:
    """The request's rules that need neither the engine nor the text's tokens (UserError): the spec,
    the calibration source, a stored model's files and widths, the name, the device. Returns the
    stored model (None for a source still to import) and the calibration text (None for a static
    scorer). The engine's check starts here, then tokenises the text itself."""
    spec.validate()
    text = load_source(spec.calibration_source, data) if spec.calibrated else None
    row, _ = lookup(store, spec.model)
    if row is not None:
        planned_widths(spec, *check_stored(store, row))  # a target the model cannot meet fails here
    if spec.name is not None and queries.find_model(store, spec.name) is not None:
        raise UserError(f"the store already has a model named {spec.name!r}: choose another --name")
    check_device(spec.device)
    return row, text


def check_out(out: Path) -> None:
    """--out: a folder that is new or empty, and can be written (checked before queueing)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"--out {out} is not empty")
    nearest = next(p for p in (out, *out.parents) if p.exists())
    if not nearest.is_dir():
        raise UserError(f"--out {out}: {nearest} is a file, not a folder")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: {nearest} cannot be written")
