"""`adaptwise compare DIR1 DIR2`: two runs of the same task, paired where the rows match."""

from __future__ import annotations

import json

import pytest
from test_report import make_run

from adaptwise.cli import main


def _compare(capsys, *args) -> tuple[int, str, str]:
    code = main(["compare", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_compare_identical_runs_is_paired_with_p_one(tmp_path, capsys):
    a, b = make_run(tmp_path / "a"), make_run(tmp_path / "b")
    code, out, _ = _compare(capsys, a, b, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["task"] == "support-intents"
    rows = {(r["method"], r["metric"]): r for r in result["rows"]}
    assert len(rows) == 6
    for row in rows.values():
        assert row["paired"] and row["note"] is None
        assert row["test"]["diff"] == 0 and row["test"]["p"] == 1.0
        assert row["first"] == row["second"]
    assert rows[("zero-shot", "accuracy")]["test"]["test"] == "McNemar exact binomial"
    assert rows[("zero-shot", "macro_f1")]["test"]["test"] == "paired bootstrap"


def test_compare_before_after_cleaning_is_paired_by_row_id(tmp_path, capsys):
    n = 60
    before = {"zero-shot": [i % 4 == 0 for i in range(n)]}  # 0.25
    after = {"zero-shot": [i % 4 != 3 for i in range(n)]}  # 0.75
    a = make_run(tmp_path / "a", n=n, correct=before)
    # the same rows in another order: matched by id, not position
    ids = [f"r{i:03d}" for i in range(n)]
    b = make_run(tmp_path / "b", n=n, correct=after, ids=ids)
    lines = (b / "predictions.jsonl").read_text().splitlines()
    (b / "predictions.jsonl").write_text("\n".join(reversed(lines)) + "\n")
    code, out, _ = _compare(capsys, a, b, "--json")
    assert code == 0
    row = next(r for r in json.loads(out)["rows"] if r["metric"] == "accuracy")
    assert row["paired"]
    test = row["test"]
    assert test["diff"] == pytest.approx(0.5)
    assert test["discordant"] == [30, 0]  # rows right after, wrong before / the reverse
    assert test["significant"] and test["test"] == "McNemar chi2 (continuity-corrected)"
    assert row["first"]["estimate"] == pytest.approx(0.25)
    assert row["second"]["estimate"] == pytest.approx(0.75)


def test_compare_different_rows_is_unpaired_with_a_note(tmp_path, capsys):
    a = make_run(tmp_path / "a", n=40)
    b = make_run(tmp_path / "b", ids=[f"x{i}" for i in range(30)])
    code, out, _ = _compare(capsys, a, b)
    assert code == 0
    assert "unpaired bootstrap" in out and "eval rows differ (0 shared of 40 / 30)" in out
    code, out, _ = _compare(capsys, a, b, "--json")
    rows = json.loads(out)["rows"]
    assert all(not r["paired"] and r["test"]["test"] == "unpaired bootstrap" for r in rows)


def test_compare_lists_methods_in_one_run_only(tmp_path, capsys):
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b", correct={"zero-shot": [True] * 40, "rag": [False] * 40})
    code, out, _ = _compare(capsys, a, b)
    assert code == 0
    assert "only in run 1: few-shot-jaccard, lora" in out and "only in run 2: rag" in out


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: (p / "missing", make_run(p / "b")), "missing: no such folder"),
        (lambda p: (p, make_run(p / "b")), "not an adaptwise run folder (no results.json)"),
        (
            lambda p: (make_run(p / "a"), make_run(p / "b", name="other-task")),
            "compare two runs of the same task",
        ),
    ],
)
def test_compare_bad_input_is_one_line_exit_2(tmp_path, capsys, make, message):
    first, second = make(tmp_path)
    code, out, err = _compare(capsys, first, second)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1
