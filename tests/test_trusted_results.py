"""Stored results are trusted only when their predictions give them (issue 24)."""

from __future__ import annotations

import json

import pytest


def test_results_json_is_strict_json(tmp_path):
    """A number that is not finite (a diverged loss) is written as null, never as NaN."""
    from experiments.results import results_text

    text = results_text({"methods": {"lora": {"training": {"final_train_loss": float("nan")}}}})
    loaded = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} written"))
    assert loaded["methods"]["lora"]["training"]["final_train_loss"] is None
    assert json.loads(results_text({"x": [float("inf"), 1.5]})) == {"x": [None, 1.5]}
