"""Run methods on a task's eval set and write results.json, predictions.jsonl, report.md and
report.html.

Files are rewritten (atomically) after every finished method, so Ctrl-C or a crash leaves the
completed methods' results in place. A later run into the same folder on the same eval rows
keeps the methods it does not rerun, so methods can be added one at a time.

In several processes (experiments/distributed.py) every process prepares every method and
scores its share of the eval rows; the predictions are gathered in order, and only the first
process logs and writes the files.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

from experiments import metrics as metric_fns
from experiments.api_model import ApiRequestFailed, check_methods, is_api_model
from experiments.api_scoring import api_summary
from experiments.context import RunContext, RunOptions
from experiments.distributed import gather, is_main, shard, world_size
from experiments.errors import is_out_of_memory
from experiments.methods import Method, Prediction
from experiments.models import forget_failure
from experiments.owned_files import claim, refuse_inputs
from experiments.peak_memory import PeakMemory
from experiments.progress_events import (
    MethodFailed,
    MethodFinished,
    MethodStarted,
    ProgressEvent,
    events_of,
)
from experiments.report.costs import parse_prices
from experiments.report.write import write_reports
from experiments.results import options_record, previous_results
from experiments.run.method_failures import out_of_memory_record, release_method
from experiments.run.registry import make_method
from experiments.run_files import write_run_files
from experiments.seeds import drop_seeds, seed_name, seed_record
from experiments.task import Row, Task

RUN_COMMAND = "run"
RUN_FILES = ("results.json", "predictions.jsonl", "report.md", "report.html")


class RunProgress(Protocol):
    """How the runner reports progress; the CLI draws bars, tests pass a silent one. `event`
    takes the typed events of experiments/progress_events.py (a method started, a training
    step, a method finished or failed); an object without it gets each event's line in `log`."""

    def start(self, label: str, total: int) -> None: ...
    def advance(self, n: int) -> None: ...
    def finish(self) -> None: ...
    def log(self, message: str) -> None: ...
    def event(self, event: ProgressEvent) -> None: ...


class SilentProgress:
    def start(self, label: str, total: int) -> None: ...
    def advance(self, n: int) -> None: ...
    def finish(self) -> None: ...
    def log(self, message: str) -> None: ...
    def event(self, event: ProgressEvent) -> None: ...


def run_task(
    task: Task,
    method_names: list[str | Method],
    out_dir: Path,
    options: RunOptions,
    progress: RunProgress | None = None,
    sections: dict | None = None,
    rerun: bool | set[str] = False,
) -> dict:
    """Score each method on the (possibly limited) eval set; return the results dict.

    A method whose complete result is already in `out_dir`, made on the same eval and train
    rows with the same options, is kept from the earlier run, not redone; `rerun` (True, or a
    set of method names) runs it again. A stored result whose metrics are not what its
    predictions give (experiments/results.py doubts_about) is never kept: it runs again, or is
    left out when not among this run's methods, with one line. `method_names` may also hold
    ready-made Method objects (a sweep's winner, loaded from its trial), which always run.
    `sections` are extra top-level keys written into results.json (e.g. `ladder`). The returned
    dict's `_run` says which methods were kept, scored and failed, and whether files were
    written."""
    progress = progress or SilentProgress()
    if not is_main():
        progress = SilentProgress()  # the first process speaks for all
    methods = [
        m if isinstance(m, Method) else make_method(m, {"k": options.k, **options.extra})
        for m in method_names
    ]
    rows = task.scored_rows(options.limit)
    ctx = RunContext(task, options, log=progress.log, emit=events_of(progress))
    ctx.out_dir = out_dir  # where methods put their own artefacts (e.g. <out>/lora/)
    costs = parse_prices(task.settings.get("costs"), f"{task.path}")  # bad: one line, first
    costs.update(options.prices)  # --prompt-token-price and the like win over the task file's
    check_methods(methods, options)  # a served model runs prompting and RAG methods only
    for method in methods:
        method.check(ctx)  # a bad setting is one line now, not after the model has loaded
    created = not out_dir.exists()
    claim_run_folder(out_dir, task, record=is_main())
    try:
        return _run_methods(
            ctx, methods, method_names, rows, out_dir, progress, sections, rerun, costs
        )
    finally:
        if created and is_main():
            remove_if_unused(out_dir)


def remove_if_unused(folder: Path) -> None:
    """Remove a folder this run created when it still holds nothing but the manifest (a run
    that failed before its first result leaves no empty output behind)."""
    from experiments.owned_files import MANIFEST

    try:
        if [p.name for p in folder.iterdir()] == [MANIFEST]:
            (folder / MANIFEST).unlink()
            folder.rmdir()
    except OSError:
        pass


def _run_methods(
    ctx, methods, method_names, rows, out_dir, progress, sections, rerun, costs
) -> dict:
    task, options = ctx.task, ctx.options
    served_model = None
    if is_api_model(options.model):  # the server is checked before any work, and named
        served_model = ctx.lm.model.served_model
    record = options_record(options, served_model)
    results, predictions, doubts = previous_results(out_dir, task, rows, record, progress.log)
    results["options"] = record
    if costs:
        results["costs"] = costs
    results.update(sections or {})
    outcome = {"kept": [], "scored": [], "failed": [], "written": False}
    results["_run"] = outcome  # what this run did, for the command's last lines and exit status
    names = {m.name for m in methods}
    judge = _judge(ctx, names, results)
    if judge is not None and judge.judge_pending(results, predictions):
        results["_rescored"] = True  # kept methods judged now: the files are written again
    for name, doubt in doubts.items():
        then = "running it again" if name in names else "left out (a run that names it scores it)"
        progress.log(f"{name}: {doubt.text}; {then}")

    results["_defer_reports"] = True  # one analysis per run: the reports once, at its end
    try:
        each = (methods, method_names, rows, out_dir, progress)
        _score_methods(ctx, each, results, predictions, judge, rerun)
        changed = bool(doubts or results.pop("_rescored", False))  # left out, or scored again
        if changed and not (outcome["scored"] or outcome["failed"]):
            write_outputs(out_dir, results, predictions)  # without the methods left out
    except BaseException:
        _write_due_reports(out_dir, results, predictions, quiet=True)  # what was written
        raise
    _write_due_reports(out_dir, results, predictions)
    outcome["written"] = bool(changed or outcome["scored"] or outcome["failed"])
    return results


def _score_methods(ctx, each, results, predictions, judge, rerun) -> None:
    """Run each method, or keep it from the earlier run (and train the seeds it lacks); the
    files are written after each, the reports once the run ends (_write_due_reports)."""
    methods, method_names, rows, out_dir, progress = each
    task, outcome = ctx.task, results["_run"]
    for method, given in zip(methods, method_names):
        again = rerun is True or (rerun and method.name in rerun) or isinstance(given, Method)
        if method.name in results["methods"] and not again:
            progress.log(
                f"{task.name}: {method.name} kept from the earlier run in {out_dir} "
                f"(--rerun {method.name} runs it again)"
            )
            outcome["kept"].append(method.name)
            if run_seeds(ctx, method, results, predictions, rows, progress):
                outcome["scored"].append(method.name)  # seeds it lacked
                if judge is not None and judge.judge_pending(results, predictions):
                    write_outputs(out_dir, results, predictions)
            continue
        failure = None
        try:
            entry, preds = run_method(ctx, method, rows, progress)
        except ApiRequestFailed as exc:  # after its retries: this method fails, others go on
            events_of(progress)(MethodFailed(method.name, "failed", str(exc)))
            failure = {"status": "failed", "description": method.description, "message": str(exc)}
            _record_failure(out_dir, results, predictions, method.name, failure)
            outcome["failed"].append(method.name)
            continue
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            failure = out_of_memory_record(ctx, method, exc)
            forget_failure(exc)
        if failure is not None:  # out of memory: freed here, where no frame holds the error
            release_method(ctx, method)
            events_of(progress)(MethodFailed(method.name, "out of memory", failure["message"]))
            _record_failure(out_dir, results, predictions, method.name, failure)
            outcome["failed"].append(method.name)
            continue
        results.get("failed", {}).pop(method.name, None)
        results["methods"][method.name] = entry
        predictions[method.name] = preds
        drop_seeds(predictions, method.name)  # an earlier run's other seeds: trained again
        write_outputs(out_dir, results, predictions)  # kept, whatever the judge does next
        outcome["scored"].append(method.name)
        run_seeds(ctx, method, results, predictions, rows, progress)  # a sweep's winner: its
        # settings train again with each other seed
        if judge is not None and judge.judge_pending(results, predictions):  # and its seeds
            write_outputs(out_dir, results, predictions)


def _judge(ctx: RunContext, names: set[str], results: dict):
    """The task's LLM judge (experiments/judge.py), None without one (or in a process other
    than the first); a pairwise judge whose baseline neither runs nor is kept is one line."""
    spec = ctx.task.judge
    if spec is None or not is_main():
        return None
    if spec.pairwise and spec.baseline not in names and spec.baseline not in results["methods"]:
        from experiments.errors import TaskError

        raise TaskError(
            f"{ctx.task.path}: the pairwise judge compares each method with {spec.baseline!r}, "
            f"which this run neither runs nor keeps; add {spec.baseline} to --methods"
        )
    from experiments.judge import Judge

    return Judge(ctx.task, ctx.options, ctx.log)


def _record_failure(out_dir, results, predictions, name: str, failure: dict) -> None:
    results["methods"].pop(name, None)
    predictions.pop(name, None)
    drop_seeds(predictions, name)
    results.setdefault("failed", {})[name] = failure
    write_outputs(out_dir, results, predictions)


def run_seeds(ctx, method: Method, results: dict, predictions: dict, rows, progress) -> bool:
    """Train and score the seeds after the first (experiments/seeds.py) that the method's entry
    lacks; the files are written after each, so a stopped run keeps the seeds it finished and
    the next one trains only the others. A seed out of memory ends the method's seeds, with
    one line. True when a seed was scored."""
    wanted = method.seed_list(ctx)
    entry = results["methods"].get(method.name)
    if len(wanted) < 2 or entry is None:
        return False
    items = entry.setdefault("seeds", [seed_record(wanted[0], entry)])
    missing = [s for s in wanted if s not in {item.get("seed") for item in items}]
    scored = False
    for seed in missing:
        progress.log(f"{method.name}: seed {seed} ({wanted.index(seed) + 1} of {len(wanted)})")
        other, failure = method.reseeded(seed), None
        try:
            seed_entry, preds = run_method(ctx, other, rows, progress)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            failure = out_of_memory_record(ctx, other, exc)["message"]
            forget_failure(exc)
        if failure is not None:
            release_method(ctx, other)
            progress.log(f"{method.name}: seed {seed} out of memory; {failure} (its seeds end)")
            break
        name = seed_name(method.name, seed)
        items.append(seed_record(seed, seed_entry, name))
        predictions[name] = preds
        write_outputs(ctx.out_dir, results, predictions)
        scored = True
    return scored


def claim_run_folder(out_dir: Path, task: Task, record: bool = True) -> None:
    """Refuse a folder that is or holds an input of the task, or whose results.json,
    predictions.jsonl or reports adaptwise did not write; then (`record`) mark them as the
    run's."""
    refuse_inputs(out_dir, task.inputs)
    claim(out_dir, RUN_COMMAND, RUN_FILES, record=record)


def run_method(
    ctx: RunContext, method: Method, rows: list[Row], progress: RunProgress
) -> tuple[dict, list[Prediction]]:
    """Prepare and predict with one method, measuring time, tokens and peak memory."""
    emit = events_of(progress)
    with PeakMemory() as memory:
        started = time.perf_counter()
        emit(MethodStarted(ctx.task.name, method.name))
        # Load the shared model before timing (again, if a method freed it to train).
        ctx.model if method.needs_base else ctx.lm  # noqa: B018
        loaded = time.perf_counter()
        method.prepare(ctx)
        prepared = time.perf_counter()
        mine = shard(rows)  # every row, in one process
        progress.start(f"{ctx.task.name} · {method.name}", len(mine))
        clock = _BatchClock(progress.advance)
        try:
            preds = method.predict(ctx, mine, clock)
        finally:
            progress.finish()
        preds = gather(preds, len(rows))
        done = time.perf_counter()
    emit(MethodFinished(method.name))
    entry = {
        "description": method.description,
        "n_eval": len(rows),
        **summarise(ctx.task, preds),
        "model_load_s": round(loaded - started, 2),
        "prepare_s": round(prepared - loaded, 2),
        "inference_s": round(done - prepared, 2),
        "inference_s_per_example": round((done - prepared) / max(len(rows), 1), 4),
        "prompt_tokens_mean": _mean(p.prompt_tokens for p in preds),
        "generated_tokens_mean": _mean(p.generated_tokens for p in preds),
        "peak_memory_mb": memory.peak_mb,
        "peak_memory_kind": memory.kind,
        "latency": clock.summary(),
    }
    entry.update(method.extra_results(ctx, rows, preds))
    entry.update(api_summary(preds))  # served model: scoring, usage tokens, request latency
    entry.setdefault("precision", ctx.precision)
    if world_size() > 1:
        entry["processes"] = world_size()  # rows scored in shares; peak memory of the first
    return entry, preds


class _BatchClock:
    """The progress callback, timed: each call reports rows finished since the previous call, so
    each of them is given the elapsed time divided by their number (batch time / batch size)."""

    def __init__(self, advance):
        self.advance = advance
        self.last = time.perf_counter()
        self.samples: list[float] = []

    def __call__(self, n: int) -> None:
        now = time.perf_counter()
        if n > 0:
            self.samples += [(now - self.last) / n] * n
        self.last = now
        self.advance(n)

    def summary(self) -> dict | None:
        if not self.samples:
            return None
        p50, p95 = (float(x) for x in _percentiles(self.samples, (50, 95)))
        return {"p50_s": round(p50, 4), "p95_s": round(p95, 4), "per": "batch"}


def _percentiles(values: list[float], qs: tuple[int, ...]) -> list[float]:
    import numpy as np

    return list(np.percentile(values, qs))


def summarise(task: Task, preds: list[Prediction]) -> dict:
    """Metric values, the task's own metrics after the kind's; for label scoring also the raw
    and calibrated values of the kind's metrics side by side."""
    golds = [p.gold for p in preds]
    user = [own_values(task, p) for p in preds]  # MetricError: one line
    outputs = [p.output for p in preds]
    out = {"metrics": metric_fns.score(task.kind, outputs, golds, task.labels, user=user)}
    for mode in ("raw", "calibrated"):
        if preds and f"output_{mode}" in preds[0].extra:
            outputs = [p.extra[f"output_{mode}"] for p in preds]
            out[f"metrics_{mode}"] = metric_fns.score(task.kind, outputs, golds, task.labels)
    return out


def own_values(task: Task, p: Prediction) -> dict[str, float]:
    """A prediction's values of the task's own metrics (the user's function: remembered
    values) and of the LLM judge (its stored verdict; none when unjudged or unparseable)."""
    judged = {}
    if task.judge is not None:
        from experiments.judge_records import row_scores

        judged = row_scores(task.judge.record(), {"judge": p.extra.get("judge")})
    return {**task.user_values(p.id, p.output, p.gold), **judged}


def prediction_record(task: Task, method: str, p: Prediction) -> dict:
    user = own_values(task, p)
    values, correct = metric_fns.row_values(task.kind, task.metric, p.output, p.gold, user)
    return {
        "method": method,
        "id": p.id,
        "prompt": p.prompt,
        "output": p.output,
        "gold": p.gold,
        "correct": correct,
        "scores": values,
        **p.extra,
    }


def write_outputs(out_dir: Path, results: dict, predictions: dict[str, list[Prediction]]) -> None:
    """predictions.jsonl and results.json, then the reports; while a run scores its methods
    (`_defer_reports`) the reports wait for its end: one analysis per run, not per method.
    `results["_analysis"]` keeps the reports' analysis (the TUI's results screen shows its
    p-values rather than redo it)."""
    if not is_main():
        return  # the first process writes for all
    records = _records(results, predictions)
    public = {k: v for k, v in results.items() if not k.startswith("_")}
    write_run_files(out_dir, public, records)
    if results.get("_defer_reports"):
        results["_reports_due"] = True
    else:
        results["_analysis"] = write_reports(out_dir, public, records)  # the reports' statistics


def _records(results: dict, predictions: dict[str, list[Prediction]]) -> list[dict]:
    task = results["_task"]
    return [prediction_record(task, name, p) for name, preds in predictions.items() for p in preds]


def _write_due_reports(out_dir: Path, results: dict, predictions: dict, quiet=False) -> None:
    """The reports of what the run wrote, once; `quiet` (the run is failing or interrupted):
    a report that cannot be written does not hide why the run stopped."""
    results.pop("_defer_reports", None)
    if not results.pop("_reports_due", False) or not is_main():
        return
    public = {k: v for k, v in results.items() if not k.startswith("_")}
    try:
        results["_analysis"] = write_reports(out_dir, public, _records(results, predictions))
    except Exception:
        if not quiet:
            raise


def _mean(values) -> float:
    values = list(values)
    return round(sum(values) / len(values), 1) if values else 0.0
