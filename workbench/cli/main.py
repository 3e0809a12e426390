"""`workbench`: with no command it opens the TUI; sub-commands mirror what the TUI does.

Each command group lives in its own module with a `register(subparsers, common)` function.
Modules import the engine (torch, transformers) inside their handlers, so that `workbench`
and `workbench --help` start fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from contextlib import suppress

from workbench.errors import UserError

COMMAND_MODULES = [
    "workbench.cli.models",
    "workbench.cli.prune",
    "workbench.cli.heal",
    "workbench.cli.evaluate",
    "workbench.cli.sweep",
    "workbench.cli.study",
    "workbench.cli.compare",
    "workbench.cli.runs",
    "workbench.cli.export",
    "workbench.cli.store_cmd",
    "workbench.cli.serve",
    "workbench.cli.jobs",
]


class Parser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def common_options() -> argparse.ArgumentParser:
    """Options every command accepts, before or after its name."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--store",
        default=argparse.SUPPRESS,
        help="store folder or SQLAlchemy URL (default: $WORKBENCH_STORE, else the user data folder)",
    )
    common.add_argument(
        "--data-dir",
        default=argparse.SUPPRESS,
        help="local benchmark and calibration data (default: $WORKBENCH_DATA)",
    )
    return common


def build_parser() -> Parser:
    common = common_options()
    parser = Parser(
        prog="workbench",
        description="Width pruning of GLU MLPs: prune, evaluate and compare LLMs. "
        "With no command, opens the terminal workbench.",
        parents=[common],
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    tui = subparsers.add_parser("tui", parents=[common], help="open the terminal workbench (the default)")
    tui.set_defaults(func=run_tui)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers, common)
    return parser


def tui_arguments(argv: list[str] | None) -> argparse.Namespace | None:
    """The options of a plain `workbench` or `workbench tui`, read without the command modules;
    None for anything else. Those modules load the store's (SQLAlchemy, SQLModel: most of a
    second), which the app loads after its first paint instead."""
    parser = Parser(prog="workbench", parents=[common_options()], add_help=False)
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return args if rest in ([], ["tui"]) else None


def is_store_error(error: BaseException) -> bool:
    """A store.StoreError, looked up rather than imported (see tui_arguments): only the store
    raises one, so its module is loaded when one arrives."""
    db = sys.modules.get("store.db")
    return db is not None and isinstance(error, db.StoreError)


def run_tui(args: argparse.Namespace) -> int:
    # Without a terminal (input from /dev/null, output to a file or a pipe) the app would draw its
    # screens into the output until killed. A driver chosen on purpose (textual-serve's web driver,
    # for `workbench serve`) brings its own input and output.
    if not os.environ.get("TEXTUAL_DRIVER") and not (sys.stdin.isatty() and sys.stdout.isatty()):
        which = [n for n, f in (("input", sys.stdin), ("output", sys.stdout)) if not f.isatty()]
        raise UserError(
            f"the terminal workbench needs a terminal: its {' and '.join(which)} {'are' if len(which) > 1 else 'is'} "
            "not one; run a command instead (`workbench --help` lists them), or `workbench serve` for a browser"
        )
    # A hang-up must end the app even where SIGHUP came in ignored (`nohup`, some job runners):
    # with its terminal gone it would only spin on a dead input.
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
    from tui.app import run

    return run(store=getattr(args, "store", None), data_dir=getattr(args, "data_dir", None))


def main(argv: list[str] | None = None) -> int:
    """Run the command `argv` (None: this program's command line) and return its exit status.

    As the program, once a command that loaded the engine has written its output, the process
    ends at once (os._exit): the interpreter's teardown of torch and transformers takes seconds
    (2-4 s on the development machine, more with a CUDA context to destroy), and everything the
    command did is already recorded. Called with `argv` from Python code, it returns as usual."""
    code = _run(argv)
    if argv is None and "torch" in sys.modules:
        with suppress(OSError):  # e.g. a reader gone from a pipe
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    return code


def _run(argv: list[str] | None) -> int:
    args = tui_arguments(argv)
    if args is None:  # a command: the whole parser, every command module imported
        args = build_parser().parse_args(argv)
    handler = getattr(args, "func", run_tui)
    try:
        from workbench.jobs.worker import warm_seconds

        warm_seconds()  # read by whatever starts a worker, the TUI included: a bad value stops here
        return handler(args) or 0
    except UserError as e:
        _remove_unused_stores()
        print(f"workbench: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # the reader went away (e.g. `| head`): not an error of ours
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("workbench: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if not is_store_error(e):
            raise
        _remove_unused_stores()
        print(f"workbench: error: {e}", file=sys.stderr)
        return 2


def _remove_unused_stores() -> None:
    """Bad input writes nothing: not even the store the command created before it found the input
    bad (looked up, as is_store_error does, since only a command that opened a store loaded it)."""
    common = sys.modules.get("workbench.cli.common")
    if common is not None:
        common.remove_unused_stores()
