"""Benchmark: label scoring's batching, the previous path against the current one, same rows.

Previous path (kept below as the baseline, as it was before): zero-shot rows share their prefix
but run its pass again for every chunk of 8; few-shot rows (each with its own prefix) are scored
4 at a time from the first token, in eval order. Current path (`experiments.methods.
score_labels`): the prefix pass runs once per group; few-shot rows share the system turn they
all open with (one pass), run their examples and query on top of it, and are length-sorted
into batches.

The demo classification task, zero-shot and 4-shot (embedding-picked examples) prompts, its 8
labels. Each round scores both paths, alternating which goes first; prints per-round and median
CPU seconds and wall time, their ratios, and the largest label-score difference (target:
identical top labels, max difference <= 1e-4). Torch's thread count is printed and the same for
both. Run: python bench/bench_label_paths.py [--n 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from _common import demo_context, method_prompts

from experiments.methods import score_labels


def score_labels_before(ctx, rows, prompts, chunk: int = 8) -> np.ndarray:
    """The previous batching (raw scores only, no calibration), for comparison."""
    labels, encode, scorer = ctx.task.labels, ctx.encode, ctx.scorer
    continuations = [encode(label + ctx.prompt_format.answer_end) for label in labels]
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(p.prefix, []).append(i)
    raw = np.zeros((len(rows), len(labels)))
    singles = []
    for prefix_text, members in groups.items():
        if len(members) == 1:
            singles.extend(members)
            continue
        prefix = encode(prefix_text)
        for start in range(0, len(members), chunk):
            part = members[start : start + chunk]
            middles = [encode(prompts[i].middle) for i in part]
            raw[part] = scorer.score(prefix, middles, continuations)
    batch = max(1, chunk // 2)
    for start in range(0, len(singles), batch):
        part = singles[start : start + batch]
        raw[part] = scorer.score([], [encode(prompts[i].text) for i in part], continuations)
    return raw


def current(ctx, rows, prompts) -> np.ndarray:
    preds = score_labels(ctx, rows, prompts, [[] for _ in rows], progress=lambda n: None)
    return np.array([p.extra["label_logprobs"] for p in preds])


def timed(fn):
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn()
    return time.process_time() - cpu, time.perf_counter() - wall, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="eval rows (default 40)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ctx = demo_context("support-intents")
    ctx.lm  # noqa: B018
    rows = ctx.task.eval[: args.n]
    print(
        f"torch threads: {torch.get_num_threads()}; {len(rows)} rows, {len(ctx.task.labels)} labels"
    )
    for name, selector, k in (("zero-shot", None, 0), ("few-shot-embedding", "embedding", 4)):
        prompts = method_prompts(ctx, rows, name, selector, k)
        current(ctx, rows[:2], prompts[:2])  # warm-up
        ratios_cpu, ratios_wall, diffs = [], [], []
        for round_ in range(args.rounds):
            order = [("before", score_labels_before), ("now", current)]
            if round_ % 2:
                order.reverse()
            got = {}
            for label, fn in order:
                got[label] = timed(lambda fn=fn, prompts=prompts: fn(ctx, rows, prompts))
            (cpu_b, wall_b, before), (cpu_n, wall_n, now) = got["before"], got["now"]
            diff = float(np.max(np.abs(before - now)))
            same = int((before.argmax(1) == now.argmax(1)).sum())
            ratios_cpu.append(cpu_b / cpu_n)
            ratios_wall.append(wall_b / wall_n)
            diffs.append(diff)
            print(
                f"{name} round {round_ + 1}: before {cpu_b:.1f} CPU s / {wall_b:.1f} s wall, "
                f"now {cpu_n:.1f} / {wall_n:.1f}; ratio {cpu_b / cpu_n:.2f}x CPU, "
                f"{wall_b / wall_n:.2f}x wall; max |diff| {diff:.1e}; same top label "
                f"{same}/{len(rows)}"
            )
        print(
            f"{name}: median ratio {statistics.median(ratios_cpu):.2f}x CPU, "
            f"{statistics.median(ratios_wall):.2f}x wall; max |diff| {max(diffs):.1e}"
        )


if __name__ == "__main__":
    main()
