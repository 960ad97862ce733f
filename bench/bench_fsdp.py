"""Benchmark: 2-process FSDP on this CPU, peak RSS per process against the estimator's per device.

A Llama-architecture model of about 0.5B parameters is built from a config with random weights
(no download; SmolLM2's tokenizer and chat template) and saved once in the cache (fp32). Each
case is adaptwise's own 2-process run, `adaptwise finetune demo/support-intents/task.yaml
--devices 2 --set strategy=fsdp` (torchrun's launcher, gloo, FSDP2 sharded as it loads), fp32,
3 steps of 128-token packed sequences, batch 2 (1 per process), no validation, fit off, AdamW,
LoRA r 16 on every linear layer; then the run scores 2 eval rows, as `finetune` does.

While it runs, this script polls /proc/<pid>/status of the launcher's two worker processes every
20 ms (nothing in the product changes): VmHWM is the worker's whole peak RSS (loading, training,
saving and scoring included). The first process's peak over training alone is the trainer's own
`peak_memory_mb` (results.json). Both sit beside `advisor.memory.estimate` per device, for the
same settings with `devices=2, strategy="fsdp"`: its CPU overhead (the process itself, 0.51 GB,
and the malloc-retained transients) is the estimator's, not tuned here. Ratio: estimate /
measured; the target is every estimate within 30%.

Run with `python bench/bench_fsdp.py` (about 8 minutes on 2 cores; nothing else running).
`--cases a,b` runs some of them; `--json PATH` also writes the rows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEVICES, SEQ, STEPS, RANK, BATCH = 2, 128, 3, 16, 2
# About 0.51B parameters: hidden 1024, 32 layers of full multi-head attention (16 heads) and a
# 2,816-wide MLP, SmolLM2's 49,152-token vocabulary with an untied lm_head.
CONFIG = {
    "hidden_size": 1024,
    "intermediate_size": 2816,
    "num_hidden_layers": 32,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": False,
}
CASES = {"fsdp-full-ft-fp32": "full-ft", "fsdp-lora-fp32": "lora"}


def model_folder() -> Path:
    from experiments.models import cache_dir

    return cache_dir() / "bench" / "llama-0.5b-random"


def build_model() -> Path:
    """The random 0.5B Llama, saved once (fp32 safetensors, ~2 GB)."""
    from bench_scale import build_random_llama

    return build_random_llama(model_folder(), CONFIG)


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        return []


FIELDS = ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem")


def _status_kb(pid: int) -> dict[str, int]:
    """The memory fields of /proc/<pid>/status, in KiB ({} once the process is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key in FIELDS:
                    out[key] = int(value.split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    return out


def _workers(launcher: int) -> list[int]:
    """The launcher's descendants that run adaptwise (torchrun's workers)."""
    found, todo = [], _children(launcher)
    while todo:
        pid = todo.pop()
        todo.extend(_children(pid))
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmd = handle.read().split(b"\0")
        except OSError:
            continue
        if b"adaptwise" in cmd:
            found.append(pid)
    return found


def run_case(name: str, folder: Path, scratch: Path) -> dict:
    """Run one case in 2 processes; each worker's peak RSS (MB) and the run's training stats."""
    method = CASES[name]
    settings = {
        "strategy": "fsdp",
        "max_steps": STEPS,
        "batch_size": BATCH,
        "max_length": SEQ,
        "val_fraction": 0,
        "rank": RANK,
        "gradient_checkpointing": "false",
        "gradient_accumulation_steps": 1,
        "optimizer": "adamw",
        "fit": "off",
        "forgetting_probe": "false",
    }
    argv = [sys.executable, "-m", "adaptwise", "finetune"]
    argv += [str(ROOT / "demo" / "support-intents" / "task.yaml"), "--model", str(folder)]
    argv += ["--methods", method, "--devices", str(DEVICES), "--precision", "fp32"]
    argv += ["--limit", "2", "--out", str(scratch / "out")]
    for key, value in settings.items():
        argv += ["--set", f"{key}={value}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    log = (scratch / "log.txt").open("w")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    hwm: dict[int, int] = {}
    at_peak: dict[int, dict[str, int]] = {}  # each worker's sample with the largest VmRSS
    anon: dict[int, int] = {}  # each worker's largest RssAnon
    while proc.poll() is None:
        for pid in _workers(proc.pid):
            kb = _status_kb(pid)
            if "VmHWM" in kb:
                hwm[pid] = max(hwm.get(pid, 0), kb["VmHWM"])
            if kb.get("VmRSS", 0) > at_peak.get(pid, {}).get("VmRSS", -1):
                at_peak[pid] = kb
            anon[pid] = max(anon.get(pid, 0), kb.get("RssAnon", 0))
        time.sleep(0.02)
    wall = time.perf_counter() - started
    log.close()
    if proc.returncode != 0:
        tail = (scratch / "log.txt").read_text().strip().splitlines() or ["?"]
        return {"error": tail[-1]}
    results = json.loads((scratch / "out" / "results.json").read_text())
    training = results["methods"][method]["training"]
    return {
        "worker_peaks_mb": sorted(kb * 1024 / 1e6 for kb in hwm.values()),
        # The sampled peak of the worker with the largest one: anonymous memory (the heap:
        # tensors, python) against file-backed pages (mapped libraries, the safetensors file).
        "sampled_peak_mb": {
            k: round(v * 1024 / 1e6, 1)
            for k, v in max(at_peak.values(), key=lambda kb: kb["VmRSS"]).items()
        },
        "max_anon_mb": round(max(anon.values()) * 1024 / 1e6, 1),
        "train_peak_rank0_mb": training["peak_memory_mb"],
        "s_per_step": training["s_per_step"],
        "steps": training["steps"],
        "tokens_per_step": training["train_tokens"] / max(training["steps"], 1),
        "distributed": training.get("distributed"),
        "wall_s": wall,
    }


def estimate_for(name: str, shape):
    from advisor.memory import estimate

    return estimate(
        shape,
        CASES[name],
        batch=BATCH // DEVICES,
        seq=SEQ,
        precision="fp32",
        optimizer="adamw",
        lora_r=RANK,
        lora_dropout=0.0,
        device="cpu",
        devices=DEVICES,
        strategy="fsdp",
    )


def main() -> None:
    from bench_scale import case_arguments

    args, names = case_arguments(__doc__, CASES)
    folder = build_model()
    from advisor.architectures import read_config

    shape = read_config(folder / "config.json", "llama-0.5b-random")
    print(f"random Llama, {shape.total_params / 1e9:.3f}B parameters, {folder}", flush=True)
    rows = []
    for name in names:
        est = estimate_for(name, shape)
        parts = {k: round(v / 1e9, 3) for k, v in est.breakdown().items()}
        print(f"{name}: estimate per device {est.total_gb:.2f} GB {parts}", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-fsdp-") as scratch:
            measured = run_case(name, folder, Path(scratch))
        if "error" in measured:
            print(f"{name}: failed ({measured['error']})", flush=True)
            rows.append({"case": name, "error": measured["error"]})
            continue
        peak_gb = max(measured["worker_peaks_mb"]) / 1e3
        train_gb = measured["train_peak_rank0_mb"] / 1e3
        row = {
            "case": name,
            "estimate_gb": round(est.total_gb, 2),
            "process_peak_gb": round(peak_gb, 2),
            "train_peak_rank0_gb": round(train_gb, 2),
            "ratio": round(est.total_gb / peak_gb, 2),
            "ratio_train": round(est.total_gb / train_gb, 2),
            "estimate_parts_gb": parts,
            **measured,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print(
        "| case | estimate per device GB | peak RSS per process GB (max of 2) | "
        "estimate / measured | rank 0 peak over training GB | estimate / that | s / step |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['case']} | failed: {r['error']} | | | | | |")
            continue
        print(
            f"| {r['case']} | {r['estimate_gb']:.2f} | {r['process_peak_gb']:.2f} | "
            f"{r['ratio']:.2f} | {r['train_peak_rank0_gb']:.2f} | {r['ratio_train']:.2f} | "
            f"{r['s_per_step']:.1f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
