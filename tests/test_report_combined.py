"""`adaptwise report DIR1 DIR2 --out FOLDER`: one report holding a served model's methods and a
local model's, matched row by row, each priced as its own run was (no model runs here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_report import make_run

from adaptwise.cli import main
from experiments.report.analysis import analyse
from experiments.report.combine import method_names
from experiments.report.run_folder import load_run

N = 40
TOKEN_PRICES = {"prompt_per_1k_tokens": 0.001, "generated_per_1k_tokens": 0.002}
HOSTED, LOCAL = "openai:smollm2", "SmolLM2-135M-Instruct"


def _edit(folder: Path, change) -> Path:
    path = folder / "results.json"
    results = json.loads(path.read_text())
    change(results)
    path.write_text(json.dumps(results))
    return folder


def hosted_run(folder: Path, n: int = N) -> Path:
    """A served model's run: zero-shot 0.25, few-shot-embedding 0.75, priced by its tokens."""
    make_run(
        folder,
        n,
        correct={
            "zero-shot": [i % 4 == 0 for i in range(n)],
            "few-shot-embedding": [i % 4 != 3 for i in range(n)],
        },
    )

    def served(results):
        results["options"]["model"] = HOSTED
        results["costs"] = dict(TOKEN_PRICES)
        for entry in results["methods"].values():
            entry["generated_tokens_mean"] = 8.0
            entry["api"] = {"requests": n, "cached": 0, "usage_reported": True}
            entry["latency"] = {"p50_s": 0.5, "p95_s": 0.9, "per": "request"}

    return _edit(folder, served)


def local_run(folder: Path, n: int = N, name: str = "support-intents") -> Path:
    """The embedded model, in-process: zero-shot 0.2, lora 0.8; its run recorded the same
    token prices (one task file's costs: for both runs), which must not price it."""
    make_run(
        folder,
        n,
        correct={
            "zero-shot": [i % 5 == 0 for i in range(n)],
            "lora": [i % 5 != 0 for i in range(n)],
        },
        name=name,
    )

    def local(results):
        results["options"]["model"] = LOCAL + " (embedded)"
        results["costs"] = dict(TOKEN_PRICES)

    return _edit(folder, local)


def _combined(tmp_path, capsys, *extra) -> tuple[int, str]:
    a, b = hosted_run(tmp_path / "hosted"), local_run(tmp_path / "local")
    code = main(["report", str(a), str(b), "--out", str(tmp_path / "both"), *extra])
    return code, capsys.readouterr().err.strip()


def test_combined_report_holds_both_models(tmp_path, capsys):
    code, err = _combined(tmp_path, capsys)
    assert code == 0, err
    out = tmp_path / "both"
    assert {p.name for p in out.iterdir()} >= {
        "results.json",
        "predictions.jsonl",
        "report.md",
        "report.html",
    }
    results, records = load_run(out)
    names = [f"zero-shot @ {HOSTED}", f"few-shot-embedding @ {HOSTED}"]
    names += [f"zero-shot @ {LOCAL}", f"lora @ {LOCAL}"]
    assert list(results["methods"]) == names
    assert [s["folder"] for s in results["combined_from"]] == [
        str(tmp_path / "hosted"),
        str(tmp_path / "local"),
    ]
    assert results["baseline"] == f"zero-shot @ {HOSTED}"
    assert len(records) == 4 * N and {r["method"] for r in records} == set(names)
    md = (out / "report.md").read_text()
    for name in names:
        assert f"| {name} |" in md
    assert "Combined from" in md and "Served methods pay their tokens" in md
    assert f"lora @ {LOCAL}" in (out / "report.html").read_text()


def test_combined_costs_tests_and_pareto(tmp_path, capsys):
    assert _combined(tmp_path, capsys)[0] == 0
    analysis = analyse(*load_run(tmp_path / "both"))
    costs = {n: c["per_1k_queries"] for n, c in analysis["costs"].items()}
    # served: tokens only (make_run's prompt tokens 70 / 210, 8 generated), no hours
    assert costs[f"zero-shot @ {HOSTED}"] == pytest.approx(70 * 0.001 + 8 * 0.002)
    assert costs[f"few-shot-embedding @ {HOSTED}"] == pytest.approx(210 * 0.001 + 8 * 0.002)
    assert analysis["costs"][f"lora @ {LOCAL}"]["hardware"] == "CPU"
    # local: 0.2 / 0.4 s per query at 0.10 per CPU hour, none of the served model's token prices
    assert costs[f"zero-shot @ {LOCAL}"] == pytest.approx(1000 * 0.2 / 3600 * 0.10)
    assert costs[f"lora @ {LOCAL}"] == pytest.approx(1000 * 0.4 / 3600 * 0.10)
    test = analysis["tests"][f"lora @ {LOCAL}"]["zero-shot"]
    assert test["against"] == f"zero-shot @ {HOSTED}" and "McNemar" in test["test"]
    assert test["diff"] == pytest.approx(0.8 - 0.25)
    best = analysis["tests"][f"few-shot-embedding @ {HOSTED}"]["best"]
    assert best["against"] == f"lora @ {LOCAL}"
    assert analysis["pareto"] == [f"zero-shot @ {LOCAL}", f"lora @ {LOCAL}"]
    assert "lora" in (analysis["verdict"] or {}).get("text", "")


def test_report_token_price_flags_price_served_methods_only(tmp_path, capsys):
    code, err = _combined(tmp_path, capsys, "--prompt-token-price", "0.01")
    assert code == 0, err
    md = (tmp_path / "both" / "report.md").read_text()
    assert "per 1k prompt tokens 0.01, per 1k generated tokens 0.002" in md
    assert "per 1k prompt tokens 0, per 1k generated tokens 0" in md  # the local methods
    out = tmp_path / "again"
    args = [str(tmp_path / "hosted"), str(tmp_path / "local"), "--out", str(out)]
    assert main(["report", *args, "--prompt-token-price", "0.01", "--cpu-hour-price", "3.6"]) == 0
    costs = analyse(*load_run(out), overrides={"prompt_per_1k_tokens": 0.01, "cpu_hour": 3.6})
    costs = {n: c["per_1k_queries"] for n, c in costs["costs"].items()}
    assert costs[f"zero-shot @ {HOSTED}"] == pytest.approx(70 * 0.01 + 8 * 0.002)
    assert costs[f"lora @ {LOCAL}"] == pytest.approx(1000 * 0.4 / 3600 * 3.6)


@pytest.mark.parametrize(
    "make_b, message",
    [
        (lambda p: local_run(p, n=30), "scored other eval rows than"),
        (lambda p: local_run(p, name="other-task"), "another task than"),
    ],
)
def test_combined_refuses_runs_of_other_rows(tmp_path, capsys, make_b, message):
    a, b = hosted_run(tmp_path / "hosted"), make_b(tmp_path / "local")
    assert main(["report", str(a), str(b), "--out", str(tmp_path / "both")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and str(b) in err
    assert not (tmp_path / "both" / "results.json").exists()


def test_combined_out_is_required_and_never_an_input(tmp_path, capsys):
    a, b = hosted_run(tmp_path / "hosted"), local_run(tmp_path / "local")
    before = (a / "results.json").read_text()
    for extra in ([], ["--out", str(a)], ["--out", str(tmp_path)]):
        assert main(["report", str(a), str(b), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and ("--out" in err or "input" in err), err
    assert (a / "results.json").read_text() == before
    assert main(["report", str(a), str(a), "--out", str(tmp_path / "x")]) == 2
    assert "given twice" in capsys.readouterr().err


def test_combined_out_overwrite_and_rerender(tmp_path, capsys):
    assert _combined(tmp_path, capsys)[0] == 0
    out = tmp_path / "both"
    args = ["report", str(tmp_path / "hosted"), str(tmp_path / "local"), "--out", str(out)]
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    (out / "notes.txt").write_text("mine")
    assert main([*args, "--overwrite"]) == 2  # never deletes what adaptwise did not write
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0  # one folder: re-rendered in place
    assert f"lora @ {LOCAL}" in (out / "report.md").read_text()


def test_names_keep_their_own_when_one_model_and_say_the_folder_on_a_clash(tmp_path):
    a = load_run(local_run(tmp_path / "a"))
    b = make_run(tmp_path / "b", N, correct={"zero-shot": [True] * N, "rag": [True] * N})
    b = _edit(b, lambda r: r["options"].update(model=LOCAL + " (embedded)"))
    names = method_names([(Path("a"), *a), (Path("b"), *load_run(b))])
    assert names == [
        {"zero-shot": "zero-shot (a)", "lora": "lora"},
        {"zero-shot": "zero-shot (b)", "rag": "rag"},
    ]
