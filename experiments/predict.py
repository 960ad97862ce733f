"""`adaptwise predict SOURCE --method NAME --input rows.jsonl --out predictions.jsonl`: apply a
measured method to new, unlabelled rows.

SOURCE is a run folder (results.json: the method is rebuilt as the run built it, its trained
weights loaded from `<run>/<method>/`) or an export folder (export.json: a recipe loads with
`load_recipe`, an adapter or merged export loads its weights). Nothing here builds a prompt or
scores a label: each batch of rows goes through the method's own `predict`, on a run context
made like the run's, so the rows get the prompts and scoring the run measured (in process, or
through a served model with `--model openai:NAME`).

The output is JSON Lines, one row per input row in input order, appended and flushed per batch;
`<out>.meta.json` names the method and a fingerprint of its source, so a rerun resumes (rows
whose id is already there are not redone) only into predictions of the same method and source,
and never into a file adaptwise did not write.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from experiments.errors import AdaptwiseError

PREDICT_COMMAND = "predict"
META_SUFFIX = ".meta.json"
MODEL_FORMATS_IN_PROCESS = ("adapter", "merged")


@dataclass
class Predictor:
    """A method ready to predict: its run context, the Method object, and where it came from."""

    name: str
    kind: str
    labels: list[str]
    ctx: object
    method: object
    source: str  # the source folder, resolved
    fingerprint: str  # what the method is: changes when the source or the model does
    describe: str

    def predict(self, rows: list, progress) -> list:
        return self.method.predict(self.ctx, rows, progress)

    def close(self) -> None:
        """Free the method's model (an adapter comes off the shared base), as the runner does."""
        from experiments.runner import release_method

        release_method(self.ctx, self.method)


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


# --- the source ------------------------------------------------------------------------------


def load_predictor(
    source: Path,
    method: str | None,
    model: str | None = None,
    base_url: str | None = None,
    batch_size: int = 16,
    log=print,
) -> Predictor:
    """The method `method` of the run or export folder `source`; `model` (openai:NAME) sends
    the method's prompts to a served model instead of loading weights here."""
    from experiments.api_model import is_api_model

    source = Path(source)
    if model is not None and not is_api_model(model):
        raise AdaptwiseError(
            f"--model {model}: predict uses the source's own model; name a served one as "
            "openai:NAME (adaptwise serve EXPORT_DIR prints its URL)"
        )
    if (source / "results.json").is_file():
        if not method:
            raise AdaptwiseError(f"{source}: a run folder; name its method with --method")
        return _from_run(source, method, model, base_url, batch_size, log)
    if (source / "export.json").is_file():
        return _from_export(source, method, model, base_url, batch_size, log)
    raise AdaptwiseError(
        f"{source}: neither a run folder (results.json) nor an export folder (export.json)"
    )


def _options_of_run(recorded: dict, batch_size: int):
    """The run's options (results.json) as RunOptions, so the method is built as it was."""
    from experiments.chat import EMBEDDED_SUFFIX
    from experiments.context import RunOptions
    from experiments.export.recipe import embedder_reference

    model = recorded.get("model")
    extra = recorded.get("extra")
    return RunOptions(
        model=None if not model or str(model).endswith(EMBEDDED_SUFFIX) else str(model),
        embedder=embedder_reference(recorded),
        seed=int(recorded.get("seed") or 0),
        k=int(recorded.get("k") or 4),
        calibrate=bool(recorded.get("calibrate")),
        batch_size=batch_size,
        max_new_tokens=recorded.get("max_new_tokens"),
        trust_remote_code=bool(recorded.get("trust_remote_code")),
        precision=recorded.get("precision"),
        base_url=recorded.get("base_url"),
        tokenizer=recorded.get("tokenizer"),
        extra=extra if isinstance(extra, dict) else {},
    )


def _serve_through(options, model: str | None, base_url: str | None, tokenizer: str | None):
    """Point the options at a served model; prompts rendered with the measured model's chat
    template (`tokenizer`: its checkpoint), as `verify` sends them."""
    if model is None:
        return
    options.model, options.base_url = model, base_url
    options.tokenizer = tokenizer or options.tokenizer


def _from_run(run_dir: Path, name: str, model, base_url, batch_size: int, log) -> Predictor:
    from experiments.context import RunContext
    from experiments.export.source import read_method
    from experiments.registry import make_method

    source = read_method(run_dir, name)
    task = source.task  # the run's task file, with the train rows the run used
    options = _options_of_run(source.options, batch_size)
    served_base = source.base.source == "served"
    _serve_through(options, model, base_url, None if served_base else source.base.checkpoint())
    ctx = RunContext(task, options, log=log)
    ctx.out_dir = run_dir
    method = source.method
    if source.family == "hybrid":  # its retrieval, then its saved model (or the served one)
        method.prepare_retrieval(ctx)
        if model is not None:
            method = method.rag
        else:
            method.finetune.load_saved(ctx, source.model_folder())
    elif source.trained_method is not None:
        if model is not None:  # the served model is the trained one; its prompts zero-shot
            method = make_method("zero-shot", {})
        else:
            method.load_saved(ctx, source.model_folder())
    else:
        method.prepare(ctx)
    entry = json.dumps([source.entry, source.options.get("extra")], sort_keys=True, default=str)
    fingerprint = _digest(["run", str(run_dir.resolve()), name, entry, model])
    where = f"the served {model}" if model else "in process"
    return Predictor(
        name=name,
        kind=task.kind,
        labels=list(task.labels),
        ctx=ctx,
        method=method,
        source=str(run_dir.resolve()),
        fingerprint=fingerprint,
        describe=f"{name} of the run {run_dir} ({where})",
    )


def _from_export(folder: Path, name, model, base_url, batch_size: int, log) -> Predictor:
    from experiments.export.serve import inside, read_export

    record = read_export(folder)
    exported = record["method"]["name"]
    if name and name != exported:
        raise AdaptwiseError(f"{folder}: exports {exported!r}, not {name!r}; drop --method")
    fmt = record.get("format")
    files = record["files"]
    for path in files.values():
        inside(folder, path)  # every path export.json names stays in the export folder
    digest = hashlib.sha256((folder / "export.json").read_bytes()).hexdigest()
    fingerprint = _digest(["export", str(folder.resolve()), exported, digest, model])
    where = f"the served {model}" if model else "in process"
    if fmt != "recipe" and record["method"].get("family") == "hybrid":
        raise AdaptwiseError(
            f"{folder}: the {fmt} export of {exported}, whose prompts hold retrieved passages: "
            "predict with its recipe export (adaptwise export --format recipe)"
        )
    if fmt == "recipe":
        ctx, method, kind, labels = _recipe(folder, model, base_url, batch_size, log)
    elif fmt in MODEL_FORMATS_IN_PROCESS or model is not None:
        ctx, method, kind, labels = _model_export(folder, record, model, base_url, batch_size, log)
    else:
        raise AdaptwiseError(
            f"{folder}: a {fmt} export holds no transformers weights to predict with in process; "
            f"serve it (adaptwise serve {folder}) and predict with --model openai:{exported} "
            "--base-url URL"
        )
    return Predictor(
        name=exported,
        kind=kind,
        labels=labels,
        ctx=ctx,
        method=method,
        source=str(folder.resolve()),
        fingerprint=fingerprint,
        describe=f"{exported} of the export {folder} ({where})",
    )


def _recipe(folder: Path, model, base_url, batch_size: int, log):
    from experiments.export.recipe import load_recipe

    recipe = load_recipe(folder)
    ctx = recipe.ctx
    ctx.log = log
    ctx.options.model = recipe.model_spec
    ctx.options.batch_size = batch_size
    ctx.options.max_new_tokens = _export_max_new_tokens(folder)
    _serve_through(ctx.options, model, base_url, str(recipe.folder / "tokenizer"))
    method = recipe.method
    if recipe.trained is not None and model is None:
        from experiments.registry import make_method

        hybrid = make_method(recipe.name, {"k": ctx.options.k, **ctx.options.extra})
        hybrid.rag = method  # the recipe's retrieval, prepared from its index
        hybrid.finetune.load_saved(ctx, recipe.trained)
        method = hybrid
    return ctx, method, recipe.kind, recipe.labels


def _export_max_new_tokens(folder: Path) -> int | None:
    from experiments.export.serve import read_export

    value = (read_export(folder).get("generation") or {}).get("max_new_tokens")
    return int(value) if isinstance(value, int) else None


def _model_export(folder: Path, record: dict, model, base_url, batch_size: int, log):
    """An adapter or merged export (or any model export served elsewhere): zero-shot prompts
    with the method's system text, scored by its trained model."""
    from experiments.context import RunContext, RunOptions
    from experiments.export.serve import inside
    from experiments.export.source import BaseModel
    from experiments.prompts import PromptFormat
    from experiments.registry import make_method
    from experiments.task import Task

    generation = record.get("generation") or {}
    kind = str(generation.get("kind") or record["run"]["kind"])
    labels = [str(x) for x in generation.get("labels") or []]
    task = Task(
        name=str(record["run"].get("task") or "task"),
        kind=kind,
        path=folder / "export.json",
        train=[],
        eval=[],
        labels=labels,
        metric=str(record["run"].get("metric") or ""),
    )
    base = BaseModel(**{k: record["base_model"][k] for k in ("name", "source", "reference")})
    files = record["files"]
    trained = record["method"].get("trained")
    options = RunOptions(
        batch_size=batch_size,
        max_new_tokens=generation.get("max_new_tokens"),
        calibrate=bool(generation.get("calibrate")),
    )
    zero_shot = make_method("zero-shot", {})
    if model is not None:
        tokenizer = str(inside(folder, files["tokenizer"])) if "tokenizer" in files else None
        _serve_through(options, model, base_url, tokenizer or base.checkpoint())
        ctx = RunContext(task, options, log=log)
        method = zero_shot
    elif "merged" in files:
        options.model = str(inside(folder, files["merged"]))
        ctx = RunContext(task, options, log=log)
        method = zero_shot
    else:
        options.model = None if base.source == "embedded-gguf" else base.reference
        ctx = RunContext(task, options, log=log)
        method = make_method(trained or "lora", {})
    ctx.__dict__["prompt_format"] = PromptFormat(ctx.tokenizer, record["chat"]["system"])
    if method is not zero_shot:
        method.load_saved(ctx, inside(folder, files["adapter"]))
    return ctx, method, kind, labels


def _digest(parts: list) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode("utf-8")).hexdigest()[:16]


# --- the input rows --------------------------------------------------------------------------


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
