"""The results: the comparison, whether it agrees with the advice, and where methods differ;
`e` exports the winner, serves it with llama-server and verifies it (experiments/export/ship.py,
in a child process: adaptwise/tui/jobs.py), showing its progress and outcome."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from adaptwise.tui.shown import shown
from advisor.verdict import verdict
from experiments.errors import AdaptwiseError
from experiments.report.formatting import METRIC_TITLES
from experiments.run_files import PREDICTIONS, read_records, read_results


class ResultsScreen(Screen):
    BINDINGS = [
        Binding("d", "toggle_disagreements", "All rows / disagreements"),
        Binding("b", "back", "Back to the advice"),
        Binding("c", "chat", "Chat with a model"),
        Binding("e", "export_verify", "Export and verify"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self):
        super().__init__()
        self.only_disagreements = True
        self.winner: str | None = None  # the method the report's analysis ranks best
        self.ship_job = None
        self.shipping = False
        self.verify_rows = (0, 0)  # verified, of
        self.analysed = False  # whether the winner is known (the run's analysis, or its files')
        self.ship_waits = False  # `e` pressed before it was

    def compose(self) -> ComposeResult:
        yield Static("", id="heading", classes="title")
        yield DataTable(id="summary", cursor_type="row", zebra_stripes=True)
        yield Static("", id="verdict")
        yield Static("", id="ship")
        yield Static("", id="examples-title", classes="title")
        yield DataTable(id="examples", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        session = self.app.session
        out = session.out_dir
        self.query_one("#ship", Static).display = False
        try:  # the files the run just wrote, through their one reader
            self.results = read_results(out)
            self.predictions = read_records(out / PREDICTIONS)
            if self.results is None:
                raise AdaptwiseError(f"{out}: no readable results.json")
        except AdaptwiseError as exc:  # the folder changed since the run wrote it
            self.results, self.predictions = {"task": {"metric": ""}, "methods": {}}, []
            self.query_one("#heading", Static).update(f"[red]{shown(str(exc))}[/]")
            return
        task = self.results["task"]
        self.query_one("#heading", Static).update(
            f"{shown(task['name'])}: {task['n_eval']} eval rows · results in {shown(out)}"
        )
        self.fill_summary()
        self.fill_examples()
        self.query_one("#examples", DataTable).focus()
        if session.analysis is not None:  # the analysis the run's reports were made from
            self.show_verdict(session.analysis)
        else:  # a run that brought none (cancelled, or stopped by an error): its files'
            self.query_one("#verdict", Static).update("[dim]Analysing the run...[/]")
            self.analyse()

    @work(thread=True, exclusive=True, group="analysis")
    def analyse(self) -> None:
        """The report's analysis of the run folder's files, off the UI thread."""
        from experiments.report.analysis import analyse, significance

        made = significance(analyse(self.results, self.predictions))
        self.app.call_from_thread(self.show_verdict, made)

    def show_verdict(self, made: dict) -> None:
        """The verdict on the advice the user answered for, with the report's significance:
        each method's paired-test p-value against zero-shot and against the best method, and
        the methods whose lead holds on some seeds only. Keeps the best method, the winner
        that `e` exports."""
        self.winner = made["best"]
        self.analysed = True
        p_values = made["p_values"]
        judged = verdict(
            self.app.session.recommendation,
            self.results,
            p_values["zero-shot"],
            p_values["best"],
            made.get("unsteady"),
        )
        if judged:
            style = "green" if judged.holds else "yellow"
            self.query_one("#verdict", Static).update(f"[{style}]{judged.text}[/]")
        else:
            self.query_one("#verdict", Static).update("")
        if self.ship_waits:  # `e` was pressed while the analysis ran
            self.ship_waits = False
            self.shipping = False
            self.action_export_verify()

    def fill_summary(self) -> None:
        table = self.query_one("#summary", DataTable)
        methods = self.results["methods"]
        metric_names = list(next(iter(methods.values()))["metrics"]) if methods else []
        table.add_columns(
            "method",
            *[METRIC_TITLES.get(m, m) for m in metric_names],
            "s / example",
            "prompt tok",
            "peak MB",
        )
        for name, m in methods.items():
            table.add_row(
                shown(name),
                *[f"{m['metrics'][k]:.3f}" for k in metric_names],
                f"{m['inference_s_per_example']:.2f}",
                f"{m['prompt_tokens_mean']:.0f}",
                f"{m['peak_memory_mb']:.0f}",
            )

    def fill_examples(self) -> None:
        table = self.query_one("#examples", DataTable)
        table.clear(columns=True)
        methods = list(self.results["methods"])
        by_row: dict[str, dict] = {}
        golds: dict[str, str] = {}
        for p in self.predictions:
            by_row.setdefault(p["id"], {})[p["method"]] = p
            golds[p["id"]] = p["gold"]
        table.add_columns("id", "gold", *(shown(m) for m in methods))
        listed = 0
        for row_id, preds in by_row.items():
            verdicts = {preds[m]["correct"] for m in methods if m in preds}
            if self.only_disagreements and len(verdicts) < 2:
                continue
            cells = [
                ("✓ " if preds[m]["correct"] else "✗ ") + shown(_short(preds[m]["output"]))
                if m in preds
                else "-"
                for m in methods
            ]
            table.add_row(shown(row_id), shown(_short(golds[row_id])), *cells)
            listed += 1
        which = "where methods disagree" if self.only_disagreements else "all rows"
        self.query_one("#examples-title", Static).update(
            f"Per example, {which}: {listed} of {len(by_row)} rows (d toggles)"
        )

    def action_toggle_disagreements(self) -> None:
        self.only_disagreements = not self.only_disagreements
        self.fill_examples()

    def action_chat(self) -> None:
        methods = list(self.results["methods"])
        summary = self.query_one("#summary", DataTable)
        row = summary.cursor_row if summary.row_count else 0
        chosen = methods[row] if 0 <= row < len(methods) else None
        self.app.show_chat(methods, chosen if summary.has_focus else None)

    def action_back(self) -> None:
        self.app.back_to_recommendation()

    # Export and verify the winner (experiments/export/ship.py in the child process).
    def action_export_verify(self) -> None:
        if self.shipping:
            return
        if not self.analysed and self.results["methods"]:
            self.shipping = self.ship_waits = True
            self.show_ship(None, "waiting for the run's analysis...")
            return
        if self.winner is None:
            self.show_ship("yellow", "no method has a score to rank: nothing to export")
            return
        self.shipping = True
        self.verify_rows = (0, 0)
        self.show_ship(None, "starting...")
        self.run_ship({"run_dir": str(self.app.session.out_dir), "method": self.winner})

    @work(thread=True, exclusive=True, group="ship")
    def run_ship(self, request: dict) -> None:
        self.ship_job = self.app.backends.ship(request)
        try:
            for event in self.ship_job.events():
                self.app.call_from_thread(self.ship_event, event)
        finally:
            self.ship_job.close()

    def ship_event(self, event: dict) -> None:
        kind = event.get("event")
        self.shipping = kind not in ("shipped", "error", "cancelled")
        if kind == "log":
            self.show_ship(None, shown(event["message"]))
        elif kind == "start":
            self.verify_rows = (0, int(event["total"]))
            self.show_ship(None, f"verifying 0/{event['total']} rows on llama-server")
        elif kind == "advance":
            done, total = self.verify_rows
            self.verify_rows = (done + int(event["n"]), total)
            self.show_ship(None, f"verifying {self.verify_rows[0]}/{total} rows on llama-server")
        elif kind == "shipped":
            shipped = event["shipped"]
            style = {True: "green", False: "red"}.get(shipped["passed"], "yellow")
            lines = [shown(line) for line in shipped["lines"]]
            self.show_ship(style, "\n".join(lines))
        elif kind == "error":
            self.show_ship("red", shown(event["message"]))
        elif kind == "cancelled":
            self.show_ship("yellow", "cancelled")

    def show_ship(self, style: str | None, text: str) -> None:
        box = self.query_one("#ship", Static)
        box.display = True
        metric = self.results["task"]["metric"]
        head = "Export and verify"
        if self.winner is not None:
            head += f" {shown(self.winner)}, the best {shown(metric)}"
        body = f"[{style}]{text}[/]" if style else text
        box.update(f"[bold]{head}[/]\n{body}")

    def on_unmount(self) -> None:
        if self.ship_job is not None and self.shipping:
            self.ship_job.interrupt()


def _short(text: str, width: int = 24) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"
