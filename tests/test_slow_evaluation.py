"""The slower tier: SmolLM2-135M-Instruct through `workbench eval` gives exactly the numbers lm-eval's
own CLI gives with the same settings (same stored weights, generated task YAMLs, limit, batch size,
device and dtype), every metric and stderr to the last bit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DATA

from store import queries
from store.db import Store
from workbench.cli.main import main
from workbench.evaluation.local_tasks import write_local_tasks

pytestmark = pytest.mark.slow

TASKS = ("truthfulqa_mc2", "arc_easy")
LIMIT, BATCH = "6", "4"


@pytest.fixture(scope="module")
def smollm2_store(tmp_path_factory) -> Path:
    store_dir = tmp_path_factory.mktemp("smollm2-eval") / "store"
    assert main(["--store", str(store_dir), "models", "import", "smollm2"]) == 0
    return store_dir


def lm_eval_cli(folder: Path, task: str, yamls: Path, out: Path) -> dict:
    """lm-eval's CLI in its own process, one task per run (as the workbench runs each task)."""
    command = [str(Path(sys.executable).parent / "lm_eval"), "run", "--model", "hf",
               "--model_args", f"pretrained={folder},dtype=float32", "--tasks", task, "--include_path", str(yamls),
               "--limit", LIMIT, "--batch_size", BATCH, "--device", "cpu", "--output_path", str(out)]  # fmt: skip
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "NLTK_DATA": str(DATA / "nltk_data")}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(next(out.rglob("results_*.json")).read_text())


def test_truthfulqa_mc2_and_arc_easy_match_lm_evals_cli_exactly(smollm2_store, tmp_path, capsys):
    code = main(["--store", str(smollm2_store), "eval", "smollm2", "--tasks", ",".join(TASKS), "--limit", LIMIT,
                 "--batch-size", BATCH, "--device", "cpu", "--dtype", "float32", "--json"])  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    ours = {(m["task"], m["metric"]): m for m in report["models"][0]["metrics"] if m["harness"] == "lm-eval"}
    store = Store.open(smollm2_store)
    folder = store.model_path(queries.get_model(store, "smollm2"))
    yamls = tmp_path / "yamls"
    write_local_tasks(DATA, yamls, TASKS)
    compared = 0
    for task in TASKS:
        theirs = lm_eval_cli(folder, task, yamls, tmp_path / task)
        entry = theirs["results"][task]
        keys = {k for k in entry if "," in k and "_stderr," not in k}
        assert keys == {metric for t, metric in ours if t == task}
        for key in keys:
            name, _, filter_name = key.partition(",")
            mine = ours[task, key]
            assert mine["value"] == entry[key] and mine["stderr"] == entry[f"{name}_stderr,{filter_name}"], key
            assert mine["samples"] == theirs["n-samples"][task]["effective"] == int(LIMIT)
            assert mine["fewshot"] == theirs["n-shot"][task] == 0
            compared += 1
    assert compared == 3  # truthfulqa_mc2 acc; arc_easy acc and acc_norm
