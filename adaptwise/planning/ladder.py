"""Target-driven runs: climb the plan's ladder in order and stop at the first method whose metric
meets the target with the LOWER bound of its 95% bootstrap interval, or when the time budget
would be exceeded.

The stopping rule (`climb`) is plain logic over callbacks, so it is tested with fake results;
`run_ladder` wires it to the runner, the stored results of earlier runs (resuming) and the
`ladder` section of results.json, which both reports render.

Budget rule, checked before each rung: stop if the time already spent (this invocation's wall
time) exceeds the budget, or if the plan's estimate of the next rung is more than the time left.
A rung without an estimate (no timing probe) is run. Rungs finished by an earlier run into the
same folder (same eval rows and options) are not rerun and cost no time from the budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from adaptwise.planning.targets import budget_stop
from experiments.report.formatting import format_duration


@dataclass
class Rung:
    method: str
    estimate_s: float | None  # the plan's estimate (preparation + scoring); None: unknown
    runnable: bool = True
    fits: bool = True
    fit_change: str | None = None


def rungs_from_plan(plan) -> list[Rung]:
    return [Rung(s.method, s.total_s, s.runnable, s.fits, s.fit_change) for s in plan.steps]


def meets(interval: dict | None, target_value: float) -> bool:
    """The target is met only when the interval's lower bound reaches it."""
    return bool(interval and interval.get("low") is not None and interval["low"] >= target_value)


def climb(
    rungs: list[Rung],
    metric: str,
    target: float | None,
    budget_s: float | None,
    run_rung: Callable[[str], dict],
    finished: dict[str, dict] | None = None,
    clock: Callable[[], float] = time.monotonic,
    on_update: Callable[[dict], None] | None = None,
) -> dict:
    """Run rungs in order until one meets `target` (interval lower bound >= target) or the budget
    runs out. `run_rung(method)` runs one method and returns {"interval", "measured_s"};
    `finished` holds the same for methods an earlier run already finished (not rerun).

    Returns the `ladder` record: every rung with its status ("run", "kept", "skipped",
    "not run"), the reason, the estimate and the measured time, and why the climb stopped."""
    finished = finished or {}
    started = clock()
    record = _new_record(rungs, metric, target, budget_s)

    def update() -> None:
        record["elapsed_s"] = round(clock() - started, 2)
        if on_update:
            on_update(record)

    stop_reason = None
    for rung, entry in zip(rungs, record["rungs"], strict=True):
        if stop_reason:
            entry.update(status="not run", reason=stop_reason)
            continue
        unfit = _cannot_run(rung)
        if unfit:
            entry.update(status="skipped", reason=unfit)
            continue
        if rung.method in finished:
            outcome = finished[rung.method]
            entry.update(status="kept", reason="kept: finished by an earlier run")
        else:
            elapsed = clock() - started
            stop = budget_stop(budget_s, elapsed, rung.estimate_s)
            if stop is not None:
                entry.update(status="skipped", reason=stop)
                spent = budget_s is not None and elapsed > budget_s
                stop_reason = "not run: budget spent" if spent else "not run: stopped on budget"
                record["stopped"] = "budget"
                continue
            entry.update(status="running")
            update()
            outcome = run_rung(rung.method)
            entry.update(status="run", reason="run")
        entry["measured_s"] = _round(outcome.get("measured_s"))
        entry["interval"] = outcome.get("interval")
        if target is not None:
            entry["meets_target"] = meets(outcome.get("interval"), target)
            if entry["meets_target"]:
                record["stopped"] = "target"
                record["reached"] = rung.method
                stop_reason = f"not run: target met at {rung.method}"
        update()
    if record["stopped"] is None:
        record["stopped"] = "end of ladder"
    record["message"] = stop_message(record)
    update()
    return record


def _new_record(rungs: list[Rung], metric: str, target, budget_s) -> dict:
    """The `ladder` record before the climb: every rung pending."""
    return {
        "metric": metric,
        "target": target,
        "budget_s": budget_s,
        "rungs": [
            {
                "method": r.method,
                "status": "pending",
                "reason": None,
                "estimate_s": _round(r.estimate_s),
                "measured_s": None,
                "interval": None,
                "meets_target": None,
            }
            for r in rungs
        ],
        "stopped": None,
        "reached": None,
        "elapsed_s": 0.0,
    }


def _cannot_run(rung: Rung) -> str | None:
    """Why a rung is skipped whatever the time: this build cannot run it, or it does not fit."""
    if not rung.runnable:
        return "skipped: this build cannot run it"
    if not rung.fits:
        hint = f" ({rung.fit_change})" if rung.fit_change else ""
        return f"skipped: does not fit in memory{hint}"
    return None


def stop_message(record: dict) -> str:
    metric, target = record["metric"], record["target"]
    goal = f"{metric} >= {target:g}" if target is not None else None
    if record["stopped"] == "target":
        r = next(x for x in record["rungs"] if x["method"] == record["reached"])
        low = r["interval"]["low"]
        return (
            f"Stopped at {record['reached']}: its {metric} "
            f"{r['interval']['estimate']:.3f} has a 95% interval lower bound of {low:.3f}, "
            f"which meets the target {goal}."
        )
    best = _best(record)
    best_text = (
        f" The best so far is {best['method']} at {best['interval']['estimate']:.3f} "
        f"(95% CI {best['interval']['low']:.3f}-{best['interval']['high']:.3f})."
        if best
        else ""
    )
    if record["stopped"] == "budget":
        skipped = next(x for x in record["rungs"] if x["reason"] and "budget" in x["reason"])
        unmet = f"No method met {goal} within the budget. " if goal else ""
        return (
            f"{unmet}Stopped on the budget of {format_duration(record['budget_s'])} before "
            f"{skipped['method']} ({skipped['reason']}).{best_text}"
        )
    if goal:
        return f"The whole ladder ran and no method met {goal} with its lower bound.{best_text}"
    return f"The whole ladder ran.{best_text}"


def _best(record: dict) -> dict | None:
    done = [r for r in record["rungs"] if r["interval"] and r["interval"].get("low") is not None]
    return max(done, key=lambda r: r["interval"]["estimate"], default=None)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 1)


def run_ladder(
    task,
    plan,
    out_dir: Path,
    options,
    target=None,
    budget_s: float | None = None,
    progress=None,
    clock: Callable[[], float] = time.monotonic,
) -> dict:
    """Climb `plan` (from adaptwise.planning.planner.make_plan) on `task`, writing into
    `out_dir`."""
    from adaptwise.planning.stored import (
        ensure_results,
        finished_methods,
        metric_interval,
        store_sections,
    )
    from experiments.results import options_record
    from experiments.run.runner import SilentProgress, run_task
    from experiments.run_files import read_results

    progress = progress or SilentProgress()
    metric = target.metric if target else task.metric
    rows = task.scored_rows(options.limit)
    record_opts = options_record(options)
    ensure_results(out_dir, task, rows, record_opts)
    done = finished_methods(out_dir, task, rows, record_opts, log=progress.log)
    old = (read_results(out_dir) or {}).get("methods", {})
    finished = {
        m: {
            "interval": metric_interval(out_dir, m, metric, options.seed),
            "measured_s": _measured(old[m]),
        }
        for m in done
    }
    state: dict = {}

    def run_rung(method: str) -> dict:
        results = run_task(task, [method], out_dir, options, progress, sections=state)
        return {
            "interval": metric_interval(out_dir, method, metric, options.seed),
            "measured_s": _measured(results["methods"][method]),
        }

    def on_update(record: dict) -> None:
        state["ladder"] = record
        store_sections(out_dir, {"ladder": record})
        progress.log(_progress_line(record))

    return climb(
        rungs_from_plan(plan),
        metric,
        target.value if target else None,
        budget_s,
        run_rung,
        finished,
        clock,
        on_update,
    )


def _measured(entry: dict) -> float:
    """Preparation + scoring, as the plan estimates them (the shared model's load is apart)."""
    return sum(float(entry.get(k) or 0) for k in ("prepare_s", "inference_s"))


def _progress_line(record: dict) -> str:
    if record.get("message"):
        return f"ladder: {record['message']}"
    current = next((r for r in record["rungs"] if r["status"] == "running"), None)
    if current:
        est = format_duration(current["estimate_s"]) if current["estimate_s"] else "unknown"
        return f"ladder: running {current['method']} (estimated {est})"
    last = [r for r in record["rungs"] if r["status"] in ("run", "kept", "skipped")]
    return f"ladder: {last[-1]['method']}: {last[-1]['reason']}" if last else "ladder: starting"
