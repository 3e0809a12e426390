"""Text sources as the forms offer them (calibration for a pruning run, distillation text for a
heal): the built-in ones, a text file (typed, or picked from a tree of folders), or a Hugging Face
dataset; read into the source a job takes (`wikitext2`, `path/to.txt`, `hf:DATASET`)."""

from __future__ import annotations

from pathlib import Path

from tui.forms.fields import FieldError
from workbench import texts

SOURCES = [
    ("wikitext2: WikiText-2, validation split", "wikitext2"),
    ("sms: SMS Spam Collection, four fifths", "sms"),
    ("a text file (.txt, .jsonl)", "file"),
    ("a Hugging Face dataset (hf:)", "hub"),
]
TEXT_FILES = (".txt", ".jsonl")
PLACEHOLDERS = {"file": "path/to/text.txt or .jsonl (field text)", "hub": "DATASET[:CONFIG][@SPLIT]"}


def text_source(kind: str, text: str, field: str, purpose: str) -> str:
    """The source a job reads, from a form's choice (`kind`, a SOURCES value) and the text typed beside
    it (FieldError on `field` when that text is missing or names no text file); `purpose` says what
    the text is for, e.g. "to calibrate on"."""
    if kind in texts.BUILTIN:
        return kind
    if not text:
        what = f"the text file {purpose}" if kind == "file" else "the dataset, e.g. wikitext:wikitext-2-raw-v1"
        raise FieldError(field, f"give {what}")
    if kind == "hub":
        return text if text.startswith("hf:") else f"hf:{text}"
    if Path(text).suffix not in TEXT_FILES:
        raise FieldError(field, f"a text file ends in .txt or .jsonl, got {text!r}")
    return text
