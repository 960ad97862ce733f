"""`data from-repo`: turn a repository into a task, as the seed that fine-tuned on its code did.

Documents are the markdown pages, the code files and (optionally) pull requests from an
export. Each is chunked by lines to at most `max_tokens` tokens of the chat model. Written:

- `train.jsonl` / `eval.jsonl`: template questions, one per page ("Explain ...", answered by
  the page's first chunk) and one per code chunk ("What does file X look like as of DATE?",
  answered by the chunk). Eval is held out by document: the pages and files drawn for eval
  have all their questions in eval and none of their text in train or in `raw.jsonl`.
  Near-identical documents are held out together, so a copy of an eval file cannot leak.
- `raw.jsonl`: raw-text rows `{"id", "text"}` for fine-tuning (train documents only): code
  rendered "- File: path" then "Content:", pages as they are, pull requests with description,
  comments and diff (diff sections of held-out files removed).
- `corpus.jsonl`: every chunk of every document, for RAG.
"""

from __future__ import annotations

import datetime
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from experiments.data import near_duplicates
from experiments.data.repo_files import collect
from experiments.data.secrets import redact
from experiments.data.task_folder_writer import jsonl, write_task_dir
from experiments.data.tokens import Tokenizer, load_tokenizer
from experiments.errors import TaskError
from experiments.owned_files import check_replaceable

# Room for the chat template and the question around an answer of max_tokens tokens; the
# task's finetune max_length is set to max_tokens plus this.
QUESTION_OVERHEAD = 64
COMMAND = "data from-repo"


@dataclass
class RepoDocument:
    """One file or pull request of the repository, and the chunks questions are made from."""

    id: str  # the path, or "pr-<number>"
    kind: str  # "doc" | "code" | "pr"
    path: str
    text: str
    chunks: list[tuple[int, int, str]] = field(default_factory=list)  # (first line, last, text)
    redacted: int = 0  # secrets replaced in `text`


@dataclass
class FromRepoResult:
    task_path: Path
    counts: dict[str, int]
    skipped: dict[str, int]
    eval_documents: list[str]
    redacted: int = 0

    def lines(self) -> list[str]:
        """A short account for the terminal."""
        c = self.counts
        lines = [
            f"{c['docs']} pages, {c['code']} code files, {c['prs']} pull requests; "
            f"{c['chunks']} chunks",
            f"train {c['train']} questions, eval {c['eval']} questions "
            f"({len(self.eval_documents)} documents held out), raw.jsonl {c['raw']} rows",
        ]
        if self.skipped:
            parts = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
            lines.append(f"skipped: {parts}")
        if self.redacted:
            lines.append(
                f"redacted: {self.redacted} secret(s) (private keys, tokens, passwords) "
                "replaced by [REDACTED]"
            )
        return lines


def build_from_repo(
    repo: str | Path,
    out: str | Path,
    prs: str | Path | None = None,
    max_tokens: int = 512,
    max_file_bytes: int = 100 * 1024,
    eval_fraction: float = 0.1,
    seed: int = 0,
    date: str | None = None,
    name: str | None = None,
    overwrite: bool = False,
    tokenizer: Tokenizer | None = None,
) -> FromRepoResult:
    """Write a generation task built from the repository at `repo` into the folder `out`."""
    repo, out = Path(repo), Path(out)
    if not repo.is_dir():
        raise TaskError(f"{repo}: not a folder; pass the repository's root folder")
    if max_tokens < 32:
        raise TaskError(f"--max-tokens {max_tokens}: use at least 32")
    if not 0 < eval_fraction < 1:
        raise TaskError(f"--eval-fraction {eval_fraction}: give a share between 0 and 1")
    check_replaceable(out, COMMAND, overwrite, inputs=[repo, prs])
    name = name or repo.resolve().name
    date = date or datetime.date.today().isoformat()
    found = collect(repo, max_file_bytes)
    docs = [RepoDocument(p, "doc", p, t) for p, t in found.docs]
    docs += [RepoDocument(p, "code", p, t) for p, t in found.code]
    pr_docs = _read_prs(Path(prs)) if prs else []
    if len(docs) < 2:
        raise TaskError(f"{repo}: found {len(docs)} code file(s) or page(s); need at least 2")
    tokenizer = tokenizer or load_tokenizer()
    for doc in docs + pr_docs:
        doc.chunks = chunk_lines(doc.text, tokenizer, max_tokens)
    held = _hold_out(docs, eval_fraction, seed)
    held_paths = {d.path for d in docs if d.id in held}
    questions = {"train": [], "eval": []}
    for doc in docs:
        questions["eval" if doc.id in held else "train"] += _questions(doc, name, date)
    raw = _raw_rows(docs, pr_docs, held, held_paths, tokenizer, max_tokens)
    corpus = [
        {"id": f"{d.id}#{n}", "text": _raw_text(d, text)}
        for d in docs + pr_docs
        for n, (_, _, text) in enumerate(d.chunks, 1)
    ]
    spec = _task_spec(name, max_tokens)
    files = {
        "train.jsonl": jsonl(questions["train"]),
        "eval.jsonl": jsonl(questions["eval"]),
        "raw.jsonl": jsonl(raw),
        "corpus.jsonl": jsonl(corpus),
    }
    path = write_task_dir(out, spec, files, COMMAND, overwrite=overwrite, inputs=[repo, prs])
    counts = {
        "docs": len(found.docs),
        "code": len(found.code),
        "prs": len(pr_docs),
        "chunks": len(corpus),
        "train": len(questions["train"]),
        "eval": len(questions["eval"]),
        "raw": len(raw),
    }
    redacted = found.redacted + sum(pr.redacted for pr in pr_docs)
    return FromRepoResult(path, counts, dict(found.skipped), sorted(held), redacted)


def _raw_rows(docs, pr_docs, held: set, held_paths: set, tokenizer, max_tokens: int) -> list:
    """The raw-text rows trained on: every chunk of the documents not held out, and of the
    pull requests with the held-out files' parts taken out."""
    raw = [
        {"id": f"{d.id}#{n}", "text": _raw_text(d, text)}
        for d in docs
        if d.id not in held
        for n, (_, _, text) in enumerate(d.chunks, 1)
    ]
    for pr in pr_docs:
        kept = _without_files(pr.text, held_paths)
        raw += [
            {"id": f"{pr.id}#{n}", "text": text}
            for n, (_, _, text) in enumerate(chunk_lines(kept, tokenizer, max_tokens), 1)
        ]
    return raw


def _task_spec(name: str, max_tokens: int) -> dict:
    """task.yaml of the built task."""
    return {
        "name": name,
        "kind": "generation",
        "instruction": f"Answer questions about the {name} repository.",
        "train": "train.jsonl",
        "eval": "eval.jsonl",
        "corpus": "corpus.jsonl",
        # The seed's best setting: raw text mixed with the question rows in one training run.
        "finetune": {"max_length": max_tokens + QUESTION_OVERHEAD, "raw_text": "raw.jsonl"},
    }


def chunk_lines(text: str, tokenizer: Tokenizer, max_tokens: int) -> list[tuple[int, int, str]]:
    """Consecutive lines grouped into chunks of at most `max_tokens` tokens (1-based lines).

    A single line longer than the limit is cut into pieces by characters, in proportion.
    """
    lines = text.splitlines()
    counts = tokenizer.count([line + "\n" for line in lines])
    chunks, start, size, current = [], 1, 0, []
    for number, (line, n) in enumerate(zip(lines, counts), start=1):
        if n > max_tokens:
            if current:
                chunks.append((start, number - 1, "\n".join(current)))
            step = max(1, len(line) * max_tokens // n)
            chunks += [(number, number, line[i : i + step]) for i in range(0, len(line), step)]
            start, size, current = number + 1, 0, []
            continue
        if current and size + n > max_tokens:
            chunks.append((start, number - 1, "\n".join(current)))
            start, size, current = number, 0, []
        current.append(line)
        size += n
    if current:
        chunks.append((start, len(lines), "\n".join(current)))
    return [c for c in chunks if c[2].strip()]


def _hold_out(docs: list[RepoDocument], fraction: float, seed: int) -> set[str]:
    """Ids of the documents held out for eval: whole groups of near-identical documents."""
    pairs = near_duplicates.similar_pairs([d.text for d in docs])
    grouped = {i for group in near_duplicates.clusters(len(docs), pairs) for i in group}
    groups = near_duplicates.clusters(len(docs), pairs)
    groups += [[i] for i in range(len(docs)) if i not in grouped]
    random.Random(seed).shuffle(groups)
    target = max(1, round(len(docs) * fraction))
    held: set[str] = set()
    for group in groups:
        if len(held) >= target:
            break
        if len(held) + len(group) <= target or not held:
            held.update(docs[i].id for i in group)
    if len(held) == len(docs):
        raise TaskError("every document is near-identical to another; nothing left to train on")
    return held


def _title(doc: RepoDocument) -> str:
    match = re.search(r"^#{1,6}\s+(.+?)\s*#*\s*$", doc.text, flags=re.MULTILINE)
    return match.group(1) if match else Path(doc.path).stem.replace("-", " ").replace("_", " ")


def _questions(doc: RepoDocument, repo: str, date: str) -> list[dict]:
    if not doc.chunks:
        return []
    if doc.kind == "doc":
        question = f"Explain {_title(doc)} ({doc.path} in the {repo} repository)."
        return [_qa(f"{doc.id}#q", question, doc.chunks[0][2], f"{doc.id}#1")]
    rows = []
    for n, (first, last, text) in enumerate(doc.chunks, 1):
        part = f"lines {first}-{last} of " if len(doc.chunks) > 1 else ""
        question = f"What do {part}file {doc.path} look like as of {date}?"
        if not part:
            question = f"What does file {doc.path} look like as of {date}?"
        rows.append(_qa(f"{doc.id}#q{n}", question, text, f"{doc.id}#{n}"))
    return rows


def _qa(row_id: str, question: str, answer: str, context_id: str) -> dict:
    # Stripped: `data check` flags outputs padded with whitespace (and `data fix` strips them).
    return {"id": row_id, "input": question, "output": answer.strip(), "context_ids": [context_id]}


def _raw_text(doc: RepoDocument, text: str) -> str:
    if doc.kind == "code":
        return f"- File: {doc.path}\nContent:\n{text}"
    return text


def _read_prs(path: Path) -> list[RepoDocument]:
    """Pull requests from a JSON list of objects with number, title, body, comments, diff."""
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskError(f"{path}: cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise TaskError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(items, list):
        raise TaskError(f"{path}: expected a JSON list of pull requests")
    docs = []
    for i, pr in enumerate(items, 1):
        if not isinstance(pr, dict):
            raise TaskError(f"{path}: pull request {i} is not an object")
        number = pr.get("number", i)
        parts = [f"- Pull request #{number}: {pr.get('title', '')}".rstrip()]
        body = pr.get("body") or pr.get("description") or ""
        if body:
            parts.append(f"Description:\n{body}")
        comments = pr.get("comments") or []
        if isinstance(comments, str):  # one comment given as a string, not a list of them
            comments = [comments]
        if not isinstance(comments, list):
            raise TaskError(f"{path}: pull request {i}: comments must be a list (or a string)")
        comments = [c.get("body", "") if isinstance(c, dict) else str(c) for c in comments]
        if any(comments):
            parts.append("Comments:\n" + "\n".join(f"- {c}" for c in comments if c))
        diff = pr.get("diff") or pr.get("patch") or ""
        if diff:
            parts.append(f"Diff:\n{diff}")
        text, redacted = redact("\n".join(parts))
        docs.append(RepoDocument(f"pr-{number}", "pr", f"pr-{number}", text, redacted=redacted))
    return docs


def _without_files(text: str, paths: set[str]) -> str:
    """The text with the diff sections (from "diff --git a/X b/Y") of the given files removed."""
    kept, skipping = [], False
    for line in text.splitlines():
        if line.startswith("diff --git "):
            names = {p[2:] for p in line.split()[2:4] if p[:2] in ("a/", "b/")}
            skipping = bool(names & paths)
        if not skipping:
            kept.append(line)
    return "\n".join(kept)
