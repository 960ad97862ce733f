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
        ({"has_corpus": "maybe"}, "has_corpus must be true or false"),
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


def test_rag_without_a_corpus_is_ruled_out_with_what_to_add():
    no_corpus = replace(BASE, hallucination_tolerance="low", custom_style="yes", has_corpus=False)
    rec = recommend(no_corpus, fit=lambda *a: None)
    assert "rag" not in rec.methods and "rag+lora" not in rec.methods
    reasons = " ".join(rec.reasons_for("rag"))
    assert "no corpus" in reasons and "`corpus: docs/`" in reasons and "made-up" in reasons
    with_corpus = recommend(replace(no_corpus, has_corpus=True), fit=lambda *a: None)
    assert {"rag", "rag+lora"} <= set(with_corpus.methods)
    assert "rag" in recommend(replace(no_corpus, has_corpus=None)).methods  # no task: unknown


def test_the_task_tells_whether_it_has_a_corpus():
    from types import SimpleNamespace

    from advisor.verdict import answers_from_results, answers_from_task

    task = SimpleNamespace(train=[None] * 60, corpus=None)
    assert answers_from_task(task).has_corpus is False
    assert answers_from_task(SimpleNamespace(train=[], corpus="docs")).has_corpus is True
    results = {"task": {"metric": "accuracy", "has_corpus": False}, "methods": {}}
    assert answers_from_results(results).has_corpus is False
    assert answers_from_results({"task": {}, "methods": {}}).has_corpus is None


def test_plan_marks_rag_unrunnable_on_a_task_without_corpus(tmp_path):
    from adaptwise.planning.planner import not_runnable_reason, runnable
    from experiments.context import RunContext, RunOptions
    from experiments.task import load_task

    (tmp_path / "train.jsonl").write_text('{"input": "a", "output": "x"}\n')
    (tmp_path / "eval.jsonl").write_text('{"input": "b", "output": "x"}\n')
    (tmp_path / "task.yaml").write_text("kind: qa\ntrain: train.jsonl\neval: eval.jsonl\n")
    ctx = RunContext(load_task(tmp_path / "task.yaml"), RunOptions())
    assert runnable("rag") and not runnable("rag", ctx) and runnable("zero-shot", ctx)
    assert "corpus:" in not_runnable_reason("rag-hybrid-k3", ctx)


def test_a_low_zero_shot_score_does_not_override_a_knowledge_need():
    knowledge = replace(BASE, external_knowledge="yes", has_corpus=True, zero_shot_score=0.0)
    rec = recommend(knowledge, fit=lambda *a: None)
    assert rec.methods == ["zero-shot", "few-shot-embedding", "rag"]
    assert "does not change that" in " ".join(rec.reasons_for("lora"))
    rich = replace(knowledge, labeled_examples="5000+", budget="high")
    assert "missing knowledge" in " ".join(
        recommend(rich, fit=lambda *a: None).reasons_for("full-ft")
    )
    # a behaviour need still brings fine-tuning in, next to retrieval
    styled = recommend(replace(knowledge, custom_style="yes"), fit=lambda *a: None)
    assert {"lora", "rag+lora"} <= set(styled.methods)


def _results(scores: dict, **task) -> dict:
    return {
        "task": {"metric": "accuracy", **task},
        "methods": {m: {"metrics": {"accuracy": s}} for m, s in scores.items()},
    }


# (case, scores, p vs zero-shot, p vs best, holds, words in the text, words not in it)
VERDICTS = [
    (
        "only zero-shot",
        {"zero-shot": 0.3},
        None,
        None,
        None,
        ["No verdict yet", "few-shot-embedding"],
        ["Contradicts"],
    ),
    (
        "one method, no baseline",
        {"few-shot-embedding": 0.6},
        None,
        None,
        None,
        ["zero-shot (the baseline) was not measured"],
        ["held"],
    ),
    (
        "only an off-ladder method",
        {"zero-shot": 0.1, "rag": 0.6},
        None,
        None,
        None,
        ["No verdict yet", "few-shot-embedding"],
        ["Contradicts"],
    ),
    (
        "a tie names both scores",
        {"zero-shot": 0.0, "few-shot-embedding": 0.017},
        None,
        None,
        False,
        ["zero-shot (0.000)", "few-shot-embedding, 0.017"],
        ["(0.017) by"],
    ),
    (
        "a significant lead on the ladder",
        {"zero-shot": 0.2, "few-shot-embedding": 0.6},
        {"few-shot-embedding": 0.01},
        None,
        True,
        ["The advice held", "(p = 0.01)"],
        [],
    ),
    (
        "a lead that is not significant",
        {"zero-shot": 0.2, "few-shot-embedding": 0.3},
        {"few-shot-embedding": 0.25},
        None,
        None,
        ["not significant yet (p = 0.25)"],
        ["held"],
    ),
    (
        "off the ladder, not significantly above it",
        {"zero-shot": 0.1, "few-shot-embedding": 0.5, "rag": 0.55},
        {"rag": 0.001},
        {"few-shot-embedding": 0.4},
        None,
        ["not significantly above the ladder's few-shot"],
        ["Contradicts", "held"],
    ),
    (
        "off the ladder, significantly above it",
        {"zero-shot": 0.1, "few-shot-embedding": 0.3, "rag": 0.7},
        {"rag": 0.001},
        {"few-shot-embedding": 0.001},
        False,
        ["Contradicts the advice: rag"],
        [],
    ),
]


@pytest.mark.parametrize(
    ("scores", "p_zero", "p_best", "holds", "words", "absent"),
    [v[1:] for v in VERDICTS],
    ids=[v[0] for v in VERDICTS],
)
def test_verdict_needs_a_baseline_a_rung_and_a_significant_lead(
    scores, p_zero, p_best, holds, words, absent
):
    from advisor.verdict import verdict

    rec = recommend(BASE)  # zero-shot, few-shot-embedding, lora; rag ruled out
    judged = verdict(rec, _results(scores), p_vs_zero=p_zero, p_vs_best=p_best)
    assert judged.holds is holds, judged.text
    for word in words:
        assert word in judged.text
    for word in absent:
        assert word not in judged.text


def test_report_verdict_on_a_knowledge_task_keeps_lora_off_and_names_no_winner():
    """The QA case: zero-shot 0.0, lora best at p = 0.25 against it."""
    from experiments.report.analysis import advisor_verdict

    scores = {"zero-shot": 0.0, "few-shot-embedding": 0.05, "rag": 0.1, "lora": 0.12}
    results = _results(scores, n_train=400, has_corpus=True)
    p_zero = {"few-shot-embedding": 0.5, "rag": 0.06, "lora": 0.25}
    p_best = {"zero-shot": 0.25, "few-shot-embedding": 0.5, "rag": 0.9}
    tests = {
        m: {
            "zero-shot": {"p": p_zero[m]} if m in p_zero else None,
            "best": {"p": p_best[m]} if m in p_best else None,
        }
        for m in scores
    }
    v = advisor_verdict(results, tests)
    assert "lora" not in v["ladder"] and "rag+lora" not in v["ladder"]
    assert v["holds"] is None and "held" not in v["text"] and "p = 0.25" in v["text"]


def test_the_gpus_a_team_has_decide_whether_full_fine_tuning_fits():
    """An 8B full fine-tuning does not fit one 24 GB GPU: with one, it is ruled out and the way
    to fit it is GPUs with FSDP; with 8 (the questionnaire's GPU question), it is planned."""
    base = dict(
        custom_style="yes",
        labeled_examples="5000+",
        budget="high",
        gpu_memory_gb=24,
        model="llama-3-8b",
    )
    one = recommend(Answers(**base))
    assert "full-ft" not in one.methods
    (reason,) = next(r.reasons for r in one.ruled_out if r.method == "full-ft")
    assert reason.endswith(
        "it would fit with: full-ft needs 4 x 24 GB GPUs with FSDP (--devices 4)"
    )
    eight = Answers(**base, gpus="8")
    assert "full-ft" in recommend(eight).methods
    assert eight.hardware() == "8 x GPU 24 GB" and Answers().hardware() == "CPU only"
    assert parse_answers({"gpus": 4}).gpus == "4"
    with pytest.raises(AdaptwiseError, match="gpus must be one of 1, 2, 4, 8, 16"):
        parse_answers({"gpus": 3})


def test_one_advice_after_a_real_out_of_memory():
    """advisor/fit_suggestions.py after_out_of_memory, the advice of the trainer's error and of
    the run's record alike: the least disruptive change the run did not already make."""
    from advisor.fit_suggestions import after_out_of_memory

    off = {"gradient_checkpointing": False, "micro_batch": 4, "seq": 512}
    assert after_out_of_memory("lora", off).startswith("turn on gradient checkpointing")
    on = {**off, "gradient_checkpointing": True}
    assert after_out_of_memory("lora", on).startswith("lower the micro-batch (now 4;")
    one = {**on, "micro_batch": 1}
    assert after_out_of_memory("lora", one) == (
        "shorten sequences (finetune max_length, now 512), or use qlora"
    )
    assert after_out_of_memory("full-ft", one).endswith("or use lora or qlora instead of full-ft")
    assert after_out_of_memory("qlora", {**one, "seq": None}) == (
        "shorten sequences (finetune max_length)"
    )
