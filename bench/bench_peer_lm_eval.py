"""Label scoring against lm-evaluation-harness on the same prompts, the same model in memory.

The demo classification task's eval rows, zero-shot and 4-shot (embedding-picked examples)
prompts, each scored against the task's labels. adaptwise's `score_labels` shares prefix passes
and scores every label on top of the prompt's cached keys/values; lm-eval's HFLM scores each
(prompt, label) request with its own forward over prompt + label (its one-token-continuation
cache only helps single-token labels). lm-eval is handed the token ids adaptwise scores
(`_loglikelihood_tokens`: lm-eval's `loglikelihood` would move the prompt's trailing newline
into the continuation and so score other tokens), so both sides compute the same quantity and
the largest score difference is printed (target: within 1e-4, the same top label).

Each round runs both sides, alternating which goes first; prints per-round and median ratios
of CPU seconds and wall time (lm-eval / adaptwise: above 1 means adaptwise is cheaper).
Needs the `bench` extra (lm-eval): pip install -e '.[bench]'
Run: python bench/bench_peer_lm_eval.py [--n 40] [--rounds 3] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
from _common import (
    alternating_rounds,
    cpu_and_wall,
    demo_context,
    method_prompts,
    pin_threads,
    print_ratios,
)

from experiments.methods import score_labels


def ours(ctx, rows, prompts) -> np.ndarray:
    preds = score_labels(ctx, rows, prompts, [[] for _ in rows], progress=lambda n: None)
    return np.array([p.extra["label_logprobs"] for p in preds])


def lm_eval_scores(lm, ctx, prompts) -> np.ndarray:
    labels = ctx.task.labels
    conts = [ctx.encode(label + ctx.prompt_format.answer_end) for label in labels]
    requests = [
        ((p.text, label), ctx.encode(p.text), cont)
        for p in prompts
        for label, cont in zip(labels, conts)
    ]
    scores = lm._loglikelihood_tokens(requests, disable_tqdm=True)
    return np.array([s for s, _greedy in scores]).reshape(len(prompts), len(labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="eval rows (default 40)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8, help="lm-eval's batch (default 8)")
    args = parser.parse_args()
    pin_threads()
    from lm_eval.models.huggingface import HFLM

    # HFLM notes that it was handed a loaded model rather than a name: meant, not a problem.
    logging.getLogger("lm_eval").setLevel(logging.ERROR)

    ctx = demo_context("support-intents")
    lm = HFLM(
        pretrained=ctx.model,
        tokenizer=ctx.tokenizer,
        device="cpu",
        batch_size=args.batch_size,
        add_bos_token=False,  # adaptwise's prompts are the chat template's, no extra BOS
    )
    rows = ctx.task.eval[: args.n]
    print(f"{len(rows)} rows, {len(ctx.task.labels)} labels, lm-eval batch {args.batch_size}")
    for name, selector, k in (("zero-shot", None, 0), ("4-shot embedding", "embedding", 4)):
        prompts = method_prompts(ctx, rows, name, selector, k)
        ours(ctx, rows[:2], prompts[:2])  # warm-up, both sides
        lm_eval_scores(lm, ctx, prompts[:2])

        def report(round_, got, name=name):
            (c_o, w_o, s_o), (c_l, w_l, s_l) = got["adaptwise"], got["lm-eval"]
            diff = float(np.max(np.abs(s_o - s_l)))
            same = int((s_o.argmax(1) == s_l.argmax(1)).sum())
            print(
                f"{name} round {round_ + 1}: adaptwise {c_o:.1f} CPU s / {w_o:.1f} s wall, "
                f"lm-eval {c_l:.1f} / {w_l:.1f}; ratio {c_l / c_o:.2f}x CPU, "
                f"{w_l / w_o:.2f}x wall; max |diff| {diff:.1e}; same top label "
                f"{same}/{len(rows)}"
            )

        runs = alternating_rounds(
            {
                "adaptwise": lambda p=prompts: cpu_and_wall(lambda: ours(ctx, rows, p)),
                "lm-eval": lambda p=prompts: cpu_and_wall(lambda: lm_eval_scores(lm, ctx, p)),
            },
            args.rounds,
            report,
        )
        print_ratios(name, runs, "lm-eval", "adaptwise")


if __name__ == "__main__":
    main()
