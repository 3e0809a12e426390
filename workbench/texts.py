"""Text sources for calibration and perplexity, kept apart so that no text is in both.

Built-in sources read the data folder (`--data-dir` / `WORKBENCH_DATA`):
- `wikitext2`: calibrates on the validation split, perplexity on the test split.
- `sms`: the SMS Spam Collection; every fifth message (index % 5 == 0) is held out for
  perplexity, the other four fifths calibrate.
Any local `.txt` file (the whole file is one document) or `.jsonl` file (field `text`, one
document per line) calibrates and measures on all of its text: the views flag that overlap.
`hf:PATH[:CONFIG][@SPLIT]` reads a Hugging Face dataset's `text` column where a hub is reachable.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from workbench.errors import UserError

SMS_HOLDOUT_EVERY = 5
BUILTIN = ("wikitext2", "sms")  # sources whose calibration and perplexity parts are kept apart


def data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The local benchmark and calibration data folder, if one is configured."""
    value = explicit or os.environ.get("WORKBENCH_DATA")
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise UserError(f"data folder {path} does not exist (from --data-dir or WORKBENCH_DATA)")
    return path


@dataclass(frozen=True)
class TextSource:
    """A named body of documents, one part for calibration and one for perplexity."""

    name: str
    calibration: list[str]
    heldout: list[str]
    overlapping: bool = False  # calibration and perplexity read the same text


def load_source(name: str, data: Path | None = None) -> TextSource:
    """The named source; built-in ones read `data`, else the configured data folder."""
    if name in BUILTIN:
        data = data or data_dir()
        if data is None:
            raise UserError(
                f"calibration source {name!r} reads the data folder: set --data-dir or WORKBENCH_DATA"
            )
        if name == "wikitext2":
            return TextSource(
                name,
                _read_jsonl(data / "calibration" / "wikitext2_valid.jsonl", "text"),
                _read_jsonl(data / "wikitext2" / "test.jsonl", "page"),
            )
        messages = _read_jsonl(data / "calibration" / "sms_spam.jsonl", "text")
        held = [m for i, m in enumerate(messages) if i % SMS_HOLDOUT_EVERY == 0]
        calib = [m for i, m in enumerate(messages) if i % SMS_HOLDOUT_EVERY != 0]
        return TextSource(name, calib, held)
    if name.startswith("hf:"):
        docs = _read_hub(name[3:])
        return TextSource(name, docs, docs, overlapping=True)
    path = Path(name).expanduser()
    if path.suffix in (".txt", ".jsonl"):
        if not path.is_file():
            raise UserError(f"text file {path} does not exist")
        docs = [read_utf8(path)] if path.suffix == ".txt" else _read_jsonl(path, "text")
        docs = [d for d in docs if d.strip()]
        if not docs:
            raise UserError(f"text file {path} holds no text")
        return TextSource(str(path.resolve()), docs, docs, overlapping=True)
    raise UserError(
        f"unknown text source {name!r}: use wikitext2, sms, a .txt or .jsonl file, or hf:DATASET"
    )


def check_source(name: str, data: Path | None = None, purpose: str = "to calibrate on") -> str:
    """What calibrating (or another `purpose`) on `name` would read, in a few words; UserError when it
    cannot. Built-in and file sources are read; a hub dataset is checked for its form only (the job
    process reaches the hub)."""
    if name.startswith("hf:"):
        if not name[3:].partition("@")[0].partition(":")[0].strip():
            raise UserError("hf: needs a dataset, e.g. hf:wikitext:wikitext-2-raw-v1@train")
        return f"the hub dataset {name[3:]}, read when the job starts (it needs the hub)"
    docs = load_source(name, data).calibration
    words = sum(len(d.split()) for d in docs)
    return f"{len(docs):,} document{'s' * (len(docs) != 1)}, {words:,} word{'s' * (words != 1)} {purpose}"


def source_name(name: str) -> str:
    """The name a source is recorded under (its TextSource.name), without reading it: built-in and
    hub sources as given, files by their absolute path."""
    if name in BUILTIN or name.startswith("hf:"):
        return name
    return str(Path(name).expanduser().resolve())


def shares_text(calibration: str | None, evaluation: str) -> bool:
    """Whether perplexity on source `evaluation` reads text that calibrating on `calibration` read:
    the same source, unless it is a built-in one (whose two parts never overlap)."""
    if calibration is None:
        return False
    name = source_name(calibration)
    return name == source_name(evaluation) and name not in BUILTIN


def read_utf8(path: Path) -> str:
    """A text file's text; UserError naming the place when it is not UTF-8 (Latin-1, binary)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise UserError(
            f"{path}:{line} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}): save it as UTF-8"
        ) from None


def _read_jsonl(path: Path, field: str) -> list[str]:
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    docs = []
    # Lines split on "\n" only: a document may hold U+2028 and other breaks of its own.
    for number, line in enumerate(read_utf8(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise UserError(f"{path}:{number} is not a JSON line") from None
        if not isinstance(row, dict) or not isinstance(row.get(field), str):
            raise UserError(f"{path}:{number} has no string field {field!r}")
        docs.append(row[field])
    return docs


def _read_hub(spec: str) -> list[str]:
    path_config, _, split = spec.partition("@")
    path, _, config = path_config.partition(":")
    try:
        import datasets

        rows = datasets.load_dataset(path, config or None, split=split or "train")
    except Exception as e:  # offline, unknown dataset, bad split: one line for the user
        raise UserError(f"cannot read dataset {spec!r}: {str(e).splitlines()[0]}") from None
    if "text" not in rows.column_names:
        raise UserError(f"dataset {spec!r} has no 'text' column (it has {', '.join(rows.column_names)})")
    return [t for t in rows["text"] if t and t.strip()]
