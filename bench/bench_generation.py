"""Batched greedy generation vs one prompt at a time, on the same few-shot QA prompts.

Prints tokens/s for both and their ratio, and checks that the outputs are identical.
Run: python bench/bench_generation.py [--n 32] [--batch-size 16]
"""

from __future__ import annotations

import argparse

from _common import demo_context, timed

from experiments.generation import generate, stop_token_ids
from experiments.methods import PromptingMethod


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32, help="prompts (default 32)")
    parser.add_argument("--batch-size", type=int, default=16, help="default 16")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    args = parser.parse_args()

    ctx = demo_context("helpdesk-qa")
    method = PromptingMethod("few-shot-jaccard", "jaccard", k=4)
    method.prepare(ctx)
    rows = ctx.task.eval[: args.n]
    examples = method.examples_for(ctx, rows)
    prompts = [ctx.prompt_format.build(ex, r.messages).text for ex, r in zip(examples, rows)]
    stops = stop_token_ids(ctx.tokenizer, ctx.prompt_format.answer_end, stop_at_newline=True)

    def run(batch_size: int):
        return generate(ctx.model, ctx.tokenizer, prompts, args.max_new_tokens, stops, batch_size)

    run(args.batch_size)  # warm-up
    t_one, one = timed(lambda: run(1))
    t_batch, batched = timed(lambda: run(args.batch_size))
    tokens = sum(g.generated_tokens for g in one)
    same = sum(a.text == b.text for a, b in zip(one, batched))
    mean_prompt = sum(g.prompt_tokens for g in one) / len(one)
    print(
        f"{len(prompts)} few-shot QA prompts (mean {mean_prompt:.0f} tokens), greedy, "
        f"{tokens} tokens generated"
    )
    print(f"{'mode':<22}{'seconds':>10}{'tokens/s':>12}")
    print(f"{'one at a time':<22}{t_one:>10.2f}{tokens / t_one:>12.1f}")
    print(
        f"{'batched (' + str(args.batch_size) + ')':<22}{t_batch:>10.2f}"
        f"{sum(g.generated_tokens for g in batched) / t_batch:>12.1f}"
    )
    print(f"speed-up: {t_one / t_batch:.1f}x; identical outputs: {same}/{len(prompts)}")
    for a, b in zip(one, batched):
        if a.text != b.text:
            print(f"  differs: {a.text!r} vs {b.text!r}")


if __name__ == "__main__":
    main()
