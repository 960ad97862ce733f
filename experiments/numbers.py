"""The one check of a number that comes from outside adaptwise: a price (task file `costs:`,
`--*-price`), a volume (queries per day), a memory budget (`finetune fit_memory_gb`), and what a
served model's server sends (`usage` token counts, measured latencies kept in the cache).

Such a number is finite and in its range, or it is refused in one line: NaN and infinities
never reach a sum, a report or results.json (which is written as strict JSON), and a negative
zero becomes 0 (so no "-0.00" is ever shown). Every layer may import this leaf: it imports
nothing but experiments.errors.
"""

from __future__ import annotations

import math

from experiments.errors import AdaptwiseError


def number_problem(
    value: object,
    low: float | None = 0.0,
    high: float | None = None,
    integer: bool = False,
    above: bool = False,
) -> str | None:
    """What is wrong with `value` as a number in [low, high] (or above `low`), whole when
    `integer`; None when nothing is."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"is not a number ({type(value).__name__})"
    if integer and not isinstance(value, int):
        return "is not a whole number"
    if not math.isfinite(value):
        return f"is {value!r}, not a finite number"
    if low is not None and (value <= low if above else value < low):
        return f"is {value:g}, below {low:g}" if not above else f"is {value:g}, not above {low:g}"
    if high is not None and value > high:
        return f"is {value:g}, above {high:g}"
    return None


def expected(
    low: float | None = 0.0, high: float | None = None, integer: bool = False, above=False
) -> str:
    """What `number_problem` accepts, in words: "a number of 0 or more"."""
    kind = "a whole number" if integer else "a number"
    if low is None and high is None:
        return f"a finite {kind[2:]}"
    if high is None:
        return f"{kind} above {low:g}" if above else f"{kind} of {low:g} or more"
    if low is None:
        return f"{kind} of at most {high:g}"
    return f"{kind} from {low:g} to {high:g}"


def check_number(
    value: object,
    what: str,
    low: float | None = 0.0,
    high: float | None = None,
    integer: bool = False,
    above: bool = False,
):
    """`value` (an int stays an int, -0.0 becomes 0.0) or one line naming `what` and the range."""
    problem = number_problem(value, low, high, integer, above)
    if problem is not None:
        shown = value if isinstance(value, int | float) else type(value).__name__
        raise AdaptwiseError(f"{what} must be {expected(low, high, integer, above)}, not {shown!r}")
    return value if isinstance(value, int) else float(value) + 0.0
