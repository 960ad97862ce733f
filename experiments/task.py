"""The task contract: a YAML file naming the kind, the splits, the labels and the corpus.

Every problem with the user's files is raised as a TaskError whose message names the file, the
line when there is one, and what to change; the CLI prints it as one line and exits with status 2.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import yaml

from experiments.errors import TaskError
from experiments.judge_spec import JudgeSpec, names_judge, read_judge
from experiments.metrics import METRICS_BY_KIND
from experiments.precision import PRECISIONS
from experiments.user_metric import UserMetric, is_user_metric, load_user_metric

KINDS = ("classification", "qa", "generation")
DEFAULT_METRIC = {"classification": "accuracy", "qa": "exact_match", "generation": "rouge_l"}
METRICS = {kind: tuple(names) for kind, names in METRICS_BY_KIND.items()}
SECTIONS = ("rag", "finetune", "costs")  # settings read by those packages (costs: the report)
TASK_KEYS = {
    "name",
    "kind",
    "instruction",
    "labels",
    "train",
    "eval",
    "corpus",
    "metric",
    "metrics",
    "precision",
    "judge",
    *SECTIONS,
}


DEMO_DIR = Path(__file__).resolve().parents[1] / "demo"  # the demo tasks of a clone


@dataclass(frozen=True)
class Row:
    """One example: the conversation to answer and the target answer.

    `messages` holds the turns before the answer (user, and any earlier assistant or system
    turns from a chat row); `text` is the user's words alone, used for example selection.
    """

    id: str
    messages: tuple[dict, ...]
    output: str
    context_ids: tuple[str, ...] = ()
    source: str = ""  # "file:line", for messages about this row
    fields: dict = field(default_factory=dict, compare=False, hash=False)  # the row as written

    @property
    def text(self) -> str:
        return "\n".join(m["content"] for m in self.messages if m["role"] == "user")


DEMO_DIR = Path(__file__).resolve().parents[1] / "demo"  # the demo tasks of a clone


@dataclass
class Task:
    name: str
    kind: str
    path: Path
    train: list[Row]
    eval: list[Row]
    instruction: str = ""
    labels: list[str] = field(default_factory=list)
    corpus: Path | None = None
    metric: str = ""
    settings: dict = field(default_factory=dict)  # {"rag": {...}, "finetune": {...}} as written
    files: dict[str, Path] = field(default_factory=dict)  # split -> its JSONL file
    precision: str = ""  # the task file's precision: auto | bf16 | fp16 | fp32 ("": not set)
    # The `python:FILE.py:FUNCTION` metrics of `metric:` or `metrics:`, in the file's order:
    # scored after the kind's built-in metrics (experiments/user_metric.py).
    user_metrics: dict[str, UserMetric] = field(default_factory=dict)
    judge: JudgeSpec | None = None  # the `judge:` block (experiments/judge_spec.py)

    @property
    def metrics(self) -> tuple[str, ...]:
        """Every metric a method is scored by: the kind's built-in ones, the task's own, then
        the LLM judge's."""
        judged = ("judge",) if self.judge is not None and self.judge.metric else ()
        return (*METRICS[self.kind], *self.user_metrics, *judged)

    def scored_rows(self, limit: int | None) -> list[Row]:
        """The eval rows a run scores: the first `limit` (`--limit`; None or 0: all of them)."""
        return self.eval[:limit] if limit else self.eval

    def user_values(self, row_id: str, prediction: str, reference: str) -> dict[str, float]:
        """The values of the task's own metrics on one eval row (none when it has none)."""
        if not self.user_metrics:
            return {}
        row = self._eval_fields.get(str(row_id), {"id": str(row_id)})
        return {name: m.value(prediction, reference, row) for name, m in self.user_metrics.items()}

    @cached_property
    def _eval_fields(self) -> dict[str, dict]:
        """Row id -> the eval row as its file writes it, with its id: the `row` a metric gets."""
        return {row.id: {**row.fields, "id": row.id} for row in self.eval}

    @property
    def inputs(self) -> list[Path]:
        """Every file or folder the task reads; no output folder may be or hold one of them."""
        paths = [self.path, *self.files.values(), *(m.path for m in self.user_metrics.values())]
        if self.corpus is not None:
            paths.append(self.corpus)
        raw_text = (self.settings.get("finetune") or {}).get("raw_text")
        if isinstance(raw_text, str) and raw_text:
            paths.append(self.path.parent / raw_text)
        return paths

    @property
    def folder_name(self) -> str:
        """The task's name as one safe folder name (for runs/<name>, an index folder)."""
        return safe_folder_name(self.name)


def read_task_yaml(path: Path) -> dict:
    """The task file as a mapping; a file that cannot be read as one is a TaskError."""
    if not path.is_file():
        raise TaskError(f"{path}: no such task file; pass the path of a task YAML file")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise TaskError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except UnicodeDecodeError:
        raise TaskError(f"{path}: not UTF-8 text; save the task file as UTF-8") from None
    if not isinstance(spec, dict):
        raise TaskError(f"{path}: expected a mapping with keys such as name, kind, train, eval")
    return spec


def load_task(path: str | Path) -> Task:
    """Read and validate a task YAML file and its data files."""
    path = Path(path)
    spec = read_task_yaml(path)

    unknown = sorted(set(spec) - TASK_KEYS)
    if unknown:
        raise TaskError(
            f"{path}: unknown key {unknown[0]!r}; allowed keys are {', '.join(sorted(TASK_KEYS))}"
        )
    for key in ("kind", "train", "eval"):
        if key not in spec:
            raise TaskError(f"{path}: missing required key {key!r}")
    kind = spec["kind"]
    if kind not in KINDS:
        raise TaskError(f"{path}: kind {kind!r} is not one of {', '.join(KINDS)}")

    base = path.parent
    files = {split: _data_path(base, spec, split, path) for split in ("train", "eval")}
    train = load_rows(files["train"])
    eval_rows = load_rows(files["eval"])
    if not train:
        raise TaskError(f"{path}: the train file has no rows")
    if not eval_rows:
        raise TaskError(f"{path}: the eval file has no rows")

    labels = _labels(spec, kind, train, eval_rows, path)
    metric, user_metrics = _metrics(spec, kind, path)
    names = spec.get("metrics") if isinstance(spec.get("metrics"), list) else [metric]
    judge = read_judge(spec, kind, path, names_judge(names))
    corpus = None
    if spec.get("corpus"):
        corpus = base / str(spec["corpus"])
        if not corpus.exists():
            raise TaskError(f"{path}: corpus {spec['corpus']!r} not found next to the task file")
    _check_context_ids(eval_rows + train, corpus)

    settings = {}
    for section in SECTIONS:
        value = spec.get(section) or {}
        if not isinstance(value, dict):
            raise TaskError(f"{path}: {section} must be a mapping of settings")
        settings[section] = value
    instruction = spec.get("instruction") or ""
    if not isinstance(instruction, str):
        raise TaskError(f"{path}: instruction must be a string")
    precision = str(spec.get("precision") or "")
    if precision and precision not in PRECISIONS:
        raise TaskError(f"{path}: precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return Task(
        name=str(spec.get("name") or path.stem),
        kind=kind,
        path=path,
        train=train,
        eval=eval_rows,
        instruction=instruction.strip(),
        labels=labels,
        corpus=corpus,
        metric=metric,
        settings=settings,
        files=files,
        precision=precision,
        user_metrics=user_metrics,
        judge=judge,
    )


def safe_folder_name(name: str, limit: int = 80) -> str:
    """`name` reduced to letters, digits, `.`, `_` and `-` (other runs become `-`), with no
    leading dot and at most `limit` characters; "task" when nothing is left. A name read from
    a file must never climb out of the folder it is put in (`../x`) or break the file system."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    cleaned = re.sub(r"\.{2,}", ".", cleaned)[:limit].strip("-.")
    return cleaned or "task"


def _metrics(spec: dict, kind: str, path: Path) -> tuple[str, dict[str, UserMetric]]:
    """(the primary metric, the task's own metrics loaded) from `metric:` or `metrics:`."""
    if spec.get("metric") is not None and spec.get("metrics") is not None:
        raise TaskError(
            f"{path}: give metric: (one metric) or metrics: (a list, the first one primary), "
            "not both"
        )
    names = spec.get("metrics")
    if names is None:
        names = [spec.get("metric") or DEFAULT_METRIC[kind]]
    elif not isinstance(names, list) or not names:
        raise TaskError(
            f"{path}: metrics must be a list of metric names, the first one primary "
            "(e.g. metrics: [exact_match, python:check.py:same_answer])"
        )
    user: dict[str, UserMetric] = {}
    modules: dict[Path, object] = {}
    for name in names:
        if is_user_metric(name):
            if name in user:
                raise TaskError(f"{path}: metric {name!r} is named twice")
            user[name] = load_user_metric(name, path, modules)
        elif name == "judge":
            if names.count(name) > 1:
                raise TaskError(f"{path}: metric {name!r} is named twice")
        elif name not in METRICS[kind]:
            raise TaskError(
                f"{path}: metric {name!r} does not fit kind {kind!r}; use one of "
                f"{', '.join(METRICS[kind])}, judge (an LLM judge), or your own as "
                "python:FILE.py:FUNCTION"
            )
    return names[0], user


def _data_path(base: Path, spec: dict, key: str, task_path: Path) -> Path:
    value = spec[key]
    if not isinstance(value, str) or not value:
        raise TaskError(f"{task_path}: {key} must be the path of a JSONL file")
    data = base / value
    if not data.is_file():
        raise TaskError(f"{task_path}: {key} file {value!r} not found next to the task file")
    return data


def _labels(spec: dict, kind: str, train: list[Row], eval_rows: list[Row], path: Path) -> list:
    if kind != "classification":
        return []
    labels = spec.get("labels")
    if labels is None:
        seen: dict[str, None] = {}
        for row in train:
            seen.setdefault(row.output.strip(), None)
        labels = list(seen)
    if not isinstance(labels, list) or not all(isinstance(x, str | int) for x in labels):
        raise TaskError(f"{path}: labels must be a list of strings")
    labels = [str(x).strip() for x in labels]
    if len(set(labels)) < 2:
        raise TaskError(f"{path}: a classification task needs at least two distinct labels")
    allowed = set(labels)
    for row in train + eval_rows:
        if row.output.strip() not in allowed:
            raise TaskError(
                f"{row.source}: label {row.output!r} is not in the task's labels "
                f"({', '.join(labels)}); fix the row or add the label to the task file"
            )
    return labels


def _check_context_ids(rows: list[Row], corpus: Path | None) -> None:
    if corpus is None or not corpus.is_dir():
        return  # JSONL corpora are checked by the RAG loader, which reads their ids
    known = {p.stem for p in corpus.iterdir() if p.suffix in (".txt", ".md")}
    for row in rows:
        for cid in row.context_ids:
            if cid not in known:
                raise TaskError(
                    f"{row.source}: context id {cid!r} names no document in {corpus.name}/ "
                    "(ids are file names without .txt/.md)"
                )


def read_jsonl(path: Path, hint: str):
    """(line number, "file:line", object) for each non-blank line of a JSONL file; a line that
    is not JSON, or a file that is not UTF-8, is a TaskError naming the file and line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise TaskError(f"{path}: not UTF-8 text; save it as UTF-8 JSON Lines") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TaskError(f"{where}: not valid JSON ({exc.msg}); {hint}") from None
        yield number, where, obj


def load_rows(path: Path) -> list[Row]:
    """Parse a JSONL file in any of the three row formats; errors name the file and line."""
    rows: list[Row] = []
    ids: set[str] = set()
    for number, where, obj in read_jsonl(path, "one JSON object per line"):
        row = parse_row(obj, where, default_id=f"{path.stem}-{number}")
        if row.id in ids:
            raise TaskError(f"{where}: duplicate id {row.id!r}; ids must be unique in a file")
        ids.add(row.id)
        rows.append(row)
    return rows


def parse_row(obj: object, where: str, default_id: str) -> Row:
    """One row from `{"input","output"}`, Alpaca, or chat `{"messages": [...]}` form."""
    if not isinstance(obj, dict):
        raise TaskError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    row_id = obj.get("id", default_id)
    if not isinstance(row_id, str | int):
        raise TaskError(f"{where}: id must be a string or a number")
    context_ids = obj.get("context_ids", [])
    if not isinstance(context_ids, list) or not all(isinstance(c, str) for c in context_ids):
        raise TaskError(f"{where}: context_ids must be a list of document ids (strings)")

    if "messages" in obj:
        messages, output = _chat_row(obj["messages"], where)
    elif "output" in obj:
        output = obj["output"]
        user = _user_text(obj, where)
        messages = ({"role": "user", "content": user},)
    else:
        raise TaskError(
            f'{where}: a row needs "input" and "output", Alpaca "instruction"/"input"/"output", '
            'or chat "messages"'
        )
    if not isinstance(output, str) or not output.strip():
        raise TaskError(f"{where}: the output (target answer) must be a non-empty string")
    return Row(str(row_id), messages, output, tuple(context_ids), where, obj)


def _user_text(obj: dict, where: str) -> str:
    parts = []
    for key in ("instruction", "input"):
        value = obj.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise TaskError(f"{where}: {key!r} must be a string")
        if value.strip():
            parts.append(value.strip())
    if not parts:
        raise TaskError(f'{where}: the row has an output but no "input" (or "instruction") text')
    return "\n\n".join(parts)


def _chat_row(messages: object, where: str) -> tuple[tuple[dict, ...], str]:
    if not isinstance(messages, list) or not messages:
        raise TaskError(f"{where}: messages must be a non-empty list of {{role, content}} objects")
    clean = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise TaskError(f"{where}: message {i} needs a string content")
        if m.get("role") not in ("system", "user", "assistant"):
            raise TaskError(f"{where}: message {i} role must be system, user or assistant")
        clean.append({"role": m["role"], "content": m["content"]})
    last = max((i for i, m in enumerate(clean) if m["role"] == "assistant"), default=None)
    if last is None:
        raise TaskError(f"{where}: a chat row needs an assistant message (the target answer)")
    before = tuple(clean[:last])
    if not any(m["role"] == "user" for m in before):
        raise TaskError(f"{where}: no user message before the last assistant message")
    return before, clean[last]["content"]
