"""Benchmark: the memory estimator against peak RSS measured while the embedded model trains.

Each case runs in a fresh subprocess: import torch, transformers and peft, load the tokenizer
(the process baseline, reported on its own), load the embedded SmolLM2-135M in float32, then
sample process RSS (`experiments.peak_memory.PeakMemory`) over 3 AdamW steps at batch 8, seq 128 on
CPU: full fine-tuning, LoRA (peft, r=8, all linear layers, dropout 0.05) and, for reference,
one no-grad forward pass (inference). Prints estimate and measurement side by side with the
ratio; the figures are recorded in tests/test_memory_estimator.py and docs/memory-estimator.md.
Run with `python bench/bench_estimator_calibration.py` (about a minute on 2 cores).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH, SEQ, STEPS, LORA_R = 8, 128, 3, 8
CASES = ("inference", "lora", "full-ft")


def measure(case: str) -> dict:
    """Run in the child process: baseline RSS, then peak RSS over the case's steps (MB)."""
    import peft  # noqa: F401 - part of the baseline a fine-tuning run has loaded
    import torch
    import transformers

    from experiments.models import resolve_checkpoint
    from experiments.peak_memory import PeakMemory, current_rss_mb

    torch.manual_seed(0)
    checkpoint = resolve_checkpoint(None, progress=lambda *_: None)[0]
    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
    baseline = current_rss_mb()
    model = transformers.AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    if case == "lora":
        config = peft.LoraConfig(
            r=LORA_R, lora_alpha=2 * LORA_R, lora_dropout=0.05, target_modules="all-linear"
        )
        model = peft.get_peft_model(model, config)
    ids = torch.randint(0, tokenizer.vocab_size, (BATCH, SEQ))
    loaded = current_rss_mb()
    with PeakMemory(interval=0.01) as memory:
        if case == "inference":
            model.eval()
            with torch.no_grad():
                model(input_ids=ids)
        else:
            model.train()
            params = [p for p in model.parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(params, lr=1e-5)
            for _ in range(STEPS):
                loss = model(input_ids=ids, labels=ids).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
    return {"case": case, "baseline_mb": baseline, "loaded_mb": loaded, "peak_mb": memory.peak_mb}


def main() -> None:
    from advisor.architectures import KNOWN
    from advisor.memory import estimate

    shape = KNOWN["smollm2-135m"]
    rows = []
    for case in CASES:
        proc = subprocess.run(
            [sys.executable, __file__, "--case", case],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
        measured = json.loads(proc.stdout.strip().splitlines()[-1])
        est = estimate(
            shape,
            case,
            batch=BATCH,
            seq=SEQ,
            precision="fp32",
            lora_r=LORA_R,
            lora_dropout=0.05,
            device="cpu",
        )
        rows.append((case, measured, est))
    print(f"SmolLM2-135M on CPU, float32, batch {BATCH}, seq {SEQ}, {STEPS} AdamW steps")
    print(f"{'case':<10} {'baseline MB':>12} {'measured MB':>12} {'estimate MB':>12} {'ratio':>6}")
    for case, measured, est in rows:
        ratio = est.total_bytes / 1e6 / measured["peak_mb"]
        print(
            f"{case:<10} {measured['baseline_mb']:>12.0f} {measured['peak_mb']:>12.0f} "
            f"{est.total_bytes / 1e6:>12.0f} {ratio:>6.2f}"
        )
    print("estimate breakdown (MB):")
    for case, _, est in rows:
        parts = ", ".join(f"{k} {v / 1e6:.0f}" for k, v in est.breakdown().items())
        print(f"  {case}: {parts}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--case":
        print(json.dumps(measure(sys.argv[2])))
    else:
        main()
