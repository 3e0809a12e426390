"""The process that runs one job, started by `workbench jobs work` with the store in
$WORKBENCH_STORE. A process of its own, so that its peak memory is the job's, a crash or an
out-of-memory kill takes only it down, and ending it ends the job.

    python -m workbench.jobs.child JOB_ID   its output going to the job's log, in the folder the
                                            job was queued from
    python -m workbench.jobs.child --warm   imports the engine first, then reads one line from stdin,
                                            {"job": ID, "cwd": FOLDER, "log": FILE}, and runs that job
                                            there, its output going to that log; the end of stdin
                                            (its worker gone, or done with it) ends it
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys

from store.db import Store
from store.jobs import get_job
from workbench.jobs.execution import execute


def main(job_id: int) -> None:
    faulthandler.enable()  # a hard crash still leaves its stack in the log
    # The job reports its own progress; a library's bars (lm-eval's, read by tqdm when it loads)
    # would only draw their frames into the log.
    os.environ.setdefault("TQDM_DISABLE", "1")
    store = Store.open(os.environ["WORKBENCH_STORE"], create=False)
    execute(store, get_job(store, job_id))
    store.close()
    sys.stdout.flush()
    sys.stderr.flush()
    # The outcome is recorded and the log closed: skip the interpreter's teardown of torch,
    # which takes seconds that the worker's next job would wait for.
    os._exit(0)


def wait_for_job() -> None:
    """--warm: what every job kind imports (seconds of torch, transformers, lm-eval, peft) before
    there is a job, then the job its worker hands over."""
    try:
        import workbench.evaluation.harness  # noqa: F401
        import workbench.heal  # noqa: F401
        import workbench.pruning  # noqa: F401

        line = sys.stdin.readline()
    except KeyboardInterrupt:  # Ctrl-C on the worker's terminal: nothing to cancel here
        line = ""
    if not line:
        os._exit(0)
    order = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    log = os.open(order["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    quiet = os.open(os.devnull, os.O_RDONLY)
    for source, target in ((quiet, 0), (log, 1), (log, 2)):
        os.dup2(source, target)
    os.close(log)
    os.close(quiet)
    os.chdir(order["cwd"])
    main(order["job"])


if __name__ == "__main__":
    if sys.argv[1:] == ["--warm"]:
        wait_for_job()
    else:
        main(int(sys.argv[1]))
