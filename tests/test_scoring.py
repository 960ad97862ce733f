"""Label scoring, calibration, batched generation and interruption, on the real embedded model."""

from pathlib import Path

import numpy as np
import pytest

from experiments.context import RunContext, RunOptions
from experiments.generation import generate, stop_token_ids
from experiments.methods import Method, Prediction, score_labels
from experiments.prompting import PromptingMethod
from experiments.prompts import Prompt
from experiments.run.runner import run_task
from experiments.task import load_task

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def intents():
    ctx = RunContext(
        load_task(ROOT / "demo/support-intents/task.yaml"), RunOptions(), log=lambda m: None
    )
    ctx.lm  # noqa: B018
    return ctx


def test_shared_prefix_scores_equal_full_forward(intents):
    method = PromptingMethod("few-shot-jaccard", "jaccard", k=3)
    method.prepare(intents)
    rows = intents.task.eval[:2]
    for examples, row in zip(method.examples_for(intents, rows), rows):
        prompt = intents.prompt_format.build(examples, row.messages)
        prefix, middle = intents.encode(prompt.prefix), intents.encode(prompt.middle)
        assert prefix + middle == intents.encode(prompt.text)
        assert len(examples) == 3 and len(prefix) > len(middle)
        conts = [intents.encode(label + "<|im_end|>") for label in intents.task.labels]
        cf = [intents.encode(p.middle) for p in intents.prompt_format.content_free(examples)]
        cached = intents.scorer.score(prefix, [middle, *cf], conts)
        full = intents.scorer.score_full(prefix + middle, conts)
        assert np.abs(cached[0] - full).max() < 1e-4
        cf_full = intents.scorer.score_full(prefix + cf[0], conts)
        assert np.abs(cached[1] - cf_full).max() < 1e-4
        assert cached.shape == (3, len(conts)) and np.all(cached < 0)


def test_calibration_removes_the_content_free_prior(intents):
    """A scorer that always prefers label 0 by the same margin is fully undone by calibration."""

    class BiasedScorer:
        def prefix_state(self, prefix):
            return None

        def score(self, prefix, middles, conts, state=None):
            base = np.log(np.full((len(middles), len(conts)), 0.05))
            base[:, 0] = np.log(0.6)
            for i, m in enumerate(middles):
                base[i, (len(m) % (len(conts) - 1)) + 1] += (
                    1.0  # the real signal, weaker than the prior
                )
            return base

    ctx = RunContext(intents.task, RunOptions(calibrate=True), log=lambda m: None)
    ctx.__dict__.update(lm=intents.lm, scorer=BiasedScorer())
    rows = intents.task.eval[:6]
    prompts = [Prompt("p", "x" * (i + 1)) for i in range(len(rows))]
    content_free = [[Prompt("p", "")] for _ in rows]
    ctx.encode = lambda text: list(range(len(text) + 1))
    preds = score_labels(ctx, rows, prompts, content_free, progress=lambda n: None)
    labels = intents.task.labels
    assert all(p.extra["output_raw"] == labels[0] for p in preds)
    assert [p.extra["output_calibrated"] for p in preds] == [
        labels[((len("x" * (i + 1)) + 1) % (len(labels) - 1)) + 1] for i in range(len(rows))
    ]
    assert all(p.output == p.extra["output_calibrated"] for p in preds)


def test_batched_generation_matches_one_at_a_time(intents):
    texts = [
        intents.prompt_format.build([], ({"role": "user", "content": q},)).text
        for q in ("What is 2 plus 2?", "Name a colour.", "Say hello to the support team politely.")
    ]
    stops = stop_token_ids(
        intents.tokenizer, intents.prompt_format.answer_end, stop_at_newline=True
    )
    one = generate(intents.model, intents.tokenizer, texts, 12, stops, batch_size=1)
    batched = generate(intents.model, intents.tokenizer, texts, 12, stops, batch_size=3)
    assert [g.text for g in one] == [g.text for g in batched]
    assert all(g.generated_tokens > 0 and g.text for g in one)
    assert [g.prompt_tokens for g in one] == [len(intents.encode(t)) for t in texts]


def test_interrupt_keeps_finished_methods(tmp_path, intents):
    class Interrupting(Method):
        name = "boom"

        def predict(self, ctx, rows, progress):
            raise KeyboardInterrupt

    class Echo(Method):
        name = "echo-gold"

        def predict(self, ctx, rows, progress):
            return [Prediction(r.id, "", r.output, r.output, 1, 0) for r in rows]

    with pytest.raises(KeyboardInterrupt):
        run_task(intents.task, [Echo(), Interrupting()], tmp_path, RunOptions(limit=5))
    import json

    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results["methods"]) == ["echo-gold"]
    assert results["methods"]["echo-gold"]["metrics"]["accuracy"] == 1.0
    assert len((tmp_path / "predictions.jsonl").read_text().splitlines()) == 5


def test_methods_score_through_the_model_interface():
    """score_labels / generate_answers ask the run's model, whatever --model names: both
    implementations answer the one interface, and a stand-in for either is what gets asked."""
    from experiments.api_language_model import ApiLanguageModel
    from experiments.methods import generate_answers
    from experiments.models import LanguageModel
    from experiments.scoring_model import ScoringModel

    assert isinstance(LanguageModel(None, None, "local", None), ScoringModel)
    assert isinstance(ApiLanguageModel(None, None, "served", None), ScoringModel)

    class StandIn:
        name = "stand-in"
        model = object()  # no config: no context length, every row is scored

        def __init__(self):
            self.asked = []

        def score_labels(self, ctx, rows, prompts, content_free, progress):
            self.asked.append(("labels", len(rows), content_free))
            return [
                Prediction(r.id, p.text, "label", r.output, 1, 0) for r, p in zip(rows, prompts)
            ]

        def generate_answers(self, ctx, rows, prompts, progress):
            self.asked.append(("answers", len(rows)))
            return [
                Prediction(r.id, p.text, "answer", r.output, 1, 0) for r, p in zip(rows, prompts)
            ]

    stand_in = StandIn()
    assert isinstance(stand_in, ScoringModel)
    task = load_task(ROOT / "demo/support-intents/task.yaml")
    for model in (None, "openai:served"):
        ctx = RunContext(task, RunOptions(model=model), log=lambda m: None)
        ctx.__dict__["lm"] = stand_in
        rows = task.eval[:3]
        prompts = [Prompt("p", f"q{i}") for i in range(3)]
        labelled = score_labels(ctx, rows, prompts, [[] for _ in rows], progress=lambda n: None)
        answered = generate_answers(ctx, rows, prompts, progress=lambda n: None)
        assert [p.output for p in labelled] == ["label"] * 3
        assert [p.output for p in answered] == ["answer"] * 3
    assert stand_in.asked == [("labels", 3, [[], [], []]), ("answers", 3)] * 2
