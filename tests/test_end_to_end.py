"""The real embedded model on a few eval rows of each demo task, through the real CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
METHODS = "zero-shot,few-shot-random,few-shot-jaccard,few-shot-embedding,few-shot-mmr"


def run_cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "adaptwise", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=False,
    )


# As a user's machine may be: HF_HUB_OFFLINE unset, and a CPU that bitsandbytes sees with
# AVX-512 BF16 (tests/netguard/sitecustomize.py), where importing it asked the hub for a kernel.
USERS_MACHINE = {
    **{
        k: v for k, v in os.environ.items() if not k.startswith(("HF_HUB_OFFLINE", "ADAPTWISE_SET"))
    },
    "ADAPTWISE_TEST_AVX512_BF16": "1",
}


@pytest.mark.parametrize(
    ("task", "limit", "flags", "env"),
    [
        ("support-intents", 4, ["--calibrate"], None),
        ("support-intents", 3, [], USERS_MACHINE),
        ("helpdesk-qa", 3, [], USERS_MACHINE),
    ],
)
def test_demo_task_end_to_end(tmp_path, task, limit, flags, env):
    out = tmp_path / "out"
    proc = run_cli(
        "run",
        str(ROOT / f"demo/{task}/task.yaml"),
        "--methods",
        METHODS,
        "--out",
        str(out),
        "--limit",
        str(limit),
        *flags,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # No library notice the user cannot act on (bitsandbytes' kernels package, transformers'
    # deprecations): every line is adaptwise's own.
    for noise in ("Warning", "deprecated", "kernels-community", "Traceback"):
        assert noise not in proc.stderr + proc.stdout, noise

    results = json.loads((out / "results.json").read_text())
    methods = results["methods"]
    assert list(methods) == METHODS.split(",")
    for name, entry in methods.items():
        assert entry["n_eval"] == limit
        assert entry["metrics"], name
        assert all(0.0 <= v <= 1.0 for v in entry["metrics"].values())
        assert entry["inference_s"] > 0 and entry["peak_memory_mb"] > 100
        assert entry["prompt_tokens_mean"] > 10
    zero, jaccard = methods["zero-shot"], methods["few-shot-jaccard"]
    assert jaccard["prompt_tokens_mean"] > 2 * zero["prompt_tokens_mean"]  # 4 examples added

    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == limit * len(methods)
    task_rows = [
        json.loads(line)
        for line in (ROOT / f"demo/{task}/eval.jsonl").read_text().splitlines()[:limit]
    ]
    assert [p["id"] for p in preds[:limit]] == [r["id"] for r in task_rows]
    assert [p["gold"] for p in preds[:limit]] == [r["output"] for r in task_rows]
    for p in preds:
        assert isinstance(p["correct"], bool)
        assert p["prompt"].rstrip().endswith("assistant")  # the chat template's answer opener
    if results["task"]["kind"] == "classification":
        labels = set(results["task"]["labels"])
        assert all(p["output"] in labels and p["output_raw"] in labels for p in preds)
        assert "metrics_raw" in zero
        if flags:  # calibrated: both label choices recorded, the calibrated one is the output
            assert "metrics_calibrated" in zero and "metrics_calibrated" in jaccard
            assert all(p["output"] == p["output_calibrated"] for p in preds)
        else:
            assert "metrics_calibrated" not in zero
            assert all(p["output"] == p["output_raw"] for p in preds)
        assert all(len(p["label_logprobs"]) == len(labels) for p in preds)
    else:
        assert all(p["output"].strip() for p in preds), "every QA answer is non-empty"
        assert methods["zero-shot"]["generated_tokens_mean"] > 0
        assert all("\n" not in p["output"] for p in preds)

    report = (out / "report.md").read_text()
    for name in methods:
        assert f"| {name} |" in report
    assert not list(out.glob(".*.tmp")), "no temporary files left behind"


def test_rerun_keeps_other_methods(tmp_path):
    task = str(ROOT / "demo/support-intents/task.yaml")
    out = tmp_path / "out"
    assert (
        run_cli(
            "run", task, "--methods", "zero-shot", "--out", str(out), "--limit", "2", cwd=tmp_path
        ).returncode
        == 0
    )
    proc = run_cli(
        "run",
        task,
        "--methods",
        "few-shot-jaccard-k2",
        "--out",
        str(out),
        "--limit",
        "2",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert list(results["methods"]) == ["zero-shot", "few-shot-jaccard-k2"]
    preds = (out / "predictions.jsonl").read_text().splitlines()
    assert len(preds) == 4
