"""The runner's and the trainer's typed progress events (experiments/progress_events.py): each
prints the very line the terminal printed before events, and travels to the TUI as fields."""

import json
from types import SimpleNamespace

from experiments.progress_events import (
    MethodFailed,
    MethodFinished,
    MethodStarted,
    TrainingStep,
    events_of,
    from_fields,
    to_fields,
)

EVENTS = [
    MethodStarted("support-intents", "lora"),
    TrainingStep("lora", 12, 48, "validation", 1.2345),
    TrainingStep("raft", 3, 9, "train", 1.50123),
    MethodFinished("lora"),
    MethodFailed("zero-shot", "out of memory", "needs 9 GB"),
]


def test_each_event_is_the_line_it_stands_for():
    assert [e.text() for e in EVENTS] == [
        "support-intents: preparing lora",
        "lora: step 12/48 validation loss 1.2345",
        "raft: step 3/9 train loss 1.5012",
        None,  # the terminal's bar already shows a method's end
        "zero-shot: out of memory; needs 9 GB (recorded; going on)",
    ]


def test_events_travel_as_json_fields_and_come_back_equal():
    for event in EVENTS:
        fields = json.loads(json.dumps(to_fields(event)))
        assert fields["event"] == event.kind and from_fields(fields) == event
    assert to_fields(EVENTS[1]) == {
        "event": "training_step",
        "method": "lora",
        "step": 12,
        "steps": 48,
        "split": "validation",
        "loss": 1.2345,
    }
    # a log line worded like an event is not one
    assert from_fields({"event": "log", "message": "lora: step 1/2 train loss 1.0000"}) is None


def test_the_terminal_prints_each_events_line():
    from adaptwise.progress import RichProgress

    ui, lines = RichProgress(), []
    ui.log = lines.append
    for event in EVENTS:
        ui.event(event)
    assert lines == [e.text() for e in EVENTS if e.text() is not None]


def test_a_progress_without_events_gets_their_lines_in_its_log():
    lines = []
    emit = events_of(SimpleNamespace(log=lines.append))  # a caller's own, made before events
    for event in EVENTS:
        emit(event)
    assert lines == [e.text() for e in EVENTS if e.text() is not None]


def test_the_trainers_callback_emits_each_logged_loss_as_a_step():
    from finetune.sft_trainer import step_callback

    got = []
    callback = step_callback("raft", got.append)
    state = SimpleNamespace(global_step=3, max_steps=9)
    callback.on_log(None, state, None, logs={"loss": 1.25, "learning_rate": 1e-4})
    callback.on_log(None, state, None, logs={"train_runtime": 2.0})  # the closing summary
    callback.on_evaluate(None, state, None, metrics={"eval_loss": 0.75})
    assert got == [
        TrainingStep("raft", 3, 9, "train", 1.25),
        TrainingStep("raft", 3, 9, "validation", 0.75),
    ]
