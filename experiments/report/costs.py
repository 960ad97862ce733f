"""What a method costs: per 1,000 queries and per preparation (index build, training) run.

Prices come from the task file's `costs:` section (recorded in results.json by the runner), then
from the command line of `adaptwise report` / `compare`, which wins. The defaults are
illustrative on-demand cloud prices, not quotes: set your own.

- Compute: seconds x the hour price of the hardware the run used (GPU when its peak memory was
  measured on a GPU, else CPU).
- Tokens: mean prompt and generated tokens per query x the price per 1,000 tokens (0 by default:
  a self-hosted model pays for compute). A served model's method (`--model openai:NAME`) counts
  the tokens of the server's `usage` and no compute hours: its price is its tokens'.
- Who pays tokens: in a report that holds a served method, the token prices are that model's,
  so they price the served methods only and a local method pays its compute hours alone. In a
  report with no served method they price every method (the user set them for these models).
- A combined report (`adaptwise report DIR1 DIR2 --out ...`) prices each method with its own
  run's recorded `costs` (its entry's `costs`), then the command line's.
"""

from __future__ import annotations

from advisor import hosting_costs as monthly
from advisor.hosting_costs import CURRENCY, DEFAULT_PRICES, money, parse_queries_per_day
from experiments.errors import AdaptwiseError
from experiments.numbers import check_number

FLAGS = {  # command-line flag -> price key
    "gpu_hour_price": "gpu_hour",
    "cpu_hour_price": "cpu_hour",
    "prompt_token_price": "prompt_per_1k_tokens",
    "generated_token_price": "generated_per_1k_tokens",
}


def parse_prices(section: object, source: str = "costs") -> dict:
    """Validate a `costs:` mapping; returns only the keys it sets (one clear error otherwise)."""
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise AdaptwiseError(f"{source}: costs must be a mapping of prices")
    out: dict = {}
    for key, value in section.items():
        if key == "currency":
            if not isinstance(value, str) or not value.strip():
                raise AdaptwiseError(f"{source}: costs currency must be a name such as USD")
            out[key] = value.strip()
            continue
        if key == "queries_per_day":  # not a price: the volume the monthly line is priced at
            out[key] = parse_queries_per_day(value, f"{source}: costs queries_per_day")
            continue
        if key not in DEFAULT_PRICES:
            raise AdaptwiseError(
                f"{source}: unknown costs key {key!r}; known: "
                f"{', '.join([*DEFAULT_PRICES, 'currency', 'queries_per_day'])}"
            )
        out[key] = float(check_number(value, f"{source}: costs {key}"))
    return out


def prices_for(results: dict, overrides: dict | None = None) -> dict:
    """Defaults, then the run's recorded `costs`, then `overrides` (from the command line)."""
    prices = {**DEFAULT_PRICES, "currency": CURRENCY}
    prices.update(parse_prices(results.get("costs") or {}, "results.json"))
    prices.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return prices


TOKEN_KEYS = ("prompt_per_1k_tokens", "generated_per_1k_tokens")


def served(entry: dict) -> bool:
    """A method run on a served model (`--model openai:NAME`): its results entry has `api`."""
    return isinstance(entry.get("api"), dict)


def method_prices(
    results: dict, overrides: dict | None = None, fixed: dict | None = None
) -> dict[str, dict]:
    """The prices of each method: `fixed` when given, else defaults, the run's (or, in a combined
    report, the method's own run's) recorded `costs`, then `overrides`; token prices are 0 for a
    local method when any method of the report is served (see the module's docstring)."""
    methods = results.get("methods") or {}
    any_served = any(served(e) for e in methods.values() if isinstance(e, dict))
    out = {}
    for name, entry in methods.items():
        if fixed is not None:
            prices = dict(fixed)
        elif isinstance(entry.get("costs"), dict):
            prices = prices_for({"costs": entry["costs"]}, overrides)
        else:
            prices = prices_for(results, overrides)
        if any_served and not served(entry):
            prices.update(dict.fromkeys(TOKEN_KEYS, 0.0))
        out[name] = prices
    return out


def _num(value) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def method_costs(entry: dict, prices: dict) -> dict:
    """Cost figures of one results.json method entry; None where the run did not measure it."""
    on_gpu = entry.get("peak_memory_kind") == "GPU memory"
    hour = prices["gpu_hour"] if on_gpu else prices["cpu_hour"]
    is_served = served(entry)  # a served model: its tokens are the bill
    if is_served:
        hour = 0.0
    per_query_s = _num(entry.get("inference_s_per_example"))
    prompt = _num(entry.get("prompt_tokens_mean"))
    generated = _num(entry.get("generated_tokens_mean"))
    prepare = _num(entry.get("prepare_s"))
    latency = entry.get("latency") or {}
    per_1k = None
    if per_query_s is not None:
        per_1k = 1000 * per_query_s / 3600 * hour
        per_1k += (prompt or 0) * prices["prompt_per_1k_tokens"]
        per_1k += (generated or 0) * prices["generated_per_1k_tokens"]
    training = entry.get("training") if isinstance(entry.get("training"), dict) else None
    return {
        "hardware": "API" if is_served else "GPU" if on_gpu else "CPU",
        "prepare_s": prepare,
        "train_s": _num(training.get("train_wall_s")) if training else None,
        "latency_p50_s": _num(latency.get("p50_s")),
        "latency_p95_s": _num(latency.get("p95_s")),
        "latency_mean_s": per_query_s,
        "prompt_tokens": prompt,
        "generated_tokens": generated,
        "peak_memory_mb": _num(entry.get("peak_memory_mb")),
        "per_1k_queries": per_1k,
        "per_preparation": None if prepare is None else prepare / 3600 * hour,
    }


def describe(prices: dict) -> str:
    cur = prices.get("currency", CURRENCY)
    return (
        f"Prices ({cur}): GPU hour {prices['gpu_hour']:g}, CPU hour {prices['cpu_hour']:g}, "
        f"per 1k prompt tokens {prices['prompt_per_1k_tokens']:g}, per 1k generated tokens "
        f"{prices['generated_per_1k_tokens']:g}. Cost per 1,000 queries = 1,000 x (seconds per "
        "query x hour price / 3600 + tokens per query x token price / 1000); preparation cost = "
        "preparation seconds (index build, example embedding, training) x hour price / 3600."
    )


def describe_methods(prices: dict, by_method: dict[str, dict], served_names: list[str]) -> str:
    """`describe` for a report whose methods are priced apart: one price set per group of
    methods, and who pays tokens."""
    groups: dict[str, list[str]] = {}
    for name, p in by_method.items():
        shown = {k: v for k, v in p.items() if k in DEFAULT_PRICES}
        if name in served_names:  # a served method pays no hours: show its token prices only
            shown = {k: v for k, v in shown.items() if k in TOKEN_KEYS}
        key = ", ".join(f"{_PRICE_TITLES[k]} {v:g}" for k, v in shown.items())
        groups.setdefault(key, []).append(name)
    if len(groups) <= 1 and not served_names:
        return describe(prices)
    cur = prices.get("currency", CURRENCY)
    parts = [f"{key} ({', '.join(names)})" for key, names in groups.items()]
    text = f"Prices ({cur}): " + "; ".join(parts) + "."
    if served_names and len(served_names) < len(by_method):
        text += (
            " Served methods pay their tokens (the server's usage) and no compute hours; local "
            "methods pay compute hours, not the token prices, which are the served model's."
        )
    return text + (
        " Cost per 1,000 queries = 1,000 x (seconds per query x hour price / 3600 + tokens per "
        "query x token price / 1000); preparation cost = preparation seconds x hour price / 3600."
    )


_PRICE_TITLES = {
    "gpu_hour": "GPU hour",
    "cpu_hour": "CPU hour",
    "prompt_per_1k_tokens": "per 1k prompt tokens",
    "generated_per_1k_tokens": "per 1k generated tokens",
}


def queries_per_day(*price_sets: dict) -> float | None:
    """The volume to price a month at: the first price set that names one (the command line's
    `--queries-per-day` goes over the task file's `costs: queries_per_day:`)."""
    return next(
        (p["queries_per_day"] for p in price_sets if p.get("queries_per_day") is not None), None
    )


def monthly_text(cost: dict[str, dict], each_prices: dict[str, dict], volume: float) -> str:
    """One line under the cost table: each method per month (30 days) at `volume` queries/day."""
    parts = []
    for name, c in cost.items():
        per_1k = c["per_1k_queries"]
        if per_1k is None:
            parts.append(f"{name} n/a")
            continue
        cur = each_prices[name].get("currency", CURRENCY)
        if c["hardware"] == "API":
            parts.append(f"{name} {money(monthly.from_per_1k(per_1k, volume), cur)} (tokens)")
            continue
        hour = each_prices[name]["gpu_hour" if c["hardware"] == "GPU" else "cpu_hour"]
        s = c["latency_mean_s"] or 0.0
        n = monthly.machines_needed(volume, s)
        total = monthly.local_monthly(per_1k, volume, hour, s)
        parts.append(
            f"{name} {money(total, cur)} ({n} always-on {c['hardware']} machine{'s' * (n > 1)})"
        )
    return (
        f"Per month at {volume:,.0f} queries/day (30 days): " + ", ".join(parts) + ". Served "
        "methods: cost per 1,000 queries x queries/day x 30 / 1,000. Local methods: always-on "
        "machines (24 x 30 h x hour price each; one serves 86,400 / seconds per query queries a "
        "day, more machines past that) or the per-query cost, whichever is larger."
    )
