"""The report's statistics against known cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from experiments import metrics
from experiments.report import stats


def test_mcnemar_textbook_continuity_corrected():
    # b = 10, c = 5: chi2 = (|10 - 5| - 1)^2 / 15 = 16/15 = 1.067 on 1 df, p = 0.302
    name, chi2, p = stats.mcnemar(10, 5, exact=False)
    assert name == "McNemar chi2 (continuity-corrected)"
    assert chi2 == pytest.approx(1.0667, abs=1e-4)
    assert p == pytest.approx(0.302, abs=1e-3)


def test_mcnemar_agresti_table():
    # Agresti, Categorical Data Analysis (2002), presidential approval: b = 150, c = 86;
    # uncorrected chi2 = 64^2 / 236 = 17.36, continuity-corrected 63^2 / 236 = 16.82.
    name, chi2, p = stats.mcnemar(150, 86)
    assert name.startswith("McNemar chi2")
    assert chi2 == pytest.approx(16.82, abs=0.01)
    assert p < 1e-4


def test_mcnemar_exact_for_few_discordant_rows():
    # 15 discordant rows < 25: exact two-sided binomial, 2 * P(X <= 5 | n=15, 0.5) = 0.3018
    name, chi2, p = stats.mcnemar(10, 5)
    assert name == "McNemar exact binomial" and chi2 is None
    assert p == pytest.approx(2 * sum(math.comb(15, k) for k in range(6)) / 2**15, abs=1e-9)
    assert stats.mcnemar(0, 0)[2] == 1.0
    assert stats.mcnemar(0, 8)[2] == pytest.approx(2 / 2**8)


def test_mcnemar_test_counts_discordant_rows():
    a = [True] * 10 + [False] * 5 + [True] * 20 + [False] * 5
    b = [False] * 10 + [True] * 5 + [True] * 20 + [False] * 5
    test = stats.mcnemar_test(a, b, seed=0)
    assert test.discordant == (10, 5)
    assert test.diff == pytest.approx(5 / 40)
    assert test.low <= test.diff <= test.high
    assert not test.significant and test.rows_needed > 40


def test_paired_bootstrap_identical_predictions_gives_p_one():
    values = [1, 0, 1, 1, 0, 0.5, 0.25, 1]
    test = stats.paired_bootstrap(values, values, seed=3)
    assert test.p == 1.0 and test.diff == 0 and (test.low, test.high) == (0, 0)
    assert test.rows_needed is None
    same = stats.mcnemar_test([True, False, True], [True, False, True])
    assert same.p == 1.0


def test_paired_bootstrap_detects_a_clear_difference():
    rng = np.random.default_rng(1)
    a = (rng.random(200) < 0.8).astype(float)
    b = np.where(rng.random(200) < 0.9, 0.0, a)  # b mostly wrong
    test = stats.paired_bootstrap(a, b, seed=0)
    assert test.significant and test.p < 0.001 and test.low > 0


def test_bootstrap_ci_is_reproducible_with_the_seed():
    values = [1, 0, 1, 1, 0, 1, 1, 1, 0, 1] * 4
    first = stats.bootstrap_ci(values, seed=7)
    assert first == stats.bootstrap_ci(values, seed=7)
    assert first != stats.bootstrap_ci(values, seed=8)
    assert first.estimate == pytest.approx(0.7)
    assert first.low < 0.7 < first.high
    # close to the normal approximation 0.7 +- 1.96 sqrt(0.21/40)
    assert first.low == pytest.approx(0.7 - 1.96 * math.sqrt(0.21 / 40), abs=0.05)


def test_macro_f1_statistic_matches_the_metric():
    labels = ["a", "b", "c"]
    rng = np.random.default_rng(0)
    golds = list(rng.choice(labels, 60))
    preds = [g if rng.random() < 0.6 else str(rng.choice(labels)) for g in golds]
    preds[0] = "unparsable"
    statistic = stats.macro_f1_statistic(preds, golds, labels)
    assert statistic(np.arange(60)[None, :])[0] == pytest.approx(
        metrics.macro_f1(preds, golds, labels)
    )
    idx = stats.resample_indices(60, seed=2, resamples=5)
    for row, value in zip(idx, statistic(idx)):
        assert value == pytest.approx(
            metrics.macro_f1([preds[i] for i in row], [golds[i] for i in row], labels)
        )


def test_rows_needed_connor():
    # Connor (1987) with psi = 0.3, delta = 0.1, alpha 0.05, power 0.8:
    # (1.96 sqrt(0.3) + 0.8416 sqrt(0.29))^2 / 0.01 = 233.1 -> 234
    assert stats.rows_needed_mcnemar(0.2, 0.1) == 234
    assert stats.rows_needed_mcnemar(0.1, 0.1) is None
    assert stats.rows_needed_mcnemar(0.3, 0.1) < stats.rows_needed_mcnemar(0.2, 0.1)


def test_rows_needed_from_standard_error():
    # se 0.05 at 100 rows, difference 0.05: n = 100 * (2.8016 * 0.05 / 0.05)^2 = 785
    assert stats.rows_needed_from_se(0.05, 0.05, 100) == 785
    assert stats.rows_needed_from_se(0.0, 0.05, 100) is None


def test_unpaired_bootstrap():
    a = [1.0] * 30 + [0.0] * 10
    b = [1.0] * 10 + [0.0] * 30
    test = stats.unpaired_bootstrap(a, b, seed=0)
    assert test.test == "unpaired bootstrap"
    assert test.diff == pytest.approx(0.5) and test.significant
    same = stats.unpaired_bootstrap(a, a[::-1], seed=0)
    assert same.diff == 0 and same.p == 1.0


def test_pareto_front():
    points = {"cheap-bad": (0.2, 1.0), "good-dear": (0.8, 5.0), "dominated": (0.5, 6.0)}
    assert stats.pareto_front(points) == ["cheap-bad", "good-dear"]
    assert stats.pareto_front({"a": (0.5, 1.0), "b": (0.5, 1.0)}) == ["a", "b"]
