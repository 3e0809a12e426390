"""`workbench compare` and the trade-off behind it: values aligned by task and key, changes against
the nearest compared ancestor, and the noise test |delta| > 2 * sqrt(se1^2 + se2^2)."""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from conftest import tiny_model

from store import queries
from store.db import Store
from store.tables import Evaluation
from workbench.cli.main import main
from workbench.tradeoff import compare


@pytest.fixture
def lineage(tmp_path, tokenizer):
    """parent -> child -> grandchild, saved as the engine saves models, with recorded evaluations."""
    from workbench.model_io import save_new_model

    store = Store.open(tmp_path / "store")
    models = {}
    parent_id = None
    for name, width in (("parent", 96), ("child", 64), ("grandchild", 32)):
        model = tiny_model("llama", vocab_size=len(tokenizer), intermediate_size=width)
        source = "folder" if parent_id is None else "pruned"
        models[name] = save_new_model(store, model, tokenizer, name=name, source=source, parent_id=parent_id)
        parent_id = models[name].id
    now = datetime.now(UTC)

    def row(model: str, task: str, metric: str, value: float, stderr: float | None, **extra) -> Evaluation:
        settings = {"approximate": task == "hellaswag", "higher_is_better": task != "ppl:wikitext2"}
        return Evaluation(model_id=models[model].id, harness="lm-eval", harness_version="0.4.13", task=task,
                          metric=metric, value=value, stderr=stderr, samples=100, limit=100, fewshot=0,
                          settings=settings, device="cpu", dtype="float32", **extra)  # fmt: skip

    with store.write() as session:
        queries.add_evaluations(session, [
            row("parent", "arc_easy", "acc,none", 0.60, 0.02),
            row("parent", "arc_easy", "acc_norm,none", 0.60, 0.05),
            row("parent", "ppl:wikitext2", "perplexity", 20.0, None),
            row("parent", "hellaswag", "acc,none", 0.40, 0.01),
            row("child", "arc_easy", "acc,none", 0.90, 0.02, created_at=now - timedelta(days=1)),  # superseded
            row("child", "arc_easy", "acc,none", 0.50, 0.02),
            row("child", "arc_easy", "acc_norm,none", 0.58, 0.05),
            row("child", "ppl:wikitext2", "perplexity", 25.0, None),
            row("grandchild", "arc_easy", "acc,none", 0.30, 0.02),
        ])  # fmt: skip
    return store, models


def by_key(comparison) -> dict:
    return {(r.task, r.metric): r for r in comparison.rows}


def test_a_pruned_model_alone_is_compared_with_its_parent(lineage):
    store, models = lineage
    c = compare(store, ["child"])
    parent, child = models["parent"].id, models["child"].id
    assert [m.name for m in c.models] == ["parent", "child"] and c.baselines == {child: parent}
    rows = by_key(c)
    acc = rows["arc_easy", "acc,none"]
    assert acc.cells[child].value == 0.50  # the newest of the child's two rows
    change = acc.changes[child]
    assert math.isclose(change.delta, -0.10) and math.isclose(change.relative, -0.10 / 0.60)
    assert math.isclose(change.noise, 2 * math.sqrt(0.02**2 + 0.02**2)) and change.beyond_noise is True
    assert rows["arc_easy", "acc_norm,none"].changes[child].beyond_noise is False  # 0.02 < 2 * 0.0707
    ppl = rows["ppl:wikitext2", "perplexity"].changes[child]
    assert (ppl.delta, ppl.noise, ppl.beyond_noise) == (5.0, None, None)
    params = rows["model", "parameters"]  # never evaluated: taken from the model rows
    assert params.changes[child].delta == models["child"].parameters - models["parent"].parameters < 0
    assert child not in rows["hellaswag", "acc,none"].changes and rows["hellaswag", "acc,none"].approximate
    assert [r.task for r in c.rows][:3] == ["model", "model", "ppl:wikitext2"]


def test_each_model_is_compared_with_its_nearest_compared_ancestor(lineage):
    store, models = lineage
    ids = {n: m.id for n, m in models.items()}
    assert compare(store, ["grandchild", "parent", "child"]).baselines == {
        ids["child"]: ids["parent"], ids["grandchild"]: ids["child"]}
    assert compare(store, ["parent", "grandchild"]).baselines == {ids["grandchild"]: ids["parent"]}
    unrelated = compare(store, ["grandchild", "child"])  # the reference is the one with no compared ancestor
    assert unrelated.baselines == {ids["grandchild"]: ids["child"]}


def test_cli_json_markdown_csv_and_terminal(lineage, capsys):
    store, models = lineage
    base = ["--store", str(store.root), "compare", "parent", "child"]
    assert main([*base, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    acc = next(r for r in data["rows"] if (r["task"], r["metric"]) == ("arc_easy", "acc,none"))
    assert acc["values"]["parent"]["stderr"] == 0.02 and acc["changes"]["child"]["baseline"] == "parent"
    assert acc["changes"]["child"]["beyond_noise"] is True and "child" not in acc["changes"].get("parent", {})
    assert main([*base, "--csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    acc = next(r for r in table if (r["task"], r["metric"]) == ("arc_easy", "acc,none"))
    assert (acc["parent"], acc["child"], acc["child beyond noise"]) == ("0.6", "0.5", "True")
    assert math.isclose(float(acc["child delta"]), -0.1)
    assert main([*base, "--markdown"]) == 0
    markdown = capsys.readouterr().out
    assert "### trade-off: child vs parent" in markdown and "hellaswag (approximate)" in markdown
    assert main(base) == 0
    out = capsys.readouterr().out
    assert "trade-off: child vs parent" in out and "> noise" in out and "-16.7%" in out


def test_unknown_model_exits_2_with_one_line(lineage, capsys):
    store, _ = lineage
    assert main(["--store", str(store.root), "compare", "parent", "nope"]) == 2
    err = capsys.readouterr().err
    assert "no model named 'nope'" in err and err.count("\n") == 1
