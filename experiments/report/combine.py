"""Several run folders of one task as one run, for one report and Pareto front holding all their
methods (`adaptwise report DIR1 DIR2 ... --out FOLDER`): a hosted model's prompting next to a
small model's LoRA, matched row by row.

Every run must have scored a method (a run whose methods all failed has nothing to combine), be of
the same task and have scored the same eval rows (eval fingerprint, and the row ids of their
predictions), else one clear error naming the folder; load_run has checked each run's results
against its predictions. Method names: when the runs' models differ, every method says its model
(`few-shot-embedding @ openai:gpt-4o-mini`, `lora @ SmolLM2-135M-Instruct`); a name that still
clashes (the same model in two runs) also says its folder (`zero-shot (runs/a)`). The first run's
zero-shot is the baseline of the "p vs zero-shot" tests and of the verdict. Each method keeps its
own run's recorded prices (`costs`) in its entry, so costs.method_prices prices it as its run did.
"""

from __future__ import annotations

from pathlib import Path

from experiments.errors import AdaptwiseError
from experiments.seeds import seed_items, seed_name

EMBEDDED = " (embedded)"
SAME_TASK = ("name", "kind", "metric", "labels", "metric_files", "judge")  # own metrics, judge


def model_of(results: dict) -> str:
    model = str((results.get("options") or {}).get("model") or "?")
    return model[: -len(EMBEDDED)] if model.endswith(EMBEDDED) else model


def check_scored(runs: list[tuple[Path, dict, list[dict]]]) -> None:
    """One clear error for a run with no method's result (every method failed): it has nothing
    to combine, and its missing rows are not other eval rows."""
    for folder, results, _ in runs:
        if not results["methods"]:
            failed = list(results.get("failed") or {})
            why = f"every method failed ({', '.join(failed)})" if failed else "it holds no result"
            raise AdaptwiseError(
                f"{folder}: that run scored nothing: {why}; combine runs that scored a method"
            )


def check_same_rows(runs: list[tuple[Path, dict, list[dict]]]) -> None:
    """One clear error when a run is of another task or scored other eval rows than the first."""
    first_dir, first, first_records = runs[0]
    first_ids = {r["id"] for r in first_records}
    for folder, results, records in runs[1:]:
        for key in SAME_TASK:
            mine, theirs = results["task"].get(key), first["task"].get(key)
            if mine != theirs:
                raise AdaptwiseError(
                    f"{folder}: another task than {first_dir} (task {key} {mine!r} vs "
                    f"{theirs!r}); combine runs of the same task"
                )
        mine = results["task"].get("eval_fingerprint")
        theirs = first["task"].get("eval_fingerprint")
        ids = {r["id"] for r in records}
        if (mine and theirs and mine != theirs) or ids != first_ids:
            n_mine, n_theirs = (
                results["task"].get("n_eval", len(ids)),
                first["task"].get("n_eval", len(first_ids)),
            )
            raise AdaptwiseError(
                f"{folder}: scored other eval rows than {first_dir} ({n_mine} vs {n_theirs} rows"
                + (f", eval fingerprint {mine} vs {theirs}" if mine != theirs else "")
                + f", {len(ids ^ first_ids)} row ids in one only); combine runs of the same "
                "eval rows (the same task file and --limit)"
            )


def _currency(results: dict) -> str | None:
    return (results.get("costs") or {}).get("currency")


def method_names(runs: list[tuple[Path, dict, list[dict]]]) -> list[dict[str, str]]:
    """Per run: its method name -> the combined report's name (see the module's docstring)."""
    models = [model_of(results) for _, results, _ in runs]
    several = len(set(models)) > 1
    names = [
        {m: f"{m} @ {model}" if several else m for m in results["methods"]}
        for (_, results, _), model in zip(runs, models)
    ]
    counts: dict[str, int] = {}
    for mapping in names:
        for new in mapping.values():
            counts[new] = counts.get(new, 0) + 1
    for (folder, _, _), mapping in zip(runs, names):
        for old, new in mapping.items():
            if counts[new] > 1:
                mapping[old] = f"{new} ({folder})"
    return names


def _seed_names(methods: dict, mapping: dict) -> dict[str, str]:
    """Old -> new record names of the methods' other seeds (experiments/seeds.py): `lora@seed1`
    of a run whose lora is `lora @ MODEL` here is `lora @ MODEL@seed1`."""
    return {
        item["predictions"]: seed_name(mapping[old], item["seed"])
        for old, entry in methods.items()
        for item in seed_items(entry)
        if "predictions" in item
    }


def combine(runs: list[tuple[Path, dict, list[dict]]]) -> tuple[dict, list[dict]]:
    """The combined results (as results.json holds them) and prediction records of `runs`
    (folder, results, records), in the order given."""
    check_scored(runs)
    check_same_rows(runs)
    currencies = {c for _, r, _ in runs if (c := _currency(r))}
    if len(currencies) > 1:
        raise AdaptwiseError(
            f"{runs[1][0]}: prices in another currency than {runs[0][0]} "
            f"({', '.join(sorted(currencies))}); give --currency and the prices to compare them"
        )
    names = method_names(runs)
    several = len({model_of(r) for _, r, _ in runs}) > 1
    methods: dict[str, dict] = {}
    failed: dict[str, object] = {}
    records: list[dict] = []
    sources = []
    for (folder, results, run_records), mapping in zip(runs, names):
        model = model_of(results)
        renamed = {**mapping, **_seed_names(results["methods"], mapping)}
        for old, entry in results["methods"].items():
            costs = {**(results.get("costs") or {}), **(entry.get("costs") or {})}
            methods[mapping[old]] = {
                **entry,
                "method": entry.get("method", old),
                "model": model,
                "run": str(folder),
                "costs": costs,
            }
            if "seeds" in entry:  # each seed's rows under the method's new name
                methods[mapping[old]]["seeds"] = [
                    {**i, "predictions": renamed[i["predictions"]]} if "predictions" in i else i
                    for i in seed_items(entry)
                ]
        for old, reason in (results.get("failed") or {}).items():
            failed[f"{old} @ {model}" if several else old] = reason
        records += [{**r, "method": renamed.get(r["method"], r["method"])} for r in run_records]
        sources.append({"folder": str(folder), "model": model, "methods": mapping})
    first = runs[0][1]
    options = dict(first.get("options") or {})
    options["model"] = " + ".join(dict.fromkeys(model_of(r) for _, r, _ in runs))
    combined = {
        "version": first.get("version", 1),
        "task": first["task"],
        "methods": methods,
        "options": options,
        "combined_from": sources,
    }
    baseline = next((m["zero-shot"] for m in names if "zero-shot" in m), None)
    if baseline:
        combined["baseline"] = baseline
    if currencies:
        combined["costs"] = {"currency": currencies.pop()}
    if failed:
        combined["failed"] = failed
    return combined, records
