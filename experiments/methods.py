"""What every method is: the interface the runner scores, and the two ways a method predicts.

A method prepares once (select examples, build an index, train) and then predicts every eval
row. Each family implements it in a file of its own that reads prepare -> train -> predict:
prompting (experiments/prompting.py), RAG (rag/methods.py), lora, qlora and full-ft
(finetune/lora.py, qlora.py, full_ft.py, sharing finetune/methods.py) and the hybrids
(finetune/hybrid.py); experiments/run/registry.py builds any of them from its
name. Every method predicts through `score_labels` / `generate_answers`, which ask the run's
model through one interface (experiments/scoring_model.py), in-process or served alike.
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
