"""Sweeps: parsing the grid, ranking on validation loss only (never eval), the budget cap,
resuming finished trials, and a real 2x1 sweep on the tiny model whose winner is scored once."""

import json

import pytest

from adaptwise.planning.sweep import expand, parse_sweep, rank, run_sweep, trial_name
from experiments.context import RunOptions
from experiments.errors import AdaptwiseError
from tests.test_finetune import make_task


class NoEval(list):
    """An eval set that fails the test when anything reads it."""

    def _fail(self, *a, **k):
        raise AssertionError("the sweep read the eval set")

    __iter__ = __len__ = __getitem__ = __bool__ = _fail


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def fake_trainer(losses: dict, clock: Clock, calls: list, seconds: float = 10):
    def train(method, settings, sweep_dir, name):
        calls.append(name)
        clock.now += seconds
        folder = sweep_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        return {"best_val_loss": losses[name], "final_train_loss": 1.0, "steps": 2}

    return train


GRID = {"rank": ["8", "16"], "learning_rate": ["1e-4", "2e-4"]}
LOSSES = {
    "rank-8_learning_rate-1e-4": 2.0,
    "rank-8_learning_rate-2e-4": 1.5,
    "rank-16_learning_rate-1e-4": 1.2,
    "rank-16_learning_rate-2e-4": 1.7,
}


def test_parse_and_expand_the_grid():
    method, grid = parse_sweep(["lora.rank=8,16", "lora.learning-rate=1e-4,2e-4"])
    assert method == "lora" and grid == GRID
    trials = expand(grid)
    assert trials[0] == {"rank": "8", "learning_rate": "1e-4"} and len(trials) == 4
    assert trial_name(trials[3]) == "rank-16_learning_rate-2e-4"


@pytest.mark.parametrize(
    "items, words",
    [
        (["rank=8,16"], "METHOD.SETTING"),
        (["zero-shot.k=2,4"], "fine-tuning method"),
        (["lora.rank=8", "full-ft.epochs=1,2"], "one method"),
        (["lora.rank=8", "lora.rank=16"], "given twice"),
    ],
)
def test_bad_sweeps_are_one_line_naming_the_flag(items, words):
    with pytest.raises(AdaptwiseError, match="--sweep") as err:
        parse_sweep(items)
    assert words in str(err.value)


def test_bad_setting_values_and_no_validation_split_are_refused(tmp_path):
    task = make_task()
    with pytest.raises(AdaptwiseError, match="--sweep lora: .*rank"):
        run_sweep(task, "lora", {"rank": ["0"]}, tmp_path, RunOptions(), score_winner=False)
    options = RunOptions(extra={"finetune": {"val_fraction": "0"}})
    with pytest.raises(AdaptwiseError, match="validation split"):
        run_sweep(task, "lora", {"rank": ["8"]}, tmp_path, options, score_winner=False)


def test_ranks_on_validation_loss_and_never_reads_eval(tmp_path):
    task = make_task()
    task.eval = NoEval()
    clock, calls = Clock(), []
    record = run_sweep(
        task,
        "lora",
        GRID,
        tmp_path,
        RunOptions(),
        train_trial=fake_trainer(LOSSES, clock, calls),
        clock=clock,
        score_winner=False,
    )
    assert calls == list(LOSSES)
    assert record["winner"] == "rank-16_learning_rate-1e-4"
    assert [t["name"] for t in rank(record["trials"])][:2] == [
        "rank-16_learning_rate-1e-4",
        "rank-8_learning_rate-2e-4",
    ]
    assert record["stopped"] == "grid done"
    stored = json.loads(
        (tmp_path / "sweep" / "rank-8_learning_rate-1e-4" / "trial.json").read_text()
    )
    assert stored["result"]["best_val_loss"] == 2.0


def test_budget_caps_the_grid_and_a_rerun_resumes_the_finished_trials(tmp_path):
    task = make_task()
    clock, calls = Clock(), []
    record = run_sweep(
        task,
        "lora",
        GRID,
        tmp_path,
        RunOptions(),
        budget_s=25,
        train_trial=fake_trainer(LOSSES, clock, calls),
        clock=clock,
        score_winner=False,
    )
    # 10 s per trial: after two (20 s), 10 s expected > 5 s left.
    assert calls == ["rank-8_learning_rate-1e-4", "rank-8_learning_rate-2e-4"]
    assert record["stopped"] == "budget"
    assert record["trials"][2]["reason"].startswith("skipped: budget (expected 10 s, 5 s left)")
    assert record["trials"][3]["status"] == "not run"
    assert record["winner"] == "rank-8_learning_rate-2e-4"
    # Rerun without a budget: the two finished trials are kept, only the other two train.
    calls.clear()
    again = run_sweep(
        task,
        "lora",
        GRID,
        tmp_path,
        RunOptions(),
        train_trial=fake_trainer(LOSSES, clock, calls),
        clock=clock,
        score_winner=False,
    )
    assert calls == ["rank-16_learning_rate-1e-4", "rank-16_learning_rate-2e-4"]
    assert [t["status"] for t in again["trials"]] == ["kept", "kept", "trained", "trained"]
    assert again["winner"] == "rank-16_learning_rate-1e-4"
    # Other fixed settings (a different seed's options are the same; other --finetune are not).
    calls.clear()
    other = RunOptions(extra={"finetune": {"max_steps": "5"}})
    run_sweep(
        task,
        "lora",
        GRID,
        tmp_path,
        other,
        train_trial=fake_trainer(LOSSES, clock, calls),
        clock=clock,
        score_winner=False,
    )
    assert len(calls) == 4


def test_real_sweep_trains_trials_and_scores_only_the_winner_on_eval(tiny_model, tmp_path):
    task = make_task(n_train=20, n_eval=4)
    options = RunOptions(
        model=str(tiny_model),
        extra={
            "finetune": {
                "max_steps": 2,
                "batch_size": 2,
                "max_length": 64,
                "evals_per_epoch": 8,
                "val_fraction": 0.2,
            }
        },
        seeds=2,  # the winner's settings train again with seed 1
    )
    out = tmp_path / "out"
    record = run_sweep(task, "lora", {"learning_rate": ["1e-5", "5e-3"]}, out, options)
    trials = {t["name"]: t for t in record["trials"]}
    assert set(trials) == {"learning_rate-1e-5", "learning_rate-5e-3"}
    losses = {n: t["best_val_loss"] for n, t in trials.items()}
    assert record["winner"] == min(losses, key=losses.get)
    for name in trials:
        folder = out / "sweep" / name
        assert (folder / "training.json").is_file() and (folder / "adapter").is_dir()
        assert json.loads((folder / "training.json").read_text())["settings"]["learning_rate"] in (
            1e-5,
            5e-3,
        )
    results = json.loads((out / "results.json").read_text())
    assert list(results["methods"]) == ["lora"]
    assert results["methods"]["lora"]["sweep_trial"] == record["winner"]
    assert results["methods"]["lora"]["n_eval"] == 4
    assert results["sweep"]["winner"] == record["winner"]
    seeds = results["methods"]["lora"]["seeds"]
    assert [s["seed"] for s in seeds] == [0, 1] and seeds[1]["predictions"] == "lora@seed1"
    rate = trials[record["winner"]]["settings"]["learning_rate"]
    seed1 = json.loads((out / "lora@seed1" / "training.json").read_text())["settings"]
    assert seed1["learning_rate"] == float(rate) and seed1["seed"] == 1
    report = (out / "report.md").read_text()
    assert "## Sweep (lora)" in report and "never used to choose" in report
    assert 'id="sweep-table"' in (out / "report.html").read_text()
    # A rerun keeps every trial and the scored winner.
    again = run_sweep(task, "lora", {"learning_rate": ["1e-5", "5e-3"]}, out, options)
    assert [t["status"] for t in again["trials"]] == ["kept", "kept"]
    assert again["winner_scored"].startswith("kept")


def test_real_trials_never_read_eval(tiny_model, tmp_path):
    task = make_task(n_train=20)
    task.eval = NoEval()
    settings = {"max_steps": 1, "batch_size": 2, "max_length": 64, "val_fraction": 0.2}
    options = RunOptions(model=str(tiny_model), extra={"finetune": settings})
    record = run_sweep(task, "lora", {"rank": ["4"]}, tmp_path, options, score_winner=False)
    assert record["winner"] == "rank-4" and record["trials"][0]["best_val_loss"] > 0
