"""The task file's `judge:` block, read and checked when the task loads (before any model).

    metric: judge                      # or metrics: [exact_match, judge]; the first is primary
    judge:
      model: openai:NAME               # a served judge; or a local model folder, a .gguf, embedded
      base_url: http://127.0.0.1:8765/v1   # required for openai:NAME
      api_key_env: MY_JUDGE_KEY        # the variable holding its key (default: none is sent)
      rubric: The answer names the same setting as the reference.
      scale: binary                    # binary | 1-5 (pointwise)
      mode: pointwise                  # pointwise (against the reference) | pairwise
      baseline: zero-shot              # pairwise: the method every other one is compared with
      rag: [faithfulness, relevance]   # RAG checks on the methods that retrieve
      max_tokens: 64
      costs: {prompt_per_1k_tokens: 0.15, generated_per_1k_tokens: 0.6}   # the judge's prices

A served judge's key is read from the variable `api_key_env` names, and only then: a task file
names its judge's host, so no key goes to a host unless the task file asks for it by name and
the variable is set. Every problem is one TaskError naming the task file.

What results.json records of the judge (its task entry's `judge`) is `JudgeSpec.record()`; its
`digest` changes with anything that changes what the judge is asked, so a kept run is judged
again (from the cache where it was asked before) when the block changes.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from experiments.errors import TaskError
from experiments.judge_prompts import CHECKS, DEFAULT_RUBRIC, METRIC, MODES, PROMPTS_VERSION, SCALES

KEYS = (
    "model",
    "base_url",
    "api_key_env",
    "rubric",
    "scale",
    "mode",
    "baseline",
    "rag",
    "max_tokens",
    "costs",
)
EMBEDDED = "embedded"
PRICE_KEYS = ("prompt_per_1k_tokens", "generated_per_1k_tokens", "cpu_hour", "gpu_hour")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class JudgeSpec:
    model: str  # openai:NAME, "embedded", or a resolved local path
    base_url: str | None
    api_key_env: str | None
    rubric: str
    scale: str
    mode: str
    baseline: str
    rag: tuple[str, ...]
    max_tokens: int
    metric: bool  # `judge` is one of the task's metrics (else only the RAG checks run)
    costs: dict = field(default_factory=dict)

    @property
    def served(self) -> bool:
        return self.model.startswith("openai:")

    @property
    def pairwise(self) -> bool:
        return self.metric and self.mode == "pairwise"

    def record(self) -> dict:
        """What results.json's task entry records (no key: only the variable's name)."""
        from experiments.api_model import masked_url

        out = {
            "model": self.model,
            "base_url": masked_url(self.base_url) if self.base_url else None,
            "api_key_env": self.api_key_env,
            "rubric": self.rubric,
            "scale": self.scale,
            "mode": self.mode,
            "baseline": self.baseline if self.pairwise else None,
            "rag": list(self.rag),
            "max_tokens": self.max_tokens,
            "metric": self.metric,
            "prompts_version": PROMPTS_VERSION,
        }
        text = json.dumps(out, sort_keys=True)
        return {
            **out,
            "costs": dict(self.costs),
            "digest": hashlib.sha256(text.encode()).hexdigest()[:16],
        }


def read_judge(spec: dict, kind: str, path: Path, metric_named: bool) -> JudgeSpec | None:
    """The task's judge (None without a `judge:` block); `metric_named`: `judge` is among the
    task's metrics."""
    block = spec.get("judge")
    where = f"{path}: judge"
    if block is None:
        if metric_named:
            raise TaskError(
                f"{path}: metric judge needs a judge: block naming its model (e.g. judge: "
                "{model: openai:NAME, base_url: http://127.0.0.1:8000/v1}); see docs/running.md"
            )
        return None
    if not isinstance(block, dict):
        raise TaskError(f"{where} must be a mapping of settings (model, rubric, scale, mode, ...)")
    unknown = sorted(set(block) - set(KEYS))
    if unknown:
        raise TaskError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(KEYS)}")
    if kind == "classification":
        raise TaskError(
            f"{where}: the judge grades written answers (qa and generation tasks); a "
            "classification task is scored by its labels"
        )
    model, base_url, key_env = _model(block, path, where)
    scale = _choice(block, "scale", SCALES, "binary", where)
    mode = _choice(block, "mode", MODES, "pointwise", where)
    if mode == "pairwise" and block.get("scale") not in (None, "binary"):
        raise TaskError(
            f"{where}: a pairwise judge answers A, B or tie; scale applies to pointwise, so "
            "leave scale out or use mode: pointwise"
        )
    rag = _rag(block.get("rag"), where)
    if not metric_named and not rag:
        raise TaskError(
            f"{where}: the block is used by metric judge or by rag checks; add judge to metric: / "
            "metrics:, or rag: [faithfulness, relevance]"
        )
    return JudgeSpec(
        model=model,
        base_url=base_url,
        api_key_env=key_env,
        rubric=_text(block, "rubric", DEFAULT_RUBRIC[mode], where),
        scale=scale,
        mode=mode,
        baseline=_text(block, "baseline", "zero-shot", where),
        rag=rag,
        max_tokens=_max_tokens(block.get("max_tokens", 64), where),
        metric=metric_named,
        costs=_costs(block.get("costs"), where),
    )


def _model(block: dict, path: Path, where: str) -> tuple[str, str | None, str | None]:
    model = block.get("model")
    if not isinstance(model, str) or not model.strip():
        raise TaskError(
            f"{where}: give model: openai:NAME (with base_url), a local model folder or .gguf "
            "file, or embedded"
        )
    model = model.strip()
    key_env = block.get("api_key_env")
    if key_env is not None and (not isinstance(key_env, str) or not _ENV_NAME.fullmatch(key_env)):
        raise TaskError(f"{where}: api_key_env must be the name of an environment variable")
    if model.startswith("openai:"):
        if not model[len("openai:") :].strip():
            raise TaskError(f"{where}: model openai:NAME needs the served model's NAME")
        return model, _base_url(block.get("base_url"), where), key_env
    for key in ("base_url", "api_key_env"):
        if block.get(key) is not None:
            raise TaskError(f"{where}: {key} applies to a served judge (model: openai:NAME)")
    if model == EMBEDDED:
        return model, None, None
    local = Path(model).expanduser()
    local = local if local.is_absolute() else path.parent / local
    if not (local.is_dir() and (local / "config.json").is_file()) and not (
        local.suffix == ".gguf" and local.is_file()
    ):
        raise TaskError(
            f"{where}: model {model!r} is not a model folder (with config.json) or a .gguf file "
            "next to the task file; give one, openai:NAME with base_url, or embedded"
        )
    return str(local.resolve()), None, None


def _base_url(value, where: str) -> str:
    from urllib.parse import urlsplit

    if value is None:
        raise TaskError(
            f"{where}: a served judge (model: openai:NAME) needs base_url, the server's address "
            "(e.g. http://127.0.0.1:8000/v1); its requests go there and nowhere else"
        )
    url = str(value).strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or not url.isprintable():
        raise TaskError(f"{where}: base_url {url!r} is not an http(s) URL")
    return url


def _choice(block: dict, key: str, allowed: tuple[str, ...], default: str, where: str) -> str:
    value = block.get(key, default)
    if str(value) not in allowed:
        raise TaskError(f"{where}: {key} {value!r} is not one of {', '.join(allowed)}")
    return str(value)


def _rag(value, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise TaskError(f"{where}: rag must be a list of checks ({', '.join(CHECKS)})")
    for check in value:
        if check not in CHECKS:
            raise TaskError(
                f"{where}: rag check {check!r} is unknown; the checks are {', '.join(CHECKS)}"
            )
    return tuple(dict.fromkeys(value))


def _text(block: dict, key: str, default: str, where: str) -> str:
    value = block.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise TaskError(f"{where}: {key} must be text")
    return " ".join(value.split()) if key == "baseline" else value.strip()


def _max_tokens(value, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 4096:
        raise TaskError(f"{where}: max_tokens must be a whole number from 1 to 4096")
    return value


def _costs(value, where: str) -> dict:
    from experiments.errors import AdaptwiseError
    from experiments.numbers import check_number

    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TaskError(f"{where}: costs must be a mapping ({', '.join(PRICE_KEYS)})")
    out = {}
    for key, price in value.items():
        if key not in PRICE_KEYS:
            raise TaskError(
                f"{where}: costs key {key!r} is unknown; known: {', '.join(PRICE_KEYS)}"
            )
        try:
            out[key] = float(check_number(price, f"{where}: costs {key}"))
        except AdaptwiseError as exc:
            raise TaskError(str(exc)) from None
    return out


def names_judge(names: list) -> bool:
    """Whether `judge` is among a task's metric names."""
    return METRIC in names
