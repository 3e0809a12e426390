"""How models are resolved, imported, loaded and saved.

MODEL, wherever the CLI or a form takes one, is looked up in this order: `job:N` (the model job N
made); a model in the store (by name or id); `smollm2`, the bundled SmolLM2-135M-Instruct; a local
Hugging Face folder; a `.gguf` file; a hub id (only where a hub is reachable). What a source is,
and the checks on an import request, are light and live in workbench.sources. Anything not yet in
the store is imported first: its weights are saved as safetensors under the store's artifacts, so
every later load is a fast safetensors load.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers
from safetensors import SafetensorError
from sqlalchemy import select, update
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from store import queries
from store.db import Store
from store.queries import ModelInfo
from store.tables import Model
from workbench import per_layer_widths
from workbench.architecture import count_parameters, facts, glu_mlps
from workbench.devices import Placement
from workbench.errors import UserError
from workbench.model_files import check_folder, check_stored, first_line, missing_folder
from workbench.names import name_problem
from workbench.progress import Progress
from workbench.sources import (
    ImportRequest,
    ModelSource,
    bundled_gguf,
    lookup,
    lost_files,
    stored_already,
)

IMPORT_STAGE_WEIGHTS = {"check": 0.05, "load": 0.6, "save": 0.35}


@dataclass
class Target:
    """A MODEL argument resolved: a row already in the store, or a source imported on load.

    Everything but `load` reads only configs and tokenizers, so requests can be checked
    before any weights are read or anything is written.
    """

    row: ModelInfo | None
    source: ModelSource | None = None
    _meta_model: PreTrainedModel | None = field(default=None, init=False, repr=False)

    def shape(self) -> tuple[int, list[int]]:
        """(hidden size, MLP width per layer)."""
        if self.row is not None:
            return self.row.hidden_size, list(self.row.widths)
        info = facts(self._skeleton())
        return info.hidden_size, info.widths

    def parameters(self) -> int:
        return self.row.parameters if self.row is not None else count_parameters(self._skeleton())

    def stored_dtype(self) -> torch.dtype:
        """The dtype the model's weights are (or, imported, will be) stored in."""
        if self.row is not None:
            return getattr(torch, self.row.dtype)
        config = self._skeleton().config
        dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
        if self.source is not None and self.source.kind in ("bundled", "gguf"):
            return torch.float32  # dequantised
        return dtype if isinstance(dtype, torch.dtype) else getattr(torch, str(dtype or "float32"))

    def tokenizer(self, store: Store) -> PreTrainedTokenizerBase:
        if self.row is not None:
            folder = self.folder(store)
            return _guarded(self.row.name, lambda: load_tokenizer(folder))
        return _guarded(self.source, lambda: _source_tokenizer(self.source))

    def folder(self, store: Store) -> Path | None:
        """Where its files are: the stored model's folder, a local source folder; None for others."""
        if self.row is not None:
            return store.model_path(self.row)
        return Path(self.source.ref) if self.source is not None and self.source.kind == "folder" else None

    def check(self, store: Store, *, named: bool = False) -> tuple[int, list[int]]:
        """Everything a job would find wrong with the model before it computes anything, read from
        configs, tokenizers and the weights files' headers (no weights): a stored model's folder
        gone, weights missing, truncated or of other shapes than the config says, no tokenizer, a
        source whose default name breaks the name rule (unless `named`: its import names it).
        Returns shape()."""
        if self.row is not None:
            hidden, widths = check_stored(store, self.row)
        else:
            if self.source is not None and not named:  # imported under its default name
                name = self.source.default_name
                if problem := name_problem(name, may_be_smollm2=self.source.kind == "bundled"):
                    raise UserError(f"{self.source.ref} would be stored as {name!r}, which cannot name a model: "
                                    f"{problem}; import it first with `workbench models import {self.source.ref} "
                                    "--name NAME`")
            hidden, widths = self.shape()
            folder = self.folder(store)
            if folder is not None:
                expected = {k: tuple(v.shape) for k, v in self._skeleton().state_dict().items()}
                check_folder(folder, hidden, widths, expected)
        self.tokenizer(store)
        return hidden, widths

    def load(
        self, store: Store, where: torch.device | Placement, dtype: torch.dtype | None, *, finite: bool = False
    ) -> tuple[ModelInfo, PreTrainedModel, PreTrainedTokenizerBase]:
        """The stored row, the model on the device (or spread as placed) in the dtype (None: the
        dtype it is stored in), and its tokenizer; a source is imported into the store first (and
        that loaded copy is the one returned, unless it is to be spread: then it is read again).
        `finite`: a model with a NaN or infinite weight is refused (UserError naming it), a source
        before its import."""
        if self.row is not None:
            folder = store.model_path(self.row)
            if not folder.is_dir():
                raise UserError(missing_folder(store, self.row))
            load_dtype = dtype or getattr(torch, self.row.dtype)
            model = _guarded(self.row.name, lambda: load_model(folder, where, load_dtype))
            if finite:
                require_finite(model, self.row.name)
            return self.row, model, _guarded(self.row.name, lambda: load_tokenizer(folder))
        model, tokenizer = _guarded(self.source, lambda: _load_source(self.source))
        if finite:
            require_finite(model, self.source.ref)
        row = save_new_model(
            store, model, tokenizer, name=queries.unique_model_name(store, self.source.default_name),
            source=self.source.kind, source_ref=self.source.ref,
        )
        self.row = row
        dtype = dtype or getattr(torch, row.dtype)
        if isinstance(where, Placement) and where.spread:
            del model
            return row, load_model(store.model_path(row), where, dtype), tokenizer
        device = where.device if isinstance(where, Placement) else where
        return row, model.to(device=device, dtype=dtype), tokenizer

    def _skeleton(self) -> PreTrainedModel:
        """The model's modules on the meta device: its architecture with no weights read."""
        if self._meta_model is None:
            config = _guarded(self.source, lambda: _source_config(self.source))
            with torch.device("meta"), _quiet_transformers():
                self._meta_model = AutoModelForCausalLM.from_config(config)
            glu_mlps(self._meta_model)
        return self._meta_model


@torch.no_grad()
def require_finite(model: PreTrainedModel, label: str) -> None:
    """UserError naming the first weight that holds a NaN or an infinity: scores made from it
    would rank nothing, and the pruned model would be as broken."""
    for name, weight in model.named_parameters():
        if not torch.isfinite(weight).all():
            bad = int((~torch.isfinite(weight)).sum())
            raise UserError(f"{label}: weight {name} holds {bad} NaN or infinite values: a model with them cannot be "
                            "pruned")


def resolve(store: Store, model: str) -> Target:
    """What MODEL names: the model a job made (`job:N`), a stored model (by name, id, or the
    source it was imported from), else a source to import."""
    return Target(*lookup(store, model))


def check_import(store: Store, request: ImportRequest) -> ModelInfo | None:
    """Everything an import checks before it reads weights, writing nothing (a front end calls it
    before queueing the job): the model already stored when `if_missing` finds it (nothing to do),
    else None. Reads the source's config: a model that is not a GLU model is refused here."""
    existing = stored_already(store, request)
    if existing is None:
        Target(None, request.model_source).check(store, named=True)  # (the request's name is checked)
    return existing


def import_model(
    store: Store, model: str, name: str | None = None, if_missing: bool = False, progress: Progress | None = None
) -> ModelInfo:
    """Import MODEL into the store as safetensors and record it; returns the new row (with
    `if_missing`, the one already there)."""
    request = ImportRequest(model, name, if_missing).validate()
    progress = progress or Progress()
    progress.weights = IMPORT_STAGE_WEIGHTS
    progress.stage("check", message=f"reading {request.source}")
    existing = check_import(store, request)
    if existing is not None:
        progress.finish()
        return existing
    source = request.model_source
    lost = lost_files(store, request)
    progress.stage("load", message=f"loading {source.ref}")
    model_obj, tokenizer = _guarded(source, lambda: _load_source(source))
    progress.stage("save", message=f"saving {request.model_name}")
    if lost is not None:
        row = restore_files(store, lost, model_obj, tokenizer)
    else:
        row = save_new_model(
            store, model_obj, tokenizer, name=request.model_name, source=source.kind, source_ref=source.ref
        )
    progress.finish()
    return row


def restore_files(
    store: Store, row: ModelInfo, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase
) -> ModelInfo:
    """Give a stored model whose folder was deleted its files again, from the source it was
    imported from (the row keeps its id, lineage and evaluations)."""
    info = facts(model)
    if (info.num_layers, info.hidden_size, max(info.widths), info.parameters) != (
        row.num_layers, row.hidden_size, row.intermediate_size, row.parameters
    ):
        raise UserError(f"{row.source_ref} is no longer the model {row.name!r} was imported from: its shape differs")
    with store.new_artifact("models") as artifact:
        save_folder(model, tokenizer, artifact.path, info.widths)
        with store.write() as session:
            size = folder_size(artifact.path)
            session.execute(update(Model).where(Model.id == row.id).values(path=artifact.relpath, size_bytes=size))
            artifact.commit()
    return queries.get_model(store, row.id)


def save_new_model(
    store: Store,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    name: str,
    source: str,
    source_ref: str = "",
    parent_id: int | None = None,
    record=None,
) -> ModelInfo:
    """Save a model's files into the store and record its row.

    `record(session, row)`, when given, writes further rows in the same transaction (a pruning
    run and its retention rows); otherwise the model row is written alone.
    """
    info = facts(model)
    with store.new_artifact("models") as artifact:
        save_folder(model, tokenizer, artifact.path, info.widths)
        row = Model(
            name=name,
            source=source,
            source_ref=source_ref,
            family=info.family,
            architecture=info.architecture,
            num_layers=info.num_layers,
            hidden_size=info.hidden_size,
            intermediate_size=max(info.widths),
            intermediate_sizes=None if info.uniform else info.widths,
            expansion=info.expansion,
            parameters=info.parameters,
            dtype=info.dtype,
            size_bytes=folder_size(artifact.path),
            path=artifact.relpath,
            parent_id=parent_id,
        )
        with store.write() as session:
            if session.scalar(select(Model.id).where(Model.name == name)) is not None:  # taken since it was checked
                raise UserError(f"the store already has a model named {name!r}: choose another name")
            session.add(row)
            session.flush()
            if record is not None:
                record(session, row)
            artifact.commit()  # the folder moves into place as the transaction's last step
    return queries.get_model(store, row.id)


def save_folder(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, folder: Path, widths: list[int]) -> None:
    """Write a model so that transformers loads it: plain for uniform widths, else per-layer."""
    with _quiet_transformers():
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    per_layer_widths.write_width_config(folder, widths)


def load_model(folder: Path, where: torch.device | Placement, dtype: torch.dtype) -> PreTrainedModel:
    """Load a stored model's folder onto the device (or spread over GPUs as placed, see
    devices.place) in the dtype, ready for inference."""
    placement = where if isinstance(where, Placement) else Placement(where)
    # Weights read into the process's own memory, not mapped from the file: a layer cut by
    # surgery then frees its old weights at once, where a file mapping would hold them all.
    # On a GPU they go straight there, with no copy on the host first.
    kwargs = {"dtype": dtype, "disable_mmap": True} | placement.load_arguments()
    with _quiet_transformers():
        if per_layer_widths.is_per_layer(folder):
            model = per_layer_widths.load(folder, **kwargs)
        else:
            model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    if placement.spread:
        elsewhere = sorted({str(d) for d in getattr(model, "hf_device_map", {}).values()} - {str(g) for g in
                                                                                           placement.max_memory})
        if elsewhere:  # accelerate put part of it on the CPU or disk: refuse rather than crawl
            raise UserError(f"the model does not fit on {placement}: accelerate placed part of it on "
                            f"{', '.join(elsewhere)}")
    return model.eval()


def load_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    per_layer_widths.register(folder)  # a per-layer config is then read without transformers asking to trust code
    with _quiet_transformers():
        return AutoTokenizer.from_pretrained(folder)


def folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def _load_source(source: ModelSource) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    with _quiet_transformers():
        if source.kind in ("bundled", "gguf"):
            return _load_gguf(_gguf_path(source))
        per_layer_widths.register(source.ref)
        tokenizer = AutoTokenizer.from_pretrained(source.ref)
        model = AutoModelForCausalLM.from_pretrained(source.ref, dtype="auto")
        return model.eval(), tokenizer


def _source_config(source: ModelSource) -> PretrainedConfig:
    with _quiet_transformers():
        if source.kind in ("bundled", "gguf"):
            path = _gguf_path(source)
            try:
                return AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
            except (OSError, ValueError, KeyError, RuntimeError, IndexError) as e:
                # transformers then tries the file as a JSON config and says that: say what is wrong
                raise UserError(f"{path} is not a GGUF model transformers can read: {_gguf_trouble(path, e)}") from None
        per_layer_widths.register(source.ref)
        return AutoConfig.from_pretrained(source.ref)


def _gguf_trouble(path: Path, error: Exception) -> str:
    """Why a GGUF file cannot be read, as the gguf package's reader finds it (seconds on a big
    file, so only once reading it has failed)."""
    from gguf import GGUFReader

    try:
        GGUFReader(path)
    except Exception as e:  # a damaged header or metadata, whatever the reader trips on
        return f"its header or metadata is damaged ({type(e).__name__}: {first_line(e)})"
    return first_line(error)


def _source_tokenizer(source: ModelSource) -> PreTrainedTokenizerBase:
    with _quiet_transformers():
        if source.kind in ("bundled", "gguf"):
            path = _gguf_path(source)
            return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        per_layer_widths.register(source.ref)
        return AutoTokenizer.from_pretrained(source.ref)


def _gguf_path(source: ModelSource) -> Path:
    return bundled_gguf() if source.kind == "bundled" else Path(source.ref)


def _guarded(source: ModelSource | str | None, read):
    """Run a read of a model (a source, or a stored model by name); its failures (missing or corrupt
    files, no hub) become one line."""
    try:
        return read()
    except UserError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as e:
        what = source.ref if isinstance(source, ModelSource) else source or "model"
        raise UserError(f"cannot load {what}: {first_line(e)}") from None


def _load_gguf(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Dequantise a GGUF file (tens of seconds) into a model that save_pretrained accepts."""
    tokenizer = _source_tokenizer(ModelSource("gguf", str(path)))
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    # The weights are plain tensors now; the quantizer marks only block saving.
    model.hf_quantizer = None
    model.is_quantized = False
    model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model.eval(), tokenizer


class _quiet_transformers:
    """Silence transformers' load reports and progress bars; errors still raise."""

    def __enter__(self) -> None:
        self._level = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        logging.getLogger("transformers").setLevel(logging.ERROR)
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    def __exit__(self, *exc: object) -> None:
        transformers.logging.set_verbosity(self._level)
        transformers.logging.enable_progress_bar()
