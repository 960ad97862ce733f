"""Methods the runner scores: the interface, the registry, and the prompting methods.

A method prepares once (select examples, build an index, train) and then predicts every eval
row. RAG and fine-tuned methods (in `rag/` and `finetune/`) implement the same interface and
register a resolver, so the runner scores them exactly like the prompting ones. Every method
predicts through `score_labels` / `generate_answers`, which ask the run's model through one
interface (experiments/scoring_model.py), in-process or served alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from experiments.context import RunContext
from experiments.errors import AdaptwiseError
from experiments.prediction import Prediction
from experiments.prompts import Prompt
from experiments.task import Row

Progress = Callable[[int], None]


class Method(ABC):
    name: str
    description: str = ""
    needs_base: bool = True  # whether it uses the run's shared model (QLoRA, full-ft: their own)
    runs_on_api: bool = False  # whether it can use a served model (--model openai:NAME)
    # What it does, for whoever must know without running it (the plan's estimates, export):
    trains: str | None = None  # the fine-tuning it runs first: lora, qlora or full-ft
    retrieves: bool = False  # whether its prompts carry passages retrieved from the corpus
    selector_name: str | None = None  # how it picks each query's few-shot examples

    def check(self, ctx: RunContext) -> None:
        """Validate the method's settings before any model loads (a bad value: one line)."""

    def prepare(self, ctx: RunContext) -> None:
        """One-off work before predicting (example pools, indexes, training)."""

    @abstractmethod
    def predict(self, ctx: RunContext, rows: list[Row], progress: Progress) -> list[Prediction]:
        """One prediction per row, in order."""

    def extra_results(
        self, ctx: RunContext, rows: list[Row], predictions: list[Prediction]
    ) -> dict:
        """Fields added to this method's entry in results.json (retrieval metrics, training
        statistics, ...); report.md shows the ones it knows."""
        return {}

    def seed_list(self, ctx: RunContext) -> list[int]:
        """The seeds it trains with, the primary one first; none for a method that trains
        nothing (prompting and retrieval are deterministic here and run once)."""
        return []

    def reseeded(self, seed: int) -> Method:
        """The same method trained with another seed, into a folder of its own."""
        raise AdaptwiseError(f"{self.name} trains nothing; it has no seeds")


class PromptingMethod(Method):
    """Zero-shot or few-shot prompting with a per-query example selector."""

    runs_on_api = True

    def __init__(self, name: str, selector: str | None, k: int):
        self.name = name
        self.selector_name = selector
        self.k = k
        self.selector = None
        kind = f"{k} examples chosen by {selector}" if selector else "no examples"
        self.description = f"instruction and input, {kind}"

    def prepare(self, ctx: RunContext) -> None:
        if self.selector_name:
            from experiments.selectors import make_selector

            pool = [{"input": r.text, "output": r.output} for r in ctx.task.train]
            embedder = ctx.questions if self.selector_name in ("embedding", "mmr") else None
            self.selector = make_selector(
                self.selector_name, pool, k=self.k, seed=ctx.seed, embedder=embedder
            )
            self.selector.prepare()  # the pool's embedding is preparation, not inference

    def examples_for(self, ctx: RunContext, rows: list[Row]) -> list[list[Row]]:
        """Examples per row, least relevant first so the closest sits next to the query."""
        if self.selector is None:
            return [[] for _ in rows]
        picks = self.selector.select_many([r.text for r in rows])
        return [[ctx.task.train[i] for i in reversed(p)] for p in picks]

    def prompts(self, ctx: RunContext, rows: list[Row]) -> tuple[list[Prompt], list[list[Row]]]:
        """Each row's prompt (its examples, then the row) and its examples; an exported recipe
        (experiments/export/recipe.py) rebuilds prompts through this too."""
        examples = self.examples_for(ctx, rows)
        fmt = ctx.prompt_format
        return [fmt.build(ex, r.messages) for ex, r in zip(examples, rows)], examples

    def predict(self, ctx: RunContext, rows: list[Row], progress: Progress) -> list[Prediction]:
        fmt = ctx.prompt_format
        prompts, examples = self.prompts(ctx, rows)
        if ctx.task.kind == "classification":
            content_free = [fmt.content_free(ex) if ctx.calibrate else [] for ex in examples]
            return score_labels(ctx, rows, prompts, content_free, progress)
        return generate_answers(ctx, rows, prompts, progress)


def within_context(room: int):
    """Decorator for a scoring function (ctx, rows, prompts, *more, progress): rows whose prompt
    plus `room(ctx)` tokens (the longest label, or max_new_tokens) exceed the model's context
    are not scored. They count as wrong, with an empty output and `skipped` saying why in
    predictions.jsonl, and the run says how many in one line: scoring a prompt past the context
    gives garbage (and took 610 s and 5 GB for one 9,055-token row of an 8,192 context)."""

    def wrap(score):
        def scored(ctx, rows, prompts, *more, **kwargs):
            limit = context_length(ctx.model)
            if limit is None:
                return score(ctx, rows, prompts, *more, **kwargs)
            need = room(ctx)
            # A token covers at least one byte, so a prompt of few enough bytes fits without
            # being tokenised here (the scorer tokenises it anyway); only the rest are counted.
            if all(len(p.text.encode("utf-8")) + need <= limit for p in prompts):
                return score(ctx, rows, prompts, *more, **kwargs)
            lengths = [len(ctx.encode(p.text)) for p in prompts]
            keep = [i for i, n in enumerate(lengths) if n + need <= limit]
            if len(keep) == len(rows):
                return score(ctx, rows, prompts, *more, **kwargs)
            skipped = len(rows) - len(keep)
            ctx.log(
                f"warning: {skipped} of {len(rows)} eval rows are longer than the model's "
                f"context ({limit} tokens with {need} for the answer) and are counted wrong "
                "without scoring; shorten them or use a model with a longer context"
            )
            report = kwargs.get("progress") or next((m for m in more if callable(m)), None)
            if report is not None:
                report(skipped)
            more = [[m[i] for i in keep] if isinstance(m, list) else m for m in more]
            done = score(ctx, [rows[i] for i in keep], [prompts[i] for i in keep], *more, **kwargs)
            by_index = dict(zip(keep, done))
            out = []
            for i, (row, prompt) in enumerate(zip(rows, prompts)):
                if i in by_index:
                    out.append(by_index[i])
                    continue
                reason = f"prompt of {lengths[i]} tokens exceeds the context of {limit}"
                out.append(
                    Prediction(
                        row.id, prompt.text, "", row.output, lengths[i], 0, {"skipped": reason}
                    )
                )
            return out

        return scored

    return wrap


def context_length(model) -> int | None:
    """The model's context window in tokens (max_position_embeddings), when it says."""
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "get_text_config"):
        config = config.get_text_config()
    value = getattr(config, "max_position_embeddings", None)
    return value if isinstance(value, int) and value > 0 else None


def _label_room(ctx) -> int:
    return max(len(ctx.encode(label + ctx.prompt_format.answer_end)) for label in ctx.task.labels)


@within_context(_label_room)
def score_labels(
    ctx: RunContext,
    rows: list[Row],
    prompts: list[Prompt],
    content_free: list[list[Prompt]],
    progress: Progress,
) -> list[Prediction]:
    """Each row's label, by the run's model (experiments/scoring_model.py): in-process, ranked
    by log-likelihood with calibration when asked; served, by the best means its server offers."""
    return ctx.lm.score_labels(ctx, rows, prompts, content_free, progress)


@within_context(lambda ctx: ctx.max_new_tokens)
def generate_answers(
    ctx: RunContext, rows: list[Row], prompts: list[Prompt], progress: Progress
) -> list[Prediction]:
    """Greedy answers by the run's model (experiments/scoring_model.py); short-answer tasks
    stop at the first newline."""
    return ctx.lm.generate_answers(ctx, rows, prompts, progress)


# --- the prompting methods (experiments/run/registry.py builds every method from its name) ---

PROMPTING = {
    "zero-shot": None,
    "few-shot-random": "random",
    "few-shot-jaccard": "jaccard",
    "few-shot-embedding": "embedding",
    "few-shot-mmr": "mmr",
}
DEFAULT_METHODS = list(PROMPTING)
