"""`data fix`: its output passes `data check`, and the user's files are never touched."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_data_check import SQL_EVAL, SQL_PARAPHRASE, SQL_TRAIN, build_planted, write_task

from experiments.data.checks import check_task
from experiments.data.fix import fix_task
from experiments.errors import TaskError
from experiments.task import load_task

ROOT = Path(__file__).resolve().parent.parent


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def planted(tmp_path):
    folder = tmp_path / "planted"
    folder.mkdir()
    build_planted(folder)
    return folder


def test_fixed_task_passes_check_and_input_is_untouched(planted, tmp_path):
    before = digest(planted)
    out = tmp_path / "fixed"
    summary = fix_task(planted / "task.yaml", out)
    assert digest(planted) == before
    report = check_task(out / "task.yaml", max_length=256)
    assert not report.blocking, [f.message for f in report.findings]
    left = {f.check for f in report.findings}
    assert not left & {
        "duplicate",
        "near_duplicate",
        "inconsistent",
        "output_format",
        "label_casing",
    }
    assert left <= {"balance", "too_long"}  # fixing cannot add rows of a rare label
    load_task(out / "task.yaml")  # and `adaptwise run` accepts it

    reasons = {d["reason"].split(":")[0] for d in summary.dropped}
    assert {"unreadable", "duplicate", "near duplicate", "leakage", "near leakage"} <= reasons
    assert "inconsistent" in reasons
    assert any(c["to"] == "billing" and c["from"] == "Billing" for c in summary.changed)
    fix_json = json.loads((out / "fix.json").read_text())
    assert fix_json["kept"] == summary.kept and len(fix_json["dropped"]) == len(summary.dropped)
    assert summary.kept["eval"] == 14  # eval rows are never dropped for leakage


def test_resplit_is_seeded_and_stratified(planted, tmp_path):
    fix_task(planted / "task.yaml", tmp_path / "a", eval_fraction=0.25, seed=3)
    fix_task(planted / "task.yaml", tmp_path / "b", eval_fraction=0.25, seed=3)
    fix_task(planted / "task.yaml", tmp_path / "c", eval_fraction=0.25, seed=4)
    a, b, c = ((tmp_path / x / "eval.jsonl").read_text() for x in "abc")
    assert a == b and a != c
    task = load_task(tmp_path / "a/task.yaml")
    share = sum(r.output == "billing" for r in task.eval) / len(task.eval)
    assert 0.4 < share < 0.75  # billing is 58% of the pool; the split keeps its share
    assert not check_task(tmp_path / "a/task.yaml", measure_tokens=False).blocking


def test_refuses_to_write_into_the_input_or_a_non_empty_folder(planted, tmp_path):
    before = digest(planted)
    for out in (planted, tmp_path):  # the input's folder, or one that contains it
        with pytest.raises(TaskError, match="holds the input"):
            fix_task(planted / "task.yaml", out, overwrite=True)
    assert digest(planted) == before
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "adaptwise",
            "data",
            "fix",
            str(planted / "task.yaml"),
            "--out",
            str(busy),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "not empty" in proc.stderr
    assert [p.name for p in busy.iterdir()] == ["keep.txt"]
    assert not list(tmp_path.glob(".busy.*"))  # no temporary folder left behind


def test_qa_fix_keeps_corpus_reference(tmp_path):
    out = tmp_path / "qa"
    fix_task(ROOT / "demo/helpdesk-qa/task.yaml", out)
    task = load_task(out / "task.yaml")
    assert task.corpus.resolve() == (ROOT / "demo/helpdesk-qa/corpus").resolve()
    assert len(task.train) == 120 and len(task.eval) == 88


def test_fix_keeps_rows_that_only_share_a_schema(tmp_path):
    """The SQL rows share one long schema: only the paraphrase with the same query leaks."""
    folder = tmp_path / "sql"
    folder.mkdir()
    path = write_task(folder, "generation", SQL_TRAIN, [*SQL_EVAL, SQL_PARAPHRASE])
    summary = fix_task(path, tmp_path / "fixed")
    assert summary.kept == {"train": len(SQL_TRAIN) - 1, "eval": len(SQL_EVAL) + 1}
    assert summary.dropped == [
        {"where": f"{folder}/train.jsonl:1", "reason": f"near leakage: like {folder}/eval.jsonl:4"}
    ]
    assert not check_task(tmp_path / "fixed/task.yaml", measure_tokens=False).blocking
