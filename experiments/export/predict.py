"""`adaptwise predict SOURCE --method NAME --input rows.jsonl --out predictions.jsonl`: apply a
measured method to new, unlabelled rows.

SOURCE is a run folder (results.json: the method is rebuilt as the run built it, its trained
weights loaded from `<run>/<method>/`) or an export folder (export.json: a recipe loads with
`load_recipe`, an adapter or merged export loads its weights). Nothing here builds a prompt or
scores a label: each batch of rows goes through the method's own `predict`, on a run context
made like the run's, so the rows get the prompts and scoring the run measured (in process, or
through a served model with `--model openai:NAME`).

The output is JSON Lines, one row per input row in input order (experiments/export/predict_files.py:
the input rows, the output file and resuming into it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from experiments.errors import AdaptwiseError

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
        from experiments.run.method_failures import release_method

        release_method(self.ctx, self.method)


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
    from experiments.context import RunOptions
    from experiments.export.recipe import embedder_reference
    from experiments.run.chat import EMBEDDED_SUFFIX

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
    from experiments.run.registry import make_method

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
        from experiments.run.registry import make_method

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
    from experiments.run.registry import make_method
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
