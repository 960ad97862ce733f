"""Converters: each format goes to task rows and back unchanged, and yields a loadable task."""

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.data.columns import parse_mapping
from experiments.data.convert import convert, read_records
from experiments.data.export import export
from experiments.errors import TaskError
from experiments.task import load_task

ALPACA = [
    {
        "id": f"a{i}",
        "instruction": "Route the message.",
        "input": f"parcel {i} is late",
        "output": "shipping",
    }
    for i in range(8)
] + [{"id": "a8", "instruction": "Say hello in French.", "input": "", "output": "Bonjour"}]
SHAREGPT = [
    {
        "id": f"s{i}",
        "conversations": [
            {"from": "system", "value": "You are terse."},
            {"from": "human", "value": f"What is {i} + {i}?"},
            {"from": "gpt", "value": str(2 * i)},
        ],
    }
    for i in range(6)
]
OPENAI = [
    {
        "messages": [
            {"role": "user", "content": f"Capital number {i}?"},
            {"role": "assistant", "content": "Paris"},
            {"role": "user", "content": "And the river?"},
            {"role": "assistant", "content": "The Seine, ça va"},
        ]
    }
    for i in range(5)
]


def write_json(path: Path, items, lines: bool = False) -> Path:
    if lines:
        path.write_text("".join(json.dumps(x) + "\n" for x in items), encoding="utf-8")
    else:
        path.write_text(json.dumps(items, indent=1), encoding="utf-8")
    return path


def all_rows(task_yaml: Path) -> int:
    task = load_task(task_yaml)
    assert task.train and task.eval
    return len(task.train) + len(task.eval)


@pytest.mark.parametrize(
    ("fmt", "items", "lines"),
    [("alpaca", ALPACA, False), ("sharegpt", SHAREGPT, False), ("openai", OPENAI, True)],
)
def test_json_formats_round_trip(tmp_path, fmt, items, lines):
    source = write_json(tmp_path / f"source.{'jsonl' if lines else 'json'}", items, lines)
    records = read_records(source, fmt)
    back = tmp_path / "back"
    export(records, fmt, back)
    text = back.read_text(encoding="utf-8")
    exported = [json.loads(x) for x in text.splitlines()] if lines else json.loads(text)
    assert exported == items
    path, counts = convert(source, fmt, tmp_path / "task", kind="generation")
    assert all_rows(path) == len(items) == counts["train"] + counts["eval"]


def test_csv_round_trip_with_column_mapping(tmp_path):
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "question", "answer", "context_ids"])
    for i in range(6):
        writer.writerow(
            [f"c{i}", f'How long, "exactly", for item {i}?\nPlease say', f"{i} days", "kb-a;kb-b"]
        )
    source = tmp_path / "qa.csv"
    source.write_text(buffer.getvalue(), encoding="utf-8")
    mapping = parse_mapping("input=question,output=answer")
    records = read_records(source, "csv", mapping)
    assert records[0]["context_ids"] == ["kb-a", "kb-b"] and records[0]["id"] == "c0"
    export(records, "csv", tmp_path / "back.csv", mapping)
    assert (tmp_path / "back.csv").read_text(encoding="utf-8") == buffer.getvalue()
    path, _ = convert(
        source, "csv", tmp_path / "task", kind="qa", mapping=mapping, eval_fraction=0.5
    )
    assert all_rows(path) == 6


def test_hf_dataset_round_trip_and_splits(tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    rows = [
        {"question": f"Is {i} even?", "answer": "yes" if i % 2 == 0 else "no"} for i in range(6)
    ]
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "plain"))
    mapping = parse_mapping("input=question,output=answer")
    records = read_records(tmp_path / "plain", "hf", mapping)
    export(records, "hf", tmp_path / "back", mapping)
    from datasets import load_from_disk

    assert load_from_disk(str(tmp_path / "back")).to_list() == rows

    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    split = {"text": ["great bulb", "broke in a day", "love it"], "label": [1, 0, 1]}
    DatasetDict(
        train=Dataset.from_dict(split, features=features),
        test=Dataset.from_dict(split, features=features).select([0, 1]),
    ).save_to_disk(str(tmp_path / "dict"))
    path, counts = convert(tmp_path / "dict", "hf", tmp_path / "task", kind="classification")
    task = load_task(path)
    assert counts == {"train": 3, "eval": 2}
    assert [r.output for r in task.train] == ["pos", "neg", "pos"]  # ClassLabel ids -> names

    # ClassLabel -1 is Hugging Face's "no label": such rows are skipped and counted, never
    # mapped to the last class name.
    unlabelled = {"text": ["dim", "bright", "flickers"], "label": [-1, 1, -1]}
    DatasetDict(
        train=Dataset.from_dict(split, features=features),
        test=Dataset.from_dict(unlabelled, features=features),
    ).save_to_disk(str(tmp_path / "unlabelled"))
    path, counts = convert(tmp_path / "unlabelled", "hf", tmp_path / "t2", kind="classification")
    assert counts == {"train": 3, "eval": 1, "unlabelled": 2}
    assert [r.output for r in load_task(path).eval] == ["pos"]


def test_bad_records_name_the_record_and_the_fix(tmp_path):
    source = write_json(tmp_path / "a.json", [ALPACA[0], {"instruction": "x"}])
    with pytest.raises(TaskError, match=r"a\.json: record 2: an Alpaca record needs"):
        read_records(source, "alpaca")
    tool = [{"messages": [{"role": "tool", "content": "{}"}]}]
    with pytest.raises(TaskError, match=r"\.jsonl:1: message 0 role 'tool' is not supported"):
        read_records(write_json(tmp_path / "o.jsonl", tool, lines=True), "openai")
    (tmp_path / "x.csv").write_text("q,a\nhi,there\n", encoding="utf-8")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "adaptwise",
            "data",
            "convert",
            str(tmp_path / "x.csv"),
            "--from",
            "csv",
            "--kind",
            "qa",
            "--out",
            str(tmp_path / "t"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "--map input=COLUMN" in proc.stderr
    assert not (tmp_path / "t").exists()
