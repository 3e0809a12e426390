"""workbench.tabular: one table, written as CSV, JSON, Markdown or aligned text."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from workbench.tabular import Column, Table, count, fixed, size

WHEN = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
TABLE = Table(
    "results",
    [Column("name"), Column("value", "score", fixed(2), numeric=True), Column("params", fmt=count, numeric=True),
     Column("when"), Column("tags")],  # fmt: skip
    [["a|b", 0.12345, 135_100_000, WHEN, ("x", "y")], ["c", None, 999, None, ()]],
)


def test_csv_and_json_keep_raw_values():
    assert TABLE.to_csv().splitlines() == [
        "name,value,params,when,tags",
        'a|b,0.12345,135100000,2025-03-04T05:06:07+00:00,"[""x"", ""y""]"',
        "c,,999,,[]",
    ]
    assert json.loads(TABLE.to_json()) == [
        {"name": "a|b", "value": 0.12345, "params": 135100000, "when": "2025-03-04T05:06:07+00:00", "tags": ["x", "y"]},
        {"name": "c", "value": None, "params": 999, "when": None, "tags": []},
    ]


def test_markdown_and_text_show_formatted_values():
    assert TABLE.to_markdown().splitlines() == [
        "### results",
        "",
        "| name | score | params | when | tags |",
        "|---|---:|---:|---|---|",
        "| a\\|b | 0.12 | 135.1M | 2025-03-04 05:06 | x, y |",
        "| c |  | 999 |  |  |",
    ]
    assert TABLE.to_text().splitlines() == [
        "results",
        "name  score  params  when              tags",
        "a|b    0.12  135.1M  2025-03-04 05:06  x, y",
        "c               999",
    ]
    out = io.StringIO()
    TABLE.render(out)  # not a terminal: the plain text
    assert out.getvalue() == TABLE.to_text()


def test_tables_of_objects_dicts_dataclasses_and_pairs():
    @dataclass
    class Row:
        a: int
        b: str

    assert Table.of("t", [Column("b")], [Row(1, "x")]).rows == [["x"]]
    assert Table.of("t", [Column("a")], [{"a": 2}]).rows == [[2]]
    assert Table.of_dataclasses("t", [Row(1, "x")]).records() == [{"a": 1, "b": "x"}]
    assert Table.of_dataclasses("t", [], Row).to_csv() == "a,b\n"
    assert Table.of_pairs("one", [("k", 1)]).to_text() == "one\nfield  value\nk      1\n"


def test_number_formats():
    assert [count(v) for v in (None, 12, 1_500, 2_000_000, 7_000_000_000)] == ["", "12", "1.5k", "2.0M", "7.0B"]
    assert [size(v) for v in (None, 100, 2048, 3 * 2**30)] == ["", "100 B", "2.0 KiB", "3.0 GiB"]
