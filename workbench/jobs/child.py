"""`python -m workbench.jobs.child JOB_ID`: the process that runs one job, started by `workbench
jobs work` with the store in $WORKBENCH_STORE, its output going to the job's log, in the folder
the job was queued from. A process of its own, so that its peak memory is the job's, a crash or
an out-of-memory kill takes only it down, and ending it ends the job.
"""

from __future__ import annotations

import faulthandler
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


if __name__ == "__main__":
    main(int(sys.argv[1]))
