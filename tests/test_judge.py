"""An LLM judge (issue 27, items 2 and 3): `metric: judge` or `metrics: [exact_match, judge]`
with a `judge:` block. A judge served by tests/api_server.py (the embedded model) scores a
generation run and a rerun asks it nothing; its cost is apart from the methods'; unparseable
replies are counted and left out, never scored 0; pairwise asks both orders; the RAG checks
sit beside recall@k and MRR; a bad block is one line before any model loads.

The methods run on the tiny model (tests/conftest.py) over 3 eval rows of helpdesk-qa; the
judges that must say something exact are tests/hostile_server.py, a server with no model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import test_bad_input
from hostile_server import HostileServer
from test_api_models import KEY, server  # noqa: F401 - the fixture: the embedded model, served
from test_bad_input import one_line

from experiments.judge_prompts import pairwise_value, parse

ROOT = Path(__file__).resolve().parent.parent
HELPDESK = ROOT / "demo" / "helpdesk-qa"
FIRST_QUESTION = "Which hub firmware do I need to use Matter?"  # eval row qa-eval-001

cli = test_bad_input.cli  # the CLI in-process, from tmp_path: code, stdout, stderr


class VerdictServer(HostileServer):
    """A judge that answers `reply(prompt)` (no model)."""

    def __init__(self):
        super().__init__(model="judge")
        self.reply = lambda prompt: "Looks right.\nVERDICT: yes"

    def chat(self, body: dict) -> dict:
        self.answer = self.reply(body["messages"][-1]["content"])
        return super().chat(body)


@pytest.fixture(scope="module")
def fake():
    judge = VerdictServer()
    judge.start()
    yield judge
    judge.stop()


@pytest.fixture(scope="module")
def rows_folder(tmp_path_factory) -> Path:
    """helpdesk-qa's rows and corpus, copied once (its RAG index is built once, in it)."""
    folder = tmp_path_factory.mktemp("helpdesk")
    for name in ("train.jsonl", "eval.jsonl"):
        shutil.copy(HELPDESK / name, folder / name)
    shutil.copytree(HELPDESK / "corpus", folder / "corpus")
    return folder


@pytest.fixture(autouse=True)
def _private_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("ADAPTWISE_API_CACHE", str(tmp_path / "api-cache"))
    monkeypatch.setenv("JUDGE_KEY", KEY)


def write_task(folder: Path, judge: str, metrics: str = "metrics: [exact_match, judge]") -> Path:
    path = folder / f"task-{abs(hash((judge, metrics)))}.yaml"
    path.write_text(
        "name: helpdesk\nkind: qa\ntrain: train.jsonl\neval: eval.jsonl\ncorpus: corpus/\n"
        f"{metrics}\njudge:\n" + "".join(f"  {line}\n" for line in judge.strip().splitlines()),
        encoding="utf-8",
    )
    return path


def run(cli, model: Path, task: Path, out: Path, methods: str = "zero-shot", limit: int = 3):
    outcome = cli(
        "run", task, "--methods", methods, "--limit", limit, "--model", model, "--out", out
    )
    assert outcome.code == 0, outcome.stdout + outcome.stderr
    return outcome


def records(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def posts(model_server) -> int:
    return sum(model_server.counts.values())


# --- reading a verdict ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "form", "verdict"),
    [
        ("The answer matches.\nVERDICT: yes", "binary", "yes"),
        ("**Verdict:** No.", "binary", "no"),
        ("VERDICT: yes\nOn reflection it is wrong.\nVERDICT: no", "binary", "no"),
        ("End with VERDICT: yes or VERDICT: no", "binary", None),  # an echo of the prompt
        ("VERDICT: yes/no", "binary", None),
        ("Yes, it is correct.", "binary", None),
        ("SCORE: 4", "1-5", "4"),
        ("score = 5/5", "1-5", "5"),
        ("SCORE: 7", "1-5", None),
        ("VERDICT: B", "pairwise", "B"),
        ("verdict: Tie", "pairwise", "tie"),
        ("VERDICT: yes", "pairwise", None),
    ],
)
def test_a_verdict_is_the_last_line_that_gives_one(raw, form, verdict):
    assert parse(raw, form) == verdict


def test_pairwise_orders_that_disagree_are_a_tie():
    assert pairwise_value(["A", "B"]) == 1.0  # the method first, then second: it won both
    assert pairwise_value(["B", "A"]) == 0.0
    assert pairwise_value(["A", "A"]) == 0.5  # position bias: a tie
    assert pairwise_value(["tie", "B"]) == 0.5
    assert pairwise_value(["A", None]) is None


# --- a bad block ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("judge", "metrics", "words"),
    [
        ("rubric: r", "metric: judge", ["judge: give model: openai:NAME"]),
        ("model: openai:m", "metric: judge", ["needs base_url"]),
        ("model: openai:m\nbase_url: http://h/v1\nscale: 1-10", "metric: judge", ["scale '1-10'"]),
        ("model: openai:m\nbase_url: http://h/v1\nmode: listwise", "metric: judge", ["mode"]),
        ("model: openai:m\nbase_url: http://h/v1\nrag: [truth]", "metric: judge", ["'truth'"]),
        ("model: openai:m\nbase_url: ftp://h", "metric: judge", ["not an http(s) URL"]),
        ("model: ./no-such-folder", "metric: judge", ["not a model folder"]),
        ("model: embedded\nbase_url: http://h/v1", "metric: judge", ["applies to a served"]),
        ("model: embedded\ntemperature: 1", "metric: judge", ["unknown key 'temperature'"]),
        ("model: embedded", "metric: exact_match", ["used by metric judge or by rag checks"]),
    ],
)
def test_a_bad_judge_block_is_one_line_before_any_model(
    judge, metrics, words, rows_folder, cli, monkeypatch
):
    import experiments.models

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(experiments.models, "load_language_model", refuse)
    task = write_task(rows_folder, judge, metrics)
    one_line(cli("run", task, "--methods", "zero-shot", "--out", "x"), task.name, *words)


def test_metric_judge_without_a_block_and_pairwise_without_baseline(rows_folder, cli, tiny_model):
    task = rows_folder / "no-block.yaml"
    task.write_text("kind: qa\ntrain: train.jsonl\neval: eval.jsonl\nmetric: judge\n")
    one_line(cli("run", task, "--out", "x"), "no-block.yaml", "needs a judge: block")
    pairwise = write_task(
        rows_folder, "model: openai:judge\nbase_url: http://127.0.0.1:9/v1\nmode: pairwise"
    )
    outcome = cli(
        "run", pairwise, "--methods", "few-shot-random", "--model", tiny_model, "--out", "x"
    )
    last = outcome.stderr.strip().splitlines()[-1]  # after the run's own lines: the task, --out
    assert (
        outcome.code == 2 and "Traceback" not in outcome.stderr and not (rows_folder / "x").exists()
    )
    assert last.startswith("adaptwise: error: ") and pairwise.name in last
    assert "compares each method with 'zero-shot'" in last and "add zero-shot" in last


# --- a served judge --------------------------------------------------------------------------------


def test_a_served_judge_scores_a_run_and_a_rerun_asks_nothing(
    server,  # noqa: F811 - test_api_models' fixture
    rows_folder,
    tiny_model,
    tmp_path,
    cli,
):
    """The embedded model judges zero-shot's answers (what it says is irrelevant here): one
    request per row, its verdicts in predictions.jsonl, its cost apart from the methods';
    the same run again, into another folder, makes no request."""
    judge = f"""
model: openai:smollm2
base_url: {server.url}
api_key_env: JUDGE_KEY
max_tokens: 16
costs: {{prompt_per_1k_tokens: 1000}}
"""
    task = write_task(rows_folder, judge)
    before = posts(server)
    run(cli, tiny_model, task, tmp_path / "one")
    assert posts(server) - before == 3  # one question per row

    stored = results(tmp_path / "one")
    assert stored["task"]["judge"]["model"] == "openai:smollm2"
    entry = stored["methods"]["zero-shot"]
    usage = entry["judge"]["usage"]
    assert usage["requests"] == 3 and usage["cached"] == 0 and usage["prompt_tokens"] > 0
    checks = entry["judge"]["checks"]["judge"]
    assert checks["judged"] + checks["unparseable"] == 3
    rows = records(tmp_path / "one")
    for rec in rows:
        verdict = rec["judge"]["judge"]
        assert isinstance(verdict["raw"], str) and verdict["usage"]["requests"] == 1
        assert ("judge" in rec["scores"]) == (verdict["value"] is not None)
    if checks["judged"]:
        assert entry["metrics"]["judge"] == pytest.approx(checks["mean"])
    assert "api" not in entry  # the judge's tokens are not the method's

    report = (tmp_path / "one" / "report.md").read_text()
    assert "## LLM judge" in report and "agrees with exact match" in report
    cost = f"{usage['prompt_tokens']:,}.00 USD"  # 1,000 per 1k prompt tokens
    assert f"apart from the methods' costs above: {cost} for 3 requests" in report
    for name in ("results.json", "predictions.jsonl", "report.md", "report.html"):
        assert KEY not in (tmp_path / "one" / name).read_text()

    before = posts(server)
    run(cli, tiny_model, task, tmp_path / "two")
    assert posts(server) == before  # every verdict from the cache
    again = records(tmp_path / "two")
    assert [r["judge"]["judge"]["raw"] for r in again] == [r["judge"]["judge"]["raw"] for r in rows]
    assert results(tmp_path / "two")["methods"]["zero-shot"]["judge"]["usage"]["cached"] == 3
    assert cli("report", tmp_path / "one").code == 0


# --- what the judge said -----------------------------------------------------------------------------


def test_unparseable_verdicts_are_counted_and_left_out(
    fake, rows_folder, tiny_model, tmp_path, cli
):
    """The first row's verdict is garbage: it is counted, has no judge score, and the mean,
    the interval and the paired test are over the two rows that parsed; an edited verdict is
    refused by `report`."""
    fake.reply = lambda p: "I would rather not say." if FIRST_QUESTION in p else "VERDICT: yes"
    task = write_task(rows_folder, f"model: openai:judge\nbase_url: {fake.url}", "metric: judge")
    out = tmp_path / "run"
    run(cli, tiny_model, task, out, "zero-shot,few-shot-random")
    stored = results(out)
    for name in ("zero-shot", "few-shot-random"):
        entry = stored["methods"][name]
        assert entry["judge"]["checks"]["judge"] == {"judged": 2, "unparseable": 1, "mean": 1.0}
        assert entry["metrics"]["judge"] == 1.0  # 2 of 2, not 2 of 3
    first = next(r for r in records(out) if r["id"] == "qa-eval-001")
    assert first["judge"]["judge"]["value"] is None and "judge" not in first["scores"]
    assert first["correct"] is None

    from experiments.report.analysis import analyse

    analysis = analyse(stored, records(out))
    assert analysis["tests"]["few-shot-random"]["zero-shot"]["n"] == 2
    assert analysis["intervals"]["zero-shot"]["judge"]["estimate"] == 1.0
    report = (out / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| zero-shot | 1.000"))
    assert "| 2 | 1 |" in row  # judged, unparseable (excluded)

    rows = records(out)
    for rec in rows:
        if rec["id"] == "qa-eval-002":
            rec["judge"]["judge"]["value"] = 0.0
    (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    one_line(cli("report", out), "predictions.jsonl", "qa-eval-002 was judged judge 0.0")


def test_pairwise_asks_both_orders(fake, rows_folder, tiny_model, tmp_path, cli):
    """A judge that always prefers answer A is caught by the second order: every row a tie;
    the baseline scores 0.5 against itself without a request."""
    fake.reply = lambda p: "A is better.\nVERDICT: A"
    judge = f"model: openai:judge\nbase_url: {fake.url}\nmode: pairwise"
    task = write_task(rows_folder, judge, "metric: judge")
    before = fake.answered("/v1/chat/completions")
    run(cli, tiny_model, task, tmp_path / "run", "zero-shot,few-shot-random")
    assert fake.answered("/v1/chat/completions") - before == 6  # 3 rows x 2 orders
    stored = results(tmp_path / "run")
    assert stored["methods"]["few-shot-random"]["metrics"]["judge"] == 0.5
    assert stored["methods"]["zero-shot"]["metrics"]["judge"] == 0.5
    for rec in records(tmp_path / "run"):
        verdict = rec["judge"]["judge"]
        if rec["method"] == "zero-shot":
            assert verdict == {"self": True, "value": 0.5}
        else:
            assert verdict["verdict"] == ["A", "A"] and verdict["against"] is not None
            assert verdict["usage"]["requests"] == 2 and len(verdict["raw"]) == 2


def test_rag_checks_beside_recall_and_a_changed_block_judges_again(
    fake, rows_folder, tiny_model, tmp_path, cli
):
    """faithfulness and relevance on the rag method's rows, from the passages it retrieved;
    another block judges the kept method again without rerunning it."""
    fake.reply = lambda p: "VERDICT: no" if p.startswith("Passages:") else "VERDICT: yes"
    judge = f"model: openai:judge\nbase_url: {fake.url}\nrag: [faithfulness, relevance]"
    task = write_task(rows_folder, judge, "metric: exact_match")
    out = tmp_path / "run"
    before = fake.answered("/v1/chat/completions")
    run(cli, tiny_model, task, out, "zero-shot,rag", limit=2)
    assert fake.answered("/v1/chat/completions") - before == 4  # rag's 2 rows x 2 checks
    checks = results(out)["methods"]["rag"]["judge"]["checks"]
    assert checks["faithfulness"]["mean"] == 0.0 and checks["relevance"]["mean"] == 1.0
    assert "judge" not in results(out)["methods"]["zero-shot"]
    rec = next(r for r in records(out) if r["method"] == "rag")
    assert all(isinstance(p["text"], str) for p in rec["retrieved"])
    report = (out / "report.md").read_text()
    assert (
        "| method | recall@k | MRR@10 | faithfulness (judge) | answer relevance (judge) |" in report
    )

    task.write_text(
        task.read_text().replace("rag: [faithfulness", "max_tokens: 32\n  rag: [faithfulness")
    )
    before = fake.answered("/v1/chat/completions")
    outcome = run(cli, tiny_model, task, out, "zero-shot,rag", limit=2)
    said = " ".join((outcome.stderr + outcome.stdout).split())  # lines wrap at the terminal
    assert "kept from the earlier run" in said and "they are judged now" in said
    assert fake.answered("/v1/chat/completions") - before == 4
    assert cli("report", out).code == 0


def test_a_local_judge_is_cached_too(rows_folder, tiny_model, tmp_path, cli, monkeypatch):
    """A local model folder as the judge (the tiny model: its verdicts are noise): a second
    run into another folder generates nothing for the judge."""
    task = write_task(rows_folder, f"model: {tiny_model}\nmax_tokens: 8")
    run(cli, tiny_model, task, tmp_path / "one")
    checks = results(tmp_path / "one")["methods"]["zero-shot"]["judge"]["checks"]["judge"]
    assert checks["judged"] + checks["unparseable"] == 3

    import experiments.judge

    def refuse(self, conversations):
        raise AssertionError("the judge generated again")

    monkeypatch.setattr(experiments.judge.Judge, "_generate", refuse)
    run(cli, tiny_model, task, tmp_path / "two")
    usage = results(tmp_path / "two")["methods"]["zero-shot"]["judge"]["usage"]
    assert usage["cached"] == usage["requests"] == 3


def test_a_method_trained_over_seeds_is_judged_on_every_seed(
    fake, rows_folder, tiny_model, tmp_path, cli
):
    """With `--seeds 2` the judge judges each seed's rows, so the seeds' band and the rule over
    seeds are on the judge's scores too, and the stored seeds hold to their verdicts."""
    fake.reply = lambda p: "VERDICT: no" if FIRST_QUESTION in p else "VERDICT: yes"
    task = write_task(rows_folder, f"model: openai:judge\nbase_url: {fake.url}", "metric: judge")
    out = tmp_path / "run"
    quick = ["max_steps=1", "batch_size=2", "max_length=64", "rank=4", "forgetting_probe=false"]
    before = fake.answered("/v1/chat/completions")
    args = ["run", task, "--methods", "zero-shot,lora", "--limit", 3, "--model", tiny_model]
    outcome = cli(*args, "--seeds", 2, "--out", out, *[a for s in quick for a in ("--finetune", s)])
    assert outcome.code == 0, outcome.stdout + outcome.stderr
    # 3 rows x zero-shot and 2 seeds, less the questions asked before: the tiny model's
    # methods often give the same answer to a row, and the same question is answered once
    assert 3 <= fake.answered("/v1/chat/completions") - before <= 9
    lora = results(out)["methods"]["lora"]
    assert [item["metrics"]["judge"] for item in lora["seeds"]] == [2 / 3, 2 / 3]
    assert lora["seeds"][1]["judge"]["checks"]["judge"]["judged"] == 3
    seed1 = [r for r in records(out) if r["method"] == "lora@seed1"]
    assert len(seed1) == 3 and all(r["judge"]["judge"]["verdict"] for r in seed1)

    from experiments.report.analysis import analyse
    from experiments.report.run_folder import load_run

    stored, recs = load_run(out)  # every seed holds to its verdicts
    analysis = analyse(stored, recs, resamples=100)
    assert analysis["seeds"]["lora"]["scores"] == [2 / 3, 2 / 3]
    test = analysis["tests"]["lora"]["zero-shot"]
    assert [s["seed"] for s in test["seeds"]] == [0, 1]
