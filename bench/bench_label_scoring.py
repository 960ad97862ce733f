"""Label scoring from the shared prompt's cache vs one full forward per label.

5-shot prompts (Jaccard examples) from the demo intents task, scored against 7 labels.
Prints seconds per example for both, the ratio, and the largest score difference.
Run: python bench/bench_label_scoring.py [--n 12]
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import demo_context, timed

from experiments.prompting import PromptingMethod


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=12, help="eval rows (default 12)")
    args = parser.parse_args()

    ctx = demo_context("support-intents")
    labels = ctx.task.labels[:7]
    method = PromptingMethod("few-shot-jaccard", "jaccard", k=5)
    method.prepare(ctx)
    rows = ctx.task.eval[: args.n]
    prompts = [
        ctx.prompt_format.build(ex, r.messages)
        for ex, r in zip(method.examples_for(ctx, rows), rows)
    ]
    conts = [ctx.encode(label + ctx.prompt_format.answer_end) for label in labels]
    parts = [(ctx.encode(p.prefix), ctx.encode(p.middle)) for p in prompts]
    assert all(ctx.encode(p.text) == a + b for p, (a, b) in zip(prompts, parts)), "token split"
    scorer = ctx.scorer

    scorer.score(*parts[0][:1], [parts[0][1]], conts)  # warm-up
    t_cache, cached = timed(lambda: [scorer.score(a, [b], conts)[0] for a, b in parts])
    t_full, full = timed(lambda: [scorer.score_full(a + b, conts) for a, b in parts])
    diff = float(np.max(np.abs(np.array(cached) - np.array(full))))
    same_argmax = sum(int(np.argmax(c) == np.argmax(f)) for c, f in zip(cached, full))
    mean_len = np.mean([len(a) + len(b) for a, b in parts])
    print(f"{len(rows)} 5-shot prompts (mean {mean_len:.0f} tokens), {len(labels)} labels")
    print(f"{'mode':<34}{'s / example':>12}")
    print(f"{'one full forward per label':<34}{t_full / len(rows):>12.3f}")
    print(f"{'shared prompt cache, labels batched':<34}{t_cache / len(rows):>12.3f}")
    print(
        f"speed-up: {t_full / t_cache:.1f}x; max |score difference|: {diff:.2e}; "
        f"same top label: {same_argmax}/{len(rows)}"
    )


if __name__ == "__main__":
    main()
