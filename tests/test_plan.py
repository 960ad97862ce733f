"""The experiment plan: parsing --target and --budget, ladder order, fit marking, the budget
cut-off, the JSON shape, the command's one-line errors, and the timing probe on the real model."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from adaptwise.planning.estimates import Rates, TaskStats
from adaptwise.planning.plan import build_plan
from adaptwise.planning.targets import parse_budget, parse_target
from advisor.architectures import resolve_shape
from advisor.machine import Machine
from experiments.errors import AdaptwiseError
from experiments.report.formatting import format_short

ROOT = Path(__file__).resolve().parent.parent
SHAPE = resolve_shape("smollm2-135m")
STATS = TaskStats(
    name="t",
    kind="classification",
    n_train=360,
    n_eval=40,
    n_labels=8,
    prompt_tokens=70,
    example_tokens=35,
    answer_tokens=3,
    label_tokens=3,
    train_tokens=24000,
)
RATES = Rates(
    model="m",
    machine="x",
    device="cpu",
    forward_s_per_token=0.003,
    decode_s_per_step=0.05,
    decode_batch=2,
    train_s_per_token={"lora": 0.03, "full-ft": 0.05},
    load_s=0.5,
    probe_s=5.0,
)
BIG = Machine(cpus=2, ram_gb=64.0)
LADDER = ["zero-shot", "few-shot-embedding", "lora", "full-ft"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("2h", 7200), ("90s", 90), ("1h30m", 5400), ("1.5h", 5400), ("45 min", 2700)],
)
def test_budget_parses(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "30x", "m30", "0m", "-5m", "1h-30m", "abc"])
def test_bad_budget_is_one_clear_error(text):
    with pytest.raises(AdaptwiseError, match="--budget"):
        parse_budget(text)


def test_target_parses_and_checks_the_metric():
    assert parse_target("accuracy=0.8").value == 0.8
    assert parse_target("macro-f1=75%").metric == "macro_f1"
    assert parse_target("macro-f1=75%").value == pytest.approx(0.75)
    with pytest.raises(AdaptwiseError, match="classification task is scored by accuracy"):
        parse_target("exact_match=0.5", "classification")
    for bad in ("accuracy", "accuracy=", "accuracy=high", "accuracy=1.5", "accuracy=0", "x=0.5"):
        with pytest.raises(AdaptwiseError, match="--target"):
            parse_target(bad)


def test_plan_keeps_the_ladder_order_and_adds_up():
    plan = build_plan(LADDER, STATS, SHAPE, BIG, rates=RATES)
    assert [s.method for s in plan.steps] == LADDER
    assert [s.order for s in plan.steps] == [1, 2, 3, 4]
    zero, few, lora, full = plan.steps
    assert zero.prepare_s == 0 and zero.score_s > 0
    assert few.prompt_tokens > zero.prompt_tokens and few.score_s > zero.score_s
    assert few.prepare_s > 0  # embedding the train rows
    assert lora.prepare_s > few.prepare_s  # training
    assert full.prepare_s > lora.prepare_s  # a slower step per token
    assert lora.score_s == zero.score_s  # same zero-shot prompt after training
    assert full.peak_memory_gb > lora.peak_memory_gb > zero.peak_memory_gb
    running = 0.0
    for step in plan.steps:
        running += step.total_s
        assert step.cumulative_s == pytest.approx(running)
    assert plan.total_s == pytest.approx(running)


def with_finetune(precision: str = "fp32", **values):
    """RunSettings whose fine-tuning methods have `values` as a task's finetune: section."""
    from adaptwise.planning.estimates import RunSettings
    from finetune.config import METHODS, build_config

    configs = {m: build_config(m, values, {}, 0) for m in METHODS}
    return RunSettings(precision=precision, finetune=configs)


def test_training_time_scales_with_epochs_and_tokens():
    one = build_plan(["lora"], STATS, SHAPE, BIG, rates=RATES).steps[0].prepare_s
    two = build_plan(["lora"], STATS, SHAPE, BIG, with_finetune(epochs=2), RATES)
    assert two.steps[0].prepare_s == pytest.approx(2 * one, rel=0.1)


def test_fit_marking_and_the_change_that_makes_it_fit():
    tiny = Machine(cpus=2, ram_gb=1.5)
    plan = build_plan(LADDER, STATS, SHAPE, tiny, rates=RATES)
    fits = {s.method: s.fits for s in plan.steps}
    # LoRA fits by taking micro-batches and checkpointing; full-ft cannot, even so.
    assert fits == {"zero-shot": True, "few-shot-embedding": False, "lora": True, "full-ft": False}
    embedding, lora, full = plan.steps[1:]
    assert lora.memory_settings["gradient_checkpointing"]
    assert "batch" in embedding.fit_change and full.fit_change == "use QLoRA instead of full-ft"
    assert full.cumulative_s is None
    # a rung that does not fit is not counted in the climb
    assert plan.total_s == pytest.approx(plan.steps[0].total_s + lora.total_s)
    gpu = Machine(cpus=8, ram_gb=64, gpu_name="T", gpu_memory_gb=0.6)
    full = build_plan(["full-ft"], STATS, SHAPE, gpu, rates=RATES).steps[0]
    assert not full.fits and "batch" in full.fit_change or "GPU" in full.fit_change


def test_a_full_fine_tuning_too_large_for_one_gpu_is_planned_on_as_many_as_fsdp_needs():
    """Llama 3 8B full fine-tuning does not fit one 24 GB GPU even with the leanest settings:
    the plan's change names the GPUs FSDP needs; planned on that many, it fits, sharded, with
    the peak per device; LoRA, which fits one GPU, stays DDP (a whole copy on each)."""
    from dataclasses import replace

    shape = resolve_shape("llama-3-8b")
    gpu = Machine(cpus=8, ram_gb=64, gpu_name="RTX 4090", gpu_memory_gb=24)
    settings = with_finetune("bf16", max_length=2048, batch_size=8)
    one = build_plan(["full-ft"], STATS, shape, gpu, settings).steps[0]
    assert not one.fits
    assert one.fit_change == "full-ft needs 8 x 24 GB GPUs with FSDP (--devices 8)"
    planned = build_plan(["full-ft", "lora"], STATS, shape, gpu, replace(settings, devices=8))
    full, lora = planned.steps
    assert full.fits and full.peak_memory_gb <= 24
    assert full.memory_settings["strategy"] == "fsdp" and full.memory_settings["devices"] == 8
    assert full.memory_settings["optimizer"] == "adamw"  # 8-bit state does not shard
    assert "peak memory per device, of 8" in full.notes
    assert lora.fits and lora.memory_settings["strategy"] == "ddp"


def test_the_plan_shows_the_settings_the_run_will_fit_with():
    roomy = build_plan(["lora", "full-ft"], STATS, SHAPE, BIG, rates=RATES).steps
    assert all(s.fits for s in roomy)
    for step in roomy:  # the fastest settings when memory is plenty
        m = step.memory_settings
        assert not m["gradient_checkpointing"] and m["gradient_accumulation_steps"] == 1
        assert m["optimizer"] == "adamw" and not m["shared_base_freed"]
    small = build_plan(["lora", "full-ft"], STATS, SHAPE, Machine(cpus=2, ram_gb=3.0), rates=RATES)
    lora, full = (s.memory_settings for s in small.steps)
    assert all(s.fits for s in small.steps)
    assert lora["gradient_accumulation_steps"] > 1 or lora["gradient_checkpointing"]
    assert full["shared_base_freed"] and full["estimate_gb"] <= 3.0
    assert any("frees the run's shared" in n for n in small.steps[1].notes)


def test_budget_cuts_the_ladder_off():
    costs = [s.total_s for s in build_plan(LADDER, STATS, SHAPE, BIG, rates=RATES).steps]
    budget = costs[0] + costs[1] + 1
    plan = build_plan(LADDER, STATS, SHAPE, BIG, rates=RATES, budget_s=budget)
    assert [s.in_budget for s in plan.steps] == [True, True, False, False]
    assert "zero-shot, few-shot-embedding" in plan.summary()
    none = build_plan(LADDER, STATS, SHAPE, BIG, rates=RATES, budget_s=1)
    assert not any(s.in_budget for s in none.steps)
    assert "no method" in none.summary()


def test_without_a_probe_times_are_unknown():
    plan = build_plan(LADDER, STATS, SHAPE, BIG)
    assert all(s.total_s is None and s.cumulative_s is None for s in plan.steps)
    assert all(s.peak_memory_gb > 0 for s in plan.steps)


def test_json_shape():
    from adaptwise.planning.targets import Target

    plan = build_plan(
        LADDER, STATS, SHAPE, BIG, rates=RATES, budget_s=600, target=Target("accuracy", 0.8)
    )
    data = json.loads(json.dumps(plan.to_dict()))
    assert set(data) >= {"task", "model", "machine", "rows_scored", "target", "budget_s"}
    assert data["target"] == {"metric": "accuracy", "value": 0.8}
    step = data["steps"][0]
    assert set(step["estimate_s"]) == {"prepare", "score", "total"}
    assert set(step) >= {"method", "order", "peak_memory_gb", "fits", "fit_change", "in_budget"}
    assert data["probe"]["train_s_per_token"]["lora"] == 0.03
    assert data["machine"]["device"] == "cpu"


def test_plan_table_fits_an_80_column_terminal(capsys, monkeypatch):
    from adaptwise.commands_plan import _print

    monkeypatch.setenv("COLUMNS", "80")
    plan = build_plan(LADDER, STATS, SHAPE, BIG, rates=RATES, budget_s=600)
    plan.probe_cached = True
    _print(plan)
    out = capsys.readouterr().out
    assert "few-shot-embedding" in out and "within" in out
    assert "…" not in out  # no cell truncated
    assert max(len(line) for line in out.splitlines()) <= 80


def test_qa_scoring_counts_generation_steps():
    qa = TaskStats(**{**STATS.__dict__, "kind": "qa", "n_labels": 0, "max_new_tokens": 20})
    rag = build_plan(["zero-shot", "rag"], qa, SHAPE, BIG, rates=RATES)
    zero, with_rag = rag.steps
    assert with_rag.prompt_tokens > zero.prompt_tokens and with_rag.score_s > zero.score_s


def test_a_hybrid_is_planned_as_what_the_run_builds():
    """The plan reads what a method does from the method the run builds (the registry), not
    from its name's spelling: raft retrieves and trains a LoRA like rag+lora (its prompts carry
    passages, its preparation builds the index and trains), and rag+qlora gets QLoRA's CPU note."""
    qa = TaskStats(**{**STATS.__dict__, "kind": "qa", "n_labels": 0, "corpus_tokens": 20000})
    methods = ["zero-shot", "rag", "rag+lora", "raft", "rag+qlora"]
    plan = build_plan(methods, qa, SHAPE, BIG, rates=RATES)
    zero, rag, rag_lora, raft, rag_qlora = plan.steps
    assert raft.prompt_tokens == rag_lora.prompt_tokens == rag.prompt_tokens > zero.prompt_tokens
    assert raft.prepare_s == pytest.approx(rag_lora.prepare_s)
    assert raft.prepare_s > rag.prepare_s > 0
    assert raft.memory_settings == rag_lora.memory_settings is not None
    assert any("4-bit kernels" in note for note in rag_qlora.notes)


def test_format_short():
    assert [format_short(s) for s in (None, 5, 65, 3600 + 300)] == ["-", "5s", "1m05s", "1h05m"]


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "adaptwise", "plan", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "soon"], "--budget 'soon': expected a duration"),
        (["--target", "accuracy=2"], "--target 'accuracy=2': the value must be in (0, 1]"),
        (["--target", "rouge_l=0.5"], "a classification task is scored by accuracy, macro_f1"),
        (["--limit", "-1"], "--limit must be 0"),
    ],
)
def test_plan_command_bad_values_exit_2(args, message):
    proc = run_cli("demo/support-intents/task.yaml", *args)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert message in proc.stderr


def test_probe_and_plan_on_the_real_model(tmp_path, monkeypatch):
    """The timing probe once, on the real embedded model and a tiny task; then cached."""
    from adaptwise.planning.planner import make_plan
    from advisor.machine import this_machine
    from experiments.models import resolve_checkpoint
    from experiments.task import load_task

    real = resolve_checkpoint(None, progress=lambda m: None)[0]  # the converted model
    monkeypatch.setenv("ADAPTWISE_CACHE", str(tmp_path / "cache"))  # a fresh probe cache
    monkeypatch.setattr(
        "experiments.models.resolve_checkpoint",
        lambda spec, progress=print: (real, "SmolLM2-135M-Instruct"),
    )
    task = load_task(ROOT / "demo/support-intents/task.yaml")
    machine = this_machine(None)
    plan = make_plan(task, limit=4, machine=machine, budget_s=3600, log=lambda m: None)
    rates = plan.rates
    assert rates.forward_s_per_token > 0 and rates.train_s_per_token["lora"] > 0
    assert rates.decode_s_per_step >= rates.forward_s_per_token  # never below one token a row
    assert rates.probe_s > 0 and not plan.probe_cached  # its duration: bench/bench_plan_probe.py
    assert [s.method for s in plan.steps][:2] == ["zero-shot", "few-shot-embedding"]
    assert all(s.total_s and s.total_s > 0 for s in plan.steps)
    again = make_plan(task, limit=4, machine=machine, log=lambda m: None)
    assert again.probe_cached and again.rates == rates


def test_plan_and_run_choose_the_same_memory_settings(tiny_model, tmp_path, capsys):
    """`adaptwise plan --json` and `adaptwise run` call one fit (finetune/fitting.py fit_config)
    with one budget rule: on a task that adapts only q_proj and v_proj, with its memory budget
    set, both report the same estimate and settings for each fine-tuning method, and that
    estimate is the one for those two projections, not for every linear layer."""
    import shutil

    import yaml

    from adaptwise.cli import main
    from advisor.architectures import read_config
    from advisor.memory import estimate

    folder = tmp_path / "task"
    shutil.copytree(Path(__file__).parent.parent / "demo" / "support-intents", folder)
    task = yaml.safe_load((folder / "task.yaml").read_text())
    task["finetune"] = {
        "target_modules": ["q_proj", "v_proj"],
        "fit_memory_gb": 6,
        "max_steps": 1,
        "batch_size": 8,
        "max_length": 256,
        "forgetting_probe": False,
        "val_fraction": 0,
    }
    (folder / "task.yaml").write_text(yaml.safe_dump(task))
    methods = "lora,qlora,full-ft"
    common = [str(folder / "task.yaml"), "--model", str(tiny_model), "--methods", methods]
    assert main(["plan", *common, "--limit", "2", "--json", "--gpu-gb", "0"]) == 0
    plan = json.loads(capsys.readouterr().out)
    out = tmp_path / "run"
    assert main(["run", *common, "--limit", "2", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())

    keys = (
        "estimate_gb",
        "budget_gb",
        "gradient_checkpointing",
        "gradient_accumulation_steps",
        "micro_batch",
        "optimizer",
        "strategy",
        "devices",
        "shared_base_freed",
        "shared_base_gb",
        "budget_source",
    )
    planned = {s["method"]: s["memory_settings"] for s in plan["steps"]}
    for method in methods.split(","):
        ran = results["methods"][method]["memory"]
        assert {k: planned[method][k] for k in keys} == {k: ran[k] for k in keys}, method
        assert ran["budget_gb"] == 6 and ran["budget_source"] == "finetune fit_memory_gb"
    shape = read_config(tiny_model / "config.json", "tiny")
    settings = dict(batch=8, seq=256, precision="fp32", device="cpu", lora_dropout=0.0)
    qv = estimate(shape, "lora", lora_targets=("q_proj", "v_proj"), **settings).total_gb
    every = estimate(shape, "lora", lora_targets="all-linear", **settings).total_gb
    assert round(every, 3) != round(qv, 3)
    assert planned["lora"]["estimate_gb"] == round(qv, 3)
