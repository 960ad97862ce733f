"""`adaptwise estimate`: peak memory of inference, full fine-tuning, LoRA or QLoRA.

Import-light: argparse only at module level; the estimator and rich load inside the handler.
"""

from __future__ import annotations

import argparse


def register(sub, add_run_options) -> None:
    """Add the `estimate` subcommand."""
    p = sub.add_parser(
        "estimate",
        help="estimate peak memory of inference, full fine-tuning, LoRA or QLoRA",
        description="Estimate peak memory (weights, gradients, optimizer state, activations, "
        "logits, overhead) from a model's shape, without loading it; per device on several "
        "(--devices N --strategy ddp|fsdp).",
    )
    p.add_argument(
        "--model",
        required=True,
        help="a known architecture (llama-2-7b, llama-2-13b, llama-3-8b, mistral-7b, "
        "qwen2.5-0.5b, qwen2.5-7b, smollm2-135m, ...), a config.json or model folder, "
        "or a hub id where a hub is reachable",
    )
    p.add_argument(
        "--method",
        default="lora",
        choices=("inference", "full-ft", "lora", "qlora"),
        help="default: %(default)s",
    )
    _add_training_options(p)
    _add_device_options(p)
    p.set_defaults(handler=cmd_estimate)


def _add_training_options(p) -> None:
    """What is trained and how: batch, length, optimizer, precision, checkpointing, LoRA."""
    from advisor.architectures import LORA_TARGETS  # light: no torch

    p.add_argument("--batch", type=int, default=1, help="sequences per step (default: 1)")
    p.add_argument("--seq", type=int, default=512, help="tokens per sequence (default: 512)")
    p.add_argument(
        "--optimizer",
        default="adamw",
        choices=("adamw", "adamw-8bit", "paged-adamw-8bit"),
        help="default: %(default)s",
    )
    p.add_argument(
        "--precision",
        default=None,
        choices=("bf16", "fp32", "fp16"),
        help="bf16: pure bf16 training; fp16: mixed precision with fp32 master weights "
        "(default: bf16 on a GPU, fp32 on a CPU)",
    )
    p.add_argument(
        "--gradient-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="recompute activations in the backward pass (default: off)",
    )
    p.add_argument("--lora-r", type=int, default=16, help="LoRA rank (default: 16)")
    p.add_argument(
        "--lora-targets",
        default="all-linear",
        choices=tuple(LORA_TARGETS),
        help="projections LoRA adapts (default: %(default)s)",
    )
    p.add_argument(
        "--lora-dropout",
        type=float,
        default=0.05,
        help="LoRA dropout; above 0 it keeps a dropped copy of each input (default: 0.05)",
    )


def _add_device_options(p) -> None:
    """Where it trains: the device, how many and how the work spreads, the output format."""
    p.add_argument("--device", default="gpu", choices=("gpu", "cpu"), help="default: gpu")
    p.add_argument(
        "--devices",
        type=int,
        default=1,
        metavar="N",
        help="devices training together, one process each: the estimate is per device, "
        "--batch each device's (default: 1)",
    )
    p.add_argument(
        "--strategy",
        default="ddp",
        choices=("ddp", "fsdp"),
        help="ddp: a whole copy on each device; fsdp: parameters, gradients and optimizer "
        "state sharded across them (default: %(default)s)",
    )
    p.add_argument(
        "--cpu-offload",
        action="store_true",
        help="fsdp: the shards in host memory, the optimizer stepping there",
    )
    p.add_argument(
        "--chunked-loss",
        action="store_true",
        help="logits kept at the compute width and the loss upcast chunk by chunk "
        "(torchtune's CEWithChunkedOutputLoss), rather than float32 logits",
    )
    p.add_argument(
        "--gpu-memory",
        type=float,
        metavar="GB",
        help="also say whether it fits a GPU of this many GB, and what would make it fit",
    )
    p.add_argument("--json", action="store_true", help="print a machine-readable breakdown")


def cmd_estimate(args) -> int:
    """Print the estimate as a table, or as JSON with --json."""
    import json

    from advisor.architectures import resolve_shape
    from advisor.fit_suggestions import suggest_fit
    from advisor.memory import estimate
    from experiments.errors import AdaptwiseError

    if args.gpu_memory is not None and args.gpu_memory <= 0:
        raise AdaptwiseError("--gpu-memory must be more than 0 GB")
    shape = resolve_shape(args.model)
    settings = dict(
        batch=args.batch,
        seq=args.seq,
        optimizer=args.optimizer,
        precision=args.precision or ("bf16" if args.device == "gpu" else "fp32"),
        gradient_checkpointing=args.gradient_checkpointing,
        lora_r=args.lora_r,
        lora_targets=args.lora_targets,
        lora_dropout=args.lora_dropout,
        devices=args.devices,
        strategy=args.strategy,
        cpu_offload=args.cpu_offload,
        chunked_loss=args.chunked_loss,
    )
    est = estimate(shape, args.method, device=args.device, **settings)
    suggestions = []
    if args.gpu_memory is not None:
        suggestions = suggest_fit(shape, args.method, args.gpu_memory, **settings)
    if args.json:
        out = est.as_dict()
        if args.gpu_memory is not None:
            out["gpu_memory_gb"] = args.gpu_memory
            out["fits"] = not suggestions
            out["suggestions"] = [
                {"change": s.change, "total_gb": round(s.estimate.total_gb, 3)} for s in suggestions
            ]
        print(json.dumps(out, indent=2))
        return 0
    _print_table(est, args.gpu_memory, suggestions)
    return 0


def _print_table(est, gpu_memory, suggestions) -> None:
    from rich.console import Console
    from rich.table import Table

    s = est.setup
    where = "GPU" if s.device == "gpu" else "CPU (process RSS)"
    if s.devices > 1 or s.strategy == "fsdp":
        where = f"each of {s.devices} {where}s, {s.strategy.upper()}"
        where += " with CPU offload" if s.cpu_offload else ""
    caption = (
        f"batch {s.batch} x seq {s.seq}{' per device' if s.devices > 1 else ''}, {s.precision}"
        f"{', ' + s.optimizer if s.method != 'inference' else ''}"
        f"{', gradient checkpointing' if s.gradient_checkpointing else ''}"
        f"{', chunked loss' if s.chunked_loss else ''}"
    )
    table = Table(title=f"{est.model}: {s.method} on {where}", caption=caption)
    table.add_column("component")
    table.add_column("GB", justify="right")
    table.add_column("share", justify="right")
    total = est.total_bytes or 1
    for name, value in est.breakdown().items():
        table.add_row(name.replace("_", " "), f"{value / 1e9:.2f}", f"{value / total:.0%}")
    table.add_row("total", f"{est.total_gb:.2f}", "100%", style="bold")
    console = Console()
    console.print(table)
    trainable = f"{est.trainable_params:,} trainable of " if s.method != "inference" else ""
    console.print(f"{trainable}{est.total_params:,} parameters")
    if est.offloaded and s.cpu_offload:
        console.print(
            f"held in host memory for each device (CPU offload: its shard of the parameters, "
            f"gradients and optimizer state): {est.offloaded / 1e9:.2f} GB (not in the total)"
        )
    elif est.offloaded:
        console.print(
            f"paged optimizer state held in host-spillable memory: "
            f"{est.offloaded / 1e9:.2f} GB (not in the total)"
        )
    if gpu_memory is not None:
        each = "each" if s.devices > 1 else "a"
        if not suggestions:
            console.print(f"[green]fits[/] {each} {gpu_memory:g} GB GPU")
        else:
            console.print(f"[red]does not fit[/] {each} {gpu_memory:g} GB GPU; any one of:")
            for sug in suggestions:
                console.print(f"  - {sug.change} ({sug.estimate.total_gb:.1f} GB)")
