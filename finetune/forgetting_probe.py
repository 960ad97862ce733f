"""Forgetting check: a small general-knowledge multiple-choice probe, written for adaptwise,
scored before and after fine-tuning by log-likelihood (lm-evaluation-harness style: the choice
with the highest mean log-probability per token after the question wins).

A fine-tuned model that loses several points here has traded general ability for the task.
"""

from __future__ import annotations

# (question, choices, index of the right choice). Plain facts a small chat model mostly knows.
QUESTIONS: list[tuple[str, tuple[str, ...], int]] = [
    ("What is the capital of France?", ("Paris", "Berlin", "Madrid", "Rome"), 0),
    ("How many days are there in a week?", ("five", "six", "seven", "ten"), 2),
    ("What colour is the sky on a clear day?", ("green", "blue", "red", "brown"), 1),
    (
        "Which animal is known as man's best friend?",
        ("the cat", "the cow", "the dog", "the fish"),
        2,
    ),
    ("What do bees make?", ("milk", "honey", "silk", "wool"), 1),
    ("What is frozen water called?", ("steam", "ice", "sand", "glass"), 1),
    ("Which planet do we live on?", ("Mars", "Venus", "Earth", "Jupiter"), 2),
    ("How many legs does a spider have?", ("six", "eight", "four", "ten"), 1),
    ("What is 2 plus 2?", ("three", "four", "five", "six"), 1),
    ("Which season comes after winter?", ("autumn", "summer", "spring", "winter"), 2),
    ("What gas do plants take in from the air?", ("oxygen", "helium", "carbon dioxide", "neon"), 2),
    ("What is the largest ocean on Earth?", ("Atlantic", "Indian", "Arctic", "Pacific"), 3),
    (
        "Which organ pumps blood through the body?",
        ("the liver", "the heart", "the lung", "the skin"),
        1,
    ),
    ("What is the boiling point of water at sea level in Celsius?", ("50", "100", "150", "0"), 1),
    (
        "Which language is mainly spoken in Brazil?",
        ("Spanish", "Portuguese", "French", "German"),
        1,
    ),
    ("How many hours are in a day?", ("12", "24", "48", "60"), 1),
    ("What is the opposite of hot?", ("cold", "warm", "big", "fast"), 0),
    (
        "Which instrument has black and white keys?",
        ("the drum", "the piano", "the flute", "the harp"),
        1,
    ),
    ("What do you call a baby cat?", ("a puppy", "a kitten", "a calf", "a foal"), 1),
    ("Which star is closest to the Earth?", ("the Sun", "Sirius", "Polaris", "Vega"), 0),
    ("What is the chemical symbol for water?", ("CO2", "H2O", "NaCl", "O2"), 1),
    ("How many continents are there?", ("five", "six", "seven", "nine"), 2),
    (
        "Who wrote Romeo and Juliet?",
        ("Charles Dickens", "William Shakespeare", "Jane Austen", "Mark Twain"),
        1,
    ),
    ("Which is the tallest animal?", ("the elephant", "the giraffe", "the horse", "the bear"), 1),
    ("What is the main ingredient of bread?", ("rice", "flour", "sugar", "salt"), 1),
    ("How many minutes are in an hour?", ("30", "60", "90", "100"), 1),
    ("Which metal is liquid at room temperature?", ("iron", "mercury", "gold", "copper"), 1),
    ("What is the capital of Japan?", ("Beijing", "Seoul", "Tokyo", "Bangkok"), 2),
    ("What shape has three sides?", ("a square", "a circle", "a triangle", "a hexagon"), 2),
    ("Which bird is a symbol of peace?", ("the crow", "the dove", "the eagle", "the owl"), 1),
    ("What do caterpillars turn into?", ("butterflies", "spiders", "beetles", "worms"), 0),
    ("Which sense do we use our ears for?", ("sight", "smell", "hearing", "taste"), 2),
]


def probe_prompts(prompt_format) -> list[str]:
    """Each question as a chat turn (or Alpaca), ending where the answer starts."""
    from experiments.prompts import PromptFormat

    plain = PromptFormat(prompt_format.tokenizer, "Answer the question.")
    return [plain.build([], ({"role": "user", "content": q},)).text for q, _, _ in QUESTIONS]


def score_probe(model, tokenizer, prompt_format) -> list[int]:
    """The chosen choice index per question."""
    import numpy as np

    from experiments.lm_scoring import ContinuationScorer

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scorer = ContinuationScorer(model, pad)
    picks = []
    for prompt, (_, choices, _) in zip(probe_prompts(prompt_format), QUESTIONS):
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        conts = [
            tokenizer(c + prompt_format.answer_end, add_special_tokens=False)["input_ids"]
            for c in choices
        ]
        scores = scorer.score([], [ids], conts)[0] / np.array([len(c) for c in conts])
        picks.append(int(scores.argmax()))
    return picks


def accuracy(picks: list[int]) -> float:
    return sum(p == q[2] for p, q in zip(picks, QUESTIONS)) / len(QUESTIONS)


def compare(before: list[int], after: list[int]) -> dict:
    """The results.json `forgetting` entry."""
    acc_before, acc_after = accuracy(before), accuracy(after)
    return {
        "n_questions": len(QUESTIONS),
        "accuracy_before": round(acc_before, 4),
        "accuracy_after": round(acc_after, 4),
        "change": round(acc_after - acc_before, 4),
        "answers_changed": sum(a != b for a, b in zip(before, after)),
    }
