"""Learning curves: nested seeded subsets, the rising/flat rule, the flag's parsing, and a real
three-point curve on the tiny model (plot, verdict, reports, resuming finished points)."""

import json

import pytest

from adaptwise.planning.learning_curve import (
    classify_gain,
    nested_subsets,
    parse_fractions,
    run_learning_curve,
)
from experiments.context import RunOptions
from experiments.errors import AdaptwiseError
from tests.test_finetune import make_task


def test_parse_fractions():
    assert parse_fractions("1.0, 0.25,0.5") == [0.25, 0.5, 1.0]
    assert parse_fractions("50%,100%") == [0.5, 1.0]
    for bad, words in (("0.5,x", "not a number"), ("0,1", "in (0, 1]"), ("1.0", "two")):
        with pytest.raises(AdaptwiseError, match="--data-fractions") as err:
            parse_fractions(bad)
        assert words in str(err.value)


def test_subsets_are_nested_seeded_and_sized():
    rows = list(range(40))
    subsets = nested_subsets(rows, [0.25, 0.5, 1.0], seed=3)
    sizes = [len(s) for _, s in subsets]
    assert sizes == [10, 20, 40]
    assert subsets[1][1][:10] == subsets[0][1] and sorted(subsets[2][1]) == rows
    assert nested_subsets(rows, [0.25], seed=3)[0][1] == subsets[0][1]
    assert nested_subsets(rows, [0.25], seed=4)[0][1] != subsets[0][1]


def test_rule_rising_flat_falling():
    assert classify_gain(0.15, 0.05, 0.25, 100, 200)["verdict"] == "rising"
    flat = classify_gain(0.02, -0.04, 0.08, 100, 200)
    assert flat["verdict"] == "flat" and "change the method or the model" in flat["message"]
    assert "wide" not in flat["message"]
    assert "wide" in classify_gain(0.05, -0.1, 0.2, 10, 20)["message"]
    assert classify_gain(-0.2, -0.3, -0.1, 100, 200)["verdict"] == "falling"


def test_real_curve_over_three_fractions(tiny_model, tmp_path):
    task = make_task(n_train=24, n_eval=6)
    settings = {"max_steps": 2, "batch_size": 2, "max_length": 64, "val_fraction": 0.25}
    options = RunOptions(model=str(tiny_model), extra={"finetune": settings})
    out = tmp_path / "out"
    methods = ["lora", "few-shot-random"]
    record = run_learning_curve(task, methods, [0.25, 0.5, 1.0], out, options)
    assert [(p["method"], p["n_train"]) for p in record["points"]] == [
        (m, n) for n in (6, 12, 24) for m in methods
    ]
    # Points below the full set live in their own run folders; the full set is the run itself.
    small = json.loads((out / "curve" / "n6" / "results.json").read_text())
    assert small["task"]["n_train"] == 6 and set(small["methods"]) == set(methods)
    main = json.loads((out / "results.json").read_text())
    assert main["task"]["n_train"] == 24 and set(main["methods"]) == set(methods)
    for p in record["points"]:
        i = p["interval"]
        assert i["low"] <= i["estimate"] <= i["high"]
    for m in methods:
        assert main["learning_curve"]["verdicts"][m]["verdict"] in ("rising", "flat", "falling")
    assert (out / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    report = (out / "report.md").read_text()
    assert "## Learning curve" in report and "![learning curve](learning_curve.png)" in report
    html = (out / "report.html").read_text()
    assert 'id="curve-table"' in html and "data:image/png;base64," in html
    # Rerun: every point is kept, nothing trains again.
    mtime = (out / "curve" / "n6" / "lora" / "training.json").stat().st_mtime_ns
    again = run_learning_curve(task, methods, [0.25, 0.5, 1.0], out, options)
    assert all(p["kept"] for p in again["points"])
    assert (out / "curve" / "n6" / "lora" / "training.json").stat().st_mtime_ns == mtime
