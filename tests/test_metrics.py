"""Metrics against values worked out by hand."""

from __future__ import annotations

import pytest

from experiments.errors import TaskError
from experiments.metrics import (
    METRICS_BY_KIND,
    accuracy,
    exact_match,
    macro_f1,
    normalize_answer,
    per_example,
    rouge_l,
    score,
    token_f1,
)


def test_normalize_answer_follows_squad() -> None:
    assert normalize_answer("  The Eiffel-Tower, in  PARIS! ") == "eiffeltower in paris"
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer("theory") == "theory"  # articles only as whole words


def test_exact_match() -> None:
    assert exact_match("The Eiffel Tower!", "eiffel tower") == 1.0
    assert exact_match("Paris", "Paris, France") == 0.0


def test_token_f1_partial_overlap() -> None:
    # "cat sat on mat" vs "cat lay on mat": 3 shared of 4 each, so P = R = F1 = 3/4.
    assert token_f1("the cat sat on the mat", "a cat lay on a mat") == pytest.approx(0.75)
    # Bag of words: "red" is shared once. P = 1/3, R = 1/2, F1 = 2 * (1/6) / (5/6) = 0.4.
    assert token_f1("red red blue", "red green") == pytest.approx(0.4)
    assert token_f1("Paris", "paris.") == 1.0
    assert token_f1("London", "Paris") == 0.0


def test_token_f1_empty_answers() -> None:
    assert token_f1("", "") == 1.0
    assert token_f1("the", "cat") == 0.0  # "the" normalises to nothing
    assert token_f1("cat", "") == 0.0


def test_rouge_l_known_lcs() -> None:
    # LCS "the cat on the mat" = 5 of 6 tokens on each side.
    assert rouge_l("The cat sat on the mat", "the cat was on the mat") == pytest.approx(5 / 6)
    # LCS "a c d" = 3; P = 3/4, R = 3/6, F = 2 * (3/8) / (5/4) = 0.6.
    assert rouge_l("a b c d", "a x c y d z") == pytest.approx(0.6)
    assert rouge_l("b a", "a b") == pytest.approx(0.5)  # order matters, unlike token F1
    assert rouge_l("same words here", "Same words, here.") == 1.0
    assert rouge_l("", "anything") == 0.0
    assert rouge_l("no overlap", "at all") == 0.0


PREDS = ["pos", "neg", "pos", "neu"]
GOLDS = ["pos", "pos", "pos", "neu"]


def test_accuracy() -> None:
    assert accuracy(PREDS, GOLDS) == 0.75
    assert accuracy([" pos\n"], ["pos"]) == 1.0
    assert accuracy([], []) == 0.0
    with pytest.raises(ValueError):
        accuracy(["pos"], [])


def test_macro_f1_by_hand() -> None:
    # F1 = 2TP / (predicted + actual): pos 4/5, neg 0/1, neu 2/2; mean (0.8 + 0 + 1) / 3.
    assert macro_f1(PREDS, GOLDS) == pytest.approx(0.6)
    # A listed label that occurs in neither golds nor preds is left out of the mean.
    assert macro_f1(PREDS, GOLDS, ["pos", "neg", "neu", "other"]) == pytest.approx(0.6)
    assert macro_f1(PREDS, GOLDS, ["pos", "neu"]) == pytest.approx(0.9)
    assert macro_f1(PREDS, GOLDS, []) == pytest.approx(0.6)  # empty list: no restriction


def test_macro_f1_unparsable_prediction_is_a_miss() -> None:
    preds, golds = ["pos", "???"], ["pos", "neg"]
    # pos: 2/2 = 1; neg: never predicted, 0/1 = 0.
    assert macro_f1(preds, golds, ["pos", "neg"]) == pytest.approx(0.5)
    # Without a label list "???" is a class of its own with F1 0.
    assert macro_f1(preds, golds) == pytest.approx(1 / 3)
    assert macro_f1([], []) == 0.0


def test_score_by_kind() -> None:
    assert score("classification", PREDS, GOLDS) == pytest.approx(
        {"accuracy": 0.75, "macro_f1": 0.6}
    )
    qa = score("qa", ["The Eiffel Tower", "red red blue"], ["eiffel tower", "red green"])
    assert qa == pytest.approx({"exact_match": 0.5, "token_f1": 0.7})
    generation = score("generation", ["a b c d", "b a"], ["a x c y d z", "a b"])
    # "b a" and "a b" are one answer once SQuAD normalisation drops the article "a".
    assert generation == pytest.approx({"rouge_l": 0.55, "exact_match": 0.5})
    for kind, names in METRICS_BY_KIND.items():
        assert list(score(kind, [], [])) == names
    with pytest.raises(TaskError):
        score("ranking", [], [])


def test_per_example() -> None:
    assert per_example("classification", "pos", "neg") == {"accuracy": 0.0}
    assert per_example("classification", "pos ", "pos") == {"accuracy": 1.0}
    assert per_example("qa", "red red blue", "red green") == pytest.approx(
        {"exact_match": 0.0, "token_f1": 0.4}
    )
    assert per_example("generation", "b a", "a b") == pytest.approx(
        {"rouge_l": 0.5, "exact_match": 1.0}
    )


def test_a_generation_task_can_be_scored_by_exact_match(tmp_path):
    """Text-to-SQL and other one-right-form outputs: ROUGE-L credits a query that differs in
    one column (0.89 here), exact match does not; `metric: exact_match` makes it the primary."""
    import json

    from experiments.methods import Prediction
    from experiments.metrics import score
    from experiments.run.runner import prediction_record
    from experiments.task import load_task

    gold = "SELECT name FROM singer WHERE age > 30"
    near = "SELECT country FROM singer WHERE age > 30"
    scores = score("generation", [near, gold.lower()], [gold, gold])
    assert scores["exact_match"] == 0.5 and scores["rouge_l"] > 0.9
    rows = [{"id": f"r{i}", "input": f"question {i}", "output": gold} for i in range(2)]
    for name in ("train", "eval"):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "task.yaml").write_text(
        "name: sql\nkind: generation\ntrain: train.jsonl\neval: eval.jsonl\nmetric: exact_match\n"
    )
    task = load_task(tmp_path / "task.yaml")
    assert task.metric == "exact_match"
    record = prediction_record(task, "m", Prediction("r0", "p", near, gold, 1, 1))
    assert not record["correct"] and record["scores"]["rouge_l"] > 0.8
