"""Fine-tuning throughput on the demo intents task, side by side in one run.

1. LoRA with packed sequences (adaptwise's default: 4 x 256 tokens a step, run on a CPU as one
   flattened sequence with attention within each row, the prompt opening the step's rows share
   computed once) vs the same training with every row padded to max_length (the seed's
   collate): the same rows in the same steps, each row on its own batch row. A third run packs
   without sharing the prefix, to show what packing alone buys. Tokens/s of real tokens (every
   row's own tokens, shared prefix included) and the final validation loss (token-weighted),
   all trained on all the demo task's train rows for one epoch.
2. full-ft vs LoRA vs QLoRA on the embedded model: peak memory, s/step and tokens/s.

Each method of part 2 trains in a fresh process, so one's memory does not inflate the next's
process-RSS peak.

Run: python bench/bench_finetune.py [--rows N] [--steps 4] [--part 1|2|all] [--repeats 2]
(about 20 minutes on 2 cores: the padded runs process every row at 256 tokens).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

from _common import ROOT

from finetune.config import build_config
from finetune.data import split_validation
from finetune.trainer import train_model


def run(ctx, method: str, rows, settings: dict, folder: Path, layout: str = "packed") -> dict:
    """Train `method` on `rows`; ctx needs .checkpoint, .tokenizer and .prompt_format."""
    config = build_config(method, {}, {"forgetting_probe": False, **settings}, seed=0)
    train_rows, val_rows = split_validation(rows, config.val_fraction, 0)
    model = None
    if method == "qlora":
        from finetune.nf4_base import load_4bit_model, probe_4bit

        if probe_4bit() is not None:
            return {"skipped": probe_4bit()}
        model = load_4bit_model(ctx.checkpoint)
    result = train_model(
        ctx.checkpoint,
        ctx.tokenizer,
        ctx.prompt_format,
        train_rows,
        val_rows,
        config,
        folder,
        log=lambda _m: None,
        model=model,
        layout=layout,
    )
    return result.stats["training"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=0, help="train rows used (default: all)")
    parser.add_argument("--steps", type=int, default=4, help="steps for part 2 (default 4)")
    parser.add_argument("--part", default="all", choices=("1", "2", "all"))
    parser.add_argument(
        "--repeats", type=int, default=2, help="alternating rounds of the part-1 layouts"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child process: train one method
    parser.add_argument("--layout", default="packed", help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args)
        return
    if args.part in ("1", "all"):
        settings = {"epochs": 1, "max_length": 256, "evals_per_epoch": 1, "patience": 10}
        settings["batch_size"] = 4
        # The same training, step for step: the rows of each step's packed sequences, each
        # padded to max_length (the seed's collate). Same rows, order and loss; only the layout
        # (and so the time) differs. The layouts alternate, so drift in the machine's speed
        # falls on both, and each run has a fresh process: a packed run after a padded one in
        # the same process took 221 s against 167 s fresh (the padded run's 9 GB heap).
        # name: (layout, settings); "unshared" is the packed run without the shared prompt
        # prefix, to show what packing alone buys.
        variants = {
            "packed": ("packed", settings),
            "unshared": ("packed", {**settings, "share_prefix": False}),
            "padded": ("padded-rows", settings),
        }
        runs = {name: [] for name in variants}
        for _repeat in range(args.repeats):
            for name, (layout, chosen) in variants.items():
                extra = ["--layout", layout, "--settings", json.dumps(chosen)]
                runs[name].append(train_in_child("lora", args.rows, extra))
        packed, padded = runs["packed"][0], runs["padded"][0]
        real = packed["train_tokens_per_epoch"]
        padded_tokens = packed["train_rows"] * 256
        print(f"LoRA, {packed['train_rows']} train rows, 1 epoch, max_length 256")
        print(
            f"  {real:,} real tokens; padded, the rows are {padded_tokens:,} tokens "
            f"({100 * real / padded_tokens:.0f}% real)"
        )
        labels = {
            "packed": "packed (default)",
            "unshared": "packed, no shared prefix",
            "padded": "padded to 256",
        }
        rates = {}
        for name, done in runs.items():
            walls = [s["train_wall_s"] for s in done]
            rates[name] = sum(s["train_tokens"] for s in done) / sum(walls)
            s = done[0]
            print(
                f"  {labels[name]:24s} {s['steps']:3d} steps of "
                f"{s['train_rows'] / s['steps']:4.1f} rows"
                f"  {rates[name]:7.1f} real tokens/s  "
                + " + ".join(f"{w:.1f}" for w in walls)
                + f" s  val loss {s['best_val_loss']:.4f}  peak {s['peak_memory_mb']:.0f} MB"
            )
        for name in ("packed", "unshared"):
            ratio = rates[name] / rates["padded"]
            ours = runs[name][0]["best_val_loss"]
            gap = abs(ours - padded["best_val_loss"]) / padded["best_val_loss"]
            each = [
                p["tokens_per_s"] / q["tokens_per_s"]
                for p, q in zip(runs[name], runs["padded"], strict=True)
            ]
            print(
                f"  {labels[name]} vs padded: {ratio:.2f}x over {args.repeats} alternating"
                f" run(s) each ({', '.join(f'{r:.2f}x' for r in each)} run by run;"
                f" target >= 3x); val loss differs by {100 * gap:.1f}%"
            )

    if args.part in ("2", "all"):
        print(f"{args.steps} steps of 4 x 256 packed tokens, each method in a fresh process")
        for method in ("full-ft", "lora", "qlora"):
            s = train_in_child(method, args.rows, ["--steps", str(args.steps)])
            if "skipped" in s:
                print(f"  {method:8s} skipped: {s['skipped']}")
                continue
            print(
                f"  {method:8s} peak {s['peak_memory_mb']:7.0f} MB ({s['peak_memory_kind']})"
                f"  {s['s_per_step']:6.2f} s/step  {s['tokens_per_s']:7.1f} tokens/s"
                f"  trainable {s['trainable_params']:,}"
            )


def train_in_child(method: str, rows: int, extra: list[str]) -> dict:
    """Train in a fresh process (`--one`), so no run inherits another's heap; its stats."""
    child = [sys.executable, __file__, "--one", method, "--rows", str(rows), *extra]
    done = subprocess.run(child, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def training_context() -> SimpleNamespace:
    """The demo task, the model's checkpoint folder, tokenizer and prompts, without loading the
    inference model (its 0.5 GB would sit in every measured process's RSS)."""
    from experiments.models import resolve_checkpoint
    from experiments.prompts import PromptFormat, system_text
    from experiments.task import load_task
    from finetune.methods import _fresh_tokenizer

    task = load_task(ROOT / "demo" / "support-intents" / "task.yaml")
    checkpoint, _ = resolve_checkpoint(None, progress=lambda _m: None)
    tokenizer = _fresh_tokenizer(checkpoint, False)
    return SimpleNamespace(
        task=task,
        checkpoint=str(checkpoint),
        tokenizer=tokenizer,
        prompt_format=PromptFormat(tokenizer, system_text(task)),
    )


def one(args) -> None:
    ctx = training_context()
    rows = ctx.task.train[: args.rows] if args.rows else ctx.task.train
    settings = {"max_steps": args.steps, "batch_size": 4, "val_fraction": 0.0}
    if args.settings:
        settings = json.loads(args.settings)
    folder = Path(tempfile.mkdtemp(prefix=f"bench-ft-{args.one}-"))
    stats = run(ctx, args.one, rows, settings, folder, args.layout)
    print(json.dumps(stats, default=str))


if __name__ == "__main__":
    main()
