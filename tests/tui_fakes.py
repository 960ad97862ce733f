"""Stand-ins for the TUI's child-process jobs: fixed events, a clock the events move, and no
model, so that snapshots depend on neither timings nor the machine."""

from __future__ import annotations

import threading

PLAN = {
    "task": "support-intents",
    "model": "SmolLM2-135M-Instruct",
    "machine": {"cpus": 2, "ram_gb": 16.0, "gpu_name": None, "gpu_memory_gb": None},
    "rows_scored": 8,
    "target": None,
    "budget_s": None,
    "total_s": 1015.0,
    "steps": [
        {
            "method": "zero-shot",
            "order": 1,
            "runnable": True,
            "estimate_s": {"prepare": 0.0, "score": 9.6, "total": 9.6},
            "cumulative_s": 9.6,
            "prompt_tokens": 71.5,
            "peak_memory_gb": 1.232,
            "fits": True,
            "fit_change": None,
            "in_budget": None,
            "notes": [],
        },
        {
            "method": "few-shot-embedding",
            "order": 2,
            "runnable": True,
            "estimate_s": {"prepare": 13.6, "score": 25.2, "total": 38.8},
            "cumulative_s": 48.4,
            "prompt_tokens": 210.8,
            "peak_memory_gb": 1.924,
            "fits": True,
            "fit_change": None,
            "in_budget": None,
            "notes": [],
        },
        {
            "method": "lora",
            "order": 3,
            "runnable": True,
            "estimate_s": {"prepare": 957.0, "score": 9.6, "total": 966.6},
            "cumulative_s": 1015.0,
            "prompt_tokens": 71.5,
            "peak_memory_gb": 5.57,
            "fits": True,
            "fit_change": None,
            "in_budget": None,
            "notes": [],
        },
        {
            "method": "full-ft",
            "order": 4,
            "runnable": True,
            "estimate_s": {"prepare": 1500.0, "score": 9.6, "total": 1509.6},
            "cumulative_s": None,
            "prompt_tokens": 71.5,
            "peak_memory_gb": 18.2,
            "fits": False,
            "fit_change": "use a machine with 19 GB of memory",
            "in_budget": None,
            "notes": [],
        },
    ],
    "ruled_out": [],
    "probe": {"measured_at": "2026-01-01T00:00:00+00:00", "cached": True},
}


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeJob:
    """Yields `events` (a {"event": "_tick", "s": N} moves the clock instead), then waits
    until closed, as a running child would; chat requests get fixed replies."""

    def __init__(self, events=(), clock: FakeClock | None = None, replies=(), block=True):
        self._events = list(events)
        self.block = block
        self.clock = clock
        self.replies = list(replies)
        self.sent: list[dict] = []
        self.closed = threading.Event()
        self.exhausted = threading.Event()

    def events(self):
        for event in self._events:
            if event["event"] == "_tick":
                self.clock.now += event["s"]
                continue
            yield event
        self.exhausted.set()
        if self.block:
            self.closed.wait(30)

    def send(self, message: dict) -> None:
        self.sent.append(message)

    def next_event(self) -> dict:
        return self.replies.pop(0)

    def interrupt(self) -> None:
        self.closed.set()

    def close(self, timeout: float = 0) -> None:
        self.closed.set()


class FakeBackends:
    def __init__(self, plan_events=None, run_job=None, chat_job=None, ship_job=None):
        default = [{"event": "plan", "plan": PLAN}]
        self.plan_events = plan_events if plan_events is not None else default
        self.run_job = run_job or FakeJob()
        self.chat_job = chat_job or FakeJob()
        self.ship_job = ship_job  # a function (request) -> job
        self.plan_jobs: list[FakeJob] = []

    def plan(self, request: dict) -> FakeJob:
        job = FakeJob(self.plan_events, block=False)
        self.plan_jobs.append(job)
        return job

    def run(self, request: dict) -> FakeJob:
        self.run_request = request
        return self.run_job

    def ship(self, request: dict):
        self.ship_request = request
        return self.ship_job(request) if self.ship_job else FakeJob()

    def chat(self) -> FakeJob:
        return self.chat_job


class InProcessJob:
    """Runs one of adaptwise/tui/jobs.py's job functions in a thread of this process (so that a
    test's monkeypatch reaches it), its events through a queue, as a child would send them."""

    def __init__(self, job, request: dict):
        import queue

        self.queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, args=(job, request), daemon=True)
        self.thread.start()

    def _run(self, job, request: dict) -> None:
        try:
            job(request, self)
        except Exception as exc:  # the child's main() turns each into one error event
            self.emit("error", message=str(exc))
        finally:
            self.queue.put(None)

    def emit(self, event: str, **fields) -> None:
        self.queue.put({"event": event, **fields})

    def events(self):
        while (event := self.queue.get()) is not None:
            yield event

    def interrupt(self) -> None:
        pass

    def close(self, timeout: float = 0) -> None:
        self.thread.join(timeout or None)
