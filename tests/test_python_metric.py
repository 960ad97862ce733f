"""Your own metric (issue 27, item 1): `metric: python:FILE.py:FUNCTION` or `metrics: [a, b]` in
task.yaml. The function scores each row of a real run, its values feed the intervals, the paired
tests and the per-example matrix, and results.json records its file's sha256; a broken function
is one line naming the file, the function and the row, exit 2, and the finished methods stay.

The runs are the tiny model (tests/conftest.py) on 3 eval rows of the demo tasks.
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
from experiments.task import load_task

ROOT = Path(__file__).resolve().parent.parent
HELPDESK = ROOT / "demo" / "helpdesk-qa"
ROUTING = ROOT / "demo" / "support-intents" / "task-routing.yaml"
OVERLAP = "python:check.py:overlap"

cli = test_bad_input.cli  # the CLI in-process, from tmp_path: code, stdout, stderr

GOOD = '''
def overlap(prediction, reference, row):
    """Half for the share of the answer's words the prediction has, half when the answer is
    short (the tiny model answers nothing: this way the values still differ by row) and
    `row` is the eval row as written."""
    said, answer = set(prediction.lower().split()), reference.lower().split()
    short = len(answer) <= 2 and row["output"] == reference and row["id"].startswith("qa-")
    return sum(word in said for word in answer) / len(answer) / 2 + (0.5 if short else 0.0)
'''


def words_overlap(prediction: str, reference: str) -> float:
    """GOOD, here: what the tests expect the run to have recorded."""
    said, answer = set(prediction.lower().split()), reference.lower().split()
    return sum(word in said for word in answer) / len(answer) / 2 + 0.5 * (len(answer) <= 2)


def make_task(folder: Path, metric: str, code: str | None = GOOD) -> Path:
    """A copy of helpdesk-qa's rows (no corpus) in `folder` scored by `metric`, with check.py."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("train.jsonl", "eval.jsonl"):
        shutil.copy(HELPDESK / name, folder / name)
    (folder / "task.yaml").write_text(
        f"name: helpdesk\nkind: qa\ntrain: train.jsonl\neval: eval.jsonl\n{metric}\n",
        encoding="utf-8",
    )
    if code is not None:
        (folder / "check.py").write_text(code, encoding="utf-8")
    return folder / "task.yaml"


def run_args(model: Path, task: Path, out: Path, methods: str) -> list:
    return ["run", task, "--methods", methods, "--limit", 3, "--model", model, "--out", out]


def records(out: Path) -> list[dict]:
    lines = (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


def digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def error_line(outcome, *words: str) -> None:
    """Exit status 2 and one error line holding `words`, no traceback; the lines before it are
    the run's own (the task, the output folder) when the error came on a row."""
    assert outcome.code == 2, (outcome.stdout, outcome.stderr)
    errors = [line for line in outcome.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("adaptwise: error: "), outcome.stderr
    assert outcome.stderr.strip().splitlines()[-1] == errors[0]
    assert "Traceback" not in outcome.stderr + outcome.stdout
    for word in words:
        assert word in errors[0], errors[0]


def said(outcome) -> str:
    return " ".join((outcome.stdout + "\n" + outcome.stderr).split())


def test_own_metric_scores_a_run_and_the_report_tests_it(tiny_model, tmp_path, cli):
    """The primary metric is the user's: each row's value is the function's, the method's is
    their mean, report.md gives its interval and the paired bootstrap on it; `report` reads
    the folder back without running the file; a changed file rescores the kept methods."""
    task = make_task(tmp_path / "task", f"metric: {OVERLAP}")
    out = tmp_path / "run"
    first = cli(*run_args(tiny_model, task, out, "zero-shot,few-shot-random"))
    assert first.code == 0, said(first)

    stored = results(out)
    assert stored["task"]["metric"] == OVERLAP
    assert list(stored["task"]["metric_files"]) == [OVERLAP]
    for method in ("zero-shot", "few-shot-random"):
        rows = [r for r in records(out) if r["method"] == method]
        values = [words_overlap(r["output"], r["gold"]) for r in rows]
        assert [r["scores"][OVERLAP] for r in rows] == pytest.approx(values)
        assert [r["correct"] for r in rows] == [v >= 1.0 for v in values]
        metrics = stored["methods"][method]["metrics"]
        assert list(metrics) == ["exact_match", "token_f1", OVERLAP]
        assert metrics[OVERLAP] == pytest.approx(sum(values) / len(values))

    report = (out / "report.md").read_text(encoding="utf-8")
    assert f"{OVERLAP} [95% CI]" in report
    assert f"p-values on {OVERLAP}" in report and "paired bootstrap" in report
    zero = stored["methods"]["zero-shot"]["metrics"][OVERLAP]
    row = next(line for line in report.splitlines() if line.startswith("| zero-shot |"))
    assert row.split(" | ")[3].startswith(f"{zero:.3f} [")  # method, EM, F1, then the user's

    again = cli("report", out)
    assert again.code == 0, said(again)

    (tmp_path / "task" / "check.py").write_text(
        "def overlap(prediction, reference, row):\n    return 1.0\n", encoding="utf-8"
    )
    rescored = cli(*run_args(tiny_model, task, out, "zero-shot,few-shot-random"))
    assert rescored.code == 0, said(rescored)
    assert "scored again, no method is rerun" in said(rescored)
    assert "kept from the earlier run" in said(rescored)
    after = results(out)
    assert after["task"]["metric_files"][OVERLAP] != stored["task"]["metric_files"][OVERLAP]
    assert {m["metrics"][OVERLAP] for m in after["methods"].values()} == {1.0}
    assert all(r["scores"][OVERLAP] == 1.0 and r["correct"] for r in records(out))
    for method in ("zero-shot", "few-shot-random"):  # the built-in metrics are as they were
        assert (
            after["methods"][method]["metrics"]["exact_match"]
            == (stored["methods"][method]["metrics"]["exact_match"])
        )


def test_report_refuses_an_edited_own_metric(tiny_model, tmp_path, cli):
    """`report` runs no code named in a results.json: it checks the stored values of the
    user's metric against each other (numbers from 0 to 1, the method's value their mean)."""
    task = make_task(tmp_path / "task", f"metric: {OVERLAP}")
    out = tmp_path / "run"
    assert cli(*run_args(tiny_model, task, out, "zero-shot")).code == 0
    path = out / "results.json"
    edited = results(out)
    edited["methods"]["zero-shot"]["metrics"][OVERLAP] = 0.99
    path.write_text(json.dumps(edited), encoding="utf-8")
    one_line(cli("report", out), "zero-shot", f"says {OVERLAP} 0.990 but its 3 predictions give")

    edited["methods"]["zero-shot"]["metrics"][OVERLAP] = 1.7
    rows = records(out)
    for row in rows:
        row["scores"][OVERLAP] = 1.7
    path.write_text(json.dumps(edited), encoding="utf-8")
    (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    one_line(cli("report", out), "predictions.jsonl", f"scored {OVERLAP} 1.700, not a number")


def test_metrics_list_first_is_primary(tiny_model, tmp_path, cli):
    """`metrics: [accuracy, python:routing.py:routing_credit]` (demo/support-intents): accuracy
    decides the verdict and its McNemar tests, the routing credit has its own interval
    column; each row's credit is routing.py's."""
    out = tmp_path / "run"
    outcome = cli(*run_args(tiny_model, ROUTING, out, "zero-shot,few-shot-random"))
    assert outcome.code == 0, said(outcome)
    name = "python:routing.py:routing_credit"
    stored = results(out)
    assert stored["task"]["metric"] == "accuracy"
    assert list(stored["methods"]["zero-shot"]["metrics"]) == ["accuracy", "macro_f1", name]

    import importlib.util

    spec = importlib.util.spec_from_file_location("routing", ROUTING.parent / "routing.py")
    routing = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(routing)
    for rec in records(out):
        assert rec["scores"][name] == routing.routing_credit(rec["output"], rec["gold"], {})
        assert rec["correct"] == (rec["output"] == rec["gold"])

    report = (out / "report.md").read_text(encoding="utf-8")
    assert f"{name} [95% CI]" in report
    assert "p-values on accuracy" in report and "McNemar" in report


def breaking(body: str) -> str:
    return f"def overlap(prediction, reference, row):\n    {body}\n"


@pytest.fixture(scope="module")
def kept_run(tiny_model, tmp_path_factory) -> Path:
    """A task folder and a run of zero-shot into it (`run`), scored by GOOD."""
    root = tmp_path_factory.mktemp("kept")
    task = make_task(root / "task", f"metrics: [exact_match, {OVERLAP}]")
    assert main([str(a) for a in run_args(tiny_model, task, root / "run", "zero-shot")]) == 0
    return root


# (case, check.py as the rerun finds it, what the one line says). A changed file rescores the
# kept zero-shot first (experiments/results.py rescore): a function broken on its rows stops
# the run there, before anything is written.
BROKEN = [
    ("no-file", None, ["metric 'python:check.py:overlap'", "no file check.py"]),
    (
        "no-function",
        "def other(prediction, reference, row):\n    return 1.0\n",
        ["check.py: no function overlap in it"],
    ),
    (
        "cannot-import",
        "def overlap(prediction, reference, row)\n    return 1.0\n",
        ["check.py: cannot be imported (SyntaxError"],
    ),
    (
        "raises",
        breaking('raise LookupError("no such table: answers")'),
        ["check.py: overlap() on row qa-eval-001", "raised LookupError: no such table: answers"],
    ),
    (
        "above-one",
        breaking("return 1.7"),
        ["check.py: overlap() on row qa-eval-001", "its value is 1.7, above 1"],
    ),
    (
        "not-a-number",
        breaking('return "yes"'),
        ["check.py: overlap() on row qa-eval-001", "is not a number (str)"],
    ),
]


@pytest.mark.parametrize("case,code,words", BROKEN, ids=[c[0] for c in BROKEN])
def test_a_broken_metric_is_one_line_and_keeps_finished_methods(
    kept_run, tiny_model, tmp_path, cli, case, code, words
):
    """Rerunning with another method after the metric broke: one line naming the file, the
    function (and the row), exit 2, and the finished zero-shot's files exactly as they were."""
    root = Path(shutil.copytree(kept_run, tmp_path / "copy"))
    out, check = root / "run", root / "task" / "check.py"
    check.unlink()
    if code is not None:
        check.write_text(code, encoding="utf-8")
    before = digest(out)

    outcome = cli(
        *run_args(tiny_model, root / "task" / "task.yaml", out, "zero-shot,few-shot-random")
    )
    error_line(outcome, *words)
    assert str(check) in outcome.stderr or str(root / "task") in outcome.stderr
    assert digest(out) == before
    assert list(results(out)["methods"]) == ["zero-shot"]


def test_a_metric_failing_on_a_later_method_keeps_the_first(tiny_model, tmp_path):
    """In one run: the first method is scored and written, the second's answers make the
    function raise; the error names the row and the first method's files stay whole."""
    from experiments.context import RunOptions
    from experiments.methods import Method
    from experiments.prediction import Prediction
    from experiments.run.runner import run_task
    from experiments.user_metric import MetricError

    class Answers(Method):
        def __init__(self, name: str, answer):
            self.name, self.answer, self.description = name, answer, "fixed answers"

        def predict(self, ctx, rows, progress):
            progress(len(rows))
            return [Prediction(r.id, r.text, self.answer(r), r.output, 1, 1) for r in rows]

    code = GOOD + "\n\nfirst = overlap\n\n\ndef overlap(prediction, reference, row):\n"
    code += '    if prediction == "DROP TABLE":\n        raise ValueError("not a query")\n'
    code += "    return first(prediction, reference, row)\n"
    task = load_task(make_task(tmp_path / "task", f"metric: {OVERLAP}", code))
    out = tmp_path / "run"
    right, broken = Answers("right", lambda r: r.output), Answers("broken", lambda r: "DROP TABLE")
    with pytest.raises(MetricError) as error:
        run_task(task, [right, broken], out, RunOptions(model=str(tiny_model), limit=3))
    assert "check.py: overlap() on row qa-eval-001: raised ValueError: not a query" in str(
        error.value
    )
    assert list(results(out)["methods"]) == ["right"]
    golds = [row.output for row in task.eval[:3]]
    mean = sum(words_overlap(gold, gold) for gold in golds) / 3
    assert results(out)["methods"]["right"]["metrics"][OVERLAP] == pytest.approx(mean)
    assert {r["method"] for r in records(out)} == {"right"}


@pytest.mark.parametrize(
    "metric,words",
    [
        ("metric: python:../outside.py:overlap", ["../outside.py is outside the task folder"]),
        ("metric: python:{outside}:overlap", ["is outside the task folder"]),
        ("metric: python:link.py:overlap", ["link.py is outside the task folder"]),
        ("metric: python:check.py", ["write python:FILE.py:FUNCTION"]),
        ("metric: python:check.txt:overlap", ["check.txt is not a .py file"]),
        (f"metric: exact_match\nmetrics: [{OVERLAP}]", ["give metric: (one metric) or metrics:"]),
        ("metrics: exact_match", ["metrics must be a list of metric names"]),
        ("metrics: [rouge_l]", ["metric 'rouge_l' does not fit kind 'qa'", "python:FILE.py"]),
        (
            "metric: python:check.py:two",
            ["two() cannot be called as two(prediction, reference, row)"],
        ),
    ],
)
def test_a_bad_metric_entry_is_refused_when_the_task_loads(tmp_path, cli, metric, words):
    """Refused in one line when the task loads, before any model: a path out of the task
    folder (`..`, absolute, a link to outside), a malformed entry, a bad combination."""
    outside = tmp_path / "outside.py"
    outside.write_text(GOOD, encoding="utf-8")
    task = make_task(
        tmp_path / "task",
        metric.format(outside=outside),
        GOOD + "\n\ndef two(a, b):\n    return 1\n",
    )
    (tmp_path / "task" / "link.py").symlink_to(outside)
    (tmp_path / "task" / "check.txt").write_text(GOOD, encoding="utf-8")
    one_line(cli("run", task, "--methods", "zero-shot", "--model", tmp_path / "no-model"), *words)
    assert not (tmp_path / "runs").exists()


def test_data_fix_copies_the_metric_file(tmp_path):
    """`data fix` writes a task that loads and scores as the original: its metric file too."""
    from experiments.data.fix import fix_task

    task = make_task(tmp_path / "task", f"metrics: [exact_match, {OVERLAP}]")
    fix_task(task, tmp_path / "fixed")
    fixed = load_task(tmp_path / "fixed" / "task.yaml")
    assert list(fixed.user_metrics) == [OVERLAP]
    row = fixed.eval[0]
    assert fixed.user_values(row.id, row.output, row.output) == {
        OVERLAP: words_overlap(row.output, row.output)
    }
