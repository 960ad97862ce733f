"""Statistics for the comparison report: bootstrap confidence intervals, paired tests, and how
many eval rows a difference would need.

Everything works on per-row values aligned by eval row, or on a *statistic*: a function from an
index matrix (resamples x rows) to one value per resample, so that metrics that are not a mean
over rows (macro-F1) are resampled the same way as those that are.

- Confidence intervals: percentile bootstrap over eval rows (Efron & Tibshirani 1993), seeded.
- Paired bootstrap test (Koehn 2004; Berg-Kirkpatrick et al. 2012): both methods are scored on
  the same resampled rows; the two-sided p-value is the share of resampled differences at least
  as far from the observed difference as the observed difference is from 0, with the usual +1
  correction, so identical predictions give p = 1.
- McNemar's test for a binary per-row score (accuracy, exact match): exact two-sided binomial
  test on the discordant pairs when there are fewer than 25 of them, else the chi-squared
  statistic with Edwards' continuity correction, (|b - c| - 1)^2 / (b + c), on 1 degree of
  freedom.
- Rows needed to resolve a difference at alpha 0.05 with 80% power, taking the observed
  difference as the true one: Connor (1987) for McNemar's test,
  n = (z_{1-a/2} sqrt(psi) + z_{1-b} sqrt(psi - delta^2))^2 / delta^2 with psi the discordant
  share and delta the difference in accuracy; for other metrics the normal approximation on the
  bootstrap standard error, which shrinks as 1/sqrt(n): n = n0 ((z_{1-a/2} + z_{1-b}) se / delta)^2.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

ALPHA = 0.05
POWER = 0.8
RESAMPLES = 2000
EXACT_BELOW = 25  # McNemar: exact binomial test below this many discordant pairs

Statistic = Callable[[np.ndarray], np.ndarray]  # (B, n) row indices -> (B,) values


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PairedTest:
    """A's metric minus B's, on the same rows."""

    test: str  # "McNemar exact binomial", "McNemar chi2 (continuity-corrected)", ...
    diff: float
    low: float  # bootstrap CI of the difference
    high: float
    p: float
    n: int
    statistic: float | None = None  # McNemar's chi2 where used
    discordant: tuple[int, int] | None = None  # McNemar's (b, c): A right B wrong, A wrong B right
    rows_needed: int | None = None  # for 80% power at the observed difference; None: no difference

    @property
    def significant(self) -> bool:
        return self.p < ALPHA

    def to_dict(self) -> dict:
        out = asdict(self)
        out["significant"] = self.significant
        return out


@lru_cache(maxsize=4)
def resample_indices(n: int, seed: int, resamples: int = RESAMPLES) -> np.ndarray:
    """The (resamples, n) row indices every interval and paired test of one seed shares
    (cached and read-only: a report reuses them for every method and metric)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    idx.flags.writeable = False
    return idx


def mean_statistic(values: Sequence[float]) -> Statistic:
    array = np.asarray(values, dtype=float)
    return lambda idx: array[idx].mean(axis=1)


def macro_f1_statistic(preds: Sequence[str], golds: Sequence[str], labels=None) -> Statistic:
    """Resampled macro-F1 with exactly the semantics of `experiments.metrics.macro_f1`: the mean
    over listed labels that occur (in gold or predictions) in each resample."""
    preds = [p.strip() for p in preds]
    golds = [g.strip() for g in golds]
    seen = sorted(set(preds) | set(golds))
    candidates = [x for x in seen if not labels or x in {label.strip() for label in labels}]
    codes = {label: i for i, label in enumerate(seen)}
    p = np.array([codes[x] for x in preds])
    g = np.array([codes[x] for x in golds])
    averaged = [codes[x] for x in candidates]

    def statistic(idx: np.ndarray) -> np.ndarray:
        ps, gs = p[idx], g[idx]
        total = np.zeros(idx.shape[0])
        count = np.zeros(idx.shape[0])
        for code in averaged:
            predicted = (ps == code).sum(axis=1)
            actual = (gs == code).sum(axis=1)
            true_pos = ((ps == code) & (gs == code)).sum(axis=1)
            present = (predicted + actual) > 0
            total += np.where(present, 2 * true_pos / np.maximum(predicted + actual, 1), 0.0)
            count += present
        return np.where(count > 0, total / np.maximum(count, 1), 0.0)

    return statistic


def bootstrap_ci(
    statistic: Statistic | Sequence[float],
    n: int | None = None,
    seed: int = 0,
    resamples: int = RESAMPLES,
    confidence: float = 0.95,
    indices: np.ndarray | None = None,
) -> Interval:
    """Percentile bootstrap interval of a statistic over eval rows (per-row values: their mean)."""
    if not callable(statistic):
        n = len(statistic)
        statistic = mean_statistic(statistic)
    if not n:
        return Interval(float("nan"), float("nan"), float("nan"))
    idx = indices if indices is not None else resample_indices(n, seed, resamples)
    estimate = float(statistic(np.arange(n)[None, :])[0])
    values = statistic(idx)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(estimate, float(low), float(high))


def paired_bootstrap(
    stat_a: Statistic | Sequence[float],
    stat_b: Statistic | Sequence[float],
    n: int | None = None,
    seed: int = 0,
    resamples: int = RESAMPLES,
    indices: np.ndarray | None = None,
) -> PairedTest:
    """Paired bootstrap test of A - B over the same rows (rows aligned by position)."""
    if not callable(stat_a):
        n = len(stat_a)
        stat_a, stat_b = mean_statistic(stat_a), mean_statistic(stat_b)
    if not n:
        return PairedTest("paired bootstrap", 0.0, 0.0, 0.0, 1.0, 0)
    idx = indices if indices is not None else resample_indices(n, seed, resamples)
    full = np.arange(n)[None, :]
    observed = float(stat_a(full)[0] - stat_b(full)[0])
    diffs = stat_a(idx) - stat_b(idx)
    extreme = np.abs(diffs - observed) >= abs(observed) - 1e-12
    p = (1 + int(extreme.sum())) / (len(diffs) + 1)
    low, high = np.percentile(diffs, [2.5, 97.5])
    se = float(diffs.std(ddof=1)) if len(diffs) > 1 else 0.0
    return PairedTest(
        "paired bootstrap",
        observed,
        float(low),
        float(high),
        min(1.0, p),
        n,
        rows_needed=rows_needed_from_se(observed, se, n),
    )


def unpaired_bootstrap(
    a: Sequence[float] | tuple[Statistic, int],
    b: Sequence[float] | tuple[Statistic, int],
    seed: int = 0,
    resamples: int = RESAMPLES,
) -> PairedTest:
    """A - B for two independent samples (different eval rows): each side is resampled on its
    own; p as in the paired test. `a`/`b`: per-row values, or (statistic, n)."""
    (sa, na), (sb, nb) = _as_stat(a), _as_stat(b)
    if not na or not nb:
        return PairedTest("unpaired bootstrap", 0.0, 0.0, 0.0, 1.0, 0)
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, na, size=(resamples, na))
    ib = rng.integers(0, nb, size=(resamples, nb))
    observed = float(sa(np.arange(na)[None, :])[0] - sb(np.arange(nb)[None, :])[0])
    diffs = sa(ia) - sb(ib)
    extreme = np.abs(diffs - observed) >= abs(observed) - 1e-12
    p = (1 + int(extreme.sum())) / (len(diffs) + 1)
    low, high = np.percentile(diffs, [2.5, 97.5])
    se = float(diffs.std(ddof=1))
    # rows needed per run, at equal sizes: se shrinks as 1/sqrt(n) on both sides
    n = min(na, nb)
    return PairedTest(
        "unpaired bootstrap",
        observed,
        float(low),
        float(high),
        min(1.0, p),
        n,
        rows_needed=rows_needed_from_se(observed, se, n),
    )


def _as_stat(x) -> tuple[Statistic, int]:
    if isinstance(x, tuple) and callable(x[0]):
        return x
    return mean_statistic(x), len(x)


def mcnemar(b: int, c: int, exact: bool | None = None) -> tuple[str, float | None, float]:
    """McNemar's test on the discordant counts b (A right, B wrong) and c (A wrong, B right).

    `exact` None: exact binomial below EXACT_BELOW discordant pairs, else chi2 with continuity
    correction. Returns (test name, chi2 statistic or None, two-sided p)."""
    from scipy import stats

    total = b + c
    if total == 0:
        return "McNemar exact binomial", None, 1.0
    if exact is None:
        exact = total < EXACT_BELOW
    if exact:
        p = stats.binomtest(min(b, c), total, 0.5).pvalue
        return "McNemar exact binomial", None, float(min(1.0, p))
    chi2 = (abs(b - c) - 1) ** 2 / total
    return "McNemar chi2 (continuity-corrected)", chi2, float(stats.chi2.sf(chi2, 1))


def mcnemar_test(
    correct_a: Sequence[bool],
    correct_b: Sequence[bool],
    seed: int = 0,
    resamples: int = RESAMPLES,
    indices: np.ndarray | None = None,
) -> PairedTest:
    """McNemar's test of two methods' right/wrong on the same rows, with a bootstrap CI of the
    difference in accuracy and Connor's rows-needed estimate."""
    a = np.asarray(correct_a, dtype=bool)
    bb = np.asarray(correct_b, dtype=bool)
    n = len(a)
    b = int((a & ~bb).sum())
    c = int((~a & bb).sum())
    name, chi2, p = mcnemar(b, c)
    boot = paired_bootstrap(
        mean_statistic(a.astype(float)),
        mean_statistic(bb.astype(float)),
        n,
        seed=seed,
        resamples=resamples,
        indices=indices,
    )
    return PairedTest(
        name,
        (b - c) / n if n else 0.0,
        boot.low,
        boot.high,
        p,
        n,
        statistic=chi2,
        discordant=(b, c),
        rows_needed=rows_needed_mcnemar(b / n, c / n) if n else None,
    )


def _z(q: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(q))


def rows_needed_mcnemar(
    p10: float, p01: float, alpha: float = ALPHA, power: float = POWER
) -> int | None:
    """Connor (1987): rows for McNemar's test to detect a difference p10 - p01 between paired
    proportions, given discordant share p10 + p01. None when there is no difference."""
    delta = p10 - p01
    psi = p10 + p01
    if abs(delta) < 1e-12:
        return None
    za, zb = _z(1 - alpha / 2), _z(power)
    n = (za * math.sqrt(psi) + zb * math.sqrt(max(psi - delta**2, 0.0))) ** 2 / delta**2
    return math.ceil(n)


def rows_needed_from_se(
    diff: float, se: float, n: int, alpha: float = ALPHA, power: float = POWER
) -> int | None:
    """Rows at which a difference of `diff` reaches significance with `power`, given its standard
    error `se` at `n` rows (normal approximation; se ~ 1/sqrt(n)). None: no difference."""
    if abs(diff) < 1e-12 or n <= 0:
        return None
    if se <= 0:
        return n
    za, zb = _z(1 - alpha / 2), _z(power)
    return math.ceil(n * ((za + zb) * se / abs(diff)) ** 2)


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names whose (quality, cost) no other point dominates: at least as good on both and
    strictly better on one. Higher quality and lower cost are better."""
    front = []
    for name, (q, c) in points.items():
        dominated = any(
            (q2 >= q and c2 <= c) and (q2 > q or c2 < c)
            for other, (q2, c2) in points.items()
            if other != name
        )
        if not dominated:
            front.append(name)
    return front
