"""report.md and report.html from synthetic run folders (no model), costs, and `adaptwise report`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adaptwise.cli import main
from experiments.errors import AdaptwiseError
from experiments.report import costs
from experiments.report.analysis import analyse
from experiments.report.markdown import render_report
from experiments.report.run_folder import load_run
from experiments.report.write import write_reports

LABELS = ["billing", "shipping", "returns"]


def make_run(
    folder: Path,
    n: int = 40,
    correct: dict[str, list[bool]] | None = None,
    name: str = "support-intents",
    ids: list[str] | None = None,
    with_training: bool = True,
    old_style: bool = False,
) -> Path:
    """A results folder as `adaptwise run` writes it, for a classification task."""
    ids = ids or [f"r{i:03d}" for i in range(n)]
    golds = [LABELS[i % 3] for i in range(len(ids))]
    correct = correct or {
        "zero-shot": [i % 4 == 0 for i in range(len(ids))],  # 0.25
        "few-shot-jaccard": [i % 4 != 3 for i in range(len(ids))],  # 0.75
        "lora": [i % 5 != 0 for i in range(len(ids))],  # 0.8
    }
    methods, records = {}, []
    for m_i, (method, right) in enumerate(correct.items()):
        outputs = [g if ok else LABELS[(LABELS.index(g) + 1) % 3] for g, ok in zip(golds, right)]
        acc = sum(right) / len(right)
        from experiments.metrics import macro_f1

        entry = {
            "description": method,
            "n_eval": len(ids),
            "metrics": {"accuracy": acc, "macro_f1": macro_f1(outputs, golds, LABELS)},
            "model_load_s": 1.0,
            "prepare_s": [0.0, 2.0, 600.0][m_i % 3],
            "inference_s": 0.2 * (m_i + 1) * len(ids),
            "inference_s_per_example": 0.2 * (m_i + 1),
            "prompt_tokens_mean": 70.0 + 140 * (m_i % 2),
            "generated_tokens_mean": 0.0,
            "peak_memory_mb": 1500.0 + 100 * m_i,
            "peak_memory_kind": "process RSS",
        }
        if not old_style:
            entry["latency"] = {"p50_s": 0.18 * (m_i + 1), "p95_s": 0.3 * (m_i + 1), "per": "batch"}
        if method == "lora" and with_training:
            (folder / "lora").mkdir(parents=True, exist_ok=True)
            (folder / "lora" / "loss.csv").write_text(
                "step,epoch,train_loss,val_loss\n1,0.1,2.5,\n2,0.2,2.0,2.1\n3,0.3,1.5,1.8\n"
            )
            entry["training"] = {
                "trainable_params": 4_900_000,
                "total_params": 139_000_000,
                "train_tokens": 24_000,
                "epochs": 1.0,
                "steps": 3,
                "train_wall_s": 590.0,
                "tokens_per_s": 40.0,
                "peak_memory_mb": 5500.0,
                "peak_memory_kind": "process RSS",
                "first_train_loss": 2.5,
                "final_train_loss": 1.5,
                "best_val_loss": 1.8,
                "loss_csv": str(folder / "lora" / "loss.csv"),
                "loss_png": None,
            }
            entry["forgetting"] = {
                "n_questions": 32,
                "accuracy_before": 0.47,
                "accuracy_after": 0.5,
                "change": 0.03,
                "answers_changed": 4,
            }
        methods[method] = entry
        for row_id, out, gold, ok in zip(ids, outputs, golds, right):
            rec = {"method": method, "id": row_id, "prompt": "...", "output": out}
            rec.update({"gold": gold, "correct": ok})
            if not old_style:
                rec["scores"] = {"accuracy": float(ok)}
            records.append(rec)
    results = {
        "version": 1,
        "task": {
            "name": name,
            "kind": "classification",
            "path": "task.yaml",
            "metric": "accuracy",
            "labels": LABELS,
            "n_train": 360,
            "n_eval": len(ids),
            "n_eval_total": len(ids),
            "eval_fingerprint": "x",
        },
        "methods": methods,
        "options": {"seed": 0, "k": 4, "model": "test"},
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results))
    (folder / "predictions.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return folder


def make_qa_run(folder: Path, n: int = 12) -> Path:
    """A QA run with a rag method whose records carry retrieved passages."""
    from experiments.metrics import row_values, score

    ids = [f"q{i}" for i in range(n)]
    methods = {}
    records = []
    for method, hits in (("zero-shot", 0), ("rag", n // 2)):
        outputs = ["Matter 2.1" if i < hits else "Matter 3" for i in range(n)]
        for row_id, output in zip(ids, outputs):
            scores, ok = row_values("qa", "exact_match", output, "Matter 2.1")
            rec = {
                "method": method,
                "id": row_id,
                "prompt": "...",
                "output": output,
                "gold": "Matter 2.1",
                "correct": ok,
                "scores": scores,
            }
            if method == "rag":
                i = ids.index(row_id)
                rec["retrieved"] = [
                    {"id": f"doc{i}#0", "doc": f"doc{i}", "score": 0.9},
                    {"id": f"doc{i + 1}#2", "doc": f"doc{i + 1}", "score": 0.5},
                ]
            records.append(rec)
        methods[method] = {
            "n_eval": n,
            "metrics": score("qa", outputs, ["Matter 2.1"] * n),
            "prepare_s": 0.0 if method == "zero-shot" else 12.0,
            "inference_s_per_example": 0.4 if method == "zero-shot" else 0.9,
            "prompt_tokens_mean": 44.0 if method == "zero-shot" else 350.0,
            "generated_tokens_mean": 8.0,
            "peak_memory_mb": 1400.0,
            "peak_memory_kind": "process RSS",
            "latency": {"p50_s": 0.5, "p95_s": 1.0, "per": "batch"},
        }
    methods["rag"]["retrieval"] = {"recall@1": 0.8, "recall@2": 0.95, "mrr@10": 0.9}
    methods["rag"]["grounding"] = {"answer_tokens_in_retrieved": 0.7, "answer_tokens_in_gold": 0.75}
    results = {
        "version": 1,
        "task": {
            "name": "helpdesk-qa",
            "kind": "qa",
            "metric": "exact_match",
            "labels": [],
            "n_train": 120,
            "n_eval": n,
            "has_corpus": True,
        },
        "methods": methods,
        "options": {"seed": 0},
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results))
    (folder / "predictions.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return folder


def test_report_md_has_cis_tests_costs_and_verdict(tmp_path):
    run = make_run(tmp_path / "run")
    results, records = load_run(run)
    analysis = analyse(results, records)
    report = render_report(results, analysis)
    for name in results["methods"]:
        assert f"| {name} |" in report
    assert "accuracy [95% CI]" in report and "0.250 [" in report
    assert "## Significance" in report and "McNemar" in report
    assert "## Quality vs cost" in report and "Pareto front" in report
    assert "## Verdict" in report and "Quality: lora" in report
    assert "## Training" in report
    # few-shot-jaccard (0.75) vs lora (0.8) cannot be told apart on 40 rows
    test = analysis["tests"]["few-shot-jaccard"]["best"]
    assert test["against"] == "lora" and not test["significant"]
    assert test["rows_needed"] > 40
    assert "eval rows would resolve" in report
    # lora vs zero-shot: 0.8 vs 0.25 is significant
    assert analysis["tests"]["lora"]["zero-shot"]["significant"]
    assert analysis["winners"]["cost"] == "few-shot-jaccard"  # cheaper, not significantly worse
    # per 1k queries at 0.10 / CPU hour: zero-shot 0.2 s -> 1000 * 0.2 / 3600 * 0.1
    assert analysis["costs"]["zero-shot"]["per_1k_queries"] == pytest.approx(0.2 / 36)
    assert analysis["costs"]["lora"]["per_preparation"] == pytest.approx(600 / 3600 * 0.1)
    assert set(analysis["pareto"]) == {"zero-shot", "few-shot-jaccard", "lora"}


def test_reports_are_reproducible_and_atomic(tmp_path):
    run = make_run(tmp_path / "run")
    results, records = load_run(run)
    write_reports(run, results, records)
    first_md, first_html = (run / "report.md").read_text(), (run / "report.html").read_text()
    write_reports(run, results, records)
    assert (run / "report.md").read_text() == first_md
    assert (run / "report.html").read_text() == first_html
    assert not list(run.glob(".*.tmp"))


def test_older_results_render_with_na(tmp_path):
    run = make_run(tmp_path / "run", old_style=True, with_training=False)
    results, records = load_run(run)
    for entry in results["methods"].values():
        del entry["prepare_s"], entry["peak_memory_kind"]
    report = render_report(results, analyse(results, records))
    assert "n/a / n/a" in report  # no latency percentiles recorded
    assert "n/a" in report
    # no predictions at all: no CIs, still a table
    report = render_report(results)
    assert "| zero-shot | 0.250 |" in report


def test_qa_report_lists_retrieved_passages(tmp_path):
    run = make_qa_run(tmp_path / "qa")
    results, records = load_run(run)
    analysis = analyse(results, records)
    matrix = analysis["matrix"]
    assert matrix[0]["cells"]["rag"]["retrieved"] == ["doc0#0", "doc1#2"]
    assert matrix[0]["cells"]["zero-shot"]["retrieved"] is None
    assert sum(r["disagree"] for r in matrix) == 6
    report = render_report(results, analysis)
    assert "## Retrieval" in report
    assert analysis["verdict"]["answers"]["external_knowledge"] == "yes"
    assert "rag" in analysis["verdict"]["ladder"]


def test_prices_from_results_and_overrides(tmp_path):
    run = make_run(tmp_path / "run")
    results, _ = load_run(run)
    results["costs"] = {"cpu_hour": 1.0, "prompt_per_1k_tokens": 0.5}
    prices = costs.prices_for(results, {"cpu_hour": 2.0})
    assert prices["cpu_hour"] == 2.0 and prices["prompt_per_1k_tokens"] == 0.5
    c = costs.method_costs(results["methods"]["zero-shot"], prices)
    # 1000 * 0.2 s / 3600 * 2.0 + 70 tokens * 0.5 per 1k tokens * 1000 queries / 1000
    assert c["per_1k_queries"] == pytest.approx(0.2 / 3600 * 2000 + 35.0)
    with pytest.raises(AdaptwiseError, match="unknown costs key 'gpu'"):
        costs.parse_prices({"gpu": 1})
    with pytest.raises(AdaptwiseError, match="cpu_hour must be a number"):
        costs.parse_prices({"cpu_hour": "cheap"})


def test_task_costs_section_is_accepted(tmp_path):
    from experiments.task import load_task

    (tmp_path / "train.jsonl").write_text('{"input": "a", "output": "x"}\n')
    (tmp_path / "eval.jsonl").write_text('{"input": "b", "output": "x"}\n')
    (tmp_path / "task.yaml").write_text(
        "name: t\nkind: qa\ntrain: train.jsonl\neval: eval.jsonl\n"
        "costs:\n  gpu_hour: 3.5\n  currency: EUR\n"
    )
    task = load_task(tmp_path / "task.yaml")
    assert costs.parse_prices(task.settings["costs"]) == {"gpu_hour": 3.5, "currency": "EUR"}


def test_batch_clock_records_batch_latency():
    from experiments.run.runner import _BatchClock

    seen = []
    clock = _BatchClock(seen.append)
    clock(4)
    clock(0)
    clock(2)
    assert seen == [4, 0, 2] and len(clock.samples) == 6
    summary = clock.summary()
    assert summary["per"] == "batch" and summary["p95_s"] >= summary["p50_s"] >= 0
    assert _BatchClock(print).summary() is None


def test_report_command_rerenders_with_prices(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    assert main(["report", str(run), "--cpu-hour-price", "3.6", "--currency", "EUR"]) == 0
    md = (run / "report.md").read_text()
    assert "EUR / 1k queries" in md
    assert "| zero-shot | 0.250 [" in md and "| 0.2000 |" in md  # 1000 * 0.2 / 3600 * 3.6
    html = (run / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "data:image/svg+xml;base64," in html
    assert "report.html" in capsys.readouterr().out


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: p / "missing", "no such folder"),
        (lambda p: p, "not an adaptwise run folder"),
        (lambda p: (p / "results.json").write_text("{}") and p, "not an adaptwise results.json"),
    ],
)
def test_report_command_bad_input(tmp_path, capsys, setup, message):
    folder = setup(tmp_path)
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_report_command_rejects_bad_price(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    assert main(["report", str(run), "--gpu-hour-price", "-1"]) == 2
    assert "gpu_hour must be a number of 0 or more" in capsys.readouterr().err


def test_advisor_reads_results_and_judges_variants():
    from advisor.recommend import recommend
    from advisor.verdict import answers_from_results, verdict

    results = {
        "task": {"name": "t", "metric": "accuracy", "n_train": 360, "has_corpus": False},
        "methods": {
            "zero-shot": {"metrics": {"accuracy": 0.2}},
            "few-shot-jaccard-k8": {"metrics": {"accuracy": 0.6}},
        },
    }
    answers = answers_from_results(results)
    assert answers.labeled_examples == "50-499" and answers.zero_shot_score == 0.2
    assert answers.external_knowledge == "no"
    rec = recommend(answers)
    assert "lora" in rec.methods  # zero-shot under 0.5: a few hundred examples help a lot
    judged = verdict(rec, results, p_vs_zero={"few-shot-jaccard-k8": 0.01})
    assert judged.holds and "variant of the ladder's few-shot rung" in judged.text
    assert (
        "significant (p = 0.01)" in judged.text
        and "Next rung not yet measured: lora" in judged.text
    )
    judged = verdict(rec, results, p_vs_zero={"few-shot-jaccard-k8": 0.3})
    assert "not significant yet" in judged.text and "held" not in judged.text
    assert judged.holds is None
    # without p-values the text is what the TUI has always shown
    assert "significant" not in verdict(rec, results).text


def test_single_method_and_free_prices(tmp_path):
    run = make_run(tmp_path / "run", n=20, correct={"zero-shot": [True, False] * 10})
    results, records = load_run(run)
    prices = costs.prices_for(results, {"cpu_hour": 0.0})
    analysis = analyse(results, records, prices)
    assert analysis["tests"]["zero-shot"] == {"zero-shot": None, "best": None}
    assert analysis["winners"]["cost"] == "zero-shot"
    report = render_report(results, analysis)
    assert "Nothing to compare yet" in report and "| 0.0000 |" in report


# (case, outputs, golds, collapsed label or None)
COLLAPSES = [
    ("one label for 53 of 60", ["eye"] * 53 + ["ear"] * 7, ["eye"] * 3 + ["ear"] * 57, "eye"),
    ("the majority is the gold majority", ["a"] * 40 + ["b"] * 20, ["a"] * 40 + ["b"] * 20, None),
    ("half, not more", ["a"] * 30 + ["b"] * 30, ["b"] * 60, None),
    (
        "over half but under twice its gold share",
        ["a"] * 40 + ["b"] * 20,
        ["a"] * 25 + ["b"] * 35,
        None,
    ),
    ("too few rows to tell", ["a"] * 9, ["b"] * 9, None),
]


@pytest.mark.parametrize(
    ("outputs", "golds", "label"), [c[1:] for c in COLLAPSES], ids=[c[0] for c in COLLAPSES]
)
def test_label_collapse(outputs, golds, label):
    from experiments.report.collapse import label_collapse

    found = label_collapse(outputs, golds)
    assert (found["label"] if found else None) == label


def test_report_warns_of_label_collapse_and_suggests_calibrate(tmp_path):
    run = make_run(tmp_path / "run")
    results, records = load_run(run)
    for rec in records:
        if rec["method"] == "zero-shot":
            rec["output"] = "billing"
    analysis = analyse(results, records)
    assert set(analysis["collapse"]) == {"zero-shot"}
    report = render_report(results, analysis)
    assert "Label collapse: zero-shot answered 'billing' for 40 of 40 rows (100%; 35%" in report
    assert "`--calibrate`" in report
    results["options"]["calibrate"] = True
    assert "--calibrate already" in render_report(results, analyse(results, records))
