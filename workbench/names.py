"""The one rule for the names a user gives models and studies (light: the TUI's forms use it too).

A name is what MODEL and the listings show, so it must read as a name and nothing else: printable
(a newline or tab breaks a listing), no path separators (a name would read as a folder), not a bare
number (MODEL reads those as ids), not `job:N` (the model a job makes), not `smollm2` unless it is
the bundled model itself (MODEL looks names up first: another model by that name would shadow it),
starting with a letter or digit (not `.`, `~` or `-`, which read as paths or options), and at most
MAX_LENGTH characters.
"""

from __future__ import annotations

from workbench.errors import UserError

MAX_LENGTH = 100
BUNDLED = "smollm2"  # (workbench.sources.BUNDLED; that module imports the store, this one nothing)


def name_problem(name: str, *, may_be_smollm2: bool = False) -> str | None:
    """What is wrong with `name` as a model's or a study's name, else None. `may_be_smollm2`: the
    bundled model's own import (the one model called smollm2), or a study (which shadows no model)."""
    if not name:
        return "it is empty"
    if len(name) > MAX_LENGTH:
        return f"it has {len(name)} characters, more than {MAX_LENGTH}"
    if not name.isprintable():
        return "it holds a character that does not print (a newline, a tab)"
    if "/" in name or "\\" in name:
        return "it holds a path separator"
    if name != name.strip():
        return "it begins or ends with a space"
    if not name[0].isalnum():
        return "it begins with neither a letter nor a digit"
    if name.isdigit():
        return "it is a bare number, which names a model by its id"
    if name.lower().startswith("job:"):
        return "job:N names the model job N makes"
    if name.lower() == BUNDLED and not may_be_smollm2:
        return f"{BUNDLED} names the bundled SmolLM2-135M-Instruct"
    return None


def check_name(name: str, what: str = "model", *, may_be_smollm2: bool = False) -> str:
    """`name` when it follows the rule, else UserError saying why in one line."""
    problem = name_problem(name, may_be_smollm2=may_be_smollm2)
    if problem is not None:
        raise UserError(f"{name!r} cannot name a {what}: {problem}")
    return name
