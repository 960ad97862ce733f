"""Real scale on a tiny random model: each setting is really applied (weight dtype, activation
checkpointing on the layers, accumulation steps, optimizer class), LoRA trains on the run's one
base copy and leaves it exactly as it was, the fit chooses settings the way the plan shows
them, and running out of memory is a result, not a crash."""

from __future__ import annotations

import json

import pytest
from test_finetune import make_task, quick

from advisor.architectures import resolve_shape
from advisor.fit import choose_settings, fit_method
from experiments.context import RunContext, RunOptions
from experiments.run.registry import make_method

# --- the fit (pure arithmetic on a real shape) -------------------------------------------------


LLAMA_8B = resolve_shape("llama-3-8b")


def fit(budget, **kw):
    settings = {"method": "qlora", "batch": 4, "seq": 512, "precision": "bf16", "device": "gpu"}
    return choose_settings(LLAMA_8B, budget_gb=budget, **{**settings, **kw})


def test_fit_keeps_the_fastest_settings_when_they_fit():
    roomy = fit(80)
    assert roomy.fits and not roomy.gradient_checkpointing and roomy.accumulation == 1
    assert roomy.optimizer == "adamw"
    assert roomy.auto == ("gradient_checkpointing", "gradient_accumulation_steps", "optimizer")


def test_fit_trades_speed_for_memory_as_the_budget_shrinks():
    roomy, tight = fit(80), fit(12)
    assert tight.fits and tight.estimate_gb <= 12 < roomy.estimate_gb
    assert tight.gradient_checkpointing or tight.accumulation > 1
    assert tight.optimizer == "adamw"  # numerics change only when nothing else fits
    # Checkpointing is the ~33% slowdown: a micro-batch of 2 (1.08x) comes first when it fits.
    half = fit(roomy.estimate_gb * 0.8)
    assert half.fits and (half.accumulation, half.gradient_checkpointing) == (2, False)


def test_fit_reports_what_cannot_fit_with_the_estimators_suggestion():
    hopeless = fit(3)
    assert not hopeless.fits and hopeless.suggestion
    assert hopeless.gradient_checkpointing and hopeless.accumulation == 4  # the leanest
    full = choose_settings(
        LLAMA_8B, "full-ft", 4, 512, "bf16", "gpu", budget_gb=24, optimizer="adamw"
    )
    assert not full.fits and full.optimizer == "adamw"  # a given setting is kept


def test_on_several_devices_the_fit_shards_only_what_does_not_fit_one():
    """strategy auto: DDP (a whole copy per device) while the settings fit one device, FSDP
    when none does; full-ft under FSDP steps with AdamW (8-bit state does not shard); a given
    strategy is kept; one device trains alone whatever the strategy says."""
    common = {"batch": 8, "seq": 2048, "precision": "bf16", "device": "gpu"}
    lora = choose_settings(LLAMA_8B, "lora", budget_gb=24, devices=4, **common)
    assert lora.fits and lora.strategy == "ddp" and "strategy" in lora.auto
    assert lora.micro_batch * lora.accumulation * 4 == 8  # the batch of all four devices
    full = choose_settings(LLAMA_8B, "full-ft", budget_gb=24, devices=8, **common)
    assert full.fits and full.strategy == "fsdp" and full.optimizer == "adamw"
    assert full.describe().startswith("fsdp over 8 devices")
    alone = choose_settings(LLAMA_8B, "full-ft", budget_gb=24, devices=1, strategy="fsdp", **common)
    assert alone.strategy == "ddp" and alone.devices == 1 and not alone.fits
    assert alone.suggestion.startswith("full-ft needs 8 x 24 GB GPUs with FSDP")
    kept = choose_settings(LLAMA_8B, "lora", budget_gb=80, devices=2, strategy="fsdp", **common)
    assert kept.strategy == "fsdp"
    qlora = choose_settings(LLAMA_8B, "qlora", budget_gb=4, devices=8, **common)
    assert qlora.strategy == "ddp"  # not sharded here


def test_fsdp_lora_trains_a_sharded_copy_of_its_own():
    """Under FSDP, LoRA does not train on the run's shared base: that copy is freed unless the
    sharded training fits beside it."""
    kw = {"method": "lora", "batch": 8, "seq": 2048, "precision": "bf16", "device": "gpu"}
    choice, freed = fit_method(
        LLAMA_8B, 24, 16.0, shares_base=True, devices=4, strategy="fsdp", **kw
    )
    assert choice.strategy == "fsdp" and freed
    choice, freed = fit_method(LLAMA_8B, 24, 16.0, shares_base=True, devices=4, **kw)
    assert choice.strategy == "ddp" and not freed  # DDP's LoRA trains on the shared base


def test_fit_frees_the_shared_copy_only_when_both_do_not_fit():
    kw = {"method": "qlora", "batch": 4, "seq": 512, "precision": "bf16", "device": "gpu"}
    choice, freed = fit_method(LLAMA_8B, 80, 16.0, shares_base=False, **kw)
    assert not freed and choice.fits
    choice, freed = fit_method(LLAMA_8B, 24, 16.0, shares_base=False, **kw)
    assert freed and choice.fits
    choice, freed = fit_method(LLAMA_8B, 24, 16.0, shares_base=True, **{**kw, "method": "lora"})
    assert not freed  # LoRA trains on the shared copy itself


# --- the trainer applies each setting ----------------------------------------------------------


def capture_training(monkeypatch):
    """What the trainer trained with, read off the live Trainer at its first step."""
    from transformers import TrainerCallback
    from trl import SFTTrainer

    from finetune.sft_trainer import optimizer_class

    seen: dict = {}

    class Spy(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
            if seen:
                return
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            layer = base.model.layers[0]
            seen.update(
                checkpointing=bool(getattr(layer, "gradient_checkpointing", False)),
                accumulation=args.gradient_accumulation_steps,
                micro_batch=args.per_device_train_batch_size,
                optimizer=optimizer_class(optimizer),
                weight_dtype=str(layer.self_attn.q_proj.weight.dtype)
                if not hasattr(layer.self_attn.q_proj, "base_layer")
                else str(layer.self_attn.q_proj.base_layer.weight.dtype),
                bf16=args.bf16,
            )

    original = SFTTrainer.__init__

    def init(self, *args, **kwargs):
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), Spy()]
        original(self, *args, **kwargs)

    monkeypatch.setattr(SFTTrainer, "__init__", init)
    return seen


def test_every_memory_setting_reaches_the_trainer(tiny_model, tmp_path, monkeypatch):
    from test_finetune import train
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    seen = capture_training(monkeypatch)
    config = quick(
        "full-ft",
        batch_size=4,
        gradient_checkpointing="true",
        gradient_accumulation_steps=2,
        optimizer="adamw-8bit",
        max_steps=1,
    )
    result, _ = train(tiny_model, tokenizer, make_task(), config, tmp_path / "ft", precision="bf16")
    assert seen["checkpointing"] and seen["accumulation"] == 2 and seen["micro_batch"] == 2
    assert seen["optimizer"] == "bitsandbytes.optim.adamw.AdamW (8-bit)" and seen["bf16"]
    assert seen["weight_dtype"] == "torch.bfloat16"  # pure bf16 full fine-tuning
    recorded = result.stats["training"]["memory_settings"]
    assert recorded["gradient_checkpointing"] and recorded["gradient_accumulation_steps"] == 2
    assert recorded["optimizer"] == "adamw-8bit"
    assert recorded["optimizer_class"] == seen["optimizer"]
    assert result.stats["training"]["precision"] == "bf16"
    # Checkpointing is switched off again once training ends.
    assert not getattr(result.model.model.layers[0], "gradient_checkpointing", False)


def test_qlora_computes_in_the_runs_precision(tiny_model):
    import torch

    from finetune.nf4_base import load_4bit_model, probe_4bit

    if probe_4bit() is not None:
        pytest.skip(f"4-bit training unsupported here: {probe_4bit()}")
    model = load_4bit_model(str(tiny_model), "bf16")
    layer = model.model.layers[0].self_attn.q_proj
    assert layer.compute_dtype == torch.bfloat16
    assert layer.support_avx512bf16_for_cpu is False  # the repacking that breaks training
    assert model.model.embed_tokens.weight.dtype == torch.bfloat16  # not upcast to fp32


# --- one base copy ---------------------------------------------------------------------------


def label_logprobs(ctx, rows):
    from experiments.run.runner import SilentProgress, run_method

    _, preds = run_method(ctx, make_method("zero-shot", {"k": 4}), rows, SilentProgress())
    return [p.extra["label_logprobs"] for p in preds]


def test_lora_trains_on_the_one_base_and_leaves_it_unchanged(tiny_model, tmp_path):
    from experiments.run.runner import SilentProgress, run_method

    task = make_task(n_train=12, n_eval=3)
    options = RunOptions(
        model=str(tiny_model),
        extra={"finetune": {"max_steps": 2, "rank": 4, "forgetting_probe": False}},
    )
    ctx = RunContext(task, options)
    ctx.out_dir = tmp_path
    base = ctx.model
    before = label_logprobs(ctx, task.eval)
    weights = {n: p.detach().clone() for n, p in base.named_parameters()}
    lora = make_method("lora", options.extra)
    lora.prepare(ctx)
    assert lora.trained.model.get_base_model() is base  # trained on the run's copy
    entry_preds = lora.predict(ctx, task.eval, lambda n: None)
    lora.extra_results(ctx, task.eval, entry_preds)
    assert ctx.model is base and not hasattr(base, "peft_config")
    assert type(base.model.layers[0].self_attn.q_proj).__name__ == "Linear"
    for name, p in base.named_parameters():
        assert name in weights and (p == weights[name]).all(), name
    assert label_logprobs(ctx, task.eval) == before  # bit for bit
    # And the run's peak memory is one base, whatever the method order.
    _, again = run_method(ctx, make_method("lora", options.extra), task.eval, SilentProgress())
    assert label_logprobs(ctx, task.eval) == before


def test_precision_is_one_setting_for_the_run_and_recorded(tiny_model, tmp_path):
    import torch

    from experiments.run.runner import run_task

    task = make_task(n_train=12, n_eval=3)
    options = RunOptions(
        model=str(tiny_model),
        precision="bf16",
        extra={"finetune": {"max_steps": 1, "rank": 4, "forgetting_probe": False}},
    )
    results = run_task(task, ["zero-shot", "lora"], tmp_path / "out", options)
    for name in ("zero-shot", "lora"):
        assert results["methods"][name]["precision"] == "bf16"
    memory = results["methods"]["lora"]["memory"]
    assert memory["precision"] == "bf16" and memory["estimate_gb"] > 0
    assert {"gradient_checkpointing", "micro_batch", "optimizer", "budget_gb"} <= set(memory)
    ctx = RunContext(task, options)
    assert ctx.model.dtype == torch.bfloat16


# --- out of memory is a result -----------------------------------------------------------------


def test_a_method_that_cannot_fit_is_recorded_and_the_others_run(tiny_model, tmp_path):
    from experiments.run.runner import run_task

    task = make_task(n_train=12, n_eval=3)
    finetune = {"max_steps": 1, "rank": 4, "forgetting_probe": False}
    finetune["full-ft"] = {"fit_memory_gb": 0.001}  # a forced fit to a tiny budget
    options = RunOptions(model=str(tiny_model), extra={"finetune": finetune})
    out = tmp_path / "out"
    results = run_task(task, ["zero-shot", "full-ft", "lora"], out, options)
    assert set(results["methods"]) == {"zero-shot", "lora"}
    failed = results["failed"]["full-ft"]
    assert failed["status"] == "out of memory" and failed["estimate_gb"] > 0.001
    assert failed["suggestion"] and failed["budget_gb"] == 0.001
    stored = json.loads((out / "results.json").read_text())
    assert stored["failed"]["full-ft"]["status"] == "out of memory"
    report = (out / "report.md").read_text()
    assert "## Memory" in report and "out of memory" in report and failed["suggestion"] in report
    assert "memory-table" in (out / "report.html").read_text()


def test_running_out_while_training_is_a_result_and_the_base_is_restored(
    tiny_model, tmp_path, monkeypatch
):
    import torch
    from trl import SFTTrainer

    from experiments.run.runner import run_task

    task = make_task(n_train=12, n_eval=3)
    options = RunOptions(
        model=str(tiny_model),
        extra={"finetune": {"max_steps": 1, "rank": 4, "forgetting_probe": False}},
    )
    alone = run_task(task, ["zero-shot"], tmp_path / "alone", options)

    def boom(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(SFTTrainer, "train", boom)
    results = run_task(task, ["lora", "zero-shot"], tmp_path / "out", options)
    assert results["failed"]["lora"]["status"] == "out of memory"
    failed = results["failed"]["lora"]
    # one advice (advisor/fit_suggestions.py after_out_of_memory): the trainer's and the record's
    assert failed["message"] == f"out of memory while training lora; {failed['suggestion']}"
    records = [
        json.loads(line)
        for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()
    ]
    after = [r["label_logprobs"] for r in records if r["method"] == "zero-shot"]
    before = [
        json.loads(line)["label_logprobs"]
        for line in (tmp_path / "alone" / "predictions.jsonl").read_text().splitlines()
    ]
    assert after == before  # the adapter was taken off the shared base after the failure
    assert results["methods"]["zero-shot"]["metrics"] == alone["methods"]["zero-shot"]["metrics"]


def test_the_run_trains_with_the_settings_the_plan_shows(tiny_model, tmp_path):
    """The plan's fit and the run's fit are one computation: given the same memory (a machine
    of B GB for the plan, `fit_memory_gb: B` for the run) they choose the same settings."""
    from test_plan import STATS

    from adaptwise.planning.plan import build_plan
    from adaptwise.planning.planner import run_settings
    from advisor.machine import Machine
    from experiments.run.runner import run_task
    from finetune.fitting import model_shape

    shape = model_shape(str(tiny_model))
    task = make_task(n_train=12, n_eval=3)
    # Long sequences of a 49k vocabulary: the logits dominate, so micro-batches pay off.
    settings = {"batch_size": 8, "max_length": 512, "rank": 4}
    whole = choose_settings(shape, "lora", 8, 512, "fp32", "cpu", budget_gb=100, lora_r=4)
    half = choose_settings(
        shape, "lora", 8, 512, "fp32", "cpu", budget_gb=100, accumulation=2, lora_r=4
    )
    assert half.estimate_gb < whole.estimate_gb
    budget = (whole.estimate_gb + half.estimate_gb) / 2
    plan = build_plan(
        ["lora"],
        STATS,
        shape,
        Machine(cpus=2, ram_gb=budget),
        settings=run_settings(task, finetune_settings=settings, precision="fp32"),
    )
    planned = plan.steps[0].memory_settings
    assert planned["gradient_accumulation_steps"] == 2 and planned["fits"]
    options = RunOptions(
        model=str(tiny_model),
        precision="fp32",
        extra={
            "finetune": {
                **settings,
                "max_steps": 1,
                "fit_memory_gb": budget,
                "forgetting_probe": False,
            }
        },
    )
    results = run_task(task, ["lora"], tmp_path / "out", options)
    ran = results["methods"]["lora"]["memory"]
    keys = ("micro_batch", "gradient_accumulation_steps", "gradient_checkpointing", "optimizer")
    assert {k: ran[k] for k in keys} == {k: planned[k] for k in keys}
    assert ran["estimate_gb"] == pytest.approx(planned["estimate_gb"], abs=1e-3)
    trained = results["methods"]["lora"]["training"]["memory_settings"]
    assert trained["gradient_accumulation_steps"] == 2 and trained["micro_batch"] == 4


def test_two_identical_lora_runs_give_identical_results(tiny_model, tmp_path):
    """Whatever the global generator holds (each process seeds it at random), the same seed
    trains the same adapter: peft's lora_A initialisation is seeded from the run's seed."""
    import torch

    from experiments.run.runner import run_task

    task = make_task(n_train=12, n_eval=3)
    options = RunOptions(
        model=str(tiny_model),
        extra={"finetune": {"max_steps": 3, "rank": 4, "forgetting_probe": False}},
    )
    runs = []
    for n in (1, 2):
        torch.manual_seed(1000 + n)  # another random state, as another process would have
        runs.append(run_task(task, ["lora"], tmp_path / f"run{n}", options)["methods"]["lora"])
        runs[-1]["logprobs"] = [
            json.loads(line)["label_logprobs"]
            for line in (tmp_path / f"run{n}" / "predictions.jsonl").read_text().splitlines()
        ]
    first, second = runs
    assert first["training"]["best_val_loss"] == second["training"]["best_val_loss"]
    assert first["metrics"] == second["metrics"] and first["logprobs"] == second["logprobs"]
