"""The files of `adaptwise predict` (experiments/export/predict.py loads the method): the input
rows, read and checked line by line, and the output, appended and flushed per batch beside
`<out>.meta.json`, which names the method and its source's fingerprint so that a rerun
resumes only into predictions of the same method and source, never into a file adaptwise did
not write.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from experiments.errors import AdaptwiseError
from experiments.export.predict import Predictor

PREDICT_COMMAND = "predict"
META_SUFFIX = ".meta.json"


@dataclass
class InputRows:
    rows: list  # experiments.task.Row, with the input text as the user's turn
    texts: list[str]
    bad: list[str] = field(default_factory=list)  # "FILE:LINE: what is wrong"


@dataclass
class Outcome:
    written: int
    kept: int
    bad: list[str]
    seconds: float
    out: Path

    @property
    def rows_per_s(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


def read_input(path: Path) -> InputRows:
    """The rows to predict: JSON Lines with `input` (a string) and an optional `id` (rows
    without one are `row-N`, N their line number). A bad row is one line `FILE:LINE: what is
    wrong` in `bad`, and the others go on; two rows with one id are refused."""
    from experiments.export.recipe import as_row

    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise AdaptwiseError(f"{path}: no such file; give a JSON Lines file of rows") from None
    except UnicodeDecodeError as exc:
        raise AdaptwiseError(f"{path}: not UTF-8 text ({exc.reason})") from None
    out = InputRows([], [])
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line)
        except ValueError as exc:
            out.bad.append(f"{where}: not JSON ({exc.msg})")
            continue
        problem = _row_problem(obj)
        if problem:
            out.bad.append(f"{where}: {problem}")
            continue
        row_id = str(obj.get("id", f"row-{number}"))
        if row_id in seen:
            raise AdaptwiseError(
                f"{where}: id {row_id!r} is also on line {seen[row_id]}; each row needs its own id"
            )
        seen[row_id] = number
        out.rows.append(as_row({"id": row_id, "input": obj["input"]}))
        out.texts.append(obj["input"])
    return out


def _row_problem(obj) -> str | None:
    if not isinstance(obj, dict):
        return f"expected a JSON object with an input, got {type(obj).__name__}"
    if "input" not in obj:
        return 'no "input"'
    if not isinstance(obj["input"], str):
        return f'"input" must be a string, not {type(obj["input"]).__name__}'
    if not obj["input"].strip():
        return '"input" is empty'
    if "id" in obj and (isinstance(obj["id"], bool) or not isinstance(obj["id"], str | int)):
        return '"id" must be a string or a number'
    return None


# --- the output ------------------------------------------------------------------------------


def meta_path(out: Path) -> Path:
    return out.with_name(out.name + META_SUFFIX)


def open_output(out: Path, predictor: Predictor, inputs: list[Path]) -> set[str]:
    """Check `out` may be written and return the ids it holds already (resuming). Refuses a
    file adaptwise did not write, one of another method or source, and an input; drops a last
    line cut short by a kill."""
    out = Path(out)
    meta = meta_path(out)
    resolved = out.resolve()
    for given in inputs:
        given = Path(given).resolve()
        if resolved == given or given in resolved.parents:
            raise AdaptwiseError(f"--out {out}: is an input of this command; choose another --out")
    if out.is_dir():
        raise AdaptwiseError(f"--out {out}: is a folder; give a file name (predictions.jsonl)")
    record = _read_meta(meta) if meta.exists() else None
    if out.exists() and record is None:
        raise AdaptwiseError(
            f"{out}: already there and not written by adaptwise predict (no {meta.name}), which "
            "never appends to a file it did not write; move it away or choose another --out"
        )
    if record is not None and record.get("fingerprint") != predictor.fingerprint:
        raise AdaptwiseError(
            f"{out}: holds predictions of {record.get('method')!r} from {record.get('source')}, "
            f"not of {predictor.name!r} from {predictor.source}; choose another --out"
        )
    done = _finished_ids(out) if out.exists() else set()
    meta_record = {
        "command": PREDICT_COMMAND,
        "method": predictor.name,
        "source": predictor.source,
        "fingerprint": predictor.fingerprint,
        "kind": predictor.kind,
    }
    from experiments.atomic import write_text_atomic

    write_text_atomic(meta, json.dumps(meta_record, indent=2) + "\n")
    return done


def _read_meta(meta: Path) -> dict | None:
    try:
        record = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict) or record.get("command") != PREDICT_COMMAND:
        raise AdaptwiseError(
            f"{meta}: not written by adaptwise predict, which never replaces it; move it away "
            "or choose another --out"
        )
    return record


def _finished_ids(out: Path) -> set[str]:
    """The ids of the rows in `out`; a last line without its newline (the process was killed
    while writing it) is cut off, to be done again."""
    data = out.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(out, "r+b") as handle:
            handle.truncate(end)
        data = data[:end]
    ids = set()
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            ids.add(str(json.loads(line)["id"]))
        except (ValueError, KeyError, TypeError):
            raise AdaptwiseError(
                f"{out}:{number}: not a prediction row; the file was changed after predict "
                "wrote it: choose another --out"
            ) from None
    return ids


def prediction_row(predictor: Predictor, text: str, prediction) -> dict:
    """One output line: id, input, output; for classification the label scores (each label's
    log-likelihood, where known), the raw and calibrated labels; a skipped row says why."""
    record = {"id": prediction.id, "input": text, "output": prediction.output}
    extra = prediction.extra
    logprobs = extra.get("label_logprobs")
    if predictor.kind == "classification" and isinstance(logprobs, list):
        record["scores"] = dict(zip(predictor.labels, logprobs))
    for key in ("output_raw", "output_calibrated", "scoring", "unmapped", "skipped"):
        if key in extra:
            record[key] = extra[key]
    if "retrieved" in extra:
        record["retrieved"] = extra["retrieved"]
    return record


def predict_file(
    predictor: Predictor, inputs: InputRows, out: Path, done: set[str], progress
) -> Outcome:
    """Predict every row of `inputs` not yet in `out` (`done`: the ids `open_output` found
    there), a batch at a time, appending each batch's lines and flushing them to disk (Ctrl-C
    loses at most the batch in flight)."""
    out = Path(out)
    todo = [(row, text) for row, text in zip(inputs.rows, inputs.texts) if row.id not in done]
    kept = len(inputs.rows) - len(todo)
    if kept:
        progress.log(f"{out}: {kept} rows predicted earlier are kept")
    size = max(1, predictor.ctx.options.batch_size)
    started = time.perf_counter()
    progress.start(f"predict {predictor.name}", len(todo))
    written = 0
    try:
        with open(out, "a", encoding="utf-8") as handle:
            for start in range(0, len(todo), size):
                batch = todo[start : start + size]
                predictions = predictor.predict([row for row, _ in batch], progress.advance)
                lines = [
                    json.dumps(prediction_row(predictor, text, p), ensure_ascii=False) + "\n"
                    for (_, text), p in zip(batch, predictions)
                ]
                handle.write("".join(lines))
                handle.flush()
                os.fsync(handle.fileno())
                written += len(batch)
    finally:
        progress.finish()
    return Outcome(written, kept, inputs.bad, time.perf_counter() - started, out)
