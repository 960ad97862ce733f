"""Small hyperparameter sweeps of one fine-tuning method: a grid of settings
(`--sweep lora.rank=8,16 lora.learning_rate=1e-4,2e-4`), trained in order within a time budget,
ranked on the VALIDATION split only (the trainer's best validation loss), after which the winner
alone is scored on the eval set, once.

Trials train on a copy of the task whose eval set is empty, so nothing in a trial can read eval
rows. Each trial keeps its artefacts in `<out>/sweep/<trial>/` (`training.json`, `adapter/` or
`model/`, `loss.csv`) and a `trial.json` with the settings it was trained with; a rerun skips
trials whose `trial.json` matches, so an interrupted sweep continues where it stopped.

Budget rule, before each trial still to train: stop if the time spent exceeds the budget, or if
the expected trial time (the mean of the trials trained so far in this invocation, else the
plan's estimate for the method, else unknown: run) is more than the time left.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from adaptwise.planning.targets import budget_stop
from experiments.atomic import write_text_atomic
from experiments.errors import AdaptwiseError, TaskError
from finetune.config import METHODS, build_config
from finetune.families import FAMILIES, finetune_method
from finetune.methods import FinetuneMethod


def parse_sweep(items: list[str]) -> tuple[str, dict[str, list[str]]]:
    """["lora.rank=8,16", "lora.learning_rate=1e-4"] -> ("lora", {"rank": ["8", "16"], ...})."""
    method = None
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        name, dot, setting = key.strip().partition(".")
        if not sep or not dot or not setting or not values.strip():
            raise AdaptwiseError(
                f"--sweep {item!r}: expected METHOD.SETTING=V1,V2,..., e.g. lora.rank=8,16"
            )
        if name not in METHODS:
            raise AdaptwiseError(
                f"--sweep {item!r}: sweeps tune a fine-tuning method ({', '.join(METHODS)})"
            )
        if method and name != method:
            raise AdaptwiseError(f"--sweep {item!r}: one sweep tunes one method, not {method} too")
        method = name
        setting = setting.strip().replace("-", "_")
        if setting in grid:
            raise AdaptwiseError(f"--sweep {item!r}: {setting} is given twice")
        grid[setting] = [v.strip() for v in values.split(",") if v.strip()]
    if method is None:
        raise AdaptwiseError("--sweep needs at least one METHOD.SETTING=V1,V2,...")
    return method, grid


def expand(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    """Every combination, in the order given (the first setting varies slowest)."""
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


def trial_name(settings: dict) -> str:
    text = "_".join(f"{k}-{v}" for k, v in settings.items())
    return re.sub(r"[^A-Za-z0-9._-]", "", text) or "default"


def check_grid(task, method: str, trials: list[dict], cli_settings: dict, seed: int) -> None:
    """Every trial's settings must build a valid config with a validation split."""
    for settings in trials:
        try:
            config = build_config(
                method, task.settings.get("finetune", {}), {**cli_settings, **settings}, seed
            )
        except TaskError as exc:
            raise AdaptwiseError(f"--sweep {method}: {exc}") from None
        if config.val_fraction <= 0:
            raise AdaptwiseError(
                "--sweep ranks trials on the validation split; finetune val_fraction must be > 0"
            )


def run_sweep(
    task,
    method: str,
    grid: dict[str, list[str]],
    out_dir: Path,
    options,
    budget_s: float | None = None,
    estimate_s: float | None = None,
    progress=None,
    clock: Callable[[], float] = time.monotonic,
    train_trial: Callable | None = None,
    score_winner: bool = True,
) -> dict:
    """Train the grid, rank on validation loss, score the winner on eval; returns the `sweep`
    record (also stored in results.json)."""
    from experiments.results import eval_fingerprint, options_record
    from experiments.run.runner import SilentProgress

    progress = progress or SilentProgress()
    cli_settings = dict(options.extra.get("finetune") or {})
    trials = expand(grid)
    check_grid(task, method, trials, cli_settings, options.seed)
    train_only = replace(task, eval=[])  # trials never see the eval set
    train_trial = train_trial or _trainer(train_only, options, progress)
    from experiments.owned_files import claim
    from experiments.run.runner import claim_run_folder

    claim_run_folder(Path(out_dir), task)
    claim(Path(out_dir), "run", ["sweep"])
    sweep_dir = Path(out_dir) / "sweep"
    record_opts = options_record(options)
    base_key = {
        "method": method,
        "model": record_opts["model"],
        "train": eval_fingerprint(task.train),
        "task_finetune": task.settings.get("finetune", {}),
        "cli": cli_settings,
    }
    record = {
        "method": method,
        "grid": grid,
        "ranked_on": "best validation loss (never the eval set)",
        "budget_s": budget_s,
        "trials": [],
        "winner": None,
        "stopped": None,
    }
    train = (train_trial, sweep_dir, base_key, cli_settings)
    _train_trials(method, trials, record, train, budget_s, estimate_s, progress, clock)
    ranked = rank(record["trials"])
    for i, entry in enumerate(ranked, 1):
        entry["rank"] = i
    record["stopped"] = record["stopped"] or "grid done"
    if not ranked:
        record["message"] = "No trial finished; nothing to score."
        return record
    winner = ranked[0]
    record["winner"] = winner["name"]
    record["message"] = (
        f"{len(ranked)} of {len(trials)} trials trained; the winner on validation loss is "
        f"{winner['name']} ({winner['best_val_loss']:.4f})"
        + ("; the budget stopped the grid early." if record["stopped"] == "budget" else ".")
    )
    if not score_winner:
        return record
    best = SweepWinner(method, {**cli_settings, **winner["settings"]}, sweep_dir / winner["name"])
    _score_winner(task, best, winner["name"], out_dir, options, record, progress)
    return record


def _train_trials(method, trials, record, train, budget_s, estimate_s, progress, clock) -> None:
    """Train each trial in order into record["trials"]: kept when an earlier sweep trained it
    with the same key, skipped once the budget rule stops the grid (adaptwise/planning/targets.py
    budget_stop, on the mean time of the trials trained so far), else trained and stored."""
    train_trial, sweep_dir, base_key, cli_settings = train
    started = clock()
    trained_times: list[float] = []
    stop = None
    for settings in trials:
        name = trial_name(settings)
        folder = sweep_dir / name
        entry = {"name": name, "settings": settings, "status": None, "reason": None}
        record["trials"].append(entry)
        key = {**base_key, "settings": settings}
        stored = _stored_trial(folder, key)
        if stored:
            entry.update(stored, status="kept", reason="kept: finished by an earlier run")
            continue
        if stop:
            entry.update(status="not run", reason=stop)
            continue
        elapsed = clock() - started
        expected = sum(trained_times) / len(trained_times) if trained_times else estimate_s
        budget = budget_stop(budget_s, elapsed, expected, word="expected")
        if budget is not None:
            entry.update(status="skipped", reason=budget)
            stop, record["stopped"] = "not run: stopped on budget", "budget"
            continue
        progress.log(f"sweep: training {method} trial {name}")
        t0 = clock()
        result = train_trial(method, {**cli_settings, **settings}, sweep_dir, name)
        took = clock() - t0
        trained_times.append(took)
        entry.update(
            status="trained",
            reason="trained",
            best_val_loss=result.get("best_val_loss"),
            final_train_loss=result.get("final_train_loss"),
            steps=result.get("steps"),
            train_s=round(took, 1),
        )
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(
            folder / "trial.json",
            json.dumps({"key": key, "result": _trial_result(entry)}, indent=2) + "\n",
        )


def _score_winner(task, best, winner: str, out_dir, options, record: dict, progress) -> None:
    """Score the winning trial on the eval rows, once: kept when an earlier sweep into this
    folder scored the same winner on the same rows and options."""
    from adaptwise.planning.stored import ensure_results, finished_methods, store_sections
    from experiments.results import options_record
    from experiments.run.runner import run_task
    from experiments.run_files import read_results

    record_opts = options_record(options)
    rows = task.scored_rows(options.limit)
    ensure_results(out_dir, task, rows, record_opts)
    old_winner = ((read_results(out_dir) or {}).get("sweep") or {}).get("winner")
    done = finished_methods(out_dir, task, rows, record_opts, log=progress.log)
    if best.name in done and old_winner == winner:
        record["winner_scored"] = "kept: scored on eval by an earlier run"
        store_sections(out_dir, {"sweep": record})
        return
    progress.log(f"sweep: scoring the winner {winner} on eval (once per seed)")
    record["winner_scored"] = "scored on eval once per seed"
    run_task(task, [best], out_dir, options, progress, sections={"sweep": record})


def rank(trials: list[dict]) -> list[dict]:
    """Trials with a validation loss, lowest first (ties: grid order)."""
    done = [t for t in trials if t.get("best_val_loss") is not None]
    return sorted(done, key=lambda t: t["best_val_loss"])


def _trial_result(entry: dict) -> dict:
    keys = ("best_val_loss", "final_train_loss", "steps", "train_s")
    return {k: entry.get(k) for k in keys}


def _stored_trial(folder: Path, key: dict) -> dict | None:
    path = folder / "trial.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, OSError):
        return None
    if data.get("key") != json.loads(json.dumps(key)):
        return None
    return data.get("result")


def _trainer(train_only, options, progress):
    """Train one trial with the fine-tuning method's own preparation, forgetting probe off."""
    from experiments.context import RunContext

    ctx = RunContext(train_only, options, log=progress.log)

    def train(method: str, settings: dict, sweep_dir: Path, name: str) -> dict:
        ctx.out_dir = sweep_dir
        trial = finetune_method(
            method, {"finetune": {**settings, "forgetting_probe": False}}, folder_name=name
        )
        trial.prepare(ctx)
        trial.release(ctx)  # free the trained model; a LoRA adapter comes off the shared base
        return dict(trial.stats.get("training") or {})

    return train


class SweepWinner(FinetuneMethod):
    """The winning trial's saved adapter (or model), scored like any fine-tuned method."""

    def __init__(self, name: str, settings: dict, folder: Path):
        super().__init__(name, {"finetune": settings})
        self.folder = Path(folder)
        self.needs_base = not (self.folder / "model").is_dir()
        self.description = f"{FAMILIES[name].description}; sweep winner {self.folder.name}"

    def trained_anew(self) -> type[FinetuneMethod]:
        """Another seed trains with the winning settings, as the method's family does."""
        return FAMILIES[self.name]

    def prepare(self, ctx) -> None:
        model = self.folder / "model"
        self.load_saved(ctx, model if model.is_dir() else self.folder / "adapter")
        training = json.loads((self.folder / "training.json").read_text(encoding="utf-8"))
        self.stats = {"training": training, "sweep_trial": self.folder.name}
