"""Fine-tuning repeated over seeds (issue 27, item 4): what results.json records, the seeds'
band in the reports, the verdict's rule over seeds, and a real `--seeds` run."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from adaptwise.cli import main
from adaptwise.planning.plan import build_plan
from experiments.errors import AdaptwiseError
from experiments.report.analysis import analyse
from experiments.report.markdown import render_report
from experiments.report.run_folder import load_run
from experiments.seeds import seed_name
from tests.test_report import make_run

ROOT = Path(__file__).resolve().parent.parent
INTENTS = ROOT / "demo" / "support-intents" / "task.yaml"

ZERO = [i % 4 == 0 for i in range(40)]  # 0.25
STRONG = [i % 5 != 0 for i in range(40)]  # 0.8


def with_seeds(folder: Path, seeds: dict[int, list[bool]]) -> Path:
    """A constructed run (tests/test_report.py make_run: zero-shot 0.25, lora 0.8 on 40 rows)
    whose lora was trained with seeds 0 (its own rows) and those of `seeds`, each right on the
    rows it marks, recorded as the runner records them."""
    make_run(folder, correct={"zero-shot": ZERO, "lora": STRONG})
    extra = folder.parent / f"{folder.name}-seeds"
    make_run(extra, correct={seed_name("lora", s): right for s, right in seeds.items()})
    results = json.loads((folder / "results.json").read_text())
    others = json.loads((extra / "results.json").read_text())["methods"]
    lora = results["methods"]["lora"]
    lora["seeds"] = [{"seed": 0, "metrics": lora["metrics"]}] + [
        {"seed": s, "metrics": others[seed_name("lora", s)]["metrics"], "predictions": n}
        for s in seeds
        for n in [seed_name("lora", s)]
    ]
    (folder / "results.json").write_text(json.dumps(results))
    with (folder / "predictions.jsonl").open("a") as f:
        f.write((extra / "predictions.jsonl").read_text())
    return folder


def test_band_and_verdict_hold_when_every_seed_leads(tmp_path):
    run = with_seeds(tmp_path / "run", {1: [i % 4 != 0 for i in range(40)], 2: STRONG})
    results, records = load_run(run)
    analysis = analyse(results, records, resamples=500)
    spread = analysis["seeds"]["lora"]
    assert spread["seeds"] == [0, 1, 2] and spread["scores"] == [0.8, 0.75, 0.8]
    assert spread["min"] == 0.75 and spread["sd"] == pytest.approx(0.0288675, abs=1e-6)
    test = analysis["tests"]["lora"]["zero-shot"]
    assert test["significant"] and len(test["seeds"]) == 3
    assert analysis["verdict"]["holds"] is True
    report = render_report(results, analysis)
    assert "## Seeds" in report
    assert "| lora | 3 | 0.783 | 0.029 | 0.750 - 0.800 | 0: 0.800, 1: 0.750, 2: 0.800 |" in report


def test_one_seed_below_the_baseline_withholds_the_verdict(tmp_path):
    weak = [i % 5 == 0 for i in range(40)]  # 0.2: below zero-shot's 0.25
    run = with_seeds(tmp_path / "run", {1: STRONG, 2: weak})
    results, records = load_run(run)
    analysis = analyse(results, records, resamples=500)
    test = analysis["tests"]["lora"]["zero-shot"]
    assert test["p_primary"] < 0.05  # seed 0 alone would have won
    assert not test["significant"] and test["p"] == 1.0  # seed 2 goes the other way
    verdict = analysis["verdict"]
    assert verdict["holds"] is None
    assert "does not hold across its seeds (lora seed 2 vs zero-shot: -0.050" in verdict["text"]
    assert not analysis["winners"]["lead_significant"]
    report = render_report(results, analysis)
    assert "it is not (zero-shot vs lora seed 2: +0.050" in report


def test_a_seed_whose_metrics_are_not_its_rows_is_not_reported(tmp_path):
    run = with_seeds(tmp_path / "run", {1: STRONG})
    results = json.loads((run / "results.json").read_text())
    results["methods"]["lora"]["seeds"][1]["metrics"]["accuracy"] = 0.9
    (run / "results.json").write_text(json.dumps(results))
    with pytest.raises(
        AdaptwiseError, match=r"lora: results.json says accuracy 0.900 .*\(seed 1\)"
    ):
        load_run(run)


def learnable_task(folder: Path) -> Path:
    """A task the tiny random model learns in about 90 steps of full fine-tuning: two words of
    a class and two fillers, warm or cold (40 train rows, 30 eval rows). Halfway through
    learning, whether a seed's model has learned it yet depends on the seed."""
    rng = random.Random(0)
    words = {
        "warm": "red orange yellow fire sun summer desert lava flame heat".split(),
        "cold": "blue ice snow winter frost glacier arctic polar sleet chill".split(),
    }
    fill = "cat table river book lamp road cloud stone bread chair garden train".split()
    seen: set[str] = set()
    folder.mkdir(parents=True)
    for split, n in (("train", 40), ("eval", 30)):
        rows: list[dict] = []
        while len(rows) < n:
            label = ("warm", "cold")[len(rows) % 2]
            picked = rng.sample(words[label], 2) + rng.sample(fill, 2)
            rng.shuffle(picked)
            text = " ".join(picked)
            if text not in seen:
                seen.add(text)
                rows.append({"id": f"{split}-{len(rows)}", "input": text, "output": label})
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "task.yaml").write_text(
        "name: temperature\nkind: classification\ninstruction: Warm or cold?\n"
        "labels: [warm, cold]\ntrain: train.jsonl\neval: eval.jsonl\nmetric: accuracy\n"
    )
    return folder / "task.yaml"


def run_args(model: Path, task: Path, out: Path, *more) -> list[str]:
    steps = ["max_steps=90", "batch_size=4", "max_length=48", "learning_rate=0.005"]
    quick = [*steps, "val_fraction=0", "forgetting_probe=false"]
    args = ["run", task, "--methods", "zero-shot,full-ft", "--model", model, "--seed", 2]
    args += ["--out", out, *[a for s in quick for a in ("--finetune", s)], *more]
    return [str(a) for a in args]


def test_a_real_seed_that_did_not_learn_changes_the_verdict(tiny_model, tmp_path, capsys):
    """Real training over seeds, resumed per seed. Seeds 2 and 3 of the tiny model learn the
    task (0.967 and 0.933 against zero-shot's 0.500, measured) and the report calls full-ft's
    lead significant; seed 4 has not learned it by step 90 (0.500), and adding it withdraws the
    call, naming seed 4. (The advisor's verdict needs a rung of its ladder, few-shot here.)"""
    task, out = learnable_task(tmp_path / "task"), tmp_path / "run"
    assert main(run_args(tiny_model, task, out, "--seeds", "2")) == 0
    results = json.loads((out / "results.json").read_text())
    full = results["methods"]["full-ft"]
    assert [s["seed"] for s in full["seeds"]] == [2, 3]
    assert full["seeds"][0]["metrics"] == full["metrics"]
    assert full["seeds"][1]["predictions"] == "full-ft@seed3"
    assert (out / "full-ft").is_dir() and (out / "full-ft@seed3").is_dir()
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert sum(r["method"] == "full-ft@seed3" for r in records) == 30
    assert "## Seeds" in (out / "report.md").read_text()
    results, records = load_run(out)
    analysis = analyse(results, records, resamples=200)
    scores = analysis["seeds"]["full-ft"]["scores"]
    baseline = results["methods"]["zero-shot"]["metrics"]["accuracy"]
    assert min(scores) > baseline + 0.3, (scores, baseline)  # both seeds learned the task
    assert analysis["tests"]["full-ft"]["zero-shot"]["significant"]
    winners = analysis["winners"]
    assert winners["quality"] == "full-ft" and winners["lead_significant"]

    # A third seed: zero-shot and the two seeds recorded are kept, only seed 4 trains.
    shutil.rmtree(out / "full-ft@seed3")  # a kept seed is not trained again
    capsys.readouterr()
    assert main(run_args(tiny_model, task, out, "--seeds", "3")) == 0
    assert "full-ft: 3 seeds (" in capsys.readouterr().out
    full = json.loads((out / "results.json").read_text())["methods"]["full-ft"]
    assert [s["seed"] for s in full["seeds"]] == [2, 3, 4]
    assert not (out / "full-ft@seed3").exists() and (out / "full-ft@seed4").is_dir()
    assert "| full-ft | 3 |" in (out / "report.md").read_text()
    results, records = load_run(out)
    analysis = analyse(results, records, resamples=200)
    seed4 = analysis["seeds"]["full-ft"]["scores"][2]
    assert seed4 <= baseline + 0.1, (seed4, baseline)  # seed 4 had not learned it (see above)
    test = analysis["tests"]["full-ft"]["zero-shot"]
    assert [s["seed"] for s in test["seeds"]] == [2, 3, 4]
    assert test["p"] == max(s["p_rule"] for s in test["seeds"]) >= test["p_primary"]
    assert test["p_primary"] < 0.05 and not test["significant"]  # seed 2 alone would win
    winners = analysis["winners"]
    assert winners["quality"] == "full-ft" and not winners["lead_significant"]
    report = (out / "report.md").read_text()
    assert "it is not (zero-shot vs full-ft seed 4: +0.000" in report


def test_the_plan_multiplies_training_and_scoring_by_the_seeds():
    from tests.test_plan import BIG, RATES, SHAPE, STATS, with_finetune

    methods = ["zero-shot", "lora", "rag+lora"]
    one = {s.method: s for s in build_plan(methods, STATS, SHAPE, BIG, rates=RATES).steps}
    three = build_plan(methods, STATS, SHAPE, BIG, with_finetune(seeds=3), RATES).steps
    three = {s.method: s for s in three}
    assert three["zero-shot"].total_s == one["zero-shot"].total_s  # runs once
    for m in ("lora", "rag+lora"):
        assert three[m].score_s == pytest.approx(3 * one[m].score_s)
    assert three["lora"].prepare_s == pytest.approx(3 * one["lora"].prepare_s)
    assert "trains and scores 3 seeds: 3x the time of one" in three["lora"].notes


def test_bad_seed_counts_are_one_line(tmp_path, capsys):
    from experiments.errors import TaskError
    from finetune.config import build_config

    with pytest.raises(TaskError, match="seeds must be at least 1"):
        build_config("lora", {"seeds": 0}, {}, 0)
    args = ["run", str(INTENTS), "--methods", "lora", "--seeds", "0", "--out", str(tmp_path)]
    assert main(args) == 2
    assert capsys.readouterr().err.strip().endswith("--seeds must be at least 1")


def test_which_methods_train_over_seeds_and_where():
    from experiments.context import RunContext, RunOptions
    from experiments.run.registry import make_method
    from experiments.task import load_task

    ctx = RunContext(load_task(INTENTS), RunOptions(seed=5, seeds=3))
    assert make_method("zero-shot", {"k": 4}).seed_list(ctx) == []  # deterministic: once
    assert make_method("rag", {"k": 4}).seed_list(ctx) == []
    for name, folder in (("lora", "lora"), ("rag+lora", "rag_plus_lora"), ("raft", "raft")):
        method = make_method(name, {"k": 4})
        assert method.seed_list(ctx) == [5, 6, 7]
        other = method.reseeded(6)
        tuned = getattr(other, "finetune", other)
        assert tuned.folder_name == f"{folder}@seed6" and tuned._config(ctx).seed == 6
        if name == "raft":  # the clone trains on its own retrieval's rows
            assert tuned.training_rows.__self__ is other
    task_file = {"finetune": {"seeds": 2, "lora": {"seed": 10}}}
    ctx.task.settings.update(task_file)
    ctx.options.seeds = None  # the task file's seeds, from its own seed
    assert make_method("lora", {"k": 4}).seed_list(ctx) == [10, 11]


def test_a_lead_on_some_seeds_only_is_named_as_seed_dependent():
    from experiments.report.seed_spread import unsteady

    def pair(seed, diff, p):
        return {"seed": seed, "against_seed": None, "diff": diff, "p": p, "p_rule": p}

    # measured on the demo (docs/finetuning.md): seed 0 p = 0.074, seeds 1 and 2 significant
    test = {"against": "zero-shot", "significant": False, "p_primary": 0.074}
    seeds = [pair(0, 0.15, 0.074), pair(1, 0.225, 0.003), pair(2, 0.188, 0.005)]
    named = unsteady({"lora": {"zero-shot": {**test, "seeds": seeds}}}, "zero-shot")
    assert named == {"lora": "lora seed 0 vs zero-shot: +0.150, p = 0.074"}
    no_seed_leads = [pair(0, 0.15, 0.074), pair(1, 0.1, 0.2)]
    assert unsteady({"lora": {"zero-shot": {**test, "seeds": no_seed_leads}}}, "zero-shot") == {}


def test_the_learning_curve_draws_the_seeds_band(tmp_path):
    from adaptwise.planning.learning_curve import plot_curve, seed_band

    run = with_seeds(tmp_path / "run", {1: [i % 4 != 0 for i in range(40)]})
    band = seed_band(run, "lora", "accuracy")
    assert band["scores"] == [0.8, 0.75] and seed_band(run, "zero-shot", "accuracy") is None
    point = {"method": "lora", "interval": {"estimate": 0.8, "low": 0.7, "high": 0.9}}
    points = [{**point, "n_train": n, "seeds": band} for n in (90, 180)]
    record = {"methods": ["lora"], "points": points, "metric": "accuracy"}
    assert plot_curve(record, tmp_path / "curve.png").stat().st_size > 0
