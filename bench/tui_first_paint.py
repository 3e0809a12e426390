"""Time the TUI's first paint on a store with 10,000 runs, in a real pseudo-terminal.

    .venv/bin/python bench/tui_first_paint.py [--store FOLDER] [--repeat N]

Fills a store as bench/store_queries.py does (a temporary folder, or --store: a new folder is
filled, a filled one reused), then --repeat times: starts `python -m workbench --store FOLDER` in
an 80x24 pseudo-terminal (TERM=xterm-256color) and reads what it writes until
- the first paint: the Models frame ("opening the store…"), drawn before the store's modules load;
- the first page: the Models list's count ("100 of N models"), its rows on screen.
Then it presses `r` and times the Runs list's first page the same way, and quits with `q`.
Separately, in fresh interpreters: the time to import tui.app, to import the Models screen (with
the store's modules) and to open the store. Prints a table, writes bench/results/tui_first_paint.json.
Target: first paint under one second.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import pty
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from store_queries import fill  # noqa: E402

from store import queries  # noqa: E402
from store.db import Store  # noqa: E402
from workbench.tabular import Column, Table, fixed  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
OUT = Path(__file__).resolve().parent / "results" / "tui_first_paint.json"
TARGET_S = 1.0
SIZE = (24, 80)  # rows, columns
TIMEOUT_S = 30.0


class Terminal:
    """A child process on a pseudo-terminal, and everything it has written."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *SIZE, 0, 0))
        self.started = time.perf_counter()
        self.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
        os.close(slave)
        self.output = b""

    def cpu(self) -> float:
        """CPU seconds the child has used so far (user and system): less swayed by a busy machine."""
        times = psutil.Process(self.process.pid).cpu_times()
        return times.user + times.system

    def wait_for(self, text: bytes) -> float:
        """Seconds since the start until `text` has been written."""
        while text not in self.output:
            if time.perf_counter() - self.started > TIMEOUT_S:
                raise TimeoutError(f"{text!r} never appeared; last output: {self.output[-500:]!r}")
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    self.output += os.read(self.master, 65536)
                except OSError:  # the child closed the terminal
                    break
        return time.perf_counter() - self.started

    def press(self, key: bytes) -> None:
        os.write(self.master, key)

    def close(self) -> None:
        self.press(b"q")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


def first_paints(folder: Path, models: int, runs: int) -> dict[str, float]:
    env = os.environ | {"TERM": "xterm-256color", "COLORTERM": "truecolor", "PYTHONPATH": str(REPO)}
    env.pop("WORKBENCH_THEME", None)
    terminal = Terminal([sys.executable, "-m", "workbench", "--store", str(folder)], env)
    try:
        frame_s = terminal.wait_for("opening the store…".encode())
        frame_cpu = terminal.cpu()
        models_s = terminal.wait_for(f"of {models:,} models".encode())
        models_cpu = terminal.cpu()
        pressed = time.perf_counter()
        terminal.press(b"r")
        runs_s = terminal.wait_for(f"of {runs:,} runs".encode()) - (pressed - terminal.started)
    finally:
        terminal.close()
    return {"first_paint_s": frame_s, "first_paint_cpu_s": frame_cpu, "models_first_page_s": models_s,
            "models_first_page_cpu_s": models_cpu, "runs_first_page_after_key_s": runs_s}  # fmt: skip


def in_fresh_interpreter(code: str) -> float:
    """Seconds a snippet takes in a new interpreter (it prints them)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=os.environ | {"PYTHONPATH": str(REPO)})  # fmt: skip
    return float(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="a folder to fill, or one this script filled before")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = (args.store or Path(tmp) / "store").absolute()
        fill_s = None
        with Store.open(folder) as store:
            if queries.count_runs(store) == 0:
                start = time.perf_counter()
                fill(store)
                fill_s = time.perf_counter() - start
            models, runs = queries.count_models(store), queries.count_runs(store)
        samples = [first_paints(folder, models, runs) for _ in range(args.repeat)]
        import_s = [in_fresh_interpreter(
            "import time; t = time.perf_counter(); import tui.app; print(time.perf_counter() - t)"
        ) for _ in range(args.repeat)]  # fmt: skip
        screens_s = [in_fresh_interpreter(
            "import time, tui.app; t = time.perf_counter(); import tui.screens.models; print(time.perf_counter() - t)"
        ) for _ in range(args.repeat)]  # fmt: skip
        open_s = [in_fresh_interpreter(
            "import time; from store.db import Store; t = time.perf_counter(); "
            f"Store.open({str(folder)!r}); print(time.perf_counter() - t)"
        ) for _ in range(args.repeat)]  # fmt: skip

    def summary(values: list[float]) -> dict[str, float]:
        return {"median_s": statistics.median(values), "min_s": min(values), "max_s": max(values)}

    results = {
        "first paint (Models frame) from launch": summary([s["first_paint_s"] for s in samples]),
        "  CPU seconds the app used to that paint": summary([s["first_paint_cpu_s"] for s in samples]),
        "Models: first page from launch": summary([s["models_first_page_s"] for s in samples]),
        "  CPU seconds the app used to that page": summary([s["models_first_page_cpu_s"] for s in samples]),
        "Runs: first page after pressing r": summary([s["runs_first_page_after_key_s"] for s in samples]),
        "import tui.app (before the paint)": summary(import_s),
        "import the Models screen, the store (after)": summary(screens_s),
        "Store.open, modules loaded (after)": summary(open_s),
    }
    columns = [
        Column("what"), Column("median_s", "median s", fixed(3), numeric=True),
        Column("min_s", "min s", fixed(3), numeric=True), Column("max_s", "max s", fixed(3), numeric=True),
    ]  # fmt: skip
    title = f"TUI first paint: {runs:,} runs, {models:,} models, 80x24 pseudo-terminal, {args.repeat} launches"
    Table(title, columns, [[name, r["median_s"], r["min_s"], r["max_s"]] for name, r in results.items()]).render()
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({
        "measured": {
            "how": "time.perf_counter from spawning `python -m workbench --store` in an 80x24 pty until its "
                   "output holds the Models frame ('opening the store…'), then the list's count ('100 of N "
                   "models'); Runs: from writing 'r' to its count",
            "repeat": args.repeat, "target_s": TARGET_S, "term": "xterm-256color",
            "python": platform.python_version(), "machine": platform.machine(), "system": platform.platform(),
            "cpus": os.cpu_count(), "when": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        "store": {"runs": runs, "models": models, "fill_seconds": fill_s},
        "results": results,
        "samples": samples,
    }, indent=2) + "\n")  # fmt: skip
    print(f"wrote {OUT}")
    return 0 if results["first paint (Models frame) from launch"]["median_s"] < TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
