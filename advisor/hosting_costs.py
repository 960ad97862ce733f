"""What serving the adapted model costs per month at the user's volume: the arithmetic.

The bottom layer: plain numbers, no report and no UI. The report's cost table
(experiments/report/costs.py) and the advisor both price with the defaults kept here.

Assumptions, stated in every line built from here:

- A month is 30 days.
- A hosted model's prompting is paid per token: per month = queries/day x 30 x (prompt tokens x
  prompt price + generated tokens x generated price) / 1,000.
- A self-hosted model runs on an always-on machine: per month = machines x 24 x 30 x hour price.
  One machine serves 86,400 / (seconds per query) queries a day, one query at a time; past that,
  more machines. Below that, the bill does not fall with volume: it is the floor.
"""

from __future__ import annotations

import math

from experiments.errors import AdaptwiseError
from experiments.numbers import check_number

DEFAULT_PRICES: dict[str, float] = {
    "gpu_hour": 2.00,  # about one on-demand datacenter GPU hour (A100/H100 class), USD
    "cpu_hour": 0.10,  # about a 2-vCPU on-demand cloud VM hour, USD
    "prompt_per_1k_tokens": 0.0,
    "generated_per_1k_tokens": 0.0,
}
CURRENCY = "USD"
# Illustrative list prices of a large hosted model (GPT-4o class, 2024: USD 2.50 per million
# prompt tokens, 10 per million generated), not a quote: the advisor's hosted baseline.
HOSTED_TOKEN_PRICES: dict[str, float] = {
    "prompt_per_1k_tokens": 0.0025,
    "generated_per_1k_tokens": 0.01,
}
DAYS_PER_MONTH = 30
SECONDS_PER_DAY = 86_400
# The advisor's assumed query when no run measured one: a few-shot prompt of 8 examples of about
# 100 tokens plus the instruction and the input, and a short answer (a label or a sentence).
ASSUMED_PROMPT_TOKENS = 1000
ASSUMED_GENERATED_TOKENS = 20
ASSUMED_S_PER_QUERY = 1.0  # a small model's seconds per query on the serving machine


def parse_queries_per_day(value: object, source: str = "queries_per_day") -> float | None:
    """A number of 0 or more (None stays None; "1,000" is read as 1000); one clear error
    otherwise (experiments/numbers.py, the check of every number from outside)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.replace(",", "").replace("_", ""))
        except ValueError:
            raise AdaptwiseError(f"{source} must be a number of 0 or more, not {value!r}") from None
    return float(check_number(value, source))


def per_query_token_cost(
    prompt_tokens: float, generated_tokens: float, prices: dict | None = None
) -> float:
    p = prices or HOSTED_TOKEN_PRICES
    return (
        prompt_tokens * p["prompt_per_1k_tokens"] + generated_tokens * p["generated_per_1k_tokens"]
    ) / 1000


def hosted_monthly(
    queries_per_day: float,
    prompt_tokens: float,
    generated_tokens: float,
    prices: dict | None = None,
) -> float:
    """A hosted model's prompting per month: it scales with volume."""
    return (
        queries_per_day
        * DAYS_PER_MONTH
        * per_query_token_cost(prompt_tokens, generated_tokens, prices)
    )


def machine_capacity(s_per_query: float) -> float:
    """Queries one always-on machine serves a day, one at a time."""
    return SECONDS_PER_DAY / s_per_query if s_per_query > 0 else math.inf


def machines_needed(queries_per_day: float, s_per_query: float) -> int:
    """At least one (always on); more once one machine's throughput is exceeded."""
    return max(1, math.ceil(queries_per_day / machine_capacity(s_per_query)))


def always_on_monthly(hour_price: float, machines: int = 1) -> float:
    return machines * 24 * DAYS_PER_MONTH * hour_price


def from_per_1k(per_1k_queries: float, queries_per_day: float) -> float:
    """A cost per 1,000 queries at this volume, per month."""
    return per_1k_queries * queries_per_day * DAYS_PER_MONTH / 1000


def local_monthly(
    per_1k_queries: float, queries_per_day: float, hour_price: float, s_per_query: float
) -> float:
    """A self-hosted method: the always-on machines' floor or its per-query cost, whichever is
    larger (the per-query cost can be larger when it also pays tokens)."""
    floor = always_on_monthly(hour_price, machines_needed(queries_per_day, s_per_query))
    return max(floor, from_per_1k(per_1k_queries, queries_per_day))


def money(value: float, currency: str = CURRENCY) -> str:
    return f"{currency} {value:,.0f}" if value >= 10 else f"{currency} {value:,.2f}"


def advice_line(
    queries_per_day: float,
    gpu: bool,
    prompt_tokens: float = ASSUMED_PROMPT_TOKENS,
    generated_tokens: float = ASSUMED_GENERATED_TOKENS,
    s_per_query: float = ASSUMED_S_PER_QUERY,
) -> str:
    """One line: hosted prompting of a large model vs an always-on small model, per month."""
    hosted = hosted_monthly(queries_per_day, prompt_tokens, generated_tokens)
    kind = "GPU" if gpu else "CPU"
    hour = DEFAULT_PRICES["gpu_hour" if gpu else "cpu_hour"]
    machines = machines_needed(queries_per_day, s_per_query)
    own = always_on_monthly(hour, machines)
    cheaper = "the small model" if own < hosted else "hosted prompting"
    if own == hosted:
        cheaper = "neither"
    p = HOSTED_TOKEN_PRICES
    return (
        f"At {queries_per_day:,.0f} queries/day (30-day month): hosted prompting of a large "
        f"model costs about {money(hosted)}/month ({prompt_tokens:,.0f} prompt + "
        f"{generated_tokens:,.0f} generated tokens a query, a few-shot prompt, at "
        f"{p['prompt_per_1k_tokens'] * 1000:g}/{p['generated_per_1k_tokens'] * 1000:g} "
        f"{CURRENCY} per million tokens); a fine-tuned small model on {machines} always-on "
        f"{kind} machine{'s' if machines > 1 else ''} costs about {money(own)}/month "
        f"(24 x 30 h x {hour:g} {CURRENCY}/h; one serves "
        f"{machine_capacity(s_per_query):,.0f} queries/day at {s_per_query:g} s a query): "
        f"{cheaper} is cheaper at this volume. Illustrative prices, not quotes."
    )
