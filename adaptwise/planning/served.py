"""The plan for a served model (`adaptwise plan TASK --model openai:NAME`): its time from a few
real requests, its tokens from the server's `usage` on them, its cost from the token prices.

The probe runs each planned method on the first `probe_rows` eval rows exactly as `run` does
(experiments/run/runner.py `run_method`, the same client, the same response cache), one request at
a time so each latency is the server's answer time without queueing. The cache is kept on
purpose: those rows are the run's own first rows, so a later `run` asks nothing again for
them, and a cached answer keeps the latency measured when it was asked, so a second `plan`
costs nothing and estimates the same. `--no-cache` asks again.

From the probe, for the rows the run will score:

- scoring time = rows x requests per row x mean latency / `--concurrency`: it assumes the
  server answers that many requests at once as fast as one; a server that answers one at a
  time takes `serial_s` (concurrency 1);
- preparation = the probe's own measured preparation (embedding the examples, the RAG index)
  and model set-up: they do not depend on the row count;
- tokens = rows x the mean prompt and generated tokens per query of the server's `usage`;
- cost = tokens x the price per 1,000 tokens (task `costs:`, then the command line's flags).

No peak memory: a served model's memory is the server's.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from advisor.hosting_costs import per_query_token_cost

PROBE_ROWS = 3


@dataclass
class ServedStep:
    method: str
    order: int
    runnable: bool
    probe_rows: int = 0
    probe_cached: int = 0  # probe requests answered from the cache
    requests_per_row: float = 0.0
    latency_mean_s: float | None = None
    prepare_s: float | None = None
    score_s: float | None = None
    serial_s: float | None = None
    prompt_tokens: float | None = None  # per query, from the server's usage
    generated_tokens: float | None = None
    usage_reported: bool = True
    cost: float | None = None  # for the rows the run scores
    per_1k_queries: float | None = None
    scoring: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def total_s(self) -> float | None:
        if self.prepare_s is None or self.score_s is None:
            return None
        return self.prepare_s + self.score_s

    def to_dict(self) -> dict:
        r = _round
        return {
            "method": self.method,
            "order": self.order,
            "runnable": self.runnable,
            "estimate_s": {
                "prepare": r(self.prepare_s),
                "score": r(self.score_s),
                "total": r(self.total_s),
                "serial_score": r(self.serial_s),
            },
            "probe": {
                "rows": self.probe_rows,
                "cached": self.probe_cached,
                "requests_per_row": round(self.requests_per_row, 2),
                "latency_mean_s": r(self.latency_mean_s, 3),
            },
            "prompt_tokens": r(self.prompt_tokens),
            "generated_tokens": r(self.generated_tokens),
            "usage_reported": self.usage_reported,
            "cost": r(self.cost, 6),
            "per_1k_queries": r(self.per_1k_queries, 6),
            "scoring": self.scoring,
            "peak_memory_gb": None,  # the server's
            "notes": self.notes,
        }


@dataclass
class ServedPlan:
    task: str
    model: str
    base_url: str
    rows_scored: int
    concurrency: int
    prices: dict
    steps: list[ServedStep]
    skipped: list[dict] = field(default_factory=list)  # methods a served model cannot run

    @property
    def total_s(self) -> float | None:
        times = [s.total_s for s in self.steps if s.runnable]
        return None if not times or any(t is None for t in times) else sum(times)

    @property
    def total_cost(self) -> float | None:
        costs = [s.cost for s in self.steps if s.runnable]
        return None if not costs or any(c is None for c in costs) else sum(costs)

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "model": self.model,
            "served": True,
            "base_url": self.base_url,
            "rows_scored": self.rows_scored,
            "concurrency": self.concurrency,
            "prices": self.prices,
            "total_s": _round(self.total_s),
            "total_cost": _round(self.total_cost, 6),
            "steps": [s.to_dict() for s in self.steps],
            "skipped": self.skipped,
        }


def served_methods(names: list[str]) -> tuple[list[str], list[dict]]:
    """The methods a served model runs (prompting and RAG), and the others with the reason."""
    from experiments.errors import AdaptwiseError
    from experiments.run.registry import make_method

    keep, skipped = [], []
    for name in names:
        try:
            runs = getattr(make_method(name, {}), "runs_on_api", False)
        except AdaptwiseError as exc:
            skipped.append({"method": name, "reason": str(exc)})
            continue
        if runs:
            keep.append(name)
        else:
            skipped.append(
                {
                    "method": name,
                    "reason": "trains or scores local weights: plan it with a local --model",
                }
            )
    return keep, skipped


def make_served_plan(
    task,
    methods: list[str],
    options,
    limit: int | None = None,
    probe_rows: int = PROBE_ROWS,
    log=print,
) -> ServedPlan:
    """Probe each of `methods` (already filtered by `served_methods`) on the first rows."""
    from experiments.context import RunContext
    from experiments.report.costs import parse_prices

    prices = {"prompt_per_1k_tokens": 0.0, "generated_per_1k_tokens": 0.0, "currency": "USD"}
    prices.update(parse_prices(task.settings.get("costs"), f"{task.path}"))
    prices.update(options.prices)
    prices = {k: v for k, v in prices.items() if k in ("currency", *_TOKEN_PRICES)}
    n_eval = len(task.scored_rows(limit))
    rows = task.eval[: min(probe_rows, n_eval)]
    # One request at a time: the latency is the server's answer time, with no queueing.
    ctx = RunContext(task, replace(options, concurrency=1, limit=len(rows)), log=log)
    lm = ctx.lm  # checks the server first: unreachable, 401, 404 are one line before any probe
    steps = []
    for order, name in enumerate(methods, 1):
        step = ServedStep(method=name, order=order, runnable=True)
        steps.append(step)
        log(f"Probing {name} on {len(rows)} rows through {lm.model.shown_url}...")
        _probe(ctx, name, rows, step, n_eval, options.concurrency, prices)
    return ServedPlan(
        task=task.name,
        model=options.model,
        base_url=lm.model.shown_url,
        rows_scored=n_eval,
        concurrency=options.concurrency,
        prices=prices,
        steps=steps,
    )


_TOKEN_PRICES = ("prompt_per_1k_tokens", "generated_per_1k_tokens")


def _probe(ctx, name, rows, step: ServedStep, n_eval: int, concurrency: int, prices) -> None:
    from experiments.api_model import ApiRequestFailed, ApiUnusable
    from experiments.errors import AdaptwiseError
    from experiments.run.registry import make_method
    from experiments.run.runner import SilentProgress, run_method

    method = make_method(name, {"k": ctx.options.k, **ctx.options.extra})
    try:
        method.check(ctx)
        entry, preds = run_method(ctx, method, rows, SilentProgress())
    except ApiUnusable:
        raise  # every method would fail: one line, exit 2
    except ApiRequestFailed as exc:
        step.runnable, step.notes = False, [f"a probe request failed: {exc}"]
        return
    except AdaptwiseError as exc:
        step.runnable, step.notes = False, [str(exc)]
        return
    records = [p.extra["api"] for p in preds if isinstance(p.extra.get("api"), dict)]
    if not records:
        step.runnable, step.notes = False, ["the probe made no requests"]
        return
    api = entry.get("api") or {}
    requests = api.get("requests") or len(records)
    step.probe_rows = len(rows)
    step.probe_cached = int(api.get("cached") or 0)
    step.requests_per_row = requests / len(rows)
    step.latency_mean_s = sum(r["latency_s"] for r in records) / len(records)
    step.serial_s = n_eval * step.requests_per_row * step.latency_mean_s
    step.score_s = step.serial_s / max(concurrency, 1)
    step.prepare_s = float(entry.get("prepare_s") or 0) + float(entry.get("model_load_s") or 0)
    step.prompt_tokens = float(api.get("prompt_tokens") or 0) / len(rows)
    step.generated_tokens = float(api.get("completion_tokens") or 0) / len(rows)
    step.usage_reported = bool(api.get("usage_reported", True))
    step.scoring = entry.get("scoring") or ""
    step.per_1k_queries = 1000 * per_query_token_cost(
        step.prompt_tokens, step.generated_tokens, prices
    )
    step.cost = step.per_1k_queries * n_eval / 1000
    if not step.usage_reported:
        step.notes.append("the server reported no token usage: tokens and cost are unknown (0)")


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)
