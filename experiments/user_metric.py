"""Your own metric: `metric: python:FILE.py:FUNCTION` in task.yaml, or an entry of `metrics:`.

FILE is a Python file in the task folder (named relative to the task file; a path that leaves the
folder is refused) and FUNCTION a function in it, called as FUNCTION(prediction, reference, row)
for each eval row: the method's answer, the row's target answer, and the row as written in the
eval file (a dict, with its id under "id"). It returns a number from 0 to 1 (True and False count
as 1 and 0); its mean over the rows is the method's score, and its per-row values feed the
intervals, the paired tests and the per-example matrix as a built-in metric's do.

The file is the user's own code in their own task folder, so it is imported (not "remote code"):
with importlib from its path, under a module name of its own, while the task folder is at the end
of sys.path only for the import (a helper module next to it is found). A file that cannot be
imported, or that has no such function, is one TaskError when the task is loaded, before any
model is; a function that raises on a row, or gives something other than a number from 0 to 1,
is one MetricError naming the file, the function and the row. What results.json records of
them (each file's sha256) and the rescoring of kept predictions when one changes are here too.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import itertools
import numbers
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from experiments import judge_records
from experiments import metrics as metric_fns
from experiments.errors import TaskError
from experiments.numbers import expected, number_problem
from experiments.owned_files import is_inside

PREFIX = "python:"
_MODULES = itertools.count(1)


class MetricError(TaskError):
    """The user's metric function failed on a row: one line, exit status 2; the methods that
    finished before are kept."""


def is_user_metric(name: object) -> bool:
    """Whether a metric name is a `python:FILE.py:FUNCTION` one."""
    return isinstance(name, str) and name.startswith(PREFIX)


def split_name(name: str) -> tuple[str, str] | None:
    """(FILE, FUNCTION) of `python:FILE.py:FUNCTION`, or None when it is not written so."""
    file, sep, function = name[len(PREFIX) :].rpartition(":")
    if not is_user_metric(name) or not sep or not file or not function.isidentifier():
        return None
    return file, function


def files_named(spec: dict) -> list[str]:
    """The FILE of each `python:FILE.py:FUNCTION` metric a task file's `metric:` or `metrics:`
    names, as written (relative to the task folder), each once."""
    names = spec.get("metrics") if isinstance(spec.get("metrics"), list) else [spec.get("metric")]
    parts = [split_name(name) for name in names if is_user_metric(name)]
    return list(dict.fromkeys(part[0] for part in parts if part))


def in_task_folder(folder: Path, file: str) -> Path | None:
    """`folder/file`, or None when `file` is absolute or leads out of the task folder."""
    path = folder / file
    return None if Path(file).is_absolute() or not is_inside(folder, path) else path


@dataclass(eq=False)
class UserMetric:
    """One `python:FILE.py:FUNCTION` metric, its function loaded: `name` is the entry as
    written in task.yaml (the key of its values in results.json and predictions.jsonl), `digest`
    the sha256 of the file (results.json records it, so a changed file rescores kept runs)."""

    name: str
    path: Path
    function: str
    digest: str
    fn: Callable = field(repr=False)
    _values: dict = field(default_factory=dict, repr=False)  # (row id, prediction, reference)

    def value(self, prediction: str, reference: str, row: dict) -> float:
        """The function's value on one row, checked: a number from 0 to 1, else one line."""
        key = (str(row.get("id")), prediction, reference)
        if key in self._values:
            return self._values[key]
        where = f"{self.path}: {self.function}() on row {key[0]}"
        try:
            value = self.fn(prediction, reference, dict(row))
        except Exception as exc:  # the user's code: any failure is one line, never a traceback
            raise MetricError(
                f"{where}: raised {_said(exc)}; fix the function and rerun (the methods that "
                "finished are kept)"
            ) from None
        if isinstance(value, numbers.Real) and not isinstance(value, int | float):
            value = float(value)  # a numpy number
        problem = number_problem(float(value) if isinstance(value, bool) else value, 0.0, 1.0)
        if problem is not None:
            raise MetricError(
                f"{where}: its value {problem}; return {expected(0.0, 1.0)} (the methods that "
                "finished are kept)"
            )
        self._values[key] = float(value) + 0.0
        return self._values[key]


def load_user_metric(spec: str, task_path: Path, modules: dict[Path, object]) -> UserMetric:
    """The metric `spec` (`python:FILE.py:FUNCTION`) of the task file `task_path`, its file
    imported once per load (`modules`: file -> module, shared by the task's metrics)."""
    where = f"{task_path}: metric {spec!r}"
    parts = split_name(spec)
    if parts is None:
        raise TaskError(
            f"{where}: write python:FILE.py:FUNCTION, a Python file in the task folder and a "
            "function in it (e.g. python:check.py:same_answer)"
        )
    file, function = parts
    folder = task_path.parent
    path = in_task_folder(folder, file)
    if path is None:
        raise TaskError(
            f"{where}: {file} is outside the task folder; put the file in the task's folder "
            f"and name it from there (e.g. python:{Path(file).name}:{function})"
        )
    if path.suffix != ".py":
        raise TaskError(f"{where}: {file} is not a .py file")
    if not path.is_file():
        raise TaskError(f"{where}: no file {file} in the task folder ({folder})")
    data = path.read_bytes()
    key = path.resolve()
    if key not in modules:
        modules[key] = _import(path)
    fn = getattr(modules[key], function, None)
    if not callable(fn):
        raise TaskError(
            f"{path}: no function {function} in it (metric {spec!r}); define "
            f"{function}(prediction, reference, row) there, or name the function it has"
        )
    try:
        inspect.signature(fn).bind("", "", {})
    except TypeError:
        raise TaskError(
            f"{path}: {function}() cannot be called as {function}(prediction, reference, row); "
            "give it those three parameters"
        ) from None
    except ValueError:
        pass  # no signature to read (a builtin): the first row tells
    digest = hashlib.sha256(data).hexdigest()[:16]
    return UserMetric(spec, path, function, digest, fn)


def _import(path: Path):
    """The module of `path`, under a name of its own; one TaskError if importing it fails."""
    stem = re.sub(r"\W", "_", path.stem)
    name = f"adaptwise_metric_{next(_MODULES)}_{stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TaskError(f"{path}: cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickle look a module up by its name
    folder = str(path.parent.resolve())
    sys.path.append(folder)  # its helpers next to it, for the import only (last: no shadowing)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(name, None)
        raise TaskError(f"{path}: cannot be imported ({_said(exc)}); fix the file") from None
    finally:
        if folder in sys.path:  # the entry appended, not an earlier one of the same folder
            del sys.path[len(sys.path) - 1 - sys.path[::-1].index(folder)]
    return module


def _said(exc: BaseException) -> str:
    """`Type: first line of the message`, at most 200 characters of it."""
    text = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def user_digests(task) -> dict[str, str]:
    """Each `python:FILE.py:FUNCTION` metric of the task -> its file's sha256 (16 digits)."""
    return {name: metric.digest for name, metric in task.user_metrics.items()}


def user_metric_names(task: dict) -> list[str]:
    """The task's own metrics, as results.json's task entry records them (`metric_files`)."""
    files = task.get("metric_files")
    return [name for name in files if is_user_metric(name)] if isinstance(files, dict) else []


def rescore(task, old: dict, methods: dict, records: list[dict], golds: dict) -> str:
    """When the task's own metrics are not those the stored results were scored with (another
    primary metric, a metric added or dropped, a file whose sha256 differs), give the stored
    predictions their values now: each row's `scores` of those metrics (and `correct`, where
    the primary metric is or was one of them) and each method's means, in place. The metrics
    are of the predictions alone, so no method is rerun for them; the kind's built-in values
    stay as stored, for doubts_about to check. What changed, in words ("" when nothing did)."""
    before = old.get("metric_files") if isinstance(old.get("metric_files"), dict) else {}
    now = user_digests(task)
    if (old.get("metric"), before) == (task.metric, now) or not (before or now):
        return ""
    changes = []
    if old.get("metric") != task.metric:
        changes.append(f"primary metric {old.get('metric')}, now {task.metric}")
    changes += [f"{name} added" for name in now if name not in before]
    changes += [f"{name} changed" for name in now if name in before and before[name] != now[name]]
    changes += [f"{name} dropped" for name in before if name not in now]
    primary = is_user_metric(old.get("metric")) or is_user_metric(task.metric)
    values: dict[str, list[dict]] = {}
    entries = metric_entries(methods)
    for rec in records:
        entry = (entries.get(rec["method"]) or [None])[0]
        scores = rec.get("scores")
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("metrics"), dict)
            or str(rec["id"]) not in golds
            or not all(isinstance(rec.get(f), str) for f in ("output", "gold"))
            or not isinstance(scores, dict)
        ):
            continue  # doubts_about says what is wrong with it
        user = task.user_values(rec["id"], rec["output"], rec["gold"])
        rec["scores"] = {**{k: v for k, v in scores.items() if not is_user_metric(k)}, **user}
        if primary and "correct" in rec:
            judged = judge_records.row_scores(task.judge and task.judge.record(), rec)
            rec["correct"] = metric_fns.row_values(
                task.kind, task.metric, rec["output"], rec["gold"], {**user, **judged}
            )[1]
        values.setdefault(rec["method"], []).append(user)
    for name, rows in values.items():
        for entry in entries[name]:
            stated = {k: v for k, v in entry["metrics"].items() if not is_user_metric(k)}
            entry["metrics"] = {**stated, **metric_fns.means(rows)}
    return "; ".join(changes)


def metric_entries(methods: dict) -> dict[str, list[dict]]:
    """Prediction records' method name -> the entries whose `metrics` are of those rows: a
    method's entry and its first seed's item, and each other seed's item (experiments/seeds.py)."""
    from experiments.seeds import seed_items

    out: dict[str, list[dict]] = {}
    for name, entry in methods.items():
        for item in seed_items(entry):
            if isinstance(item.get("metrics"), dict):
                out.setdefault(item.get("predictions", name), []).append(item)
        if isinstance(entry, dict):
            out.setdefault(name, []).insert(0, entry)
    return out
