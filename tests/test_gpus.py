"""Which job goes on which GPU (workbench.jobs.gpus) with fake GPU counts: slots from --gpus, never two
jobs on one GPU (also when several processes claim at once), each job process seeing only its slot,
and a job given a GPU its process cannot see failing clearly instead of running elsewhere."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import DATA

from store import jobs
from store.db import Store
from workbench.cli.main import main
from workbench.errors import UserError
from workbench.jobs import submit
from workbench.jobs.gpus import (
    PINNED,
    HostGpus,
    Slot,
    busy_gpus,
    child_environment,
    free_slot,
    missing,
    parse_slots,
    visible_gpus,
)
from workbench.spec import PruneSpec

REPO = Path(__file__).resolve().parents[1]
# GPUs no machine has: CUDA stops at the first name it does not know, so a process given one sees none.
FAKE = [f"GPU-00000000-0000-0000-0000-00000000000{i}" for i in range(3)]


def test_visible_gpus_are_cudas_for_this_environment(tmp_path, monkeypatch):
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "1, -1, 2"}) == ["1"]  # CUDA stops at an invalid entry
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ",".join(FAKE[:2])}) == FAKE[:2]
    driver = tmp_path / "gpus"
    for pci in ("0000:17:00.0", "0000:65:00.0", "0000:ca:00.0"):
        (driver / pci).mkdir(parents=True)
    assert visible_gpus({}, driver) == ["0", "1", "2"]
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert visible_gpus({}, tmp_path / "no-driver") == []


def test_gpus_option_makes_slots():
    assert parse_slots("all", 4) == [Slot((0,)), Slot((1,)), Slot((2,)), Slot((3,))]
    assert parse_slots("all", 0) == [] and parse_slots("none", 4) == []
    assert [s.label for s in parse_slots("0,2", 4)] == ["cuda:0", "cuda:2"]
    assert [s.label for s in parse_slots("0+1, 2+3", 4)] == ["cuda:0+1", "cuda:2+3"]


@pytest.mark.parametrize(
    ("text", "count", "message"),
    [
        ("5", 4, "names GPU 5, but this host has 4 (0-3)"),
        ("0", 0, "names GPU 0, but this host has none"),
        ("1", 1, "names GPU 1, but this host has one (0)"),
        ("1,1", 4, "names GPU 1 twice"),
        ("0+1,1+2", 4, "names GPU 1 twice"),
        ("0,x", 4, "takes all, none, or GPU numbers"),
        ("", 4, "takes all, none, or GPU numbers"),
    ],
)
def test_bad_gpus_option_is_one_clear_error(text, count, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_slots(text, count)


def test_a_job_goes_on_the_first_gpu_no_running_job_uses():
    singles = parse_slots("all", 3)
    assert free_slot(singles, [], 3).label == "cuda:0"
    assert free_slot(singles, ["cuda:0"], 3).label == "cuda:1"
    assert free_slot(singles, ["cuda:0", "cpu", "mps"], 3).label == "cuda:1"  # a CPU job takes no GPU
    assert free_slot(singles, ["cuda:0", "cuda:2", "cuda:1"], 3) is None
    pairs = parse_slots("0+1,2+3", 4)
    assert free_slot(pairs, ["cuda:1"], 4).label == "cuda:2+3"  # a joined slot needs all its GPUs free
    assert free_slot(pairs, ["cuda:1", "cuda:3"], 4) is None
    # A running job whose device names no GPUs (plain cuda, or none yet) may use any: all are busy.
    assert busy_gpus(["cuda"], 3) == busy_gpus([None], 3) == {0, 1, 2}
    assert free_slot(singles, [None], 3) is None and free_slot(singles, ["cuda:x"], 3) is None


@pytest.mark.parametrize("seed", range(5))
def test_never_two_jobs_on_one_gpu_whatever_starts_and_ends(seed):
    """Random claims by workers with different slots (and foreground CLIs) and random ends: at
    every moment the running jobs' GPUs are disjoint."""
    rng = random.Random(seed)
    count = 4
    claimers = [HostGpus([str(i) for i in range(count)], parse_slots(text, count))
                for text in ("all", "0+1,2+3", "3,1", "2")] + [HostGpus.whole([str(i) for i in range(count)])]
    running: list[str] = []
    for _ in range(300):
        if running and rng.random() < 0.4:
            running.remove(rng.choice(running))
            continue
        label = rng.choice(claimers).place(list(running))
        if label is not None:
            running.append(label)
        taken = [gpu for label in running for gpu in busy_gpus([label], count)]
        assert len(taken) == len(set(taken)), running


def test_a_job_process_sees_only_its_slot():
    assert child_environment(Slot((2,)), FAKE) == {"CUDA_VISIBLE_DEVICES": FAKE[2], PINNED: "cuda:2"}
    assert child_environment(Slot((0, 1)), ["3", "5", "6"]) == {"CUDA_VISIBLE_DEVICES": "3,5", PINNED: "cuda:0+1"}
    host = HostGpus(["3", "5", "6"], parse_slots("2,0", 3))
    assert host.environment("cuda:0") == {"CUDA_VISIBLE_DEVICES": "3", PINNED: "cuda:0"}
    assert host.environment("cuda:1") == {} and host.environment(None) == {}  # not one of its slots


def test_a_job_given_gpus_its_process_cannot_see_cannot_run():
    assert "was given cuda:2, but its process sees 0 GPUs of the 1: the GPU is gone" in missing("cuda:2", 0)
    assert "sees 1 GPU of the 2" in missing("cuda:0+1", 1)
    assert missing("cuda:2", 1) is None and missing("cuda:0+1", 2) is None
    assert missing("cpu", 0) is None and missing("cuda", 0) is None


def test_the_claim_writes_the_slot_as_the_jobs_device(store):
    request = PruneSpec(model="some-model", scorer="ppm", percent=25).to_dict()
    ids = [submit(store, "prune", request) for _ in range(4)]
    host = HostGpus(FAKE[:2], parse_slots("all", 2))
    first = jobs.claim(store, os.getpid(), place=host.place)
    second = jobs.claim(store, os.getpid(), place=host.place)
    assert (first.id, first.device, second.id, second.device) == (ids[0], "cuda:0", ids[1], "cuda:1")
    assert jobs.claim(store, os.getpid(), place=host.place) is None  # both GPUs busy: nothing claimed
    assert jobs.get_job(store, ids[2]).status == "queued"
    jobs.finish(store, first.id, "done", "done")
    assert jobs.claim(store, os.getpid(), place=host.place).device == "cuda:0"


CLAIMER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from store import jobs
    from store.db import Store
    from workbench.jobs.gpus import HostGpus, parse_slots
    location, go, stop, out = sys.argv[1:]
    while not Path(go).exists():
        time.sleep(0.005)
    store = Store.open(location, create=False)
    host = HostGpus(["a", "b", "c"], parse_slots("all", 3))
    claimed = []
    while (job := jobs.claim(store, os.getpid(), place=host.place)) is not None:
        claimed.append(job.id)
    Path(out).write_text(" ".join(map(str, claimed)))
    while not Path(stop).exists():  # the jobs stay running (this process alive) until the test has read them
        time.sleep(0.05)
""")


def test_processes_claiming_at_once_never_share_a_gpu(store, tmp_path):
    request = PruneSpec(model="some-model", scorer="ppm", percent=25).to_dict()
    for _ in range(8):
        submit(store, "prune", request)
    go, stop = tmp_path / "go", tmp_path / "stop"
    env = os.environ | {"PYTHONPATH": str(REPO)}
    claimers = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(store.root), str(go), str(stop),
                                  str(tmp_path / f"out-{i}")], env=env) for i in range(4)]
    go.touch()
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"out-{i}").exists() for i in range(4)):
            assert time.monotonic() < deadline and all(c.poll() is None for c in claimers)
            time.sleep(0.05)
        running = jobs.list_jobs(store, status="running")
        assert sorted(j.device for j in running) == ["cuda:0", "cuda:1", "cuda:2"]
        assert jobs.count_jobs(store, "queued") == 5
    finally:
        stop.touch()
        for c in claimers:
            c.wait(timeout=60)


def worker(store: Store, *args: str, gpus: list[str]) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"CUDA_VISIBLE_DEVICES": ",".join(gpus)}
    return subprocess.run([sys.executable, "-m", "workbench", "--store", str(store.root), "jobs", "work", *args],
                          env=env, capture_output=True, text=True, timeout=600)


def test_a_worker_runs_one_job_per_gpu_each_seeing_only_its_own(store, tiny_model_dirs):
    """Two (fake) GPUs: jobs go on cuda:0 and cuda:1, and each job's process sees only its GPU. The
    jobs ask for the CPU, so that they run on any machine."""
    from workbench.model_io import import_model

    base = import_model(store, str(tiny_model_dirs["llama"]))
    ids = [submit(store, "prune", PruneSpec(model=base.name, scorer="ppm", percent=p, device="cpu").to_dict())
           for p in (10, 20, 30)]
    done = worker(store, gpus=FAKE[:2])
    assert done.returncode == 0, done.stderr
    assert "one job at a time on each of cuda:0, cuda:1" in done.stdout
    assert f"job {ids[0]} (prune) started: pid" in done.stdout and "on cuda:0" in done.stdout
    assert f"job {ids[1]} (prune) started: pid" in done.stdout and "on cuda:1" in done.stdout
    for job in jobs.jobs_by_id(store, ids).values():
        assert (job.status, job.device) == ("done", "cpu"), job.error  # it ran on the CPU it asked for
        log = (store.root / job.log_path).read_text()
        assert f"GPUs: cuda:0 of the host (CUDA_VISIBLE_DEVICES={FAKE[0]})" in log or (
            f"GPUs: cuda:1 of the host (CUDA_VISIBLE_DEVICES={FAKE[1]})" in log), log
    logs = [(store.root / j.log_path).read_text() for j in jobs.jobs_by_id(store, ids[:2]).values()]
    assert sum("GPUs: cuda:0 " in log for log in logs) == sum("GPUs: cuda:1 " in log for log in logs) == 1


def test_a_job_on_a_gpu_that_is_gone_fails_clearly_rather_than_run_on_the_cpu(store, tiny_model_dirs, capsys):
    from workbench.model_io import import_model

    base = import_model(store, str(tiny_model_dirs["llama"]))
    job_id = submit(store, "prune", PruneSpec(model=base.name, scorer="ppm", percent=10).to_dict(), data_dir=DATA)
    done = worker(store, gpus=FAKE[:1])
    assert done.returncode == 0, done.stderr
    job = jobs.get_job(store, job_id)
    assert (job.status, job.device, job.result) == ("failed", "cuda:0", {"error_type": "UserError"})
    built = torch.backends.cuda.is_built()  # (a CPU build of torch, as on the development machine, says so)
    assert job.error.startswith("the job was given cuda:0, but " + ("its process sees 0 GPUs of the 1: the GPU is "
                                                                    "gone" if built else "this torch"))
    assert main(["--store", str(store.root), "jobs", "list"]) == 0
    listed = capsys.readouterr().out
    assert "cuda:0" in listed and "failed" in listed


def test_worker_refuses_gpus_the_host_does_not_have(store, capsys):
    done = worker(store, "--gpus", "0,3", gpus=FAKE[:2])
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "--gpus names GPU 3, but this host has 2 (0-1)" in done.stderr
