"""The ladder: stopping on the target's CI lower bound, on the budget, resuming finished rungs;
the record in results.json and both reports; a real climb on the tiny model."""

import json
from pathlib import Path

import pytest

from adaptwise.planning.ladder import Rung, climb, meets, run_ladder
from experiments.report.markdown import render_report


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def fake_runner(outcomes: dict, clock: Clock, ran: list):
    """run_rung that advances the clock by each method's time and returns its interval."""

    def run(method):
        ran.append(method)
        est, low, high, seconds = outcomes[method]
        clock.now += seconds
        return {"interval": {"estimate": est, "low": low, "high": high}, "measured_s": seconds}

    return run


OUTCOMES = {
    "zero-shot": (0.15, 0.05, 0.3, 20),
    "few-shot-jaccard": (0.6, 0.45, 0.75, 60),
    "few-shot-embedding": (0.78, 0.62, 0.9, 70),
    "lora": (0.85, 0.7, 0.95, 1000),
}
LADDER = [Rung("zero-shot", 25), Rung("few-shot-jaccard", 50), Rung("few-shot-embedding", 80)]
LADDER += [Rung("lora", 900)]


def test_meets_uses_the_lower_bound_not_the_estimate():
    assert meets({"estimate": 0.85, "low": 0.8, "high": 0.9}, 0.8)
    assert not meets({"estimate": 0.85, "low": 0.79, "high": 0.9}, 0.8)
    assert not meets(None, 0.5)


def test_stops_at_the_first_rung_whose_lower_bound_meets_the_target():
    clock, ran = Clock(), []
    record = climb(LADDER, "accuracy", 0.6, None, fake_runner(OUTCOMES, clock, ran), clock=clock)
    # few-shot-jaccard's estimate 0.6 equals the target but its lower bound 0.45 does not.
    assert ran == ["zero-shot", "few-shot-jaccard", "few-shot-embedding"]
    assert record["stopped"] == "target" and record["reached"] == "few-shot-embedding"
    statuses = [(r["status"], r["meets_target"]) for r in record["rungs"]]
    assert statuses[:3] == [("run", False), ("run", False), ("run", True)]
    assert record["rungs"][3]["status"] == "not run"
    assert record["rungs"][3]["reason"] == "not run: target met at few-shot-embedding"
    assert "lower bound of 0.620" in record["message"]
    assert record["rungs"][1]["estimate_s"] == 50 and record["rungs"][1]["measured_s"] == 60


def test_budget_stops_before_a_rung_estimated_past_the_time_left():
    clock, ran = Clock(), []
    record = climb(LADDER, "accuracy", 0.99, 300, fake_runner(OUTCOMES, clock, ran), clock=clock)
    assert ran == ["zero-shot", "few-shot-jaccard", "few-shot-embedding"]
    assert record["stopped"] == "budget" and record["reached"] is None
    lora = record["rungs"][3]
    assert lora["status"] == "skipped" and lora["reason"].startswith("skipped: budget")
    assert "estimated 15 min 00 s" in lora["reason"] and "2 min 30 s left" in lora["reason"]
    assert "No method met accuracy >= 0.99 within the budget" in record["message"]
    assert "few-shot-embedding at 0.780" in record["message"]


def test_budget_stops_when_time_spent_already_exceeds_it():
    clock, ran = Clock(), []
    slow = dict(OUTCOMES, **{"zero-shot": (0.15, 0.05, 0.3, 400)})
    record = climb(LADDER, "accuracy", 0.99, 300, fake_runner(slow, clock, ran), clock=clock)
    assert ran == ["zero-shot"]
    assert record["rungs"][1]["reason"].startswith("skipped: budget (6 min 40 s spent")
    assert [r["status"] for r in record["rungs"][2:]] == ["not run", "not run"]


def test_no_target_runs_the_whole_ladder_and_unrunnable_rungs_are_skipped_with_a_reason():
    clock, ran = Clock(), []
    rungs = [Rung("zero-shot", 25), Rung("qlora", 50, fits=False, fit_change="a GPU of 8 GB")]
    rungs += [Rung("rag", 10, runnable=False)]
    record = climb(rungs, "accuracy", None, None, fake_runner(OUTCOMES, clock, ran), clock=clock)
    assert ran == ["zero-shot"]
    assert record["rungs"][1]["reason"] == "skipped: does not fit in memory (a GPU of 8 GB)"
    assert record["rungs"][2]["reason"] == "skipped: this build cannot run it"
    assert record["stopped"] == "end of ladder"


def test_resume_keeps_finished_rungs_and_they_cost_no_budget():
    clock, ran = Clock(), []
    finished = {
        m: {"interval": dict(zip(("estimate", "low", "high"), OUTCOMES[m][:3])), "measured_s": 9}
        for m in ("zero-shot", "few-shot-jaccard")
    }
    record = climb(
        LADDER, "accuracy", 0.6, 100, fake_runner(OUTCOMES, clock, ran), finished, clock=clock
    )
    assert ran == ["few-shot-embedding"]
    assert [r["status"] for r in record["rungs"][:3]] == ["kept", "kept", "run"]
    assert record["reached"] == "few-shot-embedding"


def test_on_update_sees_each_rung_as_it_runs():
    clock, ran, seen = Clock(), [], []
    climb(
        LADDER[:2],
        "accuracy",
        None,
        None,
        fake_runner(OUTCOMES, clock, ran),
        clock=clock,
        on_update=lambda r: seen.append([x["status"] for x in r["rungs"]]),
    )
    assert ["running", "pending"] in seen and seen[-1] == ["run", "run"]


def test_report_shows_each_rung_with_its_reason_and_estimated_over_measured():
    clock, ran = Clock(), []
    record = climb(LADDER, "accuracy", 0.99, 300, fake_runner(OUTCOMES, clock, ran), clock=clock)
    results = {
        "task": {
            "name": "t",
            "kind": "classification",
            "metric": "accuracy",
            "n_eval": 4,
            "n_train": 8,
        },
        "methods": {},
        "ladder": record,
    }
    text = render_report(results)
    assert "## Ladder" in text
    assert "| few-shot-jaccard | run | 0.600 [0.450, 0.750] | no | 50s / 1m00s (1.20x) |" in text
    assert "| lora | skipped: budget (estimated 15 min 00 s, 2 min 30 s left)" in text
    assert "estimated / measured" in text and "0.80x to 1.20x" in text


@pytest.fixture(scope="module")
def tiny_task():
    from tests.test_finetune import make_task

    return make_task(n_train=12, n_eval=6)


def plan_for(methods, estimates):
    from adaptwise.planning.plan import Plan, Step
    from advisor.machine import Machine

    steps = [
        Step(m, i, True, 0.0, est, 10.0, 1.0, True)
        for i, (m, est) in enumerate(zip(methods, estimates, strict=True), 1)
    ]
    machine = Machine(cpus=2, ram_gb=16.0)
    return Plan(task="tiny", model="tiny", machine=machine, rows_scored=6, steps=steps)


def test_real_climb_writes_the_ladder_into_results_and_reports_and_resumes(
    tiny_model, tiny_task, tmp_path
):
    from adaptwise.planning.targets import Target
    from experiments.context import RunOptions

    options = RunOptions(model=str(tiny_model), seed=0)
    plan = plan_for(["zero-shot", "few-shot-random"], [1.0, 1.0])
    out = tmp_path / "out"
    # A random model cannot reach 0.99: the whole ladder runs.
    record = run_ladder(tiny_task, plan, out, options, Target("accuracy", 0.99))
    assert [r["status"] for r in record["rungs"]] == ["run", "run"]
    stored = json.loads((out / "results.json").read_text())
    assert stored["ladder"]["stopped"] == "end of ladder"
    assert set(stored["methods"]) == {"zero-shot", "few-shot-random"}
    interval = stored["ladder"]["rungs"][0]["interval"]
    assert interval["low"] <= interval["estimate"] <= interval["high"]
    assert "## Ladder" in (out / "report.md").read_text()
    assert 'id="ladder-table"' in (out / "report.html").read_text()
    # Rerun: both rungs are kept, nothing is scored again.
    again = run_ladder(tiny_task, plan, out, options, Target("accuracy", 0.99))
    assert [r["status"] for r in again["rungs"]] == ["kept", "kept"]
    assert json.loads((out / "results.json").read_text())["ladder"]["rungs"][0]["status"] == "kept"
    # Other train rows (the few-shot pool is not the one scored): both rungs run again, as the
    # runner itself would rerun them (experiments/results.py previous_results).
    from dataclasses import replace

    from experiments.results import eval_fingerprint

    retrained = replace(tiny_task, train=tiny_task.train[:6])
    fourth = run_ladder(retrained, plan, out, options, Target("accuracy", 0.99))
    assert [r["status"] for r in fourth["rungs"]] == ["run", "run"]
    stored = json.loads((out / "results.json").read_text())
    assert stored["task"]["train_fingerprint"] == eval_fingerprint(retrained.train)
    # Different options (another seed): the kept results do not match, so the rungs rerun.
    other = RunOptions(model=str(tiny_model), seed=1)
    third = run_ladder(tiny_task, plan, out, other, None, budget_s=0.5)
    assert third["rungs"][0]["status"] == "skipped"
    assert third["stopped"] == "budget"


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--ladder", "--target", "exact_match=0.5"], "--target"),
        (["--ladder", "--budget", "3x"], "--budget"),
        (["--data-fractions", "0,2"], "--data-fractions"),
        (["--sweep", "rank=8"], "--sweep"),
        (["--target", "accuracy=0.8"], "--target needs --ladder"),
        (["--ladder", "--methods", "zero-shot"], "--methods and --ladder"),
        (["--finetune", "rank"], "--finetune 'rank'"),
    ],
)
def test_bad_flag_values_are_one_line_and_exit_2(flags, words, tmp_path, capsys):
    from adaptwise.cli import main

    task = str(Path(__file__).resolve().parent.parent / "demo" / "support-intents" / "task.yaml")
    assert main(["run", task, "--out", str(tmp_path / "o"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err
    assert not (tmp_path / "o").exists()
