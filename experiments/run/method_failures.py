"""What a method that ran out of memory leaves behind: the record results.json keeps of it (its
estimate, the budget, the one advice of advisor/fit_suggestions.py), and the memory it held,
freed so that the next method can load. The runner records the failure and goes on; `predict`
frees a method the same way."""

from __future__ import annotations

from experiments.context import RunContext
from experiments.errors import OutOfMemory
from experiments.methods import Method


def out_of_memory_record(ctx: RunContext, method: Method, exc: BaseException) -> dict:
    """What results.json keeps of a method that ran out of memory: its estimate and the
    estimator's first suggestion, as litgpt's resource tables keep their OOM rows."""
    memory = dict(getattr(method, "memory", {}) or {})
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if not isinstance(exc, OutOfMemory):
        message = f"{type(exc).__name__}: {message[:200]}"
    return {
        "status": "out of memory",
        "description": method.description,
        "message": message,
        "precision": ctx.precision if "lm" in ctx.__dict__ else None,
        "estimate_gb": memory.get("estimate_gb"),
        "budget_gb": memory.get("budget_gb"),
        "suggestion": memory.get("suggestion") or _after_out_of_memory(method, memory),
        "memory": memory or None,
    }


def _after_out_of_memory(method: Method, memory: dict) -> str | None:
    if not memory:
        return None
    from advisor.fit_suggestions import after_out_of_memory

    tuned = getattr(getattr(method, "finetune", method), "name", method.name)
    return after_out_of_memory(tuned, memory)


def release_method(ctx: RunContext, method: Method) -> None:
    """Free what a failed method held (its trained model, an adapter on the shared base)."""
    from experiments.models import free_memory

    release = getattr(method, "release", None) or getattr(
        getattr(method, "finetune", None), "release", None
    )
    if release is not None:
        try:
            release(ctx)
        except Exception:  # noqa: BLE001 - freeing after a failure must not raise a second one
            ctx.log(f"{method.name}: the shared base could not be restored; reloading it")
            ctx.lm.model = None
    free_memory()
