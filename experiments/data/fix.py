"""`data fix`: a cleaned copy of a task, written to a new folder; the input is never touched.

In order: drop rows that cannot be read (listed), standardise outputs (strip whitespace; for
classification, the declared label's spelling, else the most common one), optionally pool and
re-split with a seed, deduplicate each split (exact, then near), settle inconsistent labels by
majority (a tie drops the rows), and drop train rows that leak an eval row (exact or near).
Every dropped row is listed, with its reason, in `fix.json` in the output folder.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

from experiments.data import near_duplicates
from experiments.data.rows import RawTask, input_key, input_output, normalise, read_task
from experiments.data.task_folder_writer import rows_jsonl, write_task_dir
from experiments.errors import TaskError
from experiments.owned_files import check_replaceable
from experiments.task import Row
from experiments.user_metric import files_named, in_task_folder

COMMAND = "data fix"


@dataclass
class FixSummary:
    """What `fix_task` did: rows kept per split, and each dropped or changed row with why."""

    task_path: Path
    kept: dict[str, int] = field(default_factory=dict)
    dropped: list[dict] = field(default_factory=list)  # {"where", "reason"}
    changed: list[dict] = field(default_factory=list)  # {"where", "from", "to"}

    def counts(self) -> Counter:
        return Counter(d["reason"].split(":")[0] for d in self.dropped)


def fix_task(
    path: str | Path,
    out: str | Path,
    seed: int = 0,
    eval_fraction: float | None = None,
    keep_near_duplicates: bool = False,
    threshold: float = near_duplicates.THRESHOLD,
    overwrite: bool = False,
) -> FixSummary:
    """Write a fixed copy of the task at `path` into the folder `out`.

    Args:
        eval_fraction: when given, pool train and eval and re-split with `seed`, this share to
            eval (stratified by label for classification).
        keep_near_duplicates: keep near-duplicate rows within a split (exact ones still go).
    """
    task = read_task(path)
    out = Path(out)
    inputs = _inputs(task)
    check_replaceable(out, COMMAND, overwrite, inputs)
    if eval_fraction is not None and not 0 < eval_fraction < 1:
        raise TaskError(f"--eval-fraction {eval_fraction}: give a share between 0 and 1")
    summary = FixSummary(task_path=task.path)
    summary.dropped += [
        {"where": e.split(": ", 1)[0], "reason": f"unreadable: {e}"} for e in task.errors
    ]
    labels = _canonical_labels(task)
    splits = {s: _standardise(task, rows, labels, summary) for s, rows in task.rows.items()}
    labels_kind = task.kind == "classification"
    if eval_fraction is not None:
        pool = _dedupe(
            splits["train"] + splits["eval"], keep_near_duplicates, threshold, labels_kind, summary
        )
        splits = _split(pool, eval_fraction, seed, labels_kind)
    else:
        splits = {
            s: _dedupe(rows, keep_near_duplicates, threshold, labels_kind, summary)
            for s, rows in splits.items()
        }
    splits["train"] = _drop_leaked(splits["train"], splits["eval"], threshold, labels_kind, summary)
    for split, rows in splits.items():
        if not rows:
            whole_file = next(
                (e for e in task.errors if e.startswith(f"{task.files.get(split)}: ")), None
            )
            why = f" ({whole_file})" if whole_file else ""
            raise TaskError(f"{task.path}: no {split} rows left after fixing{why}; nothing written")
        summary.kept[split] = len(rows)
    spec = _new_spec(task, labels, out)
    files = {f"{s}.jsonl": rows_jsonl(rows) for s, rows in splits.items()}
    report = {
        "source": str(task.path),
        "seed": seed,
        "eval_fraction": eval_fraction,
        "kept": summary.kept,
        "dropped": summary.dropped,
        "changed": summary.changed,
    }
    files["fix.json"] = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    files.update(_metric_files(task))
    write_task_dir(out, spec, files, COMMAND, overwrite=overwrite, inputs=inputs)
    return summary


def _inputs(task: RawTask) -> list[Path]:
    """Every file or folder the task reads: the output may be none of them, nor hold one."""
    paths = [task.path, *task.files.values(), task.corpus]
    finetune = task.spec.get("finetune")
    if isinstance(finetune, dict) and isinstance(finetune.get("raw_text"), str):
        paths.append(task.path.parent / finetune["raw_text"])
    return [p for p in paths if p is not None]


def _metric_files(task: RawTask) -> dict[str, str]:
    """The task's own metric files (`python:FILE.py:FUNCTION`), copied beside the fixed rows
    so that the fixed task is scored as the original is; one outside the task folder, or
    missing, is not (loading the task says so)."""
    files = {}
    for file in files_named(task.spec):
        path = in_task_folder(task.path.parent, file)
        if path is not None and path.is_file():
            try:
                files[Path(file).as_posix()] = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise TaskError(f"{path}: not UTF-8 text; save it as UTF-8") from None
    return files


def _canonical_labels(task: RawTask) -> dict[str, str]:
    """normalised label -> the spelling to use (declared, else the most common in the data)."""
    if task.kind != "classification":
        return {}
    canonical = {normalise(label): label for label in task.labels}
    spellings: dict[str, Counter] = defaultdict(Counter)
    for rows in task.rows.values():
        for row in rows:
            spellings[normalise(row.output)][row.output.strip()] += 1
    for key, forms in spellings.items():
        if not task.labels:  # declared labels are the whole list; the data adds none
            canonical.setdefault(key, forms.most_common(1)[0][0])
    return canonical


def _standardise(
    task: RawTask, rows: list[Row], labels: dict[str, str], summary: FixSummary
) -> list[Row]:
    known_docs = _corpus_ids(task)
    kept = []
    for row in rows:
        output = row.output.strip()
        if task.kind == "classification":
            if normalise(output) not in labels:
                summary.dropped.append(
                    {"where": row.source, "reason": f"unknown label: {row.output!r}"}
                )
                continue
            output = labels[normalise(output)]
        missing = [c for c in row.context_ids if known_docs is not None and c not in known_docs]
        if missing:
            summary.dropped.append(
                {"where": row.source, "reason": f"unknown context id: {missing[0]!r}"}
            )
            continue
        if output != row.output:
            summary.changed.append({"where": row.source, "from": row.output, "to": output})
        kept.append(replace(row, output=output))
    return kept


def _corpus_ids(task: RawTask) -> set[str] | None:
    if task.corpus is None:
        return None
    from rag.corpus import load_corpus

    return {d.id for d in load_corpus(task.corpus)}


def _dedupe(
    rows: list[Row], keep_near: bool, threshold: float, labels: bool, summary: FixSummary
) -> list:
    """Settle inconsistent outputs, then drop exact and near duplicates; first row kept."""
    rows = _settle_inconsistent(rows, summary)
    first: dict[tuple[str, str], Row] = {}
    unique = []
    for row in rows:
        key = (input_key(row), normalise(row.output))
        if key in first:
            summary.dropped.append(
                {"where": row.source, "reason": f"duplicate: of {first[key].source}"}
            )
            continue
        first[key] = row
        unique.append(row)
    if keep_near:
        return unique
    pairs = near_duplicates.row_pairs([input_output(r) for r in unique], threshold, labels)
    drop = set()
    for group in near_duplicates.clusters(len(unique), pairs):
        for i in group[1:]:
            drop.add(i)
            summary.dropped.append(
                {
                    "where": unique[i].source,
                    "reason": f"near duplicate: of {unique[group[0]].source}",
                }
            )
    return [r for i, r in enumerate(unique) if i not in drop]


def _settle_inconsistent(rows: list[Row], summary: FixSummary) -> list[Row]:
    """Rows sharing an input but not an output: the majority output stays, a tie drops all."""
    by_input: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_input[input_key(row)].append(row)
    drop: set[int] = set()
    for group in by_input.values():
        ranked = Counter(normalise(r.output) for r in group).most_common()
        if len(ranked) < 2:
            continue
        winner = ranked[0][0] if ranked[0][1] > ranked[1][1] else None
        reason = "inconsistent: minority output" if winner else "inconsistent: tie between outputs"
        for row in group:
            if normalise(row.output) != winner:
                drop.add(id(row))
                summary.dropped.append({"where": row.source, "reason": f"{reason} {row.output!r}"})
    return [r for r in rows if id(r) not in drop]


def _split(rows: list[Row], fraction: float, seed: int, stratify: bool) -> dict[str, list]:
    groups: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        groups[row.output if stratify else ""].append(row)
    rng = random.Random(seed)
    train, eval_rows = [], []
    for key in sorted(groups):
        group = groups[key]
        rng.shuffle(group)
        n_eval = round(len(group) * fraction)
        eval_rows += group[:n_eval]
        train += group[n_eval:]
    return {"train": train, "eval": eval_rows}


def _drop_leaked(
    train: list[Row], eval_rows: list[Row], threshold: float, labels: bool, summary
) -> list:
    eval_inputs = {input_key(r): r for r in eval_rows}
    near = near_duplicates.row_matches(
        [input_output(r) for r in train], [input_output(r) for r in eval_rows], threshold, labels
    )
    kept = []
    for i, row in enumerate(train):
        if input_key(row) in eval_inputs:
            other = eval_inputs[input_key(row)].source
            summary.dropped.append(
                {"where": row.source, "reason": f"leakage: same input as {other}"}
            )
        elif i in near:
            other = eval_rows[near[i][0]].source
            summary.dropped.append({"where": row.source, "reason": f"near leakage: like {other}"})
        else:
            kept.append(row)
    return kept


def _new_spec(task: RawTask, labels: dict[str, str], out: Path) -> dict:
    spec = dict(task.spec)
    spec["train"], spec["eval"] = "train.jsonl", "eval.jsonl"
    if task.kind == "classification":
        spec["labels"] = task.labels or list(dict.fromkeys(labels.values()))
    if task.corpus is not None:
        # The corpus is not changed by fixing, so it is referenced rather than copied.
        spec["corpus"] = Path(os.path.relpath(task.corpus.resolve(), out.resolve())).as_posix()
    finetune = spec.get("finetune")
    if isinstance(finetune, dict) and isinstance(finetune.get("raw_text"), str):
        # Raw-text rows are not fixed either; point at them from the new folder.
        raw = (task.path.parent / finetune["raw_text"]).resolve()
        spec["finetune"] = {
            **finetune,
            "raw_text": Path(os.path.relpath(raw, out.resolve())).as_posix(),
        }
    return spec
