"""The recommendation: the ladder with its reasons, the plan on this machine (peak memory,
whether it fits, estimated time), what is ruled out, warnings; run it."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from adaptwise.planning.planner import runnable
from adaptwise.tui.shown import shown
from advisor.recommend import recommend
from experiments.report.formatting import format_short


class RecommendationScreen(Screen):
    BINDINGS = [
        Binding("r", "run", "Run the ladder"),
        Binding("e,left", "edit", "Edit answers"),
        Binding("s", "save", "Save answers"),
    ]

    def compose(self) -> ComposeResult:
        yield Static("", id="heading", classes="title")
        with VerticalScroll(id="body"):
            yield Static("", id="ladder")
            yield Static("", id="plan-title", classes="section")
            yield DataTable(id="plan", cursor_type="none", zebra_stripes=True)
            yield Static("", id="plan-status", classes="hint")
            yield Static("", id="ruled")
            yield Static("", id="warnings")
        yield Static("", id="saved", classes="hint")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_advice()

    def on_screen_resume(self) -> None:
        self.refresh_advice()

    def refresh_advice(self) -> None:
        session = self.app.session
        rec = recommend(session.answers)
        session.recommendation = rec
        self.runnable = [m for m in rec.methods if runnable(m)]
        hardware = session.answers.hardware()
        self.query_one("#heading", Static).update(
            f"Recommendation for {shown(session.task.name)} · {shown(session.answers.model)} · "
            f"{hardware}"
        )
        lines = ["[b]Try, in this order[/b]"]
        for i, rung in enumerate(rec.ladder, 1):
            tag = "" if rung.method in self.runnable else "  [dim](not available in this build)[/]"
            lines.append(f" {i}. [b green]{rung.method}[/]{tag}")
            lines += [f"      - {reason}" for reason in rung.reasons]
        self.query_one("#ladder", Static).update("\n".join(lines))
        ruled = ["", "[b]Ruled out[/b]"]
        ruled += [f" [red]{r.method}[/]: {'; '.join(r.reasons)}" for r in rec.ruled_out]
        self.query_one("#ruled", Static).update("\n".join(ruled))
        warn = ["", "[b]Watch out[/b]"] + [f" ! {w}" for w in rec.warnings] if rec.warnings else []
        if rec.hosting:
            warn += ["", "[b]Per month at your volume[/b]", f" {rec.hosting}"]
        self.query_one("#warnings", Static).update("\n".join(warn))
        limit = session.limit
        rows = f"the first {limit} eval rows" if limit else "every eval row"
        self.query_one("#saved", Static).update(
            f"r: run {', '.join(self.runnable)} on {rows} · e: edit answers · s: save answers"
        )
        key = (session.answers, session.limit, str(session.task.path))
        if getattr(self, "planned_for", None) != key:
            self.planned_for = key
            session.plan = None
            self.query_one("#plan-title", Static).update(
                f"[b]Plan on this machine[/b] ({rows}): peak memory and estimated time"
            )
            self.query_one("#plan-status", Static).update(
                "Estimating: timing the model on this machine (once, under 30 s; cached)..."
            )
            self.estimate_plan(
                {
                    "task": str(session.task.path),
                    "answers": session.answers.to_dict(),
                    "limit": session.limit,
                }
            )

    @work(thread=True, exclusive=True, group="plan")
    def estimate_plan(self, request: dict) -> None:
        """The planner runs in a child process; this thread only waits for its events."""
        job = self.app.backends.plan(request)
        try:
            for event in job.events():
                kind = event.get("event")
                if kind == "plan":
                    self.app.call_from_thread(self.show_plan, event["plan"])
                elif kind == "error":
                    self.app.call_from_thread(
                        self.plan_status, f"[red]No estimate:[/] {shown(event['message'])}"
                    )
        finally:
            job.close()

    def plan_status(self, text: str) -> None:
        self.query_one("#plan-status", Static).update(text)

    def show_plan(self, plan: dict) -> None:
        self.app.session.plan = plan
        machine = plan["machine"]
        where = (
            f"{machine.get('gpu_name') or 'GPU'} {machine['gpu_memory_gb']:g} GB"
            if machine.get("gpu_memory_gb")
            else f"CPU, {machine['cpus']} cores, {machine['ram_gb']:.0f} GB RAM"
        )
        self.query_one("#plan-title", Static).update(
            f"[b]Plan on this machine[/b] ({where}; {plan['rows_scored']} eval rows)"
        )
        table = self.query_one("#plan", DataTable)
        table.clear(columns=True)
        table.add_columns(
            "#", "method", "peak memory", "fits here", "prepare", "score", "total", "cumulative"
        )
        for step in plan["steps"]:
            est = step["estimate_s"]
            fits = "yes" if step["fits"] else f"no: {step['fit_change'] or 'too large'}"
            table.add_row(
                str(step["order"]),
                step["method"] + ("" if step["runnable"] else " *"),
                f"{step['peak_memory_gb']:.2f} GB",
                fits,
                format_short(est["prepare"]),
                format_short(est["score"]),
                format_short(est["total"]),
                format_short(step["cumulative_s"]),
            )
        probe = plan.get("probe") or {}
        how = "cached timing probe" if probe.get("cached") else "timing probe just run"
        missing = any(not s["runnable"] for s in plan["steps"])
        note = " · * not runnable in this build" if missing else ""
        self.plan_status(
            f"From the memory estimator and a {how} of the model here "
            f"({probe.get('measured_at', '?')}); `adaptwise plan` prints the same.{note}"
        )

    def action_run(self) -> None:
        self.app.show_run(self.runnable)

    def action_edit(self) -> None:
        self.app.pop_screen()

    def action_save(self) -> None:
        from advisor.questions import dump_answers
        from experiments.atomic import write_text_atomic

        session = self.app.session
        path = session.out_root / session.task.folder_name / "answers.yaml"
        write_text_atomic(path, dump_answers(session.answers))
        self.query_one("#saved", Static).update(
            f"Saved {path}: `adaptwise advise --answers {path}` gives the same advice."
        )
