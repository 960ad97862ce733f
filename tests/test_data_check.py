"""`data check`: finds every planted problem, and nothing in the clean demo tasks."""

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from experiments.data.checks import check_task
from experiments.data.near_duplicates import THRESHOLD, jaccard, shingles, similar_pairs

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo/support-intents"
LABELS = ["billing", "shipping", "returns", "technical", "feedback"]


def demo_rows(split: str) -> dict[str, list[dict]]:
    by_label = defaultdict(list)
    for line in (DEMO / f"{split}.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        by_label[row["output"]].append(row)
    return by_label


def write_lines(path: Path, lines: list) -> None:
    text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    path.write_text(text, encoding="utf-8")


def build_planted(folder: Path) -> dict:
    """A classification task with one of each problem; returns where each one was planted."""
    train_src, eval_src = demo_rows("train"), demo_rows("eval")
    train = (
        train_src["billing"][:40]
        + train_src["shipping"][:8]
        + train_src["returns"][:8]
        + train_src["technical"][:8]
        + train_src["feedback"][:1]
    )  # billing 40 of 65 (over 50%), feedback 1 (under 2%)
    ship, tech, ret = train_src["shipping"][0], train_src["technical"][0], train_src["returns"][1]
    words = tech["input"].split()
    words[len(words) // 2] = "completely"
    long_text = " ".join(r["input"] for r in train_src["shipping"][20:40])
    planted = [
        {"id": "dup", "input": "  " + ship["input"].upper() + " ", "output": "shipping"},
        {"id": "near", "input": " ".join(words), "output": "technical"},
        {"id": "conflict", "input": ret["input"], "output": "shipping"},
        {"id": "padded", "input": train_src["billing"][40]["input"], "output": "billing "},
        {"id": "cased", "input": train_src["billing"][41]["input"], "output": "Billing"},
        {"id": "long", "input": long_text, "output": "shipping"},
    ]
    bad = [
        "{not json",
        {"id": "no-output", "input": "hello"},
        {"id": "no-answer", "messages": [{"role": "user", "content": "hi"}]},
        {"id": train[0]["id"], "input": "a second row with the same id", "output": "billing"},
    ]
    write_lines(folder / "train.jsonl", train + planted + bad)
    n = len(train)
    leak_src, near_src = train_src["shipping"][3], train_src["returns"][4]
    near_words = near_src["input"].split()
    near_words[len(near_words) // 2] = "really"
    eval_rows = [r for label in LABELS[:4] for r in eval_src[label][:3]]
    eval_rows += [
        {"id": "leak", "input": leak_src["input"].lower() + "  ", "output": "shipping"},
        {
            "id": "near-leak",
            "input": " ".join(near_words) + "!!",
            "output": "returns",
        },
    ]
    write_lines(folder / "eval.jsonl", eval_rows)
    (folder / "task.yaml").write_text(
        f"name: planted\nkind: classification\nlabels: {LABELS}\ntrain: train.jsonl\n"
        "eval: eval.jsonl\n",
        encoding="utf-8",
    )
    t, e = f"{folder}/train.jsonl", f"{folder}/eval.jsonl"
    return {
        "dup": f"{t}:{1 + train.index(ship)} = {t}:{n + 1}",
        "near": (f"{t}:{1 + train.index(tech)}", f"{t}:{n + 2}"),
        "conflict": (f"{t}:{1 + train.index(ret)}", f"{t}:{n + 3}"),
        "padded": f"{t}:{n + 4}",
        "cased": f"{t}:{n + 5}",
        "long": f"{t}:{n + 6}",
        "bad": [f"{t}:{n + 7}", f"{t}:{n + 8}", f"{t}:{n + 9}", f"{t}:{n + 10}"],
        "leak": f"{e}:{len(eval_rows) - 1} = {t}:{1 + train.index(leak_src)}",
        "near_leak": f"{e}:{len(eval_rows)} ~ {t}:{1 + train.index(near_src)}",
    }


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    where = build_planted(folder)
    return folder, where, check_task(folder / "task.yaml", max_length=256)


@pytest.mark.parametrize("task", ["support-intents", "helpdesk-qa"])
def test_demo_tasks_have_no_findings(task):
    report = check_task(ROOT / f"demo/{task}/task.yaml")
    assert report.findings == []
    assert not report.blocking
    assert report.splits["train"]["tokens"]["over_max"] == 0


def test_planted_format_errors_all_reported_with_file_and_line(planted):
    _, where, report = planted
    found = {f.where[0]: f.message for f in report.by_check("format")}
    assert set(found) == {*where["bad"], where["cased"]}
    assert "not valid JSON" in found[where["bad"][0]]
    assert "output" in found[where["bad"][1]]
    assert "assistant" in found[where["bad"][2]]
    assert "duplicate id" in found[where["bad"][3]]
    assert "'Billing' is not in the task's labels" in found[where["cased"]]
    assert report.blocking


def test_planted_duplicates_and_near_duplicates(planted):
    _, where, report = planted
    (dup,) = [f for f in report.by_check("duplicate") if f.message.startswith("train")]
    assert dup.where == [where["dup"]]
    (near,) = report.by_check("near_duplicate")
    assert len(near.where) == 1 and near.where[0].startswith(" ~ ".join(where["near"]))


def test_planted_leakage_exact_and_near_is_blocking(planted):
    _, where, report = planted
    (leak,) = report.by_check("leakage")
    (near,) = report.by_check("near_leakage")
    assert leak.where == [where["leak"]] and leak.severity == "error"
    assert len(near.where) == 1 and near.where[0].startswith(where["near_leak"])
    assert near.severity == "error"


def test_planted_imbalance_inconsistency_formatting_and_length(planted):
    _, where, report = planted
    balance = " ".join(
        f.message for f in report.by_check("balance") if f.message.startswith("train")
    )
    assert "'billing' is 58%" in balance and "over 50%" in balance
    assert "'feedback' has 1 of" in balance and "under 2%" in balance
    (conflict,) = report.by_check("inconsistent")
    assert all(w in conflict.where[0] for w in where["conflict"])
    (padded,) = [f for f in report.by_check("output_format") if f.message.startswith("train")]
    assert padded.where == [where["padded"]]
    (casing,) = report.by_check("label_casing")
    assert "'Billing'" in casing.message and "'billing'" in casing.message
    (long,) = report.by_check("too_long")
    assert long.where == [where["long"]]
    assert report.splits["train"]["tokens"]["over_max"] == 1


def test_planted_qa_eval_question_in_corpus_and_unknown_context_id(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/returns.md").write_text(
        "# Returns\n\nHow long do I have to return a bulb? You have 30 days from delivery.\n"
    )
    (tmp_path / "docs/shipping.md").write_text("# Shipping\n\nWe ship to 27 EU countries.\n")
    write_lines(
        tmp_path / "train.jsonl",
        [
            {"input": "Which countries do you ship to?", "output": "27 EU countries"},
            {"input": "Do you ship outside the EU at all?", "output": "No"},
        ],
    )
    write_lines(
        tmp_path / "eval.jsonl",
        [
            {"input": "How long do I have to return a bulb?", "output": "30 days"},
            {"input": "Where is the hub made?", "output": "Spain", "context_ids": ["factory"]},
        ],
    )
    (tmp_path / "task.yaml").write_text(
        "kind: qa\ntrain: train.jsonl\neval: eval.jsonl\ncorpus: docs/\n", encoding="utf-8"
    )
    report = check_task(tmp_path / "task.yaml", measure_tokens=False)
    (in_corpus,) = report.by_check("eval_in_corpus")
    assert in_corpus.where == [f"{tmp_path}/eval.jsonl:1 in {tmp_path}/docs/returns.md"]
    (unknown,) = report.by_check("format")
    assert unknown.where == [f"{tmp_path}/eval.jsonl:2"] and "'factory'" in unknown.message


def test_threshold_separates_planted_edits_from_distinct_demo_rows():
    rows = [r for rs in demo_rows("train").values() for r in rs]
    text = rows[0]["input"]
    words = text.split()
    edits = [
        " ".join(words[:3] + ["completely"] + words[4:]),  # one word changed
        text.replace("e", "3", 1),  # a typo
        text.replace(" ", "  ").upper() + "!!",  # case, spacing, punctuation
    ]
    for edit in edits:
        assert jaccard(shingles(text), shingles(edit)) >= THRESHOLD
    assert similar_pairs([r["input"] + "\n" + r["output"] for r in rows]) == []
    templated = [  # distinct questions from one template stay apart
        "How much does the Halo A19 bulb cost in euros?\n€19.90",
        "How much does the Halo GU10 bulb cost in euros?\n€17.90",
        "What is the maximum length of the Ribbon strip?\n10 m",
        "What is the maximum length of the Ribbon Outdoor strip?\n15 m",
    ]
    assert similar_pairs(templated) == []


def test_cli_exit_status_and_json_report(planted, tmp_path):
    folder, _, _ = planted
    out = tmp_path / "report.json"
    args = [sys.executable, "-m", "adaptwise", "data", "check"]
    proc = subprocess.run(
        [*args, str(folder / "task.yaml"), "--json", str(out), "--no-tokens"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1, proc.stderr
    assert "leakage" in proc.stdout and "error(s)" in proc.stdout
    report = json.loads(out.read_text())
    assert report["blocking"] is True and report["splits"]["train"]["rows"] == 71
    proc = subprocess.run([*args, str(tmp_path / "missing.yaml")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("no such task file; pass the path of a task YAML file")
    proc = subprocess.run(
        [*args, str(DEMO / "task.yaml"), "--no-tokens"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "nothing blocking" in proc.stdout


SCHEMA = (
    "CREATE TABLE singer (singer_id INT PRIMARY KEY, name TEXT, country TEXT, song_name TEXT, "
    "song_release_year TEXT, age INT, is_male BOOL); CREATE TABLE concert (concert_id INT "
    "PRIMARY KEY, concert_name TEXT, theme TEXT, stadium_id INT, year TEXT); CREATE TABLE "
    "stadium (stadium_id INT PRIMARY KEY, location TEXT, name TEXT, capacity INT, average INT)"
)


def sql(question: str, query: str, row_id: str) -> dict:
    return {"id": row_id, "input": f"Question: {question}\nSchema: {SCHEMA}", "output": query}


SQL_TRAIN = [
    sql("How many singers do we have?", "SELECT count(*) FROM singer", "t1"),
    sql("What is the average age of all singers?", "SELECT avg(age) FROM singer", "t2"),
    sql(
        "List the names of the concerts held in 2014.",
        "SELECT concert_name FROM concert WHERE year = '2014'",
        "t3",
    ),
    sql(
        "Show the location and capacity of every stadium.",
        "SELECT location, capacity FROM stadium",
        "t4",
    ),
]
SQL_EVAL = [  # other questions on the same schema: not leakage
    sql("How many concerts are there?", "SELECT count(*) FROM concert", "e1"),
    sql("What is the maximum capacity of the stadiums?", "SELECT max(capacity) FROM stadium", "e2"),
    sql(
        "List the names of the concerts held in 2015.",
        "SELECT concert_name FROM concert WHERE year = '2015'",
        "e3",
    ),
]
SQL_PARAPHRASE = sql("How many singers do we have in total?", "select count(*) from singer;", "p")
ORGANS = ["ear", "eye", "face", "neck"]


def malformation(organ: str, row_id: str, end: str = "") -> dict:
    text = f"Congenital malformation of {organ}, not elsewhere classified (documented at birth)"
    return {"id": row_id, "input": text + end, "output": organ}


TEMPLATE_TRAIN = [malformation(organ, f"t{i}") for i, organ in enumerate(["ear", "face", "neck"])]
TEMPLATE_EVAL = [
    malformation("eye", "e1"),  # the train rows' template, another diagnosis: not leakage
    malformation("ear", "e2", end="."),  # a train row re-punctuated: leaked
]


def write_task(folder: Path, kind: str, train: list, eval_rows: list, labels=None) -> Path:
    write_lines(folder / "train.jsonl", train)
    write_lines(folder / "eval.jsonl", eval_rows)
    extra = f"labels: {labels}\n" if labels else ""
    (folder / "task.yaml").write_text(
        f"kind: {kind}\n{extra}train: train.jsonl\neval: eval.jsonl\n", encoding="utf-8"
    )
    return folder / "task.yaml"


# (case, kind, train, eval, labels, eval ids that leak)
LEAK_CASES = [
    ("shared schema, other questions and queries", "generation", SQL_TRAIN, SQL_EVAL, None, []),
    (
        "shared schema, a paraphrase with the same query",
        "generation",
        SQL_TRAIN,
        [*SQL_EVAL, SQL_PARAPHRASE],
        None,
        ["p"],
    ),
    (
        "one template, different labels",
        "classification",
        TEMPLATE_TRAIN,
        TEMPLATE_EVAL[:1],
        ORGANS,
        [],
    ),
    (
        "one template, the same row re-punctuated",
        "classification",
        TEMPLATE_TRAIN,
        TEMPLATE_EVAL,
        ORGANS,
        ["e2"],
    ),
]


@pytest.mark.parametrize(
    ("kind", "train", "eval_rows", "labels", "leaked"),
    [c[1:] for c in LEAK_CASES],
    ids=[c[0] for c in LEAK_CASES],
)
def test_near_leakage_needs_the_same_answer_and_ignores_shared_context(
    tmp_path, kind, train, eval_rows, labels, leaked
):
    report = check_task(write_task(tmp_path, kind, train, eval_rows, labels), measure_tokens=False)
    flagged = [w.split(" ~ ")[0] for f in report.by_check("near_leakage") for w in f.where]
    ids = [r["id"] for r in eval_rows]
    assert flagged == [f"{tmp_path}/eval.jsonl:{ids.index(i) + 1}" for i in leaked]
    assert not report.by_check("near_duplicate")  # within a split: distinct rows, too


def test_content_shingles_set_aside_context_shared_across_answers():
    from experiments.data.near_duplicates import content_shingles, row_pairs, same_answer

    rows = [(r["input"], r["output"]) for r in [*SQL_TRAIN, SQL_PARAPHRASE]]
    kept = content_shingles(rows)
    assert kept[1] == shingles("Question: What is the average age of all singers?")  # no schema
    assert row_pairs(rows) == [(0, 4, pytest.approx(0.78, abs=0.01))]
    # a question copied into several rows with the same answer stays content: duplicates of it
    copies = [("Where is my parcel " + "right now?" * k, "in transit") for k in (1, 1, 2)]
    assert content_shingles(copies)[0] == shingles(copies[0][0])
    assert same_answer("SELECT name FROM singer", "select name from singer;")
    assert not same_answer("... WHERE age > 30", "... WHERE age > 40")
    assert not same_answer(
        "Congenital malformation of ear", "Congenital malformation of eyes", labels=True
    )
