"""Task loading: the three row formats, label inference, and one clear error per bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.errors import TaskError
from experiments.task import load_task

ROOT = Path(__file__).resolve().parent.parent


def write_task(tmp_path: Path, yaml_text: str, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    task = tmp_path / "task.yaml"
    task.write_text(yaml_text, encoding="utf-8")
    return task


def jsonl(*rows) -> str:
    return "\n".join(json.dumps(r) for r in rows) + "\n"


GOOD_TRAIN = jsonl(
    {"input": "charged twice", "output": "billing"},
    {"instruction": "Route this message", "input": "parcel is late", "output": "shipping"},
    {
        "id": "chat-1",
        "messages": [
            {"role": "user", "content": "where is my box"},
            {"role": "assistant", "content": "shipping"},
        ],
    },
)
GOOD_EVAL = jsonl({"id": "e1", "input": "refund my double payment", "output": "billing"})
BASIC = "kind: classification\ntrain: train.jsonl\neval: eval.jsonl\n"


def test_three_row_formats_and_inferred_labels(tmp_path):
    task = load_task(
        write_task(tmp_path, BASIC, {"train.jsonl": GOOD_TRAIN, "eval.jsonl": GOOD_EVAL})
    )
    assert task.name == "task"
    assert task.labels == ["billing", "shipping"]
    assert task.metric == "accuracy"
    plain, alpaca, chat = task.train
    assert plain.messages == ({"role": "user", "content": "charged twice"},)
    assert alpaca.text == "Route this message\n\nparcel is late"
    assert chat.id == "chat-1" and chat.output == "shipping" and chat.text == "where is my box"
    assert plain.id == "train-1" and plain.source.endswith("train.jsonl:1")
    assert task.eval[0].id == "e1"


def test_chat_row_target_is_last_assistant_message(tmp_path):
    train = jsonl(
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "what is 2+2"},
                {"role": "assistant", "content": "4"},
            ]
        }
    )
    path = write_task(
        tmp_path,
        "kind: qa\ntrain: train.jsonl\neval: train.jsonl\n",
        {"train.jsonl": train},
    )
    row = load_task(path).train[0]
    assert row.output == "4"
    assert [m["role"] for m in row.messages] == ["system", "user", "assistant", "user"]
    assert row.text == "hi\nwhat is 2+2"


def test_qa_context_ids_checked_against_corpus(tmp_path):
    files = {
        "corpus/kb-returns.md": "# Returns\nYou have 30 days.",
        "train.jsonl": jsonl(
            {"input": "return window?", "output": "30 days", "context_ids": ["kb-returns"]}
        ),
        "eval.jsonl": jsonl(
            {"input": "how long to return?", "output": "30 days", "context_ids": ["kb-nope"]}
        ),
    }
    path = write_task(
        tmp_path, "kind: qa\ntrain: train.jsonl\neval: eval.jsonl\ncorpus: corpus/\n", files
    )
    with pytest.raises(TaskError, match=r"eval\.jsonl:1: context id 'kb-nope'"):
        load_task(path)


@pytest.mark.parametrize(
    ("yaml_text", "files", "message"),
    [
        ("kind: classification\ntrain: [unclosed\n", {}, r"task\.yaml:\d+: not valid YAML"),
        ("- a list\n", {}, "expected a mapping"),
        (
            BASIC.replace("kind: classification", "kind: regression"),
            {},
            "kind 'regression' is not one of",
        ),
        ("kind: qa\neval: eval.jsonl\n", {}, "missing required key 'train'"),
        (BASIC + "epochs: 3\n", {}, "unknown key 'epochs'"),
        (BASIC, {"eval.jsonl": GOOD_EVAL}, "train file 'train.jsonl' not found"),
        (
            BASIC,
            {"train.jsonl": GOOD_TRAIN + "{not json\n", "eval.jsonl": GOOD_EVAL},
            r"train\.jsonl:4: not valid JSON",
        ),
        (
            BASIC,
            {"train.jsonl": GOOD_TRAIN + "[1, 2]\n", "eval.jsonl": GOOD_EVAL},
            r"train\.jsonl:4: expected a JSON object",
        ),
        (
            BASIC,
            {"train.jsonl": jsonl({"text": "x"}), "eval.jsonl": GOOD_EVAL},
            r"train\.jsonl:1: a row needs",
        ),
        (
            BASIC,
            {"train.jsonl": jsonl({"input": "x", "output": ""}), "eval.jsonl": GOOD_EVAL},
            "must be a non-empty string",
        ),
        (
            BASIC,
            {"train.jsonl": jsonl({"output": "billing"}), "eval.jsonl": GOOD_EVAL},
            'no "input"',
        ),
        (
            BASIC,
            {
                "train.jsonl": jsonl({"messages": [{"role": "user", "content": "hi"}]}),
                "eval.jsonl": GOOD_EVAL,
            },
            "needs an assistant message",
        ),
        (
            BASIC,
            {
                "train.jsonl": jsonl({"messages": [{"role": "bot", "content": "hi"}]}),
                "eval.jsonl": GOOD_EVAL,
            },
            "role must be system, user or assistant",
        ),
        (
            BASIC,
            {
                "train.jsonl": GOOD_TRAIN,
                "eval.jsonl": jsonl(
                    {"id": "a", "input": "x", "output": "billing"},
                    {"id": "a", "input": "y", "output": "billing"},
                ),
            },
            r"eval\.jsonl:2: duplicate id 'a'",
        ),
        (
            BASIC,
            {"train.jsonl": GOOD_TRAIN, "eval.jsonl": jsonl({"input": "x", "output": "returns"})},
            r"eval\.jsonl:1: label 'returns' is not in the task's labels",
        ),
        (BASIC, {"train.jsonl": GOOD_TRAIN, "eval.jsonl": ""}, "the eval file has no rows"),
        (
            BASIC + "metric: rouge_l\n",
            {"train.jsonl": GOOD_TRAIN, "eval.jsonl": GOOD_EVAL},
            "does not fit kind",
        ),
        (
            BASIC + "labels: [billing]\n",
            {"train.jsonl": GOOD_TRAIN, "eval.jsonl": GOOD_EVAL},
            "at least two distinct labels",
        ),
    ],
)
def test_bad_input_gives_one_clear_error(tmp_path, yaml_text, files, message):
    path = write_task(tmp_path, yaml_text, files)
    with pytest.raises(TaskError, match=message) as info:
        load_task(path)
    assert "\n" not in str(info.value)


def test_non_utf8_file_is_reported(tmp_path):
    path = write_task(tmp_path, BASIC, {"eval.jsonl": GOOD_EVAL})
    (tmp_path / "train.jsonl").write_bytes(b'{"input": "caf\xe9", "output": "billing"}\n')
    with pytest.raises(TaskError, match="not UTF-8"):
        load_task(path)


def test_cli_bad_task_exits_2_with_one_line_and_writes_nothing(tmp_path):
    path = write_task(
        tmp_path, BASIC, {"train.jsonl": GOOD_TRAIN + "{oops\n", "eval.jsonl": GOOD_EVAL}
    )
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "adaptwise", "run", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "train.jsonl:4: not valid JSON" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_cli_unknown_method_exits_2(tmp_path):
    path = write_task(tmp_path, BASIC, {"train.jsonl": GOOD_TRAIN, "eval.jsonl": GOOD_EVAL})
    proc = subprocess.run(
        [sys.executable, "-m", "adaptwise", "run", str(path), "--methods", "few-shot-magic"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "unknown method 'few-shot-magic'" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_demo_tasks_load_and_meet_their_size_contract():
    intents = load_task(ROOT / "demo/support-intents/task.yaml")
    assert intents.kind == "classification"
    assert len(intents.labels) >= 6 and len(intents.train) >= 300 and len(intents.eval) >= 80
    qa = load_task(ROOT / "demo/helpdesk-qa/task.yaml")
    assert qa.kind == "qa" and len(qa.eval) >= 80
    assert len(list(qa.corpus.glob("*.md"))) >= 40
    assert all(row.context_ids for row in qa.eval)


def _norm(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())


def test_demo_eval_rows_do_not_leak_into_train_or_corpus():
    for name in ("support-intents", "helpdesk-qa"):
        task = load_task(ROOT / f"demo/{name}/task.yaml")
        train_inputs = {_norm(r.text) for r in task.train}
        leaked = [r.id for r in task.eval if _norm(r.text) in train_inputs]
        assert leaked == [], f"{name}: eval rows also in train: {leaked}"
    qa = load_task(ROOT / "demo/helpdesk-qa/task.yaml")
    corpus = " ".join(_norm(p.read_text(encoding="utf-8")) for p in qa.corpus.glob("*.md"))
    in_corpus = [r.id for r in qa.eval if _norm(r.text) in corpus]
    assert in_corpus == []
    docs = {p.stem: p.read_text(encoding="utf-8") for p in qa.corpus.glob("*.md")}
    unanswerable = [r.id for r in qa.eval if not any(r.output in docs[c] for c in r.context_ids)]
    assert unanswerable == [], "answers must be found in their context documents"
