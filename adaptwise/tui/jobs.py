"""Work the TUI hands to a child process, so that importing torch and running models never
holds the UI process's GIL: `python -m adaptwise.tui.jobs` reads one JSON request on stdin and
writes JSON-lines events on stdout.

- {"job": "plan", "task", "answers", "limit"} -> log..., {"event": "plan", "plan": {...}}
- {"job": "run", "task", "methods", "out", "limit"} -> start / advance / finish / log events
  and the typed ones of experiments/progress_events.py (method_started, training_step,
  method_finished, method_failed, with their fields), then done; SIGINT stops it between two
  Python steps ({"event": "cancelled"}), keeping the methods that finished (the runner writes
  its files after each one). done carries the best method and the p-values of the run's own
  analysis (experiments/report/analysis.py significance), for the results screen.
- {"job": "ship", "run_dir", "method"} -> log events, start / advance of the verified rows,
  then {"event": "shipped", "shipped": {...}}: experiments/export/ship.py's export, serve and
  verify.
- {"job": "chat"}, then one request per line: {"load": {"run_dir", "method"}} -> ready;
  {"messages": [...], "max_new_tokens": N} -> reply.

Every job ends with an {"event": "error", "message"} line on an AdaptwiseError.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


class Events:
    """JSON lines on the process's original stdout; fd 1 is pointed at stderr so that
    libraries printing to stdout cannot break the stream."""

    def __init__(self):
        self.stream = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
        os.dup2(2, 1)
        sys.stdout = sys.stderr

    def emit(self, event: str, **fields) -> None:
        self.stream.write(json.dumps({"event": event, **fields}) + "\n")
        self.stream.flush()


class EventProgress:
    """The runner's RunProgress protocol, as events; its typed progress events
    (experiments/progress_events.py) travel as their fields, for the run screen to read."""

    def __init__(self, events: Events):
        self.events = events

    def start(self, label: str, total: int) -> None:
        self.events.emit("start", label=label, total=total)

    def advance(self, n: int) -> None:
        self.events.emit("advance", n=n)

    def finish(self) -> None:
        self.events.emit("finish")

    def log(self, message: str) -> None:
        self.events.emit("log", message=str(message))

    def event(self, event) -> None:
        from experiments.progress_events import to_fields

        self.events.emit(**to_fields(event))


def plan_job(request: dict, events: Events) -> None:
    from adaptwise.planning.planner import make_plan
    from advisor.questions import parse_answers
    from experiments.task import load_task

    task = load_task(Path(request["task"]))
    answers = parse_answers(request.get("answers") or {})
    plan = make_plan(
        task,
        answers,
        limit=request.get("limit"),
        log=lambda m: events.emit("log", message=str(m)),
    )
    events.emit("plan", plan=plan.to_dict())


def run_job(request: dict, events: Events) -> None:
    from experiments.context import RunOptions
    from experiments.run.runner import run_task
    from experiments.task import load_task

    task = load_task(Path(request["task"]))
    results = run_task(
        task,
        list(request["methods"]),
        Path(request["out"]),
        RunOptions(limit=request.get("limit")),
        progress=EventProgress(events),
    )
    events.emit("done", analysis=_significance(results))


def _significance(results: dict) -> dict | None:
    """The best method and the p-values of the analysis the run's reports were made from (None
    when this run wrote nothing: the results screen analyses the files itself)."""
    from experiments.report.analysis import significance

    analysis = results.get("_analysis")
    return significance(analysis) if analysis is not None else None


def ship_job(request: dict, events: Events) -> None:
    from experiments.export.ship import export_and_verify

    progress = EventProgress(events)
    shipped = export_and_verify(
        Path(request["run_dir"]),
        request["method"],
        log=progress.log,
        start=progress.start,
        progress=progress.advance,
    )
    events.emit("shipped", shipped=shipped.to_dict())


def chat_job(request: dict, events: Events) -> None:
    from experiments.run.chat import load_for_method

    model = None
    for line in sys.stdin:
        message = json.loads(line)
        try:
            if "load" in message:
                spec = message["load"]
                model = load_for_method(Path(spec["run_dir"]), spec["method"], progress=_quiet)
                events.emit("ready", name=model.name)
            elif model is None:
                events.emit("error", message="choose a method first")
            else:
                text = model.reply(message["messages"], message.get("max_new_tokens", 128))
                events.emit("reply", text=text)
        except _errors() as exc:
            events.emit("error", message=str(exc))


JOBS = {"plan": plan_job, "run": run_job, "ship": ship_job, "chat": chat_job}


def main() -> int:
    from experiments.startup import start_process

    start_process()  # first: offline, no hub kernels, before any library is imported
    events = Events()
    from experiments.errors import describe_failure

    debug = os.environ.get("ADAPTWISE_DEBUG", "") not in ("", "0")
    request = json.loads(sys.stdin.readline())
    try:
        JOBS[request["job"]](request, events)
    except KeyboardInterrupt:
        events.emit("cancelled")
        return 130
    except Exception as exc:  # one line for the UI; the traceback on stderr only when asked
        text, code = describe_failure(exc)
        if debug and code == 1:
            import traceback

            traceback.print_exc()
        events.emit("error", message=text)
        return code
    return 0


def _quiet(message: str) -> None:
    print(message, file=sys.stderr)


def _errors():
    from experiments.errors import AdaptwiseError

    return (AdaptwiseError, OSError, ValueError)


if __name__ == "__main__":
    sys.exit(main())
