"""`adaptwise run` (score methods on a task, or climb: --ladder, --sweep, --data-fractions),
`adaptwise setup` and `adaptwise demo`. Imports nothing heavy at module level."""

from __future__ import annotations

from pathlib import Path

from adaptwise.api_options import add_api_options
from adaptwise.launch import add_devices_option, launch, needs_launch
from adaptwise.running import (
    DEFAULT_METHODS,
    add_seeds_option,
    check_run,
    headline,
    method_list,
    run_one,
    run_options,
    seeds_setting,
    show_report,
    show_run,
)
from experiments.task import DEMO_DIR

# The demo scores 40 of each task's eval rows so that it finishes in about 5 minutes on 2 CPU
# cores (measured in docs/demo.md); `--limit 0` scores all of them.
DEMO_LIMIT = 40


def register(sub, add_run_options) -> None:
    run = sub.add_parser(
        "run",
        help="score methods on a task's eval set",
        description="Score methods on a task's eval set; writes results.json, "
        "predictions.jsonl and report.md into --out.",
    )
    run.add_argument("task", type=Path, help="task YAML file")
    run.add_argument(
        "--methods",
        default=DEFAULT_METHODS,
        help="comma-separated methods (default: %(default)s). Prompting: zero-shot, "
        "few-shot-random, few-shot-jaccard, few-shot-embedding, few-shot-mmr; retrieval: rag, "
        "rag-hybrid, rag-dense; fine-tuning: lora, qlora, full-ft; both: rag+lora, "
        "rag+qlora, rag+full-ft, raft. Append -kN to a few-shot or rag method to set its "
        "number of examples or passages, e.g. few-shot-jaccard-k8",
    )
    run.add_argument("--out", type=Path, help="output folder (default: runs/<task name>)")
    run.add_argument(
        "--rerun",
        nargs="?",
        const="all",
        metavar="METHODS",
        help="run again methods whose results --out already holds from a run with the same "
        "rows and options (kept otherwise); alone: all of them, or a comma-separated list",
    )
    add_run_options(run)
    add_seeds_option(
        run,
        "train each fine-tuning method N times, with seeds --seed, --seed+1, ... (default: the "
        "task file's finetune seeds, else 1); the report shows their spread and the verdict "
        "calls a lead only when every seed holds it (docs/finetuning.md, Seeds)",
    )
    add_devices_option(run)
    add_api_options(run)
    run.set_defaults(handler=cmd_run)
    _add_climb_options(run)

    setup = sub.add_parser(
        "setup",
        help="prepare the embedded models (run once by install.sh)",
        description="Convert the embedded SmolLM2 GGUF into a trainable checkpoint in the cache "
        "and check that the embedded embedding model loads.",
    )
    setup.add_argument("--model", help="prepare this model instead (folder, .gguf or hub id)")
    setup.set_defaults(handler=cmd_setup)

    demo = sub.add_parser(
        "demo",
        help="run the comparison on the two shipped demo tasks",
        description="Run zero-shot and the four few-shot selectors on the demo tasks "
        f"shipped in {DEMO_DIR}.",
    )
    demo.add_argument("--out", type=Path, default=Path("runs/demo"), help="default: %(default)s")
    demo.add_argument("--methods", default=DEFAULT_METHODS, help="default: %(default)s")
    add_run_options(demo, limit=DEMO_LIMIT)
    demo.set_defaults(handler=cmd_demo)


def _add_climb_options(run) -> None:
    """--ladder, --target, --budget, --sweep and --data-fractions."""
    climb = run.add_argument_group("ladder, sweeps and learning curves (docs/ladder.md)")
    climb.add_argument(
        "--finetune",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a fine-tuning setting for lora / qlora / full-ft, e.g. --finetune max_steps=3 "
        "(repeatable; as `adaptwise finetune --set`)",
    )
    climb.add_argument(
        "--ladder",
        action="store_true",
        help="climb the plan's ladder (adaptwise plan) in order instead of --methods; stop at "
        "the first method whose 95%% CI lower bound meets --target, or on --budget",
    )
    climb.add_argument("--target", help="with --ladder: METRIC=VALUE, e.g. accuracy=0.8")
    climb.add_argument(
        "--budget", help="with --ladder or --sweep: a time budget, e.g. 30m, 2h, 1h30m"
    )
    climb.add_argument(
        "--data-fractions",
        metavar="F1,F2,...",
        help="learning curve: score --methods on nested seeded subsets of train of these "
        "fractions, e.g. 0.25,0.5,1.0",
    )
    climb.add_argument(
        "--sweep",
        nargs="+",
        metavar="METHOD.SETTING=V1,V2",
        help="grid over fine-tuning settings, e.g. --sweep lora.rank=8,16 "
        "lora.learning_rate=1e-4,2e-4; ranked on validation loss, the winner scored on eval",
    )


def cmd_run(args) -> int:
    from adaptwise.progress import RichProgress
    from adaptwise.running import parse_settings

    options = run_options(args)
    from experiments.errors import AdaptwiseError

    options.seeds = seeds_setting(args)
    settings = parse_settings(args.finetune, flag="--finetune")
    if settings:
        options.extra["finetune"] = settings
    if args.ladder or args.sweep or args.data_fractions:
        return _cmd_climb(args, options)
    for flag in ("target", "budget"):
        if getattr(args, flag):
            raise AdaptwiseError(f"--{flag} needs --ladder (or, for --budget, --sweep)")
    methods = method_list(args.methods)
    rerun = _rerun(args.rerun, methods)
    if needs_launch(args):
        check_run(args.task, methods, args.out, options)
        return launch(args.devices)
    with RichProgress() as ui:
        out, outcome = run_one(args.task, methods, args.out, options, ui, rerun=rerun)
    return show_run(out, outcome)


def _rerun(value: str | None, methods: list[str]) -> bool | set[str]:
    """--rerun: absent False, alone True, else the named methods (each one of --methods)."""
    if value is None:
        return False
    if value == "all":
        return True
    names = {m.strip() for m in value.split(",") if m.strip()}
    unknown = sorted(names - set(methods))
    if unknown:
        from experiments.errors import AdaptwiseError

        raise AdaptwiseError(f"--rerun {unknown[0]}: not one of --methods ({', '.join(methods)})")
    return names


def _cmd_climb(args, options) -> int:
    """`run --ladder`, `run --sweep` and `run --data-fractions` (adaptwise/planning/: ladder.py,
    sweep.py, learning_curve.py)."""
    from adaptwise.planning.targets import parse_budget, parse_target
    from experiments.errors import AdaptwiseError
    from experiments.task import load_task

    modes = [
        f
        for f, on in (
            ("--ladder", args.ladder),
            ("--sweep", args.sweep),
            ("--data-fractions", args.data_fractions),
        )
        if on
    ]
    if len(modes) > 1:
        raise AdaptwiseError(f"{' and '.join(modes)}: give one of them per run")
    if args.target and not args.ladder:
        raise AdaptwiseError("--target needs --ladder")
    if args.budget and args.data_fractions:
        raise AdaptwiseError("--budget applies to --ladder and --sweep, not --data-fractions")
    if args.ladder and args.methods != DEFAULT_METHODS:
        raise AdaptwiseError("--methods and --ladder: the ladder's methods come from the plan")
    budget_s = parse_budget(args.budget) if args.budget else None
    fractions = None
    if args.data_fractions:
        from adaptwise.planning.learning_curve import parse_fractions

        fractions = parse_fractions(args.data_fractions)
    sweep = None
    if args.sweep:
        from adaptwise.planning.sweep import parse_sweep

        sweep = parse_sweep(args.sweep)
    task = load_task(args.task)
    target = parse_target(args.target, task.kind) if args.target else None
    out = args.out or Path("runs") / task.folder_name
    from adaptwise.progress import RichProgress
    from experiments.run.runner import claim_run_folder

    claim_run_folder(out, task, record=False)

    with RichProgress() as ui:
        ui.log(headline(task, f"results -> {out}"))
        if args.ladder:
            from adaptwise.planning.ladder import run_ladder
            from adaptwise.planning.planner import make_plan

            plan = make_plan(
                task,
                limit=options.limit,
                target=target,
                budget_s=budget_s,
                model=options.model,
                log=ui.log,
                finetune_settings={
                    **(options.extra.get("finetune") or {}),
                    **({"seeds": options.seeds} if options.seeds else {}),  # time x seeds
                },
                precision=options.precision,
            )
            record = run_ladder(task, plan, out, options, target, budget_s, progress=ui)
        elif sweep:
            from adaptwise.planning.sweep import run_sweep

            method, grid = sweep
            record = run_sweep(task, method, grid, out, options, budget_s, progress=ui)
        else:
            from adaptwise.planning.learning_curve import run_learning_curve

            methods = method_list(args.methods)
            record = run_learning_curve(task, methods, fractions, out, options, progress=ui)
    from experiments.run_files import read_results

    if (read_results(out) or {}).get("methods"):
        show_report(out)
    _print_climb(record)
    print(f"Written: {out}/results.json, report.md, report.html")
    return 0


def _print_climb(record: dict) -> None:
    if "rungs" in record:
        from experiments.report.formatting import estimate_cell, interval_text

        for r in record["rungs"]:
            print(
                f"  {r['method']:<22} {r.get('reason') or r['status']:<48} "
                f"{interval_text(r.get('interval')):<24} "
                f"est/measured {estimate_cell(r.get('estimate_s'), r.get('measured_s'))}"
            )
    elif "trials" in record:
        for t in record["trials"]:
            loss = t.get("best_val_loss")
            shown = "-" if loss is None else f"{loss:.4f}"
            print(f"  #{t.get('rank') or '-'} {t['name']:<40} val loss {shown}  {t['reason']}")
    else:
        for m, v in record.get("verdicts", {}).items():
            print(f"  {m}: {v.get('message')}")
    if record.get("message"):
        print(record["message"])


def cmd_demo(args) -> int:
    from adaptwise.progress import RichProgress
    from experiments.errors import AdaptwiseError

    tasks = sorted(DEMO_DIR.glob("*/task.yaml"))
    if not tasks:
        raise AdaptwiseError(f"no demo tasks found in {DEMO_DIR}; run from a clone of adaptwise")
    options = run_options(args)
    methods = method_list(args.methods)
    runs = []
    with RichProgress() as ui:
        for task_path in tasks:
            runs.append(run_one(task_path, methods, args.out / task_path.parent.name, options, ui))
    return max(show_run(out, outcome) for out, outcome in runs)


def cmd_setup(args) -> int:
    import time

    from experiments.embeddings import Embedder
    from experiments.models import resolve_checkpoint

    start = time.perf_counter()
    checkpoint, name = resolve_checkpoint(args.model)
    print(f"chat model {name}: {checkpoint}")
    vectors = Embedder().encode(["adaptwise setup check"])
    print(f"embedding model all-MiniLM-L6-v2: {vectors.shape[1]} dimensions")
    print(f"ready in {time.perf_counter() - start:.1f} s")
    return 0
