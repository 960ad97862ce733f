"""Stored results are trusted only when their predictions give them (issue 24): a method kept from
an earlier run, resumed by a climb, shown by `report`, `report DIR1 DIR2 --out` or `compare` has
metrics equal to the runner's metric functions on its rows of predictions.jsonl, one row per eval
row, and finite numbers. An edited metric, a deleted row, an invented method or a NaN is run
again by `run` (one line says why) and refused by the reports (one line naming the file and the
method, exit status 2). A run whose every method failed exits 1, and cannot be combined.

The run folders are real runs of the tiny model (tests/conftest.py) on the demo tasks, then
edited as a user would edit them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import test_bad_input
from test_bad_input import one_line

from adaptwise.cli import main
from experiments.metrics import score

ROOT = Path(__file__).resolve().parent.parent
INTENTS = ROOT / "demo" / "support-intents" / "task.yaml"
HELPDESK = ROOT / "demo" / "helpdesk-qa" / "task.yaml"
METHODS = "zero-shot,few-shot-random"


def strict(path: Path) -> dict:
    """results.json as strict JSON: NaN or Infinity is an error."""

    def refuse(constant: str):
        raise ValueError(f"{path}: {constant} is not JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def records(folder: Path) -> list[dict]:
    lines = (folder / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def given(folder: Path, method: str, field: str = "output") -> dict[str, float]:
    """The metrics that `method`'s rows in predictions.jsonl give."""
    rows = [r for r in records(folder) if r["method"] == method]
    task = strict(folder / "results.json")["task"]
    return score(task["kind"], [r[field] for r in rows], [r["gold"] for r in rows], task["labels"])


def digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def edit_results(folder: Path, change) -> None:
    """Change results.json as a hand edit would (json.dumps writes a NaN as NaN)."""
    path = folder / "results.json"
    results = json.loads(path.read_text(encoding="utf-8"))
    change(results)
    path.write_text(json.dumps(results, indent=2), encoding="utf-8")


def edit_records(folder: Path, change) -> None:
    rows = change(records(folder))
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    (folder / "predictions.jsonl").write_text(text, encoding="utf-8")


cli = test_bad_input.cli  # the CLI in-process, from tmp_path: code, stdout, stderr


def said(outcome) -> str:
    """stdout and stderr of a command, with rich's line wrapping undone."""
    return " ".join((outcome.stdout + "\n" + outcome.stderr).split())


def run_args(model: Path, out: Path, task: Path = INTENTS, methods: str = METHODS) -> list:
    """The command every run of a folder repeats: the same task, rows and options."""
    more = ["--calibrate"] if task == INTENTS else []  # metrics_raw and metrics_calibrated too
    return ["run", task, "--methods", methods, "--limit", 3, "--model", model, "--out", out, *more]


@pytest.fixture(scope="module")
def template(tiny_model, tmp_path_factory) -> Path:
    """A real run: the tiny model on 3 eval rows of support-intents, calibrated."""
    out = tmp_path_factory.mktemp("template") / "run"
    assert main([str(a) for a in run_args(tiny_model, out)]) == 0
    return out


@pytest.fixture
def run(template, tmp_path) -> Path:
    """A copy of the real run, to edit."""
    return Path(shutil.copytree(template, tmp_path / "run"))


def _nan(results):
    results["methods"]["few-shot-random"]["metrics"]["accuracy"] = float("nan")


def _nan_text(results):
    results["methods"]["few-shot-random"]["metrics"]["accuracy"] = "NaN"


def _accuracy_099(results):
    results["methods"]["few-shot-random"]["metrics"]["accuracy"] = 0.99


def _calibrated(results):
    entry = results["methods"]["few-shot-random"]
    entry["metrics_calibrated"]["macro_f1"] = entry["metrics_calibrated"]["macro_f1"] + 0.25


def _invented(results):
    results["methods"]["magic"] = {**results["methods"]["zero-shot"], "description": "magic"}
    results["methods"]["magic"]["metrics"] = {"accuracy": 1.0, "macro_f1": 1.0}


def _two_rows_deleted(rows):
    mine = [r for r in rows if r["method"] == "few-shot-random"]
    return [r for r in rows if r not in mine[1:]]


def _row_flipped(rows):
    row = next(r for r in rows if r["method"] == "few-shot-random")
    row["correct"] = not row["correct"]
    row["scores"] = {"accuracy": float(row["correct"])}
    return rows


def _row_twice(rows):
    return [*rows, next(r for r in rows if r["method"] == "few-shot-random")]


# (case, results.json edit, predictions.jsonl edit, method, the file named, what follows its
# name in the line, other key words)
DAMAGES = [
    (
        "edited-metric",
        _accuracy_099,
        None,
        "few-shot-random",
        "results.json",
        "says accuracy 0.990 but its 3 predictions give",
        (),
    ),
    (
        "edited-calibrated-metric",
        _calibrated,
        None,
        "few-shot-random",
        "results.json",
        "says macro_f1 (calibrated)",
        ("but its 3 predictions give",),
    ),
    ("nan", _nan, None, "few-shot-random", "results.json", "says accuracy NaN, not a number", ()),
    (
        "nan-text",
        _nan_text,
        None,
        "few-shot-random",
        "results.json",
        'says accuracy "NaN", not a number',
        (),
    ),
    (
        "rows-deleted",
        None,
        _two_rows_deleted,
        "few-shot-random",
        "predictions.jsonl",
        "has 1 of its 3 eval rows",
        (),
    ),
    (
        "row-twice",
        None,
        _row_twice,
        "few-shot-random",
        "predictions.jsonl",
        "has its row",
        ("twice",),
    ),
    (
        "row-flipped",
        None,
        _row_flipped,
        "few-shot-random",
        "predictions.jsonl",
        "says its row",
        ("but its output gives",),
    ),
    ("invented", _invented, None, "magic", "predictions.jsonl", "has none of its rows", ()),
]


def damage(folder: Path, results_edit, records_edit) -> None:
    if results_edit:
        edit_results(folder, results_edit)
    if records_edit:
        edit_records(folder, records_edit)


FIELDS = ("results_edit", "records_edit", "method", "file", "says", "words")


@pytest.mark.parametrize(FIELDS, [d[1:] for d in DAMAGES], ids=[d[0] for d in DAMAGES])
def test_run_again_redoes_a_result_its_predictions_do_not_give(
    run, cli, tiny_model, results_edit, records_edit, method, file, says, words
):
    damage(run, results_edit, records_edit)
    again = cli(*run_args(tiny_model, run))
    assert again.code == 0, again.stderr
    text = said(again)
    line = text[text.index(f"{method}: {file} {says}") :]
    line = line[: line.index(";") + 20]
    assert all(word in line for word in words), line
    if method == "magic":  # not among --methods: left out, not run
        assert "; left out" in line
        assert "few-shot-random kept from the earlier run" in text
    else:
        assert "; running it again" in line
    assert "zero-shot kept from the earlier run" in said(again)
    assert "Written:" in said(again)
    results = strict(run / "results.json")
    assert list(results["methods"]) == ["zero-shot", "few-shot-random"]
    rows = records(run)
    assert [r["method"] for r in rows].count("few-shot-random") == 3
    assert {r["method"] for r in rows} == {"zero-shot", "few-shot-random"}
    entry = results["methods"]["few-shot-random"]
    assert entry["metrics"] == given(run, "few-shot-random")
    assert entry["metrics_calibrated"] == given(run, "few-shot-random", "output_calibrated")
    assert main(["report", str(run)]) == 0  # what it wrote is what its predictions give


def test_an_edited_metric_is_named_run_again_and_only_a_write_says_written(run, cli, tiny_model):
    """The issue's case: accuracy set to 0.99 by hand, the same command again."""
    truth = given(run, "few-shot-random")["accuracy"]
    edit_results(run, _accuracy_099)
    again = cli(*run_args(tiny_model, run))
    assert again.code == 0, again.stderr
    assert (
        f"few-shot-random: results.json says accuracy 0.990 but its 3 predictions give "
        f"{truth:.3f}; running it again" in said(again)
    )
    assert "Written:" in said(again)
    # The same command once more: everything kept, nothing written, and it says so.
    before = digest(run)
    same = cli(*run_args(tiny_model, run))
    assert same.code == 0, same.stderr
    assert all(f"{m} kept from the earlier run" in said(same) for m in METHODS.split(","))
    assert "Written:" not in said(same) and "Nothing written" in said(same)
    assert digest(run) == before


@pytest.mark.parametrize(FIELDS, [d[1:] for d in DAMAGES], ids=[d[0] for d in DAMAGES])
def test_reports_refuse_a_result_its_predictions_do_not_give(
    run, template, cli, tmp_path, results_edit, records_edit, method, file, says, words
):
    damage(run, results_edit, records_edit)
    before = digest(run)
    named = f"{run / file}: {method}: {file} {says}"
    refused = cli("report", run)
    one_line(refused, named, *words)
    assert "TypeError" not in refused.stderr
    assert digest(run) == before  # no report was rewritten
    both = tmp_path / "both"
    for dirs in ((template, run), (run, template)):  # combined: either place
        one_line(cli("report", *dirs, "--out", both), named, *words)
        assert not both.exists()
    one_line(cli("compare", template, run), named, *words)
    assert digest(run) == before


def test_real_runs_are_kept_reported_and_strict_json(run, cli, tiny_model, tmp_path):
    """Nothing is doubted in what the runner wrote: classification (calibrated) and QA."""
    qa = tmp_path / "qa"
    first = cli(*run_args(tiny_model, qa, HELPDESK))
    assert first.code == 0, first.stderr
    for folder, task in ((run, INTENTS), (qa, HELPDESK)):
        again = cli(*run_args(tiny_model, folder, task))
        assert again.code == 0, again.stderr
        assert all(f"{m} kept from the earlier run" in said(again) for m in METHODS.split(","))
        assert "Nothing written" in said(again) and "running it again" not in said(again)
        assert cli("report", folder).code == 0
        strict(folder / "results.json")
    both = tmp_path / "both"
    assert cli("report", run, shutil.copytree(run, tmp_path / "run2"), "--out", both).code == 0
    strict(both / "results.json")
    assert cli("report", both).code == 0  # a combined folder is checked and passes too


def test_a_combined_folder_that_was_edited_is_refused(run, template, cli, tmp_path):
    both = tmp_path / "both"
    assert cli("report", template, run, "--out", both).code == 0
    combined = strict(both / "results.json")
    name = next(n for n in combined["methods"] if n.startswith("few-shot-random"))
    edit_results(both, lambda r: r["methods"][name]["metrics"].update(accuracy=0.99))
    one_line(cli("report", both), f"{both / 'results.json'}: {name}: ", "combine its runs again")


def test_a_climb_does_not_resume_from_an_edited_result(run, tiny_model):
    """The ladder, sweeps and learning curves resume from finished_methods: the same check."""
    from adaptwise.planning.stored import finished_methods
    from experiments.context import RunOptions
    from experiments.report.run_folder import load_run
    from experiments.results import options_record
    from experiments.task import load_task

    task = load_task(INTENTS)
    record = options_record(RunOptions(model=str(tiny_model), limit=3, calibrate=True))
    assert finished_methods(run, task, task.eval[:3], record) == {"zero-shot", "few-shot-random"}
    edit_results(run, _accuracy_099)
    lines: list[str] = []
    done = finished_methods(run, task, task.eval[:3], record, log=lines.append)
    assert done == {"zero-shot"}
    assert len(lines) == 1 and lines[0].startswith("few-shot-random: results.json says accuracy")
    assert "not kept" in lines[0]
    results, _ = load_run(run)  # taken out of the folder's files, so its reports pass
    assert list(results["methods"]) == ["zero-shot"]
    assert strict(run / "results.json")["options"]["calibrate"] is True


def _fit_nothing(model: Path, out: Path, methods: str = "lora,full-ft") -> list:
    """Fine-tuning with a memory budget nothing fits: each method fails, and is recorded."""
    budget = ["--finetune", "fit_memory_gb=0.001", "--finetune", "max_steps=1"]
    return [*run_args(model, out, methods=methods), *budget]


def test_a_run_whose_every_method_failed_exits_1_and_cannot_be_combined(
    template, cli, tiny_model, tmp_path
):
    failed = tmp_path / "failed"
    outcome = cli(*_fit_nothing(tiny_model, failed))
    assert outcome.code == 1, outcome.stderr
    errors = [line for line in outcome.stderr.splitlines() if line.startswith("adaptwise: error:")]
    assert len(errors) == 1 and "every method failed (lora, full-ft)" in errors[0], outcome.stderr
    assert str(failed / "results.json") in errors[0]
    results = strict(failed / "results.json")
    assert results["methods"] == {} and set(results["failed"]) == {"lora", "full-ft"}
    both = tmp_path / "both"
    for dirs in ((template, failed), (failed, template)):
        one_line(
            cli("report", *dirs, "--out", both),
            f"{failed}: that run scored nothing",
            "every method failed (lora, full-ft)",
        )
        assert not both.exists()


def test_a_failure_next_to_a_scored_or_kept_method_exits_0(cli, tiny_model, tmp_path):
    out = tmp_path / "out"
    args = _fit_nothing(tiny_model, out, "zero-shot,lora")
    for kept in (False, True):  # zero-shot scored, then kept; lora fails both times
        outcome = cli(*args)
        assert outcome.code == 0, outcome.stderr
        assert ("zero-shot kept from the earlier run" in said(outcome)) is kept
        assert "lora: out of memory" in said(outcome) and "adaptwise: error" not in outcome.stderr
        results = strict(out / "results.json")
        assert list(results["methods"]) == ["zero-shot"] and list(results["failed"]) == ["lora"]


def test_the_demo_exits_1_when_a_task_scored_nothing(cli, tiny_model, tmp_path, monkeypatch):
    """Every request refused (a served model's error after its retries), for both demo tasks."""
    from experiments.api_model import ApiRequestFailed

    def refused(ctx, method, rows, progress):
        raise ApiRequestFailed(f"{method.name}: HTTP 503 after 3 retries: overloaded")

    monkeypatch.setattr("experiments.run.runner.run_method", refused)
    args = ["demo", "--methods", "zero-shot", "--limit", 2, "--model", tiny_model]
    outcome = cli(*args, "--out", tmp_path / "demo")
    assert outcome.code == 1, outcome.stderr
    errors = [line for line in outcome.stderr.splitlines() if line.startswith("adaptwise: error")]
    assert len(errors) == 2 and all("every method failed (zero-shot)" in e for e in errors)
    for task in ("support-intents", "helpdesk-qa"):
        assert strict(tmp_path / "demo" / task / "results.json")["failed"]["zero-shot"]


def test_of_several_processes_only_the_first_says_every_method_failed(
    tmp_path, monkeypatch, capsys
):
    """Under --devices N (torchrun) every process ends in show_run; the first prints the table
    and the error line and gives the exit status, the others say nothing and exit 0 (a worker
    exiting 1 first could have torchrun stop the first before it has printed)."""
    from adaptwise.running import show_run

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    outcome = {"kept": [], "scored": [], "failed": ["lora"], "written": True}
    assert show_run(tmp_path, outcome) == 0  # no results.json is read either
    assert capsys.readouterr() == ("", "")


def test_results_json_is_strict_json(tmp_path):
    """A number that is not finite (a diverged loss) is written as null, never as NaN."""
    from experiments.run_files import results_text

    text = results_text({"methods": {"lora": {"training": {"final_train_loss": float("nan")}}}})
    loaded = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} written"))
    assert loaded["methods"]["lora"]["training"]["final_train_loss"] is None
    assert json.loads(results_text({"x": [float("inf"), 1.5]})) == {"x": [None, 1.5]}
