"""LoRA training throughput against TRL's SFTTrainer as it comes, the same rows and settings.

The demo intents task's first ROWS train rows (prompt/completion pairs, completion-only loss),
one epoch, LoRA r=16 / alpha 32 on every linear layer, batch 4, max_length 256, learning rate
5e-4 with 10% warm-up, fp32 on the CPU. Three sides, each in a fresh process so no run inherits
another's heap, alternating order each round:

- adaptwise: `finetune.trainer.train_model` (its default CPU layout: 4 x 256 packed tokens a
  step as one flattened sequence with attention within each row, and the prompt opening the
  step's rows share computed once);
- TRL defaults: `trl.SFTTrainer` with the same LoRA config and hyper-parameters and TRL's own
  collation (each batch of 4 rows padded to its longest);
- TRL packing: the same with `packing=True` (TRL's best-fit-decreasing packing, padding-free).

The measure is real tokens (every row's own prompt and completion tokens, up to max_length) per
CPU second and per wall second; every side trains the same rows, so the ratio of their CPU
seconds is the ratio of their throughput. Time counts from the trainer's construction (TRL
tokenises the dataset there) to the end of training; the base model is loaded before. Prints
per-round and median ratios (TRL / adaptwise: above 1 means adaptwise is cheaper) and each
side's last logged training loss.
Run: python bench/bench_peer_trl.py [--rows 96] [--rounds 2]  (about 6 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import alternating_rounds, pin_threads, print_ratios

SIDES = ("adaptwise", "TRL defaults", "TRL packing")
SETTINGS = {
    "epochs": 1,
    "batch_size": 4,
    "max_length": 256,
    "learning_rate": 5e-4,
    "warmup": 0.1,
    "val_fraction": 0.0,
    "forgetting_probe": False,
    "fit": "off",
}


def train_adaptwise(ctx, examples_rows, folder: Path) -> dict:
    from finetune.base_model import load_model
    from finetune.config import build_config
    from finetune.trainer import train_model

    config = build_config("lora", {}, SETTINGS, seed=0)
    model = load_model(ctx.checkpoint, config)
    cpu, wall = time.process_time(), time.perf_counter()
    result = train_model(
        ctx.checkpoint,
        ctx.tokenizer,
        ctx.prompt_format,
        examples_rows,
        [],
        config,
        folder,
        log=lambda _m: None,
        model=model,
    )
    stats = result.stats["training"]
    return {
        "cpu": time.process_time() - cpu,
        "wall": time.perf_counter() - wall,
        "steps": stats["steps"],
        "loss": stats["final_train_loss"],
    }


def train_trl(ctx, rows, folder: Path, packing: bool) -> dict:
    import datasets
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, set_seed
    from transformers.utils import logging as hf_logging
    from trl import SFTConfig, SFTTrainer

    from finetune.data import to_examples

    datasets.disable_progress_bars()
    hf_logging.set_verbosity_error()
    set_seed(0)
    model = AutoModelForCausalLM.from_pretrained(ctx.checkpoint)
    args = SFTConfig(
        output_dir=str(folder),
        num_train_epochs=SETTINGS["epochs"],
        per_device_train_batch_size=SETTINGS["batch_size"],
        learning_rate=SETTINGS["learning_rate"],
        lr_scheduler_type="linear",
        warmup_steps=SETTINGS["warmup"],
        max_length=SETTINGS["max_length"],
        packing=packing,
        bf16=False,  # TRL's default asks for bf16 on a GPU; both sides train fp32 here
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        logging_steps=1,
        seed=0,
        dataloader_num_workers=0,
    )
    lora = LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    cpu, wall = time.process_time(), time.perf_counter()
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(to_examples(rows, ctx.prompt_format)),
        processing_class=ctx.tokenizer,
        peft_config=lora,
    )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "cpu": time.process_time() - cpu,
        "wall": time.perf_counter() - wall,
        "steps": trainer.state.global_step,
        "loss": losses[-1] if losses else None,
    }


def real_tokens(ctx, rows) -> int:
    from finetune.data import to_examples

    texts = [e["prompt"] + e["completion"] for e in to_examples(rows, ctx.prompt_format)]
    return sum(min(len(ctx.encode(t)), SETTINGS["max_length"]) for t in texts)


def child(side: str, n_rows: int) -> None:
    from bench_finetune import training_context

    pin_threads()
    ctx = training_context()
    ctx.encode = lambda text: ctx.tokenizer(text, add_special_tokens=False)["input_ids"]
    rows = ctx.task.train[:n_rows]
    folder = Path(tempfile.mkdtemp(prefix="bench-peer-trl-"))
    if side == "adaptwise":
        done = train_adaptwise(ctx, rows, folder)
    else:
        done = train_trl(ctx, rows, folder, packing=side == "TRL packing")
    done["tokens"] = real_tokens(ctx, rows)
    print(json.dumps(done))


def in_child(side: str, n_rows: int):
    command = [sys.executable, __file__, "--side", side, "--rows", str(n_rows)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{side} failed:\n{done.stderr[-3000:]}")
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    return stats["cpu"], stats["wall"], stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=96, help="train rows (default 96)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.side:
        child(args.side, args.rows)
        return
    pin_threads()
    print(f"LoRA, {args.rows} demo train rows, 1 epoch, batch 4, max_length 256")

    def report(round_, got):
        for side, (cpu, wall, s) in got.items():
            print(
                f"round {round_ + 1} {side:13s} {s['steps']:3d} steps  {cpu:6.1f} CPU s "
                f"{wall:6.1f} s wall  {s['tokens'] / cpu:6.1f} real tokens/CPU-s  "
                f"{s['tokens'] / wall:6.1f} /s  last loss {s['loss']:.4f}"
            )

    runs = alternating_rounds(
        {side: (lambda side=side: in_child(side, args.rows)) for side in SIDES},
        args.rounds,
        report,
    )
    for peer in SIDES[1:]:
        print_ratios("LoRA throughput", runs, peer, "adaptwise")


if __name__ == "__main__":
    main()
