"""`workbench serve`: the same app in a browser through textual-serve, bound to localhost only
(reach it from another machine through an SSH tunnel, never an open port)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys

HOST = "localhost"


def register(subparsers, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "serve",
        parents=[common],
        help="open the workbench in a browser (textual-serve, on localhost)",
        description="Serve the terminal workbench to a browser on this machine, at http://localhost:PORT. "
        "Each browser tab runs its own app. From elsewhere: ssh -L PORT:localhost:PORT this-host.",
    )
    p.add_argument("--port", type=int, default=8000, help="default: 8000")
    p.set_defaults(func=serve)


def command(args: argparse.Namespace) -> str:
    """The command each browser session runs: this workbench's `tui` on the same store and data."""
    argv = [sys.executable, "-m", "workbench", "tui"]
    store = getattr(args, "store", None)
    if store is not None:
        argv += ["--store", store if "://" in store else os.path.abspath(os.path.expanduser(store))]
    data_dir = getattr(args, "data_dir", None)
    if data_dir is not None:
        argv += ["--data-dir", os.path.abspath(os.path.expanduser(data_dir))]
    return shlex.join(argv)


def serve(args: argparse.Namespace) -> int:
    from textual_serve.server import Server

    from store.db import Store

    Store.open(getattr(args, "store", None)).close()  # a bad store fails here, in one line, not in the browser
    print(f"workbench: serving on http://{HOST}:{args.port} (ctrl+c stops it)", file=sys.stderr)
    Server(command(args), host=HOST, port=args.port, title="Width Pruning Workbench").serve()
    return 0
