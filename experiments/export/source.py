"""What an export reads: one method of a run folder, its family, the formats it can take, its
artefacts (adapter, merged or full model) and the base model it was run on; every missing or
wrong piece is one line that says what to do."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from experiments.errors import AdaptwiseError

FAMILIES = ("prompting", "rag", "lora", "qlora", "full-ft", "hybrid")
MODEL_FORMATS = ("adapter", "merged", "gguf", "ollama", "vllm")
FORMATS = ("recipe", *MODEL_FORMATS)
FORMATS_BY_FAMILY = {
    "prompting": ("recipe",),
    "rag": ("recipe",),
    "lora": MODEL_FORMATS,
    "qlora": MODEL_FORMATS,
    "full-ft": ("merged", "gguf", "ollama", "vllm"),
    "hybrid": FORMATS,  # the recipe (retrieval) and the fine-tuned model
}
EMBEDDED_SOURCE = "embedded-gguf"


@dataclass(frozen=True)
class BaseModel:
    """The model a run ran on: `source` is embedded-gguf, gguf-file, local-folder, hub or
    served; `reference` the path or id; `gguf` the GGUF file it came from, if any."""

    name: str
    source: str
    reference: str
    gguf: Path | None = None

    def checkpoint(self) -> str:
        """A loadable transformers folder (a GGUF base: adaptwise's converted copy), or hub id."""
        from experiments.models import resolve_checkpoint

        spec = None if self.source == EMBEDDED_SOURCE else self.reference
        checkpoint, _ = resolve_checkpoint(spec, progress=lambda _m: None)
        return checkpoint

    def to_dict(self) -> dict:
        return {"name": self.name, "source": self.source, "reference": self.reference}


def base_model(options: dict) -> BaseModel:
    """The run's --model, as results.json recorded it."""
    from experiments.api_model import is_api_model
    from experiments.models import EMBEDDED_NAME, embedded_gguf_path
    from experiments.run.chat import EMBEDDED_SUFFIX

    model = str(options.get("model") or "")
    if not model or model.endswith(EMBEDDED_SUFFIX):
        path = embedded_gguf_path()
        return BaseModel(EMBEDDED_NAME, EMBEDDED_SOURCE, str(path), path)
    if is_api_model(model):
        return BaseModel(model.split(":", 1)[1], "served", model)
    path = Path(model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise AdaptwiseError(f"{model}: the run's GGUF model is not there any more")
        return BaseModel(path.stem, "gguf-file", str(path.resolve()), path.resolve())
    if path.is_dir():
        return BaseModel(path.name, "local-folder", str(path.resolve()))
    if path.is_absolute() or model.startswith("."):
        raise AdaptwiseError(
            f"{model}: the run's model folder is not there any more; put it back to export"
        )
    return BaseModel(model, "hub", model)


def family_of(method) -> str:
    """prompting, rag, lora, qlora, full-ft or hybrid, from the method object the registry
    builds for the name (experiments.methods.make_method)."""
    from experiments.prompting import PromptingMethod
    from finetune.hybrid import RagFinetuneMethod
    from finetune.methods import FinetuneMethod
    from rag.methods import RagMethod

    if isinstance(method, RagFinetuneMethod):
        return "hybrid"
    if isinstance(method, FinetuneMethod):
        return method.name
    if isinstance(method, RagMethod):
        return "rag"
    if isinstance(method, PromptingMethod):
        return "prompting"
    raise AdaptwiseError(f"method {method.name!r}: adaptwise cannot export this kind of method")


@dataclass
class MethodSource:
    run_dir: Path
    results: dict
    records: list[dict]  # every prediction record of the run (all methods)
    name: str
    entry: dict
    method: object  # the Method the registry builds for the name (not prepared)
    family: str
    base: BaseModel
    extra: dict = field(default_factory=dict)

    @property
    def options(self) -> dict:
        return self.results.get("options") or {}

    @property
    def folder(self) -> Path:
        """`<run>/<method folder>/`, where fine-tuning left its artefacts."""
        finetune = getattr(self.method, "finetune", self.method)
        return self.run_dir / getattr(finetune, "folder_name", self.name)

    @property
    def trained_method(self) -> str | None:
        """lora, qlora or full-ft: how the model of a fine-tuned or hybrid method was trained."""
        return self.method.trains

    @property
    def predictions(self) -> list[dict]:
        return [r for r in self.records if r.get("method") == self.name]

    def artefact(self, kind: str) -> Path | None:
        """`adapter`, `model` or `merged` folder of the method, when the run left it whole."""
        path = self.folder / kind
        marker = "adapter_config.json" if kind == "adapter" else "config.json"
        return path if (path / marker).is_file() else None

    def model_folder(self) -> Path:
        """The trained weights: the adapter folder (LoRA, QLoRA) or the full model (full-ft)."""
        kind = "model" if self.trained_method == "full-ft" else "adapter"
        found = self.artefact(kind)
        if found is None:
            raise AdaptwiseError(
                f"{self.folder / kind}: missing (the run's {self.name} left no {kind} folder); "
                f"rerun it: adaptwise run {self.task_path} --methods {self.name} --rerun "
                f"{self.name} --out {self.run_dir}"
            )
        return found

    def merged_folder(self) -> Path:
        """A plain transformers model of the method: full-ft's model, or LoRA's merged copy."""
        if self.trained_method == "full-ft":
            return self.model_folder()
        found = self.artefact("merged")
        if found is None:
            raise AdaptwiseError(
                f"{self.folder / 'merged'}: missing (the run did not merge the adapter); rerun "
                f"with: adaptwise run {self.task_path} --methods {self.name} --finetune "
                f"merge=true --rerun {self.name} --out {self.run_dir}; or export --format gguf, "
                "which merges here"
            )
        return found

    @property
    def task_path(self) -> str:
        return str(self.results["task"].get("path") or "TASK.yaml")

    @cached_property
    def task(self):
        """The run's task file, loaded, with the train rows the run used (a recipe's pool)."""
        from experiments.results import eval_fingerprint

        task = self.prompt_task()
        if eval_fingerprint(task.train) != self.results["task"].get("train_fingerprint"):
            raise AdaptwiseError(
                f"{task.path}: its train rows changed since the run, so the recipe would not "
                f"rebuild the run's prompts; rerun {self.name} on the task as it is now"
            )
        return task

    def prompt_task(self):
        """The run's task file, loaded for its instruction and labels (the system text of
        every prompt); one line when it is gone or its kind or labels changed."""
        from experiments.task import load_task

        path = Path(self.task_path)
        if not path.is_file():
            raise AdaptwiseError(
                f"{path}: the run's task file is not there any more (its instruction is part of "
                "every prompt); run the export from the folder the run ran in, or put it back"
            )
        task = load_task(path)
        recorded = self.results["task"]
        if task.kind != recorded["kind"] or list(task.labels) != list(recorded.get("labels") or []):
            raise AdaptwiseError(
                f"{path}: its kind or labels changed since the run; rerun {self.name} on the "
                "task as it is now"
            )
        return task


def read_method(run_dir: Path, name: str) -> MethodSource:
    """The method `name` of the run in `run_dir`; one line when the run does not have it."""
    from experiments.context import RunOptions
    from experiments.report.run_folder import load_run
    from experiments.run.registry import make_method

    run_dir = Path(run_dir)
    results, records = load_run(run_dir)
    methods = results["methods"]
    if name not in methods:
        failed = (results.get("failed") or {}).get(name)
        if isinstance(failed, dict):
            raise AdaptwiseError(
                f"{run_dir}: method {name!r} {failed.get('status', 'failed')} in this run "
                f"({failed.get('message', '')}); rerun it before exporting it"
            )
        raise AdaptwiseError(
            f"{run_dir}: the run has no method {name!r}; it has: {', '.join(methods) or 'none'}"
        )
    options = results.get("options") or {}
    extra = options.get("extra") if isinstance(options.get("extra"), dict) else {}
    method = make_method(name, {"k": options.get("k", RunOptions.k), **extra})
    return MethodSource(
        run_dir=run_dir,
        results=results,
        records=records,
        name=name,
        entry=methods[name],
        method=method,
        family=family_of(method),
        base=base_model(options),
        extra=extra,
    )


def check_format(source: MethodSource, fmt: str, quant: str | None) -> None:
    """One line for a format the method cannot take, or a --quant that does not apply."""
    if fmt not in FORMATS:
        raise AdaptwiseError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    allowed = FORMATS_BY_FAMILY[source.family]
    if fmt not in allowed:
        if source.family in ("prompting", "rag"):
            hint = "use --format recipe (its prompt template, examples or index, and the model)"
            what = f"{source.name} is a {source.family} method: it trained no weights"
        elif fmt == "recipe":
            hint = f"use --format {', '.join(allowed)}"
            what = f"{source.name} is fine-tuned ({source.family}): its prompt is the zero-shot one"
        else:
            hint = f"use --format {', '.join(allowed)}"
            what = f"{source.name} trains every weight and has no adapter"
        raise AdaptwiseError(f"--format {fmt}: {what}; {hint}")
    if source.base.source == "served" and fmt == "recipe":
        raise AdaptwiseError(
            f"{source.run_dir}: {source.name} ran on a served model ({source.base.reference}); "
            "recipes of served-model runs are not supported yet: rerun it on a local --model"
        )
    if quant is not None and fmt not in ("gguf", "ollama", "recipe"):
        raise AdaptwiseError(f"--quant applies to --format gguf, ollama and recipe, not {fmt}")
    if quant is not None and fmt == "recipe" and source.family == "hybrid":
        raise AdaptwiseError(
            f"--quant with a recipe of {source.name}: its model is trained; export it with "
            "--format gguf to serve it"
        )


def describe_settings(source: MethodSource) -> dict:
    """The method's settings as the run recorded them (for the model card): what chose its
    examples or passages, or how it was trained."""
    entry, options, method = source.entry, source.options, source.method
    out: dict = {"description": entry.get("description", ""), "seed": options.get("seed")}
    out["precision"] = entry.get("precision") or options.get("precision")
    if source.family == "prompting":
        out["examples"] = (
            f"{method.k} per query, chosen by {method.selector_name}"
            if method.selector_name
            else "none (zero-shot)"
        )
        out["calibrate"] = bool(options.get("calibrate"))
    if source.family in ("prompting", "rag", "hybrid"):
        out["embedder"] = options.get("embedder")
    if isinstance(entry.get("rag"), dict):
        out["rag"] = entry["rag"]
    training = entry.get("training")
    if isinstance(training, dict) and isinstance(training.get("settings"), dict):
        keep = ("method", "rank", "alpha", "learning_rate", "epochs", "max_steps")
        settings = training["settings"]
        out["finetune"] = {
            k: settings[k] for k in (*keep, "batch_size", "max_length") if k in settings
        }
        out["training"] = {
            k: training.get(k)
            for k in ("steps", "epochs", "train_rows", "best_val_loss", "train_wall_s")
            if training.get(k) is not None
        }
    return out


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AdaptwiseError(f"{path}: unreadable ({exc})") from None
