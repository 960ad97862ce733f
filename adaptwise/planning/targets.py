"""What a climb aims at and how long it may take: `--target METRIC=VALUE` as a Target to stop
at, and `--budget` (`30m`, `2h`, `1h30m`) as seconds."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from experiments.errors import AdaptwiseError
from experiments.metrics import METRICS_BY_KIND

# Every metric adaptwise reports, by task kind.
ALL_METRICS = tuple(dict.fromkeys(m for ms in METRICS_BY_KIND.values() for m in ms))


@dataclass(frozen=True)
class Target:
    metric: str
    value: float

    def describe(self) -> str:
        return f"{self.metric} >= {self.value:g}"


def parse_target(text: str, kind: str | None = None) -> Target:
    """`accuracy=0.8` (or `accuracy=80%`) -> Target; one clear line for a bad value."""
    metric, sep, value = (text or "").partition("=")
    metric = metric.strip().lower().replace("-", "_")
    if not sep or not metric or not value.strip():
        raise AdaptwiseError(f"--target {text!r}: expected METRIC=VALUE, e.g. accuracy=0.8")
    allowed = METRICS_BY_KIND.get(kind, ALL_METRICS) if kind else ALL_METRICS
    if metric not in allowed:
        what = f"a {kind} task is scored by" if kind else "known metrics:"
        raise AdaptwiseError(f"--target {text!r}: {what} {', '.join(allowed)}")
    raw = value.strip()
    try:
        number = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise AdaptwiseError(f"--target {text!r}: {raw!r} is not a number") from None
    if not 0 < number <= 1 or math.isnan(number):
        raise AdaptwiseError(f"--target {text!r}: the value must be in (0, 1], e.g. 0.8 or 80%")
    return Target(metric, number)


_BUDGET = re.compile(r"(\d+(?:\.\d+)?)(h|min|m|s)")


_UNITS = {"h": 3600, "m": 60, "min": 60, "s": 1}


def parse_budget(text: str) -> float:
    """`30m`, `2h`, `90s`, `1h30m` -> seconds; one clear line for a bad value."""
    compact = (text or "").strip().lower().replace(" ", "")
    parts = _BUDGET.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise AdaptwiseError(
            f"--budget {text!r}: expected a duration such as 30m, 2h, 90s or 1h30m"
        )
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise AdaptwiseError(f"--budget {text!r}: the budget must be more than zero")
    return seconds


def budget_stop(
    budget_s: float | None, elapsed_s: float, next_s: float | None, word: str = "estimated"
) -> str | None:
    """The budget rule of every climb (ladder, sweep): why the next step is not started, or
    None when it may be. It is not when the time spent already exceeds the budget, or when the
    next step's time (`word`: the plan's estimate, or what earlier trials took) is more than
    the time left."""
    from experiments.report.formatting import format_duration

    if budget_s is None:
        return None
    if elapsed_s > budget_s:
        return (
            f"skipped: budget ({format_duration(elapsed_s)} spent of {format_duration(budget_s)})"
        )
    left = budget_s - elapsed_s
    if next_s is not None and next_s > left:
        return f"skipped: budget ({word} {format_duration(next_s)}, {format_duration(left)} left)"
    return None
