"""`adaptwise predict SOURCE --method NAME --input rows.jsonl --out predictions.jsonl`: a run's
or an export's method applied to new, unlabelled rows (experiments/export/predict.py).

Nothing heavy is imported at module level (`adaptwise --help` stays fast)."""

from __future__ import annotations

from pathlib import Path


def register(subparsers, add_run_options) -> None:
    predict = subparsers.add_parser(
        "predict",
        help="apply a run's or an export's method to new, unlabelled rows",
        description="Predict new rows (JSON Lines with an input and an optional id) with one "
        "method of a run folder or an export folder, with the prompts and scoring the run "
        "measured: in process, or through a served model (--model openai:NAME). Writes one "
        "JSON line per row (id, input, output; a classifier's label scores), a batch at a time; "
        "rerunning resumes, redoing no finished row. A bad row gets one line FILE:LINE and the "
        "others go on (exit status 2 at the end).",
    )
    predict.add_argument(
        "source", type=Path, metavar="SOURCE", help="a run folder or an export folder"
    )
    predict.add_argument("--method", help="the run's method (an export knows its own)")
    predict.add_argument(
        "--input", type=Path, required=True, help="JSON Lines rows: {'input': ..., 'id': ...}"
    )
    predict.add_argument(
        "--out", type=Path, required=True, help="the predictions file (JSON Lines; resumable)"
    )
    predict.add_argument(
        "--model", help="a served model, as openai:NAME (default: the method's own, in process)"
    )
    predict.add_argument(
        "--base-url", help="the endpoint, e.g. http://127.0.0.1:8080/v1 (default: OPENAI_BASE_URL)"
    )
    predict.add_argument(
        "--batch-size", type=int, default=16, help="rows per batch (default: %(default)s)"
    )
    predict.set_defaults(
        handler=cmd_predict,
        interrupted="the rows written so far are kept: the same command goes on from there",
    )


def cmd_predict(args) -> int:
    import sys

    from adaptwise.progress import RichProgress
    from experiments.errors import AdaptwiseError
    from experiments.export.predict import load_predictor
    from experiments.export.predict_files import open_output, predict_file, read_input
    from experiments.plain_text import plain

    if args.batch_size < 1:
        raise AdaptwiseError(f"--batch-size {args.batch_size}: give 1 or more")
    inputs = read_input(args.input)
    for line in inputs.bad:  # whole lines, never wrapped: FILE:LINE leads each
        print(plain(line, one_line=True), file=sys.stderr, flush=True)
    ui = RichProgress()  # its bars start with the first batch; its log prints meanwhile
    predictor = load_predictor(
        args.source, args.method, args.model, args.base_url, args.batch_size, log=ui.log
    )
    try:
        done = open_output(args.out, predictor, [args.input, Path(predictor.source)])
        ui.log(f"predicting with {predictor.describe}")
        with ui:
            outcome = predict_file(predictor, inputs, args.out, done, ui)
    finally:
        predictor.close()
    summary = f"{outcome.written} rows predicted in {outcome.seconds:.1f} s"
    if outcome.written:
        summary += f" ({outcome.rows_per_s:.1f} rows/s)"
    if outcome.kept:
        summary += f", {outcome.kept} kept from before"
    print(plain(f"Written: {outcome.out}: {summary}", one_line=True), file=sys.stderr)
    if outcome.bad:
        print(
            plain(
                f"adaptwise: error: {len(outcome.bad)} bad rows in {args.input} were skipped "
                "(their lines above); fix them and rerun: finished rows are kept",
                one_line=True,
            ),
            file=sys.stderr,
        )
        return 2
    return 0
