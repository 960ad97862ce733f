"""Hybrid methods: `rag+lora` (a LoRA model answering with retrieved passages) and `raft`
(LoRA trained on prompts that hold retrieved passages: the oracle plus distractors)."""

import json
from pathlib import Path

import pytest

from experiments.context import RunOptions
from experiments.run.registry import make_method
from experiments.run.runner import run_task
from experiments.task import load_task

DOCS = {
    "hub": "The Beacon hub boots in 90 seconds and covers 200 square metres.",
    "refunds": "Refunds reach your card within 5 working days; gift cards are not refunded.",
    "lantern": "The Lantern outdoor light costs 89.90 euros and is rated IP65.",
    "app": "The app shows energy history per room and exports it as CSV.",
}
QUESTIONS = [
    ("How long does the hub take to boot?", "90 seconds", "hub"),
    ("How much is the Lantern?", "89.90 euros", "lantern"),
    ("When do refunds reach my card?", "within 5 working days", "refunds"),
    ("What area does the hub cover?", "200 square metres", "hub"),
    ("Is the Lantern waterproof?", "IP65", "lantern"),
    ("Can gift cards be refunded?", "gift cards are not refunded", "refunds"),
    ("How do I export energy history?", "as CSV", "app"),
    ("What does the app show per room?", "energy history", "app"),
]


def make_task(folder: Path) -> Path:
    corpus = folder / "corpus"
    corpus.mkdir(parents=True)
    for name, text in DOCS.items():
        (corpus / f"{name}.md").write_text(f"# {name}\n\n{text}\n", encoding="utf-8")
    rows = [
        json.dumps({"id": f"q{i}", "input": q, "output": a, "context_ids": [d]})
        for i, (q, a, d) in enumerate(QUESTIONS)
    ]
    (folder / "train.jsonl").write_text("\n".join(rows[:6]) + "\n")
    (folder / "eval.jsonl").write_text("\n".join(rows[6:]) + "\n")
    (folder / "task.yaml").write_text(
        "name: tiny-qa\nkind: qa\ntrain: train.jsonl\neval: eval.jsonl\ncorpus: corpus/\n"
        "rag:\n  chunk_tokens: 32\n  overlap_tokens: 4\n  k: 2\n  shots: 1\n"
        "finetune:\n  val_fraction: 0\n  max_steps: 2\n  rank: 4\n  max_length: 256\n"
        "  forgetting_probe: false\n"
    )
    return folder / "task.yaml"


def test_hybrid_names_resolve():
    assert make_method("rag+lora", {}).name == "rag+lora"
    assert make_method("rag+full-ft", {}).finetune.name == "full-ft"
    raft = make_method("raft", {})
    assert raft.raft and raft.finetune.name == "lora"


def test_raft_rows_hold_the_oracle_for_the_set_share_and_distractors_otherwise(tmp_path):
    task = load_task(make_task(tmp_path / "t"))
    from experiments.context import RunContext

    ctx = RunContext(task, RunOptions())
    method = make_method("raft", {})
    method.rag.prepare(ctx)
    method.finetune.config = type("C", (), {"seed": 0, "raft_oracle_fraction": 1.0})()
    rows = method._raft_rows(task.train)
    for original, row in zip(task.train, rows):
        content = row.messages[0]["content"]
        assert content.startswith("Answer using these passages.")
        assert content.endswith(original.text) and row.output == original.output
        assert original.output.lower() in content.lower()  # the oracle passage is there
    method.finetune.config.raft_oracle_fraction = 0.0
    method._oracle_count = 0
    for original, row in zip(task.train, method._raft_rows(task.train)):
        passages = row.messages[0]["content"].rsplit("Question:", 1)[0]
        assert original.output.lower() not in passages.lower()  # distractors only


@pytest.mark.parametrize("name", ["rag+lora", "raft"])
def test_hybrids_train_and_score_on_a_qa_task(tiny_model, tmp_path, name):
    task = load_task(make_task(tmp_path / "t"))
    results = run_task(task, [name], tmp_path / "out", RunOptions(model=str(tiny_model)))
    entry = results["methods"][name]
    assert entry["n_eval"] == 2 and "exact_match" in entry["metrics"]
    assert entry["training"]["steps"] == 2 and entry["training"]["trainable_params"] > 0
    assert entry["retrieval"]["recall@1"] >= 0.5  # the passages came from the index
    assert entry["hybrid"]["raft"] is (name == "raft")
    folder = tmp_path / "out" / name.replace("+", "_plus_")
    assert (folder / "adapter" / "adapter_config.json").is_file()
    predictions = [
        json.loads(line)
        for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()
    ]
    assert all("Answer using these passages." in p["prompt"] for p in predictions)
    assert all(p["retrieved"] for p in predictions)
