"""Batched greedy generation vs one prompt at a time, on the same prompts, in two regimes.

Long answers, where decoding dominates (memory-bound: a batch costs about what one row costs),
and the demo's short QA answers, where the prompt pass dominates (compute-bound: batching
cannot help it). Prints tokens/s for both modes, their ratio, and whether outputs are identical.
Run: python bench/bench_generation.py [--n 32] [--batch-size 16]
"""

from __future__ import annotations

import argparse

from _common import demo_context, timed

from experiments.generation import generate, stop_token_ids
from experiments.prompting import PromptingMethod


def compare(ctx, label: str, prompts: list[str], max_new_tokens: int, newline_stop: bool, bs: int):
    stops = stop_token_ids(ctx.tokenizer, ctx.prompt_format.answer_end, newline_stop)

    def run(batch_size: int):
        return generate(ctx.model, ctx.tokenizer, prompts, max_new_tokens, stops, batch_size)

    run(bs)  # warm-up
    t_one, one = timed(lambda: run(1))
    t_batch, batched = timed(lambda: run(bs))
    tokens = sum(g.generated_tokens for g in one)
    same = sum(a.text == b.text for a, b in zip(one, batched))
    mean_prompt = sum(g.prompt_tokens for g in one) / len(one)
    print(
        f"\n{label}: {len(prompts)} prompts (mean {mean_prompt:.0f} tokens), greedy, "
        f"{tokens / len(prompts):.1f} tokens generated per prompt"
    )
    print(f"{'mode':<22}{'seconds':>10}{'tokens/s':>12}")
    print(f"{'one at a time':<22}{t_one:>10.2f}{tokens / t_one:>12.1f}")
    print(
        f"{'batched (' + str(bs) + ')':<22}{t_batch:>10.2f}"
        f"{sum(g.generated_tokens for g in batched) / t_batch:>12.1f}"
    )
    print(f"speed-up: {t_one / t_batch:.1f}x; identical outputs: {same}/{len(prompts)}")
    for a, b in zip(one, batched):
        if a.text != b.text:
            print(f"  differs: {a.text!r} vs {b.text!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32, help="prompts (default 32)")
    parser.add_argument("--batch-size", type=int, default=16, help="default 16")
    args = parser.parse_args()

    ctx = demo_context("helpdesk-qa")
    rows = ctx.task.eval[: args.n]
    method = PromptingMethod("few-shot-jaccard", "jaccard", k=4)
    method.prepare(ctx)
    examples = method.examples_for(ctx, rows)
    few_shot = [ctx.prompt_format.build(ex, r.messages).text for ex, r in zip(examples, rows)]
    zero_shot = [ctx.prompt_format.build([], r.messages).text for r in rows]
    compare(
        ctx,
        "long answers (zero-shot, 64 new tokens, no newline stop)",
        zero_shot,
        64,
        False,
        args.batch_size,
    )
    compare(
        ctx, "demo QA (4-shot, short answers, stop at newline)", few_shot, 20, True, args.batch_size
    )


if __name__ == "__main__":
    main()
