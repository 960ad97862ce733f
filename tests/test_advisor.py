"""Each of Meta's questions, flipped on its own from a baseline, moves the recommendation the
way Meta's text says (table-driven)."""

from dataclasses import replace

import pytest

from advisor.questions import QUESTIONS, Answers, dump_answers, load_answers, parse_answers
from advisor.recommend import recommend
from experiments.errors import AdaptwiseError

BASE = Answers()  # narrow task, 50-499 examples, static data, no knowledge need, CPU


def test_baseline_starts_simple_and_rules_out_the_heavy_rungs():
    rec = recommend(BASE)
    assert rec.methods[:2] == ["zero-shot", "few-shot-embedding"]
    assert rec.methods == ["zero-shot", "few-shot-embedding", "lora"]
    ruled = {r.method for r in rec.ruled_out}
    assert {"rag", "full-ft", "continued pre-training", "pre-training"} <= ruled


# (question, new answer, method that must appear or disappear, expected words in a reason)
FLIPS = [
    ("external_knowledge", "yes", "+rag", "knowledge the model lacks"),
    ("external_knowledge", "yes", "-lora", "need is knowledge"),
    ("custom_style", "yes", "+lora", "custom tone"),
    ("hallucination_tolerance", "low", "+rag", "made-up answers"),
    ("labeled_examples", "0-49", "-lora", "fewer than 50"),
    ("data_dynamics", "weekly", "+rag", "RAG before any fine-tuning"),
    ("citations", "yes", "+rag", "cite"),
    ("budget", "low", "+qlora", "low budget"),
    ("task_diversity", "many", "-lora", "diverse tasks"),
]


@pytest.mark.parametrize(("question", "value", "change", "words"), FLIPS)
def test_each_question_moves_the_recommendation(question, value, change, words):
    before = recommend(BASE)
    after = recommend(replace(BASE, **{question: value}), fit=lambda *a: None)
    method = change[1:]
    if change[0] == "+":
        assert method not in before.methods or question == "custom_style"
        assert method in after.methods
    else:
        assert method in before.methods and method not in after.methods
    reasons = " ".join(after.reasons_for(method))
    assert words.lower() in reasons.lower(), reasons


def test_custom_style_is_the_reason_lora_is_recommended():
    before = " ".join(recommend(BASE).reasons_for("lora"))
    after = " ".join(recommend(replace(BASE, custom_style="yes")).reasons_for("lora"))
    assert "custom tone" not in before and "custom tone" in after


def test_expertise_changes_the_warnings():
    knowledge = replace(BASE, external_knowledge="yes", custom_style="yes")
    none = recommend(replace(knowledge, expertise="none")).warnings
    both = recommend(replace(knowledge, expertise="both")).warnings
    assert any("search-system" in w for w in none) and not any("search-system" in w for w in both)
    assert any("fine-tuning experience" in w for w in none)


def test_full_fine_tuning_needs_thousands_of_examples_and_budget():
    rich = replace(
        BASE,
        labeled_examples="5000+",
        budget="high",
        custom_style="yes",
        gpu_memory_gb=24.0,
        model="qwen2.5-0.5b",
    )
    assert "full-ft" in recommend(rich).methods
    assert any("forgetting" in w for w in recommend(rich).warnings)
    for change in ({"labeled_examples": "50-499"}, {"budget": "medium"}, {"gpu_memory_gb": 4.0}):
        rec = recommend(replace(rich, **change))
        assert "full-ft" not in rec.methods
        assert rec.reasons_for("full-ft")


def test_hardware_picks_qlora_when_lora_does_not_fit():
    seven_b = replace(BASE, custom_style="yes", model="llama-2-7b")
    assert "lora" in recommend(replace(seven_b, gpu_memory_gb=24.0)).methods
    small_gpu = recommend(replace(seven_b, gpu_memory_gb=8.0))
    assert "qlora" in small_gpu.methods and "lora" not in small_gpu.methods
    assert "GB" in " ".join(small_gpu.reasons_for("lora"))
    cpu = recommend(seven_b)  # no GPU: neither LoRA on a 7B CPU nor QLoRA without CUDA
    assert not {"lora", "qlora"} & set(cpu.methods)


def test_measured_low_zero_shot_score_brings_in_fine_tuning():
    diverse = replace(BASE, task_diversity="many")
    assert "lora" not in recommend(diverse).methods
    measured = recommend(replace(diverse, zero_shot_score=0.2))
    assert "lora" in measured.methods
    assert "0.20" in " ".join(measured.reasons_for("lora"))


def test_knowledge_and_style_together_suggest_a_hybrid_with_warnings():
    rec = recommend(replace(BASE, external_knowledge="yes", custom_style="yes"))
    assert rec.methods == ["zero-shot", "few-shot-embedding", "rag", "lora", "rag+lora"]
    assert any("does not inject new knowledge" in w for w in rec.warnings)
    assert any("imitation teaches style" in w for w in rec.warnings)


def test_answers_round_trip_through_yaml(tmp_path):
    answers = replace(BASE, external_knowledge="yes", gpu_memory_gb=24.0, budget="low")
    path = tmp_path / "answers.yaml"
    path.write_text(dump_answers(answers))
    assert load_answers(path) == answers
    assert all(f"# {q.text}" in path.read_text() for q in QUESTIONS)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"colour": "blue"}, "unknown question 'colour'"),
        ({"budget": "infinite"}, "budget must be one of low, medium, high"),
        ({"gpu_memory_gb": -1}, "non-negative"),
        ({"zero_shot_score": 40}, "fraction between 0 and 1"),
        (["yes"], "expected a mapping"),
    ],
)
def test_bad_answers_are_one_line_errors(data, message):
    with pytest.raises(AdaptwiseError, match=message):
        parse_answers(data, "answers.yaml")


def test_yaml_booleans_are_accepted_as_yes_no():
    assert parse_answers({"citations": True, "custom_style": False}).citations == "yes"


def run_advise(*args, cwd):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "adaptwise", "advise", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )


def test_advise_cli_json_and_saved_answers(tmp_path):
    import json

    answers = tmp_path / "answers.yaml"
    answers.write_text("external_knowledge: yes\ncitations: yes\ngpu_memory_gb: null\n")
    saved = tmp_path / "saved.yaml"
    proc = run_advise(
        "--answers", str(answers), "--json", "--save-answers", str(saved), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert [r["method"] for r in out["ladder"]][:3] == ["zero-shot", "few-shot-embedding", "rag"]
    assert out["answers"]["citations"] == "yes" and out["answers"]["gpu_memory_gb"] is None
    assert load_answers(saved).external_knowledge == "yes"


def test_advise_reads_the_measured_zero_shot_score(tmp_path):
    import json

    results = tmp_path / "results.json"
    results.write_text(
        json.dumps(
            {
                "task": {"metric": "accuracy"},
                "methods": {"zero-shot": {"metrics": {"accuracy": 0.125}}},
            }
        )
    )
    proc = run_advise("--results", str(results), "--json", "--gpu-gb", "0", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["answers"]["zero_shot_score"] == 0.125
    assert any("0.12" in reason for r in out["ladder"] for reason in r["reasons"])


def test_advise_takes_data_size_and_corpus_from_results_unless_answers_are_given(tmp_path):
    import json

    results = tmp_path / "results.json"
    task = {"metric": "exact_match", "n_train": 120, "has_corpus": True}
    results.write_text(
        json.dumps({"task": task, "methods": {"zero-shot": {"metrics": {"exact_match": 0.0}}}})
    )
    proc = run_advise("--results", str(results), "--json", "--gpu-gb", "0", cwd=tmp_path)
    answers = json.loads(proc.stdout)["answers"]
    assert answers["labeled_examples"] == "50-499" and answers["external_knowledge"] == "yes"
    (tmp_path / "mine.yaml").write_text("labeled_examples: 5000+\nexternal_knowledge: 'no'\n")
    proc = run_advise(
        "--answers",
        "mine.yaml",
        "--results",
        str(results),
        "--json",
        "--gpu-gb",
        "0",
        cwd=tmp_path,
    )
    answers = json.loads(proc.stdout)["answers"]
    assert answers["labeled_examples"] == "5000+" and answers["external_knowledge"] == "no"
    assert answers["zero_shot_score"] == 0.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--answers", "missing.yaml"], "no such answers file"),
        (["--results", "missing.json"], "no such results file"),
    ],
)
def test_advise_bad_input_exits_2_with_one_line(tmp_path, args, message):
    proc = run_advise(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
