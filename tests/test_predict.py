"""`adaptwise predict` on the embedded model: a tiny demo run (zero-shot, few-shot-embedding and a
LoRA of a few steps on 20 eval rows) predicts 100 new rows made from the demo's eval inputs.
The rows that are the run's own eval rows must get the run's predictions: the same method is
applied, from the run folder and from a recipe export. Resuming after Ctrl-C redoes no finished
row; bad rows get one line each and exit 2; a file predict did not write is never appended to."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from adaptwise.cli import main

ROOT = Path(__file__).resolve().parent.parent
INTENTS = ROOT / "demo" / "support-intents"
LIMIT = 20
ROWS = 100  # new rows the zero-shot tests predict
VARIANTS = (
    "{}",
    "Hi, {}",
    "{} Thanks!",
    "{} Please help.",
    "Hello team. {}",
    "{} (sent from my phone)",
    "Quick question: {}",
    "{} Regards, Sam",
    "URGENT: {}",
    "{} Any update?",
)


def _eval_rows() -> list[dict]:
    lines = (INTENTS / "eval.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def new_rows(n: int = ROWS) -> list[dict]:
    """The run's own eval rows (with their ids) first, then varied eval inputs without outputs
    (every other one without an id: predict names it row-N). 100 rows: over three batches of 32
    (the Ctrl-C test stops in the third) and 5 times the run's rows, at ~4 rows/s (CI time)."""
    evals = _eval_rows()
    rows = [{"id": r["id"], "input": r["input"]} for r in evals[:LIMIT]]
    i = 0
    while len(rows) < n:
        source = evals[i % len(evals)]["input"]
        text = VARIANTS[1 + (i // len(evals)) % (len(VARIANTS) - 1)].format(source)
        rows.append({"id": f"new-{i}", "input": text} if i % 2 else {"input": text})
        i += 1
    return rows


def write_rows(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_out(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def cli(capsys):
    def call(*args):
        capsys.readouterr()
        code = main([str(a) for a in args])
        return code, capsys.readouterr().err

    return call


@pytest.fixture(scope="module")
def run(demo_run) -> Path:
    """The shared demo run (conftest.py: zero-shot, few-shot-embedding and a LoRA on 20 demo
    eval rows), and a recipe export of its zero-shot (tests/test_export.py rebuilds every kind
    of recipe)."""
    folder = demo_run
    export = [
        "export", folder / "run", "--method", "zero-shot", "--format", "recipe",
        "--out", folder / "zero-shot-recipe",
    ]  # fmt: skip
    assert main([str(a) for a in export]) == 0
    return folder / "run"


def run_outputs(run_dir: Path, method: str) -> dict[str, str]:
    records = read_out(run_dir / "predictions.jsonl")
    return {r["id"]: r["output"] for r in records if r["method"] == method}


def check_same_as_run(out: Path, run_dir: Path, method: str, n: int) -> list[dict]:
    rows = read_out(out)
    assert len(rows) == n and len({r["id"] for r in rows}) == n
    measured = run_outputs(run_dir, method)
    assert len(measured) == LIMIT
    got = {r["id"]: r["output"] for r in rows if r["id"] in measured}
    assert got == measured  # the same method, applied to new rows
    return rows


def test_few_shot_embedding_from_the_run_predicts_every_row(run, tmp_path, cli):
    rows = new_rows(40)  # 100 rows: the zero-shot tests below (this one is 2 rows/s: CI time)
    out = tmp_path / "preds.jsonl"
    inp = write_rows(tmp_path / "rows.jsonl", rows)
    started = time.perf_counter()
    code, err = cli("predict", run, "--method", "few-shot-embedding", "--input", inp, "--out", out)
    seconds = time.perf_counter() - started
    assert code == 0, err
    written = check_same_as_run(out, run, "few-shot-embedding", 40)
    assert [r["input"] for r in written] == [r["input"] for r in rows]  # in order
    assert written[LIMIT]["id"] == f"row-{LIMIT + 1}"  # no id: its line number
    labels = set(written[0]["scores"])
    assert written[0]["output"] in labels and len(labels) == 8
    meta = json.loads((tmp_path / "preds.jsonl.meta.json").read_text(encoding="utf-8"))
    assert meta["method"] == "few-shot-embedding" and meta["command"] == "predict"
    written_line = next(line for line in err.splitlines() if line.startswith("Written:"))
    print(f"\nfew-shot-embedding, run folder: {seconds:.1f} s in all; {written_line}")


def test_recipe_export_predicts_as_the_run(run, tmp_path, cli):
    out = tmp_path / "preds.jsonl"
    inp = write_rows(tmp_path / "rows.jsonl", new_rows())
    started = time.perf_counter()
    code, err = cli("predict", run.parent / "zero-shot-recipe", "--input", inp, "--out", out)
    seconds = time.perf_counter() - started
    assert code == 0, err
    check_same_as_run(out, run, "zero-shot", ROWS)
    written_line = next(line for line in err.splitlines() if line.startswith("Written:"))
    print(f"\nzero-shot, recipe export: {seconds:.1f} s in all; {written_line}")
    # another method into the same file is refused, and leaves it as it was
    before = out.read_bytes()
    code, err = cli("predict", run, "--method", "zero-shot", "--input", inp, "--out", out)
    assert code == 2 and "choose another --out" in err and len(err.strip().splitlines()) == 1
    assert out.read_bytes() == before


def test_resume_after_ctrl_c_redoes_no_finished_row(run, tmp_path, cli, monkeypatch):
    from experiments.export.predict import Predictor

    inp = write_rows(tmp_path / "rows.jsonl", new_rows())
    out = tmp_path / "preds.jsonl"
    scored: list[str] = []
    interrupt = [True]
    original = Predictor.predict

    def counting(self, rows, progress):
        if interrupt[0] and len(scored) >= 64:  # Ctrl-C while the third batch of 32 is scored
            raise KeyboardInterrupt
        scored.extend(r.id for r in rows)
        return original(self, rows, progress)

    monkeypatch.setattr(Predictor, "predict", counting)
    args = ("predict", run, "--method", "zero-shot", "--input", inp, "--out", out)
    code, err = cli(*args, "--batch-size", 32)
    assert code == 130 and len(read_out(out)) == 64
    assert "the same command goes on from there" in err
    with out.open("a", encoding="utf-8") as handle:  # killed in the middle of a line
        handle.write('{"id": "new-99", "inp')
    first, interrupt[0] = list(scored), False
    code, err = cli(*args, "--batch-size", 32)
    assert code == 0, err
    again = scored[len(first) :]
    assert not set(first) & set(again) and len(again) == ROWS - 64  # nothing redone
    rows = read_out(out)
    assert len(rows) == ROWS and len({r["id"] for r in rows}) == ROWS
    check_same_as_run(out, run, "zero-shot", ROWS)
    code, err = cli(*args)  # all done: nothing to redo
    assert code == 0 and len(scored) == ROWS
    assert f"{ROWS} rows predicted earlier" in " ".join(err.split())


def test_bad_rows_get_one_line_each_and_exit_2(run, tmp_path, cli):
    inp = tmp_path / "rows.jsonl"
    inp.write_text(
        '{"id": "a", "input": "My Halo bulb will not pair with the hub."}\n'
        "not json\n"
        '{"id": "b"}\n'
        '{"id": "c", "input": 42}\n'
        '{"input": "I was charged twice for one order."}\n',
        encoding="utf-8",
    )
    out = tmp_path / "preds.jsonl"
    code, err = cli("predict", run, "--method", "zero-shot", "--input", inp, "--out", out)
    assert code == 2
    assert f"{inp}:2: not JSON" in err and f'{inp}:3: no "input"' in err
    assert f'{inp}:4: "input" must be a string' in err and "3 bad rows" in err
    assert "Traceback" not in err
    assert [r["id"] for r in read_out(out)] == ["a", "row-5"]
    dup = write_rows(tmp_path / "dup.jsonl", [{"id": "x", "input": "a"}, {"id": "x", "input": "b"}])
    code, err = cli("predict", run, "--method", "zero-shot", "--input", dup, "--out", out)
    assert code == 2 and f"{dup}:2: id 'x' is also on line 1" in err


def test_a_file_predict_did_not_write_is_never_appended_to(run, tmp_path, cli):
    inp = write_rows(tmp_path / "rows.jsonl", [{"input": "Where is my parcel?"}])
    out = tmp_path / "mine.jsonl"
    out.write_text('{"id": "row-1", "note": "mine"}\n', encoding="utf-8")
    code, err = cli("predict", run, "--method", "zero-shot", "--input", inp, "--out", out)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "not written by adaptwise predict" in lines[0]
    assert out.read_text(encoding="utf-8") == '{"id": "row-1", "note": "mine"}\n'
    code, err = cli("predict", run, "--method", "zero-shot", "--input", inp, "--out", inp)
    assert code == 2 and "is an input" in err


def test_gguf_export_is_refused_in_process_and_paths_stay_inside(run, tmp_path, cli):
    inp = write_rows(tmp_path / "rows.jsonl", [{"input": "Where is my parcel?"}])
    export = tmp_path / "gguf"
    export.mkdir()
    record = {"method": {"name": "lora"}, "format": "gguf", "files": {"base_gguf": "b.gguf"}}
    (export / "export.json").write_text(json.dumps(record), encoding="utf-8")
    code, err = cli("predict", export, "--input", inp, "--out", tmp_path / "p.jsonl")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "adaptwise serve" in lines[0]
    assert "--model openai:lora" in lines[0]
    record["files"]["adapter"] = "../../elsewhere/"
    (export / "export.json").write_text(json.dumps(record), encoding="utf-8")
    code, err = cli("predict", export, "--input", inp, "--out", tmp_path / "p.jsonl")
    assert code == 2 and "points outside the export folder" in err


def test_lora_from_the_run_predicts_in_process(run, tmp_path, cli):
    inp = write_rows(tmp_path / "rows.jsonl", new_rows(40))
    out = tmp_path / "preds.jsonl"
    code, err = cli("predict", run, "--method", "lora", "--input", inp, "--out", out)
    assert code == 0, err
    check_same_as_run(out, run, "lora", 40)
