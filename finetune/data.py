"""Training data: the validation split, the leakage guard, and prompt/completion examples.

Rows are rendered exactly as the prompting methods render them at inference (the zero-shot
prompt: system instruction, the query, the assistant opener), and the completion is the answer
followed by the end-of-turn text. TRL's SFTTrainer gives prompt/completion datasets a
completion-only loss: the labels of prompt and padding tokens are -100.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from experiments.errors import TaskError
from experiments.prompts import PromptFormat
from experiments.task import Row, read_jsonl

MIN_ROWS_FOR_VALIDATION = 5


def split_validation(rows: list[Row], fraction: float, seed: int) -> tuple[list[Row], list[Row]]:
    """Seeded split of the train rows into (train, validation); eval rows are never touched."""
    if fraction <= 0:
        return list(rows), []
    if len(rows) < MIN_ROWS_FOR_VALIDATION:
        raise TaskError(
            f"only {len(rows)} train rows: too few to split off a validation set (need at least "
            f"{MIN_ROWS_FOR_VALIDATION}); add rows or set finetune val_fraction: 0"
        )
    n_val = max(1, round(len(rows) * fraction))
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    val_ids = set(order[:n_val])
    train = [r for i, r in enumerate(rows) if i not in val_ids]
    val = [r for i, r in enumerate(rows) if i in val_ids]
    return train, val


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


def row_key(row: Row) -> str:
    """A row's input, whitespace- and case-normalised (the leakage guard compares these)."""
    return normalise("\n".join(f"{m['role']}: {m['content']}" for m in row.messages))


def check_leakage(train: list[Row], eval_rows: list[Row], allow: bool, log=print) -> int:
    """Refuse to train when eval inputs also appear in train; return the number found."""
    seen = {}
    for row in train:
        seen.setdefault(row_key(row), row)
    leaks = [(r, seen[row_key(r)]) for r in eval_rows if row_key(r) in seen]
    if not leaks:
        return 0
    ev, tr = leaks[0]
    message = (
        f"{len(leaks)} eval row(s) also appear in train (e.g. {ev.source or ev.id} = "
        f"{tr.source or tr.id}, compared after whitespace/case normalisation)"
    )
    if not allow:
        raise TaskError(
            f"{message}; a fine-tuned model would be scored on rows it was trained on. Remove "
            "them, or set finetune allow_leakage: true to train anyway"
        )
    log(f"warning: {message}; training anyway (allow_leakage)")
    return len(leaks)


def to_examples(rows: list[Row], fmt: PromptFormat) -> list[dict]:
    """Prompt/completion pairs, rendered exactly as at inference."""
    return [
        {"prompt": fmt.build([], r.messages).text, "completion": r.output + fmt.answer_end}
        for r in rows
    ]


def count_too_long(examples: list[dict], tokenizer, max_length: int) -> int:
    """How many examples exceed max_length tokens (and will be truncated)."""
    texts = [e["prompt"] + e["completion"] for e in examples]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return sum(n > max_length for n in lengths)


def load_raw_text(path: Path) -> list[str]:
    """The texts of a raw-text JSONL file (`{"id", "text"}` rows); errors name file and line."""
    if not path.is_file():
        raise TaskError(
            f"{path}: raw-text file not found; fix finetune raw_text in the task file "
            "(a path relative to it)"
        )
    texts = []
    for _number, where, obj in read_jsonl(path, "one object per line"):
        text = obj.get("text") if isinstance(obj, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise TaskError(f'{where}: expected {{"id": ..., "text": "..."}} with a non-empty text')
        texts.append(text)
    if not texts:
        raise TaskError(f"{path}: the raw-text file has no rows")
    return texts


def raw_examples(texts: list[str]) -> list[dict]:
    """Raw text as examples with an empty prompt: completion-only loss then covers every token,
    so raw rows train next to prompt/completion rows in one dataset (and one packed batch)."""
    return [{"prompt": "", "completion": text} for text in texts]
