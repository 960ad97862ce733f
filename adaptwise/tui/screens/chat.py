"""Chat with one method's model after a run: the base model for prompting and RAG methods,
the trained adapter or model for fine-tuned ones (experiments/run/chat.py, in a child process;
a worker thread waits for each answer so the UI stays responsive)."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, OptionList, RichLog, Static
from textual.widgets.option_list import Option

from adaptwise.tui.shown import shown


class ChatScreen(Screen):
    BINDINGS = [
        Binding("escape", "back", "Back to the results"),
        Binding("ctrl+r", "reset", "New conversation"),
        Binding("tab", "app.focus_next", "Methods / message", show=False),
    ]

    def __init__(self, methods: list[str], chosen: str | None = None, max_new_tokens: int = 128):
        super().__init__()
        self.methods = methods
        self.chosen = chosen
        self.max_new_tokens = max_new_tokens
        self.messages: list[dict] = []
        self.model_name: str | None = None
        self.busy = False
        self.job = None

    def compose(self) -> ComposeResult:
        yield Static("Chat with a method's model", id="chat-title", classes="title")
        with Horizontal(id="chat-body"):
            yield OptionList(*[Option(m, id=m) for m in self.methods], id="chat-methods")
            with Vertical(id="chat-main"):
                yield RichLog(id="chat-log", markup=True, wrap=True)
                yield Input(placeholder="Type a message and press Enter", id="chat-input")
        yield Static(
            "Enter on a method loads its model · Enter in the box sends · Tab switches · "
            "Ctrl+R new conversation · Esc back",
            id="chat-hint",
            classes="hint",
        )
        yield Footer()

    def on_mount(self) -> None:
        methods = self.query_one("#chat-methods", OptionList)
        if self.chosen in self.methods:
            methods.highlighted = self.methods.index(self.chosen)
            self.load(self.chosen)
        else:
            methods.focus()

    def on_unmount(self) -> None:
        if self.job is not None:
            self.job.close(timeout=2.0)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.load(event.option.id)

    def load(self, method: str) -> None:
        if self.busy:
            return
        self.chosen, self.messages, self.model_name = method, [], None
        self.write(f"[dim]Loading the model of {shown(method)}...[/]")
        self.busy = True
        self.query_one("#chat-input", Input).focus()
        self.ask({"load": {"run_dir": str(self.app.session.out_dir), "method": method}})

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        if self.busy or self.model_name is None:
            self.write("[yellow]Wait for the model (or choose a method first).[/]")
            return
        event.input.value = ""
        self.messages.append({"role": "user", "content": text})
        self.write(f"[b cyan]you>[/] {shown(text)}")
        self.busy = True
        self.ask({"messages": list(self.messages), "max_new_tokens": self.max_new_tokens})

    @work(thread=True, group="chat")
    def ask(self, request: dict) -> None:
        """Send one request to the chat process and wait (in this thread) for its answer."""
        if self.job is None:
            self.job = self.app.backends.chat()
        self.job.send(request)
        event = self.job.next_event()
        self.app.call_from_thread(self.answered, event)

    def answered(self, event: dict) -> None:
        self.busy = False
        kind = event.get("event")
        if kind == "ready":
            self.model_name = event["name"]
            self.query_one("#chat-title", Static).update(f"Chat with {shown(event['name'])}")
            self.write(f"[green]Ready:[/] {shown(event['name'])}")
        elif kind == "reply":
            self.messages.append({"role": "assistant", "content": event["text"]})
            self.write(f"[b green]{shown(self.chosen)}>[/] {shown(event['text'])}")
        else:
            self.write(f"[red]Error:[/] {shown(event.get('message', event))}")

    def write(self, text: str) -> None:
        self.query_one("#chat-log", RichLog).write(text)

    def action_reset(self) -> None:
        self.messages = []
        self.query_one("#chat-log", RichLog).clear()
        self.write("[dim]New conversation.[/]")

    def action_back(self) -> None:
        self.app.pop_screen()
