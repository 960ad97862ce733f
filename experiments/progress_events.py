"""Typed progress events: what the runner and the trainer tell their progress object, besides
the rows they score (its `start`/`advance`/`finish`) and free text (its `log`).

A progress object's `event(e)` receives them. The terminal (adaptwise/progress.py) prints each
event's `text()`, the very line printed before events existed, so the README's and the tests'
quotes hold; the silent progress shows nothing; the TUI's job process (adaptwise/tui/jobs.py)
sends `to_fields()` as one JSON event and the run screen reads its fields, never its text.
No UI imports here: the core emits these."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import ClassVar


@dataclass(frozen=True)
class MethodStarted:
    """A method begins: loading the model and preparing (training, for fine-tuning)."""

    kind: ClassVar[str] = "method_started"
    task: str
    method: str

    def text(self) -> str | None:
        return f"{self.task}: preparing {self.method}"


@dataclass(frozen=True)
class TrainingStep:
    """One logged optimiser step of a training: its train or validation loss."""

    kind: ClassVar[str] = "training_step"
    method: str  # the run's method name (raft trains as lora but is named raft)
    step: int
    steps: int
    split: str  # "train" | "validation"
    loss: float

    def text(self) -> str | None:
        return f"{self.method}: step {self.step}/{self.steps} {self.split} loss {self.loss:.4f}"


@dataclass(frozen=True)
class MethodFinished:
    """A method's rows are scored (its results are being recorded)."""

    kind: ClassVar[str] = "method_finished"
    method: str

    def text(self) -> str | None:
        return None  # the terminal's bar already shows it: no line


@dataclass(frozen=True)
class MethodFailed:
    """A method failed and the run goes on without it (recorded in results.json)."""

    kind: ClassVar[str] = "method_failed"
    method: str
    reason: str  # "failed" (a served model's request) | "out of memory"
    message: str

    def text(self) -> str | None:
        return f"{self.method}: {self.reason}; {self.message} (recorded; going on)"


ProgressEvent = MethodStarted | TrainingStep | MethodFinished | MethodFailed
KINDS = {cls.kind: cls for cls in (MethodStarted, TrainingStep, MethodFinished, MethodFailed)}


def to_fields(event: ProgressEvent) -> dict:
    """The event as JSON-ready fields, its kind under "event" (the TUI job's wire format)."""
    return {"event": event.kind, **asdict(event)}


def from_fields(fields: dict) -> ProgressEvent | None:
    """The event `to_fields` made, None for any other kind (a log line, a bar's start)."""
    cls = KINDS.get(fields.get("event"))
    if cls is None:
        return None
    return cls(**{k: v for k, v in fields.items() if k != "event"})


def log_events(log: Callable[[str], object]) -> Callable[[ProgressEvent], None]:
    """An event sink that logs each event's line: for a log that knows no events."""

    def emit(event: ProgressEvent) -> None:
        line = event.text()
        if line is not None:
            log(line)

    return emit


def events_of(progress) -> Callable[[ProgressEvent], None]:
    """Where `progress` takes events: its `event`, else its `log` gets each event's line (a
    progress object of the caller's own, written before events, sees the same lines)."""
    event = getattr(progress, "event", None)
    return event if event is not None else log_events(progress.log)
