"""`data check`: every problem in a task's data that would spoil a run or a fine-tuning job.

Blocking (severity "error", non-zero exit): rows that cannot be read, labels or context ids the
task does not know, a task file `adaptwise run` would refuse, and train/eval leakage, exact or
near. Everything else is a warning: duplicates, imbalance, inconsistent labels, formatting,
eval questions copied from the corpus, rows longer than the fine-tuning max length.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

from experiments.data import near_duplicates, tokens
from experiments.data.report import ERROR, WARNING, Finding, Report
from experiments.data.rows import RawTask, input_key, input_output, normalise, read_task
from experiments.errors import AdaptwiseError, TaskError
from experiments.task import Row, load_task

# A label over half of a split's rows makes accuracy meaningless (always answering it scores
# over 50%); under 2% leaves too few rows to learn or to score it (2 in 100). The demo tasks'
# labels hold 9% to 17% each.
MAJORITY_SHARE = 0.5
MINORITY_SHARE = 0.02
# Shorter questions ("What is it?") appear in almost any text; from 4 words on, a verbatim
# match in a corpus document means the question was taken from it.
QUESTION_MIN_WORDS = 4
_NEAR_RULE = (
    "the same answer, and Jaccard of character 5-grams of the inputs, without the context "
    "they share with rows of other answers,"
)


def check_task(
    path: str | Path,
    max_length: int | None = None,
    model: str | None = None,
    measure_tokens: bool = True,
    threshold: float = near_duplicates.THRESHOLD,
) -> Report:
    """Read the task at `path` and run every check; see the module docstring for severities."""
    task = read_task(path)
    findings = [Finding("format", ERROR, e, [_location(e)]) for e in task.errors]
    allowed = _allowed_labels(task)
    findings += _unknown_labels(task, allowed)
    corpus_docs, corpus_findings = _corpus(task)
    findings += corpus_findings
    if not findings:  # the rows are fine: let the real loader judge the rest of the task file
        try:
            load_task(task.path)
        except TaskError as exc:
            findings.append(Finding("task", ERROR, str(exc), [_location(str(exc))]))
    if max_length is None:
        max_length = _task_max_length(task)
    report = Report(
        task=task.name,
        path=str(task.path),
        kind=task.kind,
        thresholds={
            "near_duplicate_jaccard": threshold,
            "context_words": near_duplicates.CONTEXT_WORDS,
            "majority_share": MAJORITY_SHARE,
            "minority_share": MINORITY_SHARE,
            "max_length": max_length,
            "question_min_words": QUESTION_MIN_WORDS,
        },
    )
    for split, rows in task.rows.items():
        report.splits[split] = {"rows": len(rows)}
        if task.kind == "classification":
            labels = Counter(r.output.strip() for r in rows)
            report.splits[split]["labels"] = {
                label: labels.get(label, 0)
                for label in allowed + sorted(set(labels) - set(allowed))
            }
            findings += _balance(split, report.splits[split]["labels"], len(rows))
        findings += _duplicates(split, rows, threshold, task.kind == "classification")
        findings += _inconsistent(split, rows)
        findings += _output_format(split, rows, task.kind)
    findings += _leakage(
        task.rows["train"], task.rows["eval"], threshold, task.kind == "classification"
    )
    findings += _eval_in_corpus(task.rows["eval"], corpus_docs)
    if measure_tokens:
        findings += _token_lengths(task, report, max_length, model)
    report.findings = sorted(findings, key=lambda f: f.severity != ERROR)
    return report


def _location(message: str) -> str:
    return message.split(": ", 1)[0]


def _allowed_labels(task: RawTask) -> list[str]:
    if task.kind != "classification":
        return []
    if task.labels:
        return task.labels
    return list(dict.fromkeys(r.output.strip() for r in task.rows["train"]))


def _unknown_labels(task: RawTask, allowed: list[str]) -> list[Finding]:
    if task.kind != "classification" or not allowed:
        return []
    known = set(allowed)
    return [
        Finding(
            "format",
            ERROR,
            f"{row.source}: label {row.output!r} is not in the task's labels; fix the row "
            "(`data fix` corrects case and whitespace) or add the label to the task file",
            [row.source],
        )
        for rows in task.rows.values()
        for row in rows
        if row.output.strip() not in known
    ]


def _corpus(task: RawTask) -> tuple[list, list[Finding]]:
    """The corpus documents, and errors for it or for context ids naming no document."""
    if task.corpus is None:
        return [], []
    from rag.corpus import load_corpus

    try:
        docs = load_corpus(task.corpus)
    except AdaptwiseError as exc:
        return [], [Finding("corpus", ERROR, str(exc), [_location(str(exc))])]
    known = {d.id for d in docs}
    findings = [
        Finding(
            "format",
            ERROR,
            f"{row.source}: context id {cid!r} names no document in the corpus "
            f"{task.corpus.name}; fix the id or add the document",
            [row.source],
        )
        for rows in task.rows.values()
        for row in rows
        for cid in row.context_ids
        if cid not in known
    ]
    return docs, findings


def _task_max_length(task: RawTask) -> int:
    section = task.spec.get("finetune")
    value = section.get("max_length") if isinstance(section, dict) else None
    return int(value) if isinstance(value, int) and value > 0 else tokens.default_max_length()


def _balance(split: str, labels: dict[str, int], total: int) -> list[Finding]:
    findings = []
    for label, count in labels.items():
        share = count / total if total else 0.0
        if share > MAJORITY_SHARE:
            findings.append(
                Finding(
                    "balance",
                    WARNING,
                    f"{split}: label {label!r} is {share:.0%} of rows (over "
                    f"{MAJORITY_SHARE:.0%}); always answering it would score {share:.0%}. Add "
                    "rows of the other labels or downsample it",
                )
            )
        elif share < MINORITY_SHARE:
            findings.append(
                Finding(
                    "balance",
                    WARNING,
                    f"{split}: label {label!r} has {count} of {total} rows ({share:.1%}, under "
                    f"{MINORITY_SHARE:.0%}); add examples of it or merge it into another label",
                )
            )
    return findings


def _duplicates(split: str, rows: list[Row], threshold: float, labels: bool) -> list[Finding]:
    groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in rows:
        groups[(input_key(row), normalise(row.output))].append(row)
    exact = [g for g in groups.values() if len(g) > 1]
    findings = []
    if exact:
        extra = sum(len(g) - 1 for g in exact)
        findings.append(
            Finding(
                "duplicate",
                WARNING,
                f"{split}: {extra} exact duplicate row(s) in {len(exact)} group(s) (same input "
                "and output after case/whitespace normalisation); `data fix` keeps one of each",
                [" = ".join(r.source for r in g) for g in exact],
            )
        )
    # Rows with the same input are exact duplicates or inconsistent labels, reported as such.
    keys = [input_key(r) for r in rows]
    pairs = [
        p
        for p in near_duplicates.row_pairs([input_output(r) for r in rows], threshold, labels)
        if keys[p[0]] != keys[p[1]]
    ]
    if pairs:
        best: dict[int, float] = {}
        for i, j, sim in pairs:
            best[i], best[j] = max(best.get(i, 0.0), sim), max(best.get(j, 0.0), sim)
        where = []
        for group in near_duplicates.clusters(len(rows), pairs):
            sim = max(best.get(i, 0.0) for i in group)
            where.append(" ~ ".join(rows[i].source for i in group) + f" (similarity {sim:.2f})")
        findings.append(
            Finding(
                "near_duplicate",
                WARNING,
                f"{split}: {len(where)} group(s) of near-duplicate rows ({_NEAR_RULE} >= "
                f"{threshold}); `data fix` keeps the first of each",
                where,
            )
        )
    return findings


def _inconsistent(split: str, rows: list[Row]) -> list[Finding]:
    by_input: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_input[input_key(row)].append(row)
    where = []
    for group in by_input.values():
        if len({normalise(r.output) for r in group}) > 1:
            where.append(" / ".join(f"{r.source} {r.output.strip()!r}" for r in group))
    if not where:
        return []
    return [
        Finding(
            "inconsistent",
            WARNING,
            f"{split}: {len(where)} input(s) appear with different outputs (labeling "
            "inconsistency); decide which is right. `data fix` keeps the majority output and "
            "drops a tie",
            where,
        )
    ]


def _output_format(split: str, rows: list[Row], kind: str) -> list[Finding]:
    findings = []
    padded = [r.source for r in rows if r.output != r.output.strip()]
    if padded:
        findings.append(
            Finding(
                "output_format",
                WARNING,
                f"{split}: {len(padded)} output(s) start or end with whitespace; a model learns "
                "to produce it and exact match fails on it. `data fix` strips it",
                padded,
            )
        )
    if kind == "classification":
        spellings: dict[str, Counter] = defaultdict(Counter)
        for row in rows:
            spellings[normalise(row.output)][row.output.strip()] += 1
        mixed = {k: v for k, v in spellings.items() if len(v) > 1}
        for forms in mixed.values():
            listed = ", ".join(f"{form!r} ({n})" for form, n in forms.most_common())
            findings.append(
                Finding(
                    "label_casing",
                    WARNING,
                    f"{split}: one label written {len(forms)} ways: {listed}; `data fix` uses "
                    "the declared label, else the most common spelling",
                )
            )
    return findings


def _leakage(
    train: list[Row], eval_rows: list[Row], threshold: float, labels: bool
) -> list[Finding]:
    seen: dict[str, Row] = {}
    for row in train:
        seen.setdefault(input_key(row), row)
    exact = [(r, seen[input_key(r)]) for r in eval_rows if input_key(r) in seen]
    findings = []
    if exact:
        findings.append(
            Finding(
                "leakage",
                ERROR,
                f"{len(exact)} eval row(s) have the same input as a train row: scores on them "
                "measure memory, not skill. `data fix` drops them from train",
                [f"{e.source} = {t.source}" for e, t in exact],
            )
        )
    leaked = {id(e) for e, _ in exact}
    rest = [r for r in eval_rows if id(r) not in leaked]
    matches = near_duplicates.row_matches(
        [input_output(r) for r in rest], [input_output(r) for r in train], threshold, labels
    )
    if matches:
        findings.append(
            Finding(
                "near_leakage",
                ERROR,
                f"{len(matches)} eval row(s) are near-duplicates of a train row ({_NEAR_RULE} "
                f">= {threshold}). `data fix` drops those train rows",
                [
                    f"{rest[i].source} ~ {train[j].source} (similarity {sim:.2f})"
                    for i, (j, sim) in sorted(matches.items())
                ],
            )
        )
    return findings


def _plain(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text.casefold())).strip()


def _eval_in_corpus(eval_rows: list[Row], docs: list) -> list[Finding]:
    if not docs:
        return []
    texts = [(d, f" {_plain(d.text)} ") for d in docs]
    where = []
    for row in eval_rows:
        question = _plain(row.text)
        if len(question.split()) < QUESTION_MIN_WORDS:
            continue
        doc = next((d for d, text in texts if f" {question} " in text), None)
        if doc is not None:
            where.append(f"{row.source} in {doc.source}")
    if not where:
        return []
    return [
        Finding(
            "eval_in_corpus",
            WARNING,
            f"{len(where)} eval question(s) appear word for word in the corpus: retrieval finds "
            "them by string match, and training on the corpus as raw text would train on the "
            "eval set. Rephrase them or check they were not copied from the corpus",
            where,
        )
    ]


def _token_lengths(task: RawTask, report: Report, max_length: int, model: str | None) -> list:
    try:
        tokenizer = tokens.load_tokenizer(model)
    except AdaptwiseError as exc:
        return [Finding("tokens", WARNING, f"token lengths not measured: {exc}")]
    instruction = task.spec.get("instruction")
    instruction = instruction.strip() if isinstance(instruction, str) else ""
    findings = []
    for split, rows in task.rows.items():
        lengths = tokens.row_lengths(tokenizer, rows, instruction)
        report.splits[split]["tokens"] = tokens.summary(lengths, max_length)
        long = [r.source for r, n in zip(rows, lengths) if n > max_length]
        if long:
            findings.append(
                Finding(
                    "too_long",
                    WARNING,
                    f"{split}: {len(long)} row(s) are longer than the fine-tuning max length "
                    f"({max_length} tokens) and would be truncated; shorten them or raise "
                    "finetune max_length",
                    long,
                )
            )
    return findings
