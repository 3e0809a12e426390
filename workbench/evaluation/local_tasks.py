"""lm-eval's built-in tasks on the local data folder, and where lm-eval finds its task files.

With a data folder, each catalogue task gets a generated YAML that `include`s lm-eval's own task
file and overrides only where the rows come from: `dataset_path: json`, one data file per split,
and null for a split the folder lacks. Prompts, filters and metrics stay the built-in ones. The
generated task keeps the built-in name (a task on an include path replaces the built-in one of
that name), so results carry the usual names and `lm_eval --include_path FOLDER` runs the very
same tasks. Two exceptions, both recorded: HellaSwag's local rows are already in the processed
form the built-in task builds (query, choices, gold), and approximate (see the data's README);
MMLU's one file per split is cut into one per subject, as its 57 built-in tasks read them.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from workbench.errors import UserError

# Catalogue task -> its lm-eval task file, relative to lm_eval/tasks.
BUILTIN = {
    "gsm8k": "gsm8k/gsm8k.yaml",
    "ifeval": "ifeval/ifeval.yaml",
    "truthfulqa_mc1": "truthfulqa/truthfulqa_mc1.yaml",
    "truthfulqa_mc2": "truthfulqa/truthfulqa_mc2.yaml",
    "arc_easy": "arc/arc_easy.yaml",
    "arc_challenge": "arc/arc_challenge.yaml",
    "hellaswag": "hellaswag/hellaswag.yaml",
    "lambada_openai": "lambada/lambada_openai.yaml",
    "wikitext": "wikitext/wikitext.yaml",
    "mmlu": "mmlu/default/_mmlu.yaml",
    "boolq": "super_glue/boolq/default.yaml",
    "piqa": "piqa/piqa.yaml",
    "winogrande": "winogrande/default.yaml",
}

# Catalogue task -> {split: file in the data folder}.
LOCAL_FILES: dict[str, dict[str, str]] = {
    "gsm8k": {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"},
    "ifeval": {"train": "ifeval/train.jsonl"},
    "truthfulqa_mc1": {"validation": "truthfulqa/multiple_choice_validation.jsonl"},
    "truthfulqa_mc2": {"validation": "truthfulqa/multiple_choice_validation.jsonl"},
    "arc_easy": {s: f"arc/ARC-Easy/{s}.jsonl" for s in ("train", "validation", "test")},
    "arc_challenge": {s: f"arc/ARC-Challenge/{s}.jsonl" for s in ("train", "validation", "test")},
    "hellaswag": {"validation": "hellaswag/validation_approx.jsonl"},
    "lambada_openai": {"test": "lambada/test.jsonl"},
    "wikitext": {"test": "wikitext2/test.jsonl"},
    "mmlu": {"test": "mmlu/test.jsonl", "dev": "mmlu/dev.jsonl"},
    "boolq": {"validation": "boolq/validation.jsonl"},
    "piqa": {"validation": "piqa/validation.jsonl"},
    "winogrande": {"validation": "winogrande/validation.jsonl"},
}
APPROXIMATE = frozenset({"hellaswag"})
# The local HellaSwag rows are what the built-in process_docs makes of the hub's rows.
EXTRA_OVERRIDES: dict[str, dict[str, Any]] = {"hellaswag": {"process_docs": None, "doc_to_target": "{{gold}}"}}
SPLIT_KEYS = ("training_split", "validation_split", "test_split", "fewshot_split")
NLTK_FOLDER = "nltk_data"


@dataclass(frozen=True)
class LocalTask:
    name: str
    approximate: bool
    fewshot_source: str | None  # the split few-shot examples come from; None: the folder has none


def tasks_root() -> Path:
    """lm-eval's built-in task folder, found without importing lm-eval."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("evaluation needs lm-eval: pip install 'lm-eval[ifeval]'")
    return Path(next(iter(spec.submodule_search_locations))) / "tasks"


def builtin_folders(names: Iterable[str]) -> list[Path]:
    """The folders lm-eval's index must scan to know these catalogue tasks (a few, not all 14,000
    task files: indexing every built-in task takes lm-eval's own CLI tens of seconds)."""
    root = tasks_root()
    return sorted({(root / BUILTIN[n]).parent for n in names if n in BUILTIN})


def go_offline(data: Path) -> None:
    """Keep the hub clients off the network and point NLTK at the local punkt_tab (IFEval's scorer)."""
    os.environ.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", NLTK_DATA=str(data / NLTK_FOLDER))
    # Libraries already imported read those variables when they were imported: tell them too.
    import datasets.config
    import huggingface_hub.constants
    import nltk

    huggingface_hub.constants.HF_HUB_OFFLINE = True
    datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
    if str(data / NLTK_FOLDER) not in nltk.data.path:
        nltk.data.path.insert(0, str(data / NLTK_FOLDER))


def check_local_data(data: Path, names: Iterable[str]) -> None:
    """Every file these tasks read is in the data folder (checked before any model loads)."""
    for name in names:
        if name in LOCAL_FILES:
            for file in LOCAL_FILES[name].values():
                if not (data / file).is_file():
                    raise UserError(f"{name} reads {data / file}, which does not exist (data folder {data})")
    if "ifeval" in names and not (data / NLTK_FOLDER).is_dir():
        raise UserError(f"ifeval needs NLTK's punkt_tab in {data / NLTK_FOLDER}, which does not exist")


def write_local_tasks(data: Path, folder: Path, names: Iterable[str]) -> dict[str, LocalTask]:
    """Write a task YAML for each catalogue task in `names` into `folder`; returns what each is."""
    names = [n for n in names if n in LOCAL_FILES]
    check_local_data(data, names)
    root = tasks_root()
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in names:
        if name == "mmlu":
            written[name] = _write_mmlu(data, folder, root)
            continue
        config, override = _local_config(data, name)
        _write_yaml(folder / f"{name}.yaml", override)
        written[name] = LocalTask(name, name in APPROXIMATE, _fewshot_source(config))
    return written


def _local_config(data: Path, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A catalogue task on the local files: its whole config as lm-eval will read it, and the
    override written for it (rows from the data folder's files, splits it lacks set to null)."""
    builtin = tasks_root() / BUILTIN[name]
    files = {split: str((data / file).resolve()) for split, file in LOCAL_FILES[name].items()}
    config = _read_task_yaml(builtin)
    missing = {k: None for k in SPLIT_KEYS if config.get(k) is not None and config[k] not in files}
    override = {
        "include": str(builtin),
        "task": name,
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": files},
        **missing,
        **EXTRA_OVERRIDES.get(name, {}),
    }
    return config | override, override


def _fewshot_source(config: dict[str, Any]) -> str | None:
    return config.get("fewshot_split") or config.get("training_split")


class _TaskYaml(yaml.SafeLoader):
    """lm-eval's task YAML read without importing lm-eval's task package (which imports `datasets`):
    a `!function` stays its dotted name."""


_TaskYaml.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def _read_task_yaml(file: Path) -> dict[str, Any]:
    """A task file with the files it includes merged under it, as lm-eval merges them."""
    config = yaml.load(file.read_text(encoding="utf-8"), Loader=_TaskYaml) or {}  # noqa: S506 (a safe loader)
    include = config.pop("include", None)
    return config if include is None else _read_task_yaml(file.parent / include) | config


def effective_shots(asked: int | None, configured: int | None) -> int:
    """The few-shot examples lm-eval puts before each question: none where the task's config says 0
    (simple_evaluate keeps a task's own 0), else those asked, else the task's own count."""
    return 0 if configured == 0 else (asked if asked is not None else configured or 0)


def no_fewshot_split(name: str, shots: int) -> UserError:
    return UserError(
        f"{name}: the local data has no training split to draw {shots} few-shot examples from; "
        "use --fewshot 0 or run it without a data folder"
    )


def check_fewshot_count(name: str, shots: int, available: int, evaluated_too: bool) -> None:
    """lm-eval fails midway ("Sample larger than population") when a task's few-shot split holds
    fewer examples than asked, one more when that split is the one evaluated (the document itself
    is left out): refused before anything loads instead."""
    if shots + evaluated_too > available:
        raise UserError(
            f"{name}: {shots} few-shot examples asked, but its few-shot split holds {available} "
            f"(at most {available - evaluated_too})"
        )


def fewshot_settled(data: Path, name: str, asked: int | None) -> bool:
    """The few-shot rules for a catalogue task on the local data, from its YAML and its files alone
    (UserError where they fail). False where only building the task can tell: a group of tasks
    (mmlu), documents processed by a function, a few-shot sampler of its own."""
    if name == "mmlu":
        return False
    config, _ = _local_config(data, name)
    if config.get("process_docs") or config.get("fewshot_config"):
        return False
    shots = effective_shots(asked, config.get("num_fewshot"))
    if shots == 0:
        return True
    source = _fewshot_source(config)
    if source is None:
        raise no_fewshot_split(name, shots)
    with (data / LOCAL_FILES[name][source]).open(encoding="utf-8") as lines:  # (rows hold U+2028)
        available = sum(1 for line in lines if line.strip())
    check_fewshot_count(name, shots, available, source == config.get("test_split"))
    return True


def _write_mmlu(data: Path, folder: Path, root: Path) -> LocalTask:
    """One task per subject, each including its built-in file, reading its own slice of the rows."""
    rows: dict[tuple[str, str], list[str]] = {}
    for split, file in LOCAL_FILES["mmlu"].items():
        with (data / file).open(encoding="utf-8") as lines:  # not splitlines(): rows hold U+2028
            for line in lines:
                if line.strip():
                    rows.setdefault((json.loads(line)["subject"], split), []).append(line.rstrip("\n"))
    for builtin in sorted((root / "mmlu" / "default").glob("mmlu_*.yaml")):
        config = _read_task_yaml(builtin)
        subject = config["dataset_name"]
        files = {}
        for split in LOCAL_FILES["mmlu"]:
            if (subject, split) not in rows:
                raise UserError(f"mmlu: the data folder has no {split} rows for subject {subject!r}")
            path = folder / "mmlu" / subject / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(rows[subject, split]) + "\n", encoding="utf-8")
            files[split] = str(path.resolve())
        override = {
            "include": str(builtin),
            "task": config["task"],
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": {"data_files": files},
        }
        _write_yaml(folder / f"{config['task']}.yaml", override)
    return LocalTask("mmlu", False, "dev")


def _write_yaml(path: Path, config: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
