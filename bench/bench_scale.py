"""Benchmark: adaptwise at 1B parameters on this CPU, measured against the memory estimator.

A Llama-architecture model of about 1B parameters is built from a config with random weights
(no download; quality is irrelevant; SmolLM2's tokenizer and chat template) and saved once in
the cache (fp32). Each case then runs in a fresh process and reports its peak RSS over the
measured work (sampled every 10 ms, after the model has loaded: what the estimator models) and
its seconds per step, beside `advisor.memory.estimate` for exactly the settings it ran, and the
process's whole peak (ru_maxrss, loading included: converting the fp32 file to bf16 touches the
file's 4 GB of page cache, which counts in RSS but is reclaimable):

- inference fp32 and bf16: one forward pass over a batch of 1 x 256 tokens;
- LoRA (r 16, all linear layers) with and without gradient checkpointing, fp32;
- QLoRA (NF4 base, bitsandbytes' CPU backend), bf16 compute;
- full fine-tuning with 8-bit AdamW (bitsandbytes' CPU backend has it), fp32;
- the run itself, `zero-shot,lora` through `experiments.run.runner.run_task` on the demo task, to
  show one base copy: its peak against the estimate for two copies of the base.

Training cases use adaptwise's own trainer (`finetune.trainer.train_model`) on the demo task's
train rows packed into 256-token sequences, batch 1, 3 steps, no validation. The ratio column is
measured / estimate; the target is every estimate within 30%.

Run with `python bench/bench_scale.py` (about 15 minutes on 2 cores; nothing else running).
`--cases a,b` runs some of them; `--json PATH` also writes the rows.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEQ, STEPS, RANK = 256, 3, 16
# About 1.0B parameters: TinyLlama's width and grouped-query attention, 20 layers, SmolLM2's
# 49,152-token vocabulary (tied embeddings), so the embedded tokenizer and template apply.
CONFIG = {
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 20,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": True,
}
CASES = {
    "inference-fp32": {"method": "inference", "precision": "fp32"},
    "inference-bf16": {"method": "inference", "precision": "bf16"},
    "lora-fp32": {"method": "lora", "precision": "fp32"},
    "lora-fp32-checkpointing": {
        "method": "lora",
        "precision": "fp32",
        "gradient_checkpointing": True,
    },
    "qlora-bf16": {"method": "qlora", "precision": "bf16"},
    "full-ft-fp32-adamw-8bit": {
        "method": "full-ft",
        "precision": "fp32",
        "optimizer": "adamw-8bit",
    },
    "run-zero-shot+lora": {"method": "run", "precision": "fp32"},
}


def model_folder() -> Path:
    from experiments.models import cache_dir

    return cache_dir() / "bench" / "llama-1b-random"


def build_model() -> Path:
    """The random 1B Llama, saved once (fp32 safetensors, ~4 GB)."""
    return build_random_llama(model_folder(), CONFIG)


def build_random_llama(folder: Path, shape: dict) -> Path:
    """A Llama of `shape` (LlamaConfig fields) with random weights and the embedded model's
    tokenizer, saved once in `folder` (fp32)."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from experiments.models import resolve_checkpoint

    checkpoint, _ = resolve_checkpoint(None, progress=lambda _m: None)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **shape,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    staging = folder.with_name(folder.name + ".tmp")
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    staging.rename(folder)
    return folder


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6  # KiB on Linux


def run_case(name: str) -> dict:
    """In the child process: run one case, return its measurements."""
    import logging

    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    import torch

    torch.manual_seed(0)
    case = CASES[name]
    folder = model_folder()
    if case["method"] == "inference":
        return _inference(folder, case)
    if case["method"] == "run":
        return _run(folder)
    return _train(folder, case)


def _inference(folder: Path, case: dict) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from experiments.peak_memory import PeakMemory
    from experiments.precision import torch_dtype

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype(case["precision"]))
    model.eval()
    ids = torch.randint(0, model.config.vocab_size, (1, SEQ))
    with PeakMemory(interval=0.01) as memory:
        started = time.perf_counter()
        with torch.inference_mode():
            model(input_ids=ids).logits.float().log_softmax(-1)
        wall = time.perf_counter() - started
    return {"peak_mb": memory.peak_mb, "process_peak_mb": _peak_rss_mb(), "s_per_step": wall}


def _rows():
    from experiments.task import load_task

    task = load_task(ROOT / "demo" / "support-intents" / "task.yaml")
    return task, task.train[:120]


def _train(folder: Path, case: dict) -> dict:
    from transformers import AutoTokenizer

    from experiments.prompts import PromptFormat, system_text
    from finetune.config import build_config
    from finetune.trainer import train_model

    task, rows = _rows()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    settings = {
        "max_steps": STEPS,
        "batch_size": 1,
        "max_length": SEQ,
        "val_fraction": 0,
        "rank": RANK,
        "gradient_checkpointing": str(case.get("gradient_checkpointing", False)).lower(),
        "gradient_accumulation_steps": 1,
        "optimizer": case.get("optimizer", "adamw"),
    }
    config = build_config(case["method"], {}, settings, seed=0)
    model = None
    if case["method"] == "qlora":
        from finetune.nf4_base import load_4bit_model

        model = load_4bit_model(str(folder), case["precision"])
    out = Path(sys.argv[-1])
    result = train_model(
        str(folder),
        tokenizer,
        PromptFormat(tokenizer, system_text(task)),
        rows,
        [],
        config,
        out,
        log=lambda _m: None,
        model=model,
        precision=case["precision"],
    )
    training = result.stats["training"]
    return {
        "peak_mb": training["peak_memory_mb"],
        "process_peak_mb": _peak_rss_mb(),
        "s_per_step": training["s_per_step"],
        "tokens_per_step": training["train_tokens"] / max(training["steps"], 1),
        "optimizer_class": training["memory_settings"]["optimizer_class"],
    }


def _run(folder: Path) -> dict:
    from experiments.context import RunOptions
    from experiments.run.runner import run_task

    task, _ = _rows()
    settings = {
        "max_steps": STEPS,
        "batch_size": 1,
        "max_length": SEQ,
        "val_fraction": 0,
        "forgetting_probe": False,
    }
    options = RunOptions(model=str(folder), limit=4, extra={"finetune": settings})
    out = Path(sys.argv[-1])
    results = run_task(task, ["zero-shot", "lora"], out, options)
    lora = results["methods"]["lora"]
    return {
        "peak_mb": _peak_rss_mb(),  # the whole process: both methods, loading included
        "s_per_step": lora["training"]["s_per_step"],
        "fit": lora["memory"],
    }


def estimate_for(name: str, shape) -> tuple[float, float | None]:
    """(estimate GB, two-copies GB for the run case)."""
    from advisor.memory import GB, estimate

    case = CASES[name]
    method = "lora" if case["method"] == "run" else case["method"]
    est = estimate(
        shape,
        method,
        batch=1,
        seq=SEQ,
        precision=case["precision"],
        gradient_checkpointing=case.get("gradient_checkpointing", False),
        optimizer=case.get("optimizer", "adamw"),
        lora_r=RANK,
        lora_dropout=0.0,
        device="cpu",
    )
    if case["method"] != "run":
        return est.total_gb, None
    width = {"fp32": 4, "bf16": 2}[case["precision"]]
    return est.total_gb, est.total_gb + shape.total_params * width / GB


def case_arguments(doc: str, cases: dict) -> tuple[argparse.Namespace, list[str]]:
    """The command line of a bench of named cases (`--cases a,b`, `--json PATH`): the parsed
    arguments and the cases to run."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--cases", help=f"comma-separated, from: {', '.join(cases)}")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    return args, args.cases.split(",") if args.cases else list(cases)


def main() -> None:
    args, names = case_arguments(__doc__, CASES)
    folder = build_model()
    from advisor.architectures import read_config

    shape = read_config(folder / "config.json", "llama-1b-random")
    print(f"random Llama, {shape.total_params / 1e9:.2f}B parameters, {folder}")
    rows = []
    import tempfile

    for name in names:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as scratch:
            started = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, __file__, "--child", name, scratch],
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            wall = time.perf_counter() - started
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            print(f"{name}: failed ({tail})")
            rows.append({"case": name, "error": tail})
            continue
        measured = json.loads(proc.stdout.strip().splitlines()[-1])
        est_gb, two_copies = estimate_for(name, shape)
        row = {
            "case": name,
            "measured_gb": round(measured["peak_mb"] / 1e3, 2),
            "process_peak_gb": round(measured.get("process_peak_mb", measured["peak_mb"]) / 1e3, 2),
            "estimate_gb": round(est_gb, 2),
            "ratio": round(measured["peak_mb"] / 1e3 / est_gb, 2),
            "s_per_step": round(measured["s_per_step"], 2),
            "wall_s": round(wall, 1),
            **{k: v for k, v in measured.items() if k not in ("peak_mb", "s_per_step")},
        }
        if two_copies is not None:
            row["two_copies_gb"] = round(two_copies, 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print("| case | peak RSS GB | estimate GB | measured / estimate | s / step |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['case']} | failed: {r['error']} | | | |")
            continue
        extra = f" (two base copies: {r['two_copies_gb']:.2f} GB)" if "two_copies_gb" in r else ""
        print(
            f"| {r['case']}{extra} | {r['measured_gb']:.2f} | {r['estimate_gb']:.2f} | "
            f"{r['ratio']:.2f} | {r['s_per_step']:.1f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(run_case(sys.argv[2])))
    else:
        main()
