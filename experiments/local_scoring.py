"""Scoring with the in-process model: what `LanguageModel` (experiments/models.py) answers
to the model interface (experiments/scoring_model.py), the counterpart of the served model's
experiments/api_labels.py and experiments/api_scoring.py.

- Classification: each label's log-likelihood after the prompt, through the context's
  `ContinuationScorer` (experiments/lm_scoring.py), with contextual calibration when asked.
- QA and generation: batched greedy generation (experiments/generation.py).

Both read the model through the run's context (`ctx.model`, `ctx.scorer`), which loads the
weights again when a method released them to train its own copy. Rows and prompts are
experiments.task's `Row` and experiments.prompts' `Prompt`, not imported: experiments.models
imports this module, and the task module imports the served client, which imports models.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from experiments.prediction import Prediction

Progress = Callable[[int], None]


def score_labels_local(
    ctx,
    rows: list,
    prompts: list,
    content_free: list[list],
    progress: Progress,
    chunk: int = 8,
) -> list[Prediction]:
    """Rank labels by log-likelihood, and with calibration on also by calibrated scores.

    Rows whose prompts share a prefix (zero-shot: all of them) share one prefix pass and one
    set of content-free scores. Without calibration, prompts with their own prefix (few-shot)
    are scored a few at a time in one batch; with it, each one is scored together with its
    content-free inputs on top of its prefix (Zhao et al. 2021, "Calibrate Before Use").
    """
    labels, encode, scorer = ctx.task.labels, ctx.encode, ctx.scorer
    calibrate = ctx.calibrate
    continuations = [encode(label + ctx.prompt_format.answer_end) for label in labels]
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(p.prefix, []).append(i)
    raw = np.zeros((len(rows), len(labels)))
    prior = np.ones((len(rows), len(labels)))
    n_tokens = [0] * len(rows)  # counted as the prompts are encoded, not encoded again
    singles: list[int] = []
    for prefix_text, members in groups.items():
        if len(members) == 1 and not calibrate:
            singles.extend(members)
            continue
        prefix = encode(prefix_text)
        state = scorer.prefix_state(prefix)  # once for the group, not once per chunk
        middles = {i: encode(prompts[i].middle) for i in members}
        cf_middles = [encode(p.middle) for p in content_free[members[0]]] if calibrate else []
        cf_probs = None
        members = sorted(members, key=lambda i: len(middles[i]))  # little padding per chunk
        for start in range(0, len(members), chunk):
            part = members[start : start + chunk]
            for i in part:
                n_tokens[i] = len(prefix) + len(middles[i])
            extra = cf_middles if cf_probs is None else []
            scores = scorer.score(prefix, [middles[i] for i in part] + extra, continuations, state)
            if cf_probs is None and calibrate:
                cf_probs = _softmax(scores[len(part) :]).mean(axis=0)
            raw[part] = scores[: len(part)]
            if calibrate:
                prior[part] = cf_probs
            progress(len(part))
    if singles:
        _score_singles(ctx, prompts, singles, continuations, chunk, (raw, n_tokens), progress)
    return _label_predictions(ctx, rows, prompts, raw, prior, n_tokens)


def _score_singles(ctx, prompts, singles: list[int], continuations, chunk: int, out, progress):
    """Score the rows whose prompts have a prefix of their own (few-shot, uncalibrated) into
    `out` (raw scores, prompt token counts), a few at a time."""
    raw, n_tokens = out
    encode, scorer = ctx.encode, ctx.scorer
    # Rows with a prefix of their own (few-shot) still open with the same system turn:
    # that shared opening runs once, each row's examples and query on top of it.
    encoded = {i: encode(prompts[i].text) for i in singles}
    shared = _common_prefix([encoded[i] for i in singles])
    state = scorer.prefix_state(shared)
    singles.sort(key=lambda i: len(encoded[i]))
    batch = max(1, chunk // 2)
    for start in range(0, len(singles), batch):
        part = singles[start : start + batch]
        for i in part:
            n_tokens[i] = len(encoded[i])
        middles = [encoded[i][len(shared) :] for i in part]
        raw[part] = scorer.score(shared, middles, continuations, state)
        progress(len(part))


def _label_predictions(ctx, rows, prompts, raw, prior, n_tokens) -> list[Prediction]:
    """Each row's label: the raw scores' best, and with calibration the calibrated best."""
    labels, calibrate = ctx.task.labels, ctx.calibrate
    calibrated = np.log(_softmax(raw)) - np.log(prior)
    predictions = []
    for i, (row, prompt) in enumerate(zip(rows, prompts)):
        raw_label = labels[int(raw[i].argmax())]
        extra = {"output_raw": raw_label}
        if calibrate:
            extra["output_calibrated"] = labels[int(calibrated[i].argmax())]
        extra["label_logprobs"] = [round(float(x), 4) for x in raw[i]]
        predictions.append(
            Prediction(
                id=row.id,
                prompt=prompt.text,
                output=extra.get("output_calibrated", raw_label),
                gold=row.output,
                prompt_tokens=n_tokens[i],
                generated_tokens=0,
                extra=extra,
            )
        )
    return predictions


def generate_answers_local(ctx, rows: list, prompts: list, progress: Progress) -> list[Prediction]:
    """Greedy answers in batches; short-answer tasks stop at the first newline."""
    from experiments.generation import generate, stop_token_ids

    fmt = ctx.prompt_format
    short = ctx.task.kind == "qa"
    stops = stop_token_ids(ctx.tokenizer, fmt.answer_end, stop_at_newline=short)
    outs = generate(
        ctx.model,
        ctx.tokenizer,
        [p.text for p in prompts],
        max_new_tokens=ctx.max_new_tokens,
        stop_ids=stops,
        batch_size=ctx.batch_size,
        on_batch=progress,
    )
    return [
        Prediction(r.id, p.text, o.text, r.output, o.prompt_tokens, o.generated_tokens)
        for r, p, o in zip(rows, prompts, outs)
    ]


def _common_prefix(sequences: list[list[int]]) -> list[int]:
    """The longest token prefix all sequences share, leaving each at least one token."""
    first = sequences[0]
    n = min(len(x) for x in sequences) - 1
    for other in sequences[1:]:
        k = 0
        while k < n and other[k] == first[k]:
            k += 1
        n = k
    return first[: max(n, 0)]


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)
