"""Bad input, made for real, through the CLI: one line on stderr, exit status 2, and nothing written
(no job row, no run, no model, no file, not even a new store) or lost."""

from __future__ import annotations

import pytest
from store_fixtures import snapshot

from store import jobs, queries
from store.db import Store
from workbench.cli.main import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def files(folder, taken=None) -> set[str]:
    """The files under a store folder (as a snapshot took them), but for SQLite's -wal and -shm, which
    this process's open connections keep."""
    return {name for name in (taken or snapshot(folder)) if not name.endswith(("-wal", "-shm"))}


def refused(capsys, *argv, says: str) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, ""), err
    assert err.count("\n") == 1 and err.startswith("workbench: error: ") and says in err, err


@pytest.fixture
def texts(tmp_path):
    """Text files that are not UTF-8: Latin-1 prose, and bytes that are no text at all."""
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "latin1.txt").write_bytes("Caf\u00e9 cr\u00e8me, na\u00efve fa\u00e7ade.\n".encode("latin-1"))
    (folder / "latin1.jsonl").write_bytes(b'{"text": "ok"}\n' + '{"text": "d\u00e9j\u00e0 vu"}\n'.encode("latin-1"))
    (folder / "binary.jsonl").write_bytes(bytes(range(256)) * 4)
    return folder


def test_text_that_is_not_utf8_is_one_line_before_anything_is_queued(tmp_path, capsys, texts, tiny_model_dirs):
    model = str(tiny_model_dirs["llama"])
    new = tmp_path / "new-store"
    refused(capsys, "prune", model, "--scorer", "wanda", "--percent", "20", "--calibration",
            str(texts / "latin1.txt"), "--store", str(new), says=f"{texts / 'latin1.txt'}:1 is not UTF-8 text")
    refused(capsys, "eval", model, "--tasks", f"ppl:{texts / 'binary.jsonl'}", "--store", str(new),
            says=f"{texts / 'binary.jsonl'}:2 is not UTF-8 text (byte 0x80 at offset 128)")
    assert not new.exists()  # the store the commands made before finding the text bad went again
    new.mkdir()
    refused(capsys, "prune", model, "--scorer", "wanda", "--percent", "20", "--calibration",
            str(texts / "latin1.txt"), "--store", str(new), says="is not UTF-8 text")
    assert new.is_dir() and list(new.iterdir()) == []  # an empty folder given stays, empty

    existing = tmp_path / "store"
    Store.open(existing).close()
    before = snapshot(existing)
    refused(capsys, "eval", model, "--tasks", f"ppl:{texts / 'latin1.txt'}", "--store", str(existing),
            says="latin1.txt:1 is not UTF-8 text")
    refused(capsys, "sweep", model, "--scorers", "wanda", "--percent", "20", "--calibration",
            str(texts / "latin1.jsonl"), "--tasks", "ppl:wikitext2", "--dry-run", "--store", str(existing),
            says=f"{texts / 'latin1.jsonl'}:2 is not UTF-8 text (byte 0xe9")
    refused(capsys, "sweep", model, "--scorers", "ppm", "--percent", "20", "--tasks",
            f"ppl:{texts / 'binary.jsonl'}", "--store", str(existing), says="binary.jsonl:2 is not UTF-8 text")
    with Store.open(existing, create=False) as store:
        assert jobs.list_jobs(store) == [] and queries.list_models(store) == []
    assert files(existing) == files(existing, before)  # no log, no model folder, no study
