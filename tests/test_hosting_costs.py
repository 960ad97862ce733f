"""Per month at the user's volume: the arithmetic, the question, the advice line, the report line."""

from __future__ import annotations

import pytest

from adaptwise.cli import main
from advisor import hosting_costs as hc
from advisor.questions import Answers, dump_answers, parse_answers
from advisor.recommend import recommend
from experiments.errors import AdaptwiseError
from experiments.report import costs


def test_hosted_prompting_scales_with_volume():
    # 10,000 a day x 30 days x (1,000 x 0.0025 + 20 x 0.01) / 1,000 = 300,000 x 0.0027
    assert hc.hosted_monthly(10_000, 1000, 20) == pytest.approx(810.0)
    assert hc.hosted_monthly(
        100, 500, 0, {"prompt_per_1k_tokens": 0.01, "generated_per_1k_tokens": 1.0}
    ) == pytest.approx(15.0)  # 100 x 30 x 500 x 0.01 / 1000


def test_always_on_machine_is_a_floor_until_its_throughput_is_exceeded():
    assert hc.always_on_monthly(2.0) == pytest.approx(1440.0)  # 24 x 30 x 2
    assert hc.machine_capacity(0.5) == pytest.approx(172_800)
    assert hc.machines_needed(0, 0.5) == 1
    assert hc.machines_needed(172_800, 0.5) == 1
    assert hc.machines_needed(172_801, 0.5) == 2
    # floor: 1 CPU machine = 72; 1,000 a day x 0.05 per 1k x 30 / 1000 = 1.5 -> the floor wins
    assert hc.local_monthly(0.05, 1000, 0.10, 1.0) == pytest.approx(72.0)
    # 200,000 a day at 1 s: 3 machines = 216; per-query cost 10 per 1k -> 60,000 wins
    assert hc.local_monthly(10.0, 200_000, 0.10, 1.0) == pytest.approx(60_000.0)
    assert hc.local_monthly(0.0, 200_000, 0.10, 1.0) == pytest.approx(216.0)
    assert hc.from_per_1k(2.0, 500) == pytest.approx(30.0)


def test_report_prices_default_from_the_advice_layer():
    assert costs.DEFAULT_PRICES is hc.DEFAULT_PRICES
    assert costs.DEFAULT_PRICES["gpu_hour"] == 2.0 and costs.DEFAULT_PRICES["cpu_hour"] == 0.10


@pytest.mark.parametrize("value", [-1, "lots", True, float("nan"), [3]])
def test_bad_queries_per_day_is_one_clear_error(value):
    with pytest.raises(AdaptwiseError, match="queries_per_day must be a number of 0 or more"):
        parse_answers({"queries_per_day": value})


def test_queries_per_day_parses_and_round_trips():
    assert parse_answers({"queries_per_day": "10,000"}).queries_per_day == 10_000
    assert parse_answers({}).queries_per_day is None
    import yaml

    saved = yaml.safe_load(dump_answers(Answers(queries_per_day=2500)))
    assert parse_answers(saved).queries_per_day == 2500
    assert parse_answers(yaml.safe_load(dump_answers(Answers()))).queries_per_day is None


def test_recommendation_line_with_the_answer_and_none_without():
    assert recommend(Answers()).hosting is None
    line = recommend(Answers(queries_per_day=10_000, gpu_memory_gb=None)).hosting
    assert "10,000 queries/day" in line and "USD 810/month" in line and "USD 72/month" in line
    assert "the small model is cheaper" in line and "1,000 prompt + 20 generated tokens" in line
    gpu = recommend(Answers(queries_per_day=1000, gpu_memory_gb=80)).hosting
    assert "USD 81/month" in gpu and "USD 1,440/month" in gpu
    assert "hosted prompting is cheaper" in gpu and "always-on GPU machine" in gpu
    many = recommend(Answers(queries_per_day=200_000)).hosting
    assert "3 always-on CPU machines" in many and "USD 216/month" in many


def test_advise_cli_prints_the_line(capsys):
    assert main(["advise", "--gpu-gb", "0", "--queries-per-day", "10000"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Per month at your volume" in out and "USD 810/month" in out


@pytest.mark.parametrize("value", ["lots", "-5"])
def test_advise_cli_bad_volume_is_one_line_exit_2(capsys, value):
    assert main(["advise", "--gpu-gb", "0", f"--queries-per-day={value}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--queries-per-day must be a number of 0 or more" in err
    assert len(err.splitlines()) == 1


def test_task_costs_queries_per_day_is_validated():
    assert costs.parse_prices({"queries_per_day": 500}) == {"queries_per_day": 500.0}
    with pytest.raises(AdaptwiseError, match="queries_per_day must be a number"):
        costs.parse_prices({"queries_per_day": -2})


def test_report_adds_the_monthly_line(tmp_path, capsys):
    from tests.test_report import make_run

    run = make_run(tmp_path / "run")
    assert main(["report", str(run)]) == 0
    assert "queries/day" not in (run / "report.md").read_text()
    assert main(["report", str(run), "--queries-per-day", "1000"]) == 0
    md = (run / "report.md").read_text()
    line = next(ln for ln in md.splitlines() if ln.startswith("Per month at 1,000 queries/day"))
    # zero-shot: 0.2 s a query on a CPU: the always-on machine floor, 24 x 30 x 0.10
    assert "zero-shot USD 72 (1 always-on CPU machine)" in line
    assert "whichever is larger" in line
    assert "Per month at 1,000 queries/day" in (run / "report.html").read_text()
    assert main(["report", str(run), "--queries-per-day", "x"]) == 2
    assert "--queries-per-day must be a number" in capsys.readouterr().err
