"""A prompting or RAG method as a recipe folder, and the loader that rebuilds its prompts.

A recipe holds what the method's prompt is made of, so that adaptwise can build, for any new
input row, exactly the prompt the run built (the test compares every eval row's prompt with
predictions.jsonl, character for character):

    recipe.json         method, family, task kind, labels, instruction and the system text it
                        gives, selector, k, seed, embedder, RAG settings, the run's options,
                        the base model (`model`: name, source, reference) and, for a hybrid,
                        the folder of its fine-tuned weights (`trained`)
    pool.jsonl          the example pool: the run's train rows, in order, as chat rows
    pool-vectors.npy    the pool's question embeddings as the run computed them (float32; the
                        embedding and MMR selectors, and RAG's worked examples)
    index/              RAG: the FAISS index and its chunks (an `adaptwise index` folder)
    tokenizer/          the base model's tokenizer with its chat template (prompts are rendered
                        with it)
    adapter/ or model/  hybrid methods (rag+lora, raft): the fine-tuned weights they answer with

Prompts are built by the method classes themselves (`PromptingMethod.prompts`,
`RagMethod.prompts`), on a run context made from the recipe: the same selector, the same
examples, the same passages, with the pool's vectors taken as they were.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from experiments.errors import AdaptwiseError
from experiments.prompts import Prompt
from experiments.task import Row

RECIPE_VERSION = 1
RECIPE = "recipe.json"
POOL = "pool.jsonl"
POOL_VECTORS = "pool-vectors.npy"
INDEX = "index"
TOKENIZER = "tokenizer"
EMBEDDED_EMBEDDER_SUFFIX = "(embedded)"  # results.json records the embedded embedder so


def row_record(row: Row) -> dict:
    """A row as a chat row that `experiments.task.parse_row` reads back unchanged."""
    record: dict = {
        "id": row.id,
        "messages": [*map(dict, row.messages), {"role": "assistant", "content": row.output}],
    }
    if row.context_ids:
        record["context_ids"] = list(row.context_ids)
    return record


def embedder_reference(options: dict) -> str | None:
    """The run's --embedder (None: the embedded all-MiniLM-L6-v2)."""
    value = options.get("embedder")
    if not value or str(value).endswith(EMBEDDED_EMBEDDER_SUFFIX):
        return None
    return str(value)


def uses_question_vectors(method) -> bool:
    """Whether the method embeds questions (embedding and MMR selectors, RAG)."""
    from rag.methods import RagMethod

    rag = getattr(method, "rag", method)
    return isinstance(rag, RagMethod) or getattr(method, "selector_name", None) in (
        "embedding",
        "mmr",
    )


def recipe_spec(source, task, system: str) -> dict:
    """recipe.json for the method of `source` (experiments/export/source.MethodSource)."""
    from experiments.prompts import system_text

    method, options = source.method, source.options
    rag = getattr(method, "rag", method if source.family == "rag" else None)
    spec: dict = {
        "recipe_version": RECIPE_VERSION,
        "method": source.name,
        "family": source.family,
        "task": {
            "name": task.name,
            "kind": task.kind,
            "metric": task.metric,
            "labels": list(task.labels),
            "instruction": task.instruction,
        },
        "system": system,
        "seed": options.get("seed", 0),
        "k": options.get("k", 4),
        "options_extra": source.extra,
        "calibrate": bool(options.get("calibrate")),
        "embedder": embedder_reference(options),
        "selector": getattr(method, "selector_name", None),
        "examples_k": getattr(method, "k", None) if source.family == "prompting" else None,
        "pool_rows": len(task.train),
        "model": source.base.to_dict(),
        "trained": _trained_folder(source),
    }
    if system != system_text(task):
        raise AdaptwiseError(f"{task.path}: the system text does not follow from the task file")
    if rag is not None:
        from dataclasses import asdict

        from rag.settings import rag_settings

        recorded = source.entry.get("rag") or {}
        settings = rag_settings(task)
        settings = replace(
            settings,
            k=int(recorded.get("k") or settings.k),
            retrieval=str(recorded.get("retrieval_mode") or settings.retrieval),
            shots=0 if getattr(method, "raft", False) else settings.shots,
            index_dir=None,
        )
        spec["rag"] = asdict(settings)
    return spec


def _trained_folder(source) -> str | None:
    """A hybrid's fine-tuned weights, shipped in the recipe: `adapter/` or `model/`."""
    if source.family != "hybrid":
        return None
    return "model/" if source.trained_method == "full-ft" else "adapter/"


# --- loading --------------------------------------------------------------------------------


@dataclass
class Recipe:
    """A loaded recipe: `prompt_for(row)` and `prompts_for(rows)` build the run's prompts."""

    folder: Path
    spec: dict
    ctx: object  # the RunContext the prompts are built in
    method: object  # the Method (prompting or RAG) that builds them

    @property
    def name(self) -> str:
        return self.spec["method"]

    @property
    def kind(self) -> str:
        return self.spec["task"]["kind"]

    @property
    def labels(self) -> list[str]:
        return list(self.spec["task"]["labels"])

    @property
    def system(self) -> str:
        return self.spec["system"]

    @property
    def tokenizer(self):
        return self.ctx.prompt_format.tokenizer

    @property
    def model_spec(self) -> str | None:
        """The base model as `--model` takes it (None: the embedded SmolLM2)."""
        model = self.spec["model"]
        return None if model["source"] == "embedded-gguf" else model["reference"]

    @property
    def trained(self) -> Path | None:
        """A hybrid's fine-tuned weights in the recipe (an adapter folder, or a full model)."""
        folder = self.spec.get("trained")
        return self.folder / folder if folder else None

    def prompts_for(self, rows: list[Row]) -> list[Prompt]:
        """The prompt the run would build for each row (examples, passages, the row)."""
        if not rows:
            return []
        prompts, _ = self.method.prompts(self.ctx, list(rows))
        return prompts

    def prompt_for(self, row: Row | dict | str) -> Prompt:
        """One row's prompt; `row` may be a Row, a task row dict ({"input": ...}, Alpaca or
        chat) or the input text alone."""
        return self.prompts_for([as_row(row)])[0]


def as_row(row: Row | dict | str) -> Row:
    from experiments.task import parse_row

    if isinstance(row, Row):
        return row
    if isinstance(row, str):
        row = {"input": row, "output": "?"}
    if isinstance(row, dict) and "output" not in row and "messages" not in row:
        row = {**row, "output": "?"}  # the answer is not part of the prompt
    return parse_row(row, "input row", default_id="row")


def load_recipe(folder: str | Path) -> Recipe:
    """Load a recipe folder written by `adaptwise export --format recipe`."""
    from experiments.context import RunContext, RunOptions
    from experiments.prompts import PromptFormat, system_text
    from experiments.run.registry import make_method
    from experiments.task import Task, read_jsonl

    folder = Path(folder)
    spec = _read_spec(folder)
    pool = [
        _pool_row(obj, where, i) for i, (_, where, obj) in enumerate(read_jsonl(folder / POOL, ""))
    ]
    info = spec["task"]
    task = Task(
        name=info["name"],
        kind=info["kind"],
        path=folder / RECIPE,
        train=pool,
        eval=[],
        instruction=info.get("instruction") or "",
        labels=list(info.get("labels") or []),
        metric=info.get("metric") or "",
        settings={"rag": spec.get("rag") or {}},
    )
    if system_text(task) != spec["system"]:
        raise AdaptwiseError(f"{folder / RECIPE}: its system text does not follow from its task")
    options = RunOptions(
        seed=int(spec.get("seed", 0)),
        k=int(spec.get("k", 4)),
        embedder=spec.get("embedder"),
        calibrate=bool(spec.get("calibrate")),
        extra=dict(spec.get("options_extra") or {}),
    )
    ctx = RunContext(task, options, log=lambda _m: None)
    ctx.__dict__["prompt_format"] = PromptFormat(_tokenizer(folder), spec["system"])
    vectors_path = folder / POOL_VECTORS
    if vectors_path.is_file():
        vectors = np.load(vectors_path, allow_pickle=False)
        if vectors.shape[0] != len(pool):
            raise AdaptwiseError(f"{vectors_path}: {vectors.shape[0]} vectors for {len(pool)} rows")
        ctx.questions.remember([r.text for r in pool], vectors)
    method = make_method(spec["method"], {"k": options.k, **options.extra})
    rag = getattr(method, "rag", None)
    if spec.get("rag") is not None:
        from rag.settings import RagSettings
        from rag.store import load_index

        rag = rag or method
        index = load_index(folder / INDEX, ctx.embedder)
        rag.use_index(ctx, index, RagSettings(**spec["rag"]))
        method = rag
    else:
        method.prepare(ctx)
    return Recipe(folder, spec, ctx, method)


def _read_spec(folder: Path) -> dict:
    path = folder / RECIPE
    if not path.is_file():
        raise AdaptwiseError(f"{folder}: no {RECIPE}; not an adaptwise recipe folder")
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
        if spec.get("recipe_version") != RECIPE_VERSION:
            raise ValueError(f"recipe_version {spec.get('recipe_version')!r}")
        for key in ("method", "family", "task", "system", "model"):
            spec[key]  # noqa: B018 - KeyError names the missing field
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AdaptwiseError(
            f"{path}: not a readable recipe ({type(exc).__name__}: {exc})"
        ) from None
    return spec


def _pool_row(obj, where: str, index: int) -> Row:
    from experiments.task import parse_row

    return parse_row(obj, where, default_id=f"pool-{index}")


def _tokenizer(folder: Path):
    from transformers import AutoTokenizer

    path = folder / TOKENIZER
    if not path.is_dir():
        raise AdaptwiseError(f"{folder}: no {TOKENIZER}/ folder; the recipe is incomplete")
    return AutoTokenizer.from_pretrained(str(path))
