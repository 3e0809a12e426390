"""Small helpers every command shares: opening the store, printing JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from store.db import Store


def open_store(args: argparse.Namespace) -> Store:
    return Store.open(getattr(args, "store", None))


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
