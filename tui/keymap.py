"""Remapping keys: every binding has an id (e.g. `list.sort`), and a TOML file maps ids to keys.

    # ~/.config/workbench/keymap.toml (or the file $WORKBENCH_KEYMAP names)
    "list.sort" = "o"
    "app.models" = "1,f1"

The palette's "Keys" command and `?` show every binding with its key.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import platformdirs

from workbench.errors import UserError


def keymap_path() -> Path:
    named = os.environ.get("WORKBENCH_KEYMAP")
    return Path(named).expanduser() if named else Path(platformdirs.user_config_dir("workbench")) / "keymap.toml"


def load_keymap(path: Path | None = None) -> dict[str, str]:
    """Binding id -> keys (comma-separated); empty when there is no file."""
    path = path or keymap_path()
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise UserError(f"cannot read the keymap {path}: {e}") from None
    wrong = [k for k, v in data.items() if not isinstance(v, str) or not v.strip()]
    if wrong:
        raise UserError(f"keymap {path}: {wrong[0]!r} must map to keys such as \"ctrl+o\" or \"o,1\"")
    return {k: v.strip() for k, v in data.items()}
