"""`adaptwise finetune` (run fine-tuning methods with settings from the command line) and
`adaptwise chat` (talk to the base or an adapted model).

Imports nothing heavy at module level: torch, transformers and peft load inside the handlers.
"""

from __future__ import annotations

from pathlib import Path

from adaptwise.launch import add_devices_option


def register(subparsers, add_run_options) -> None:
    ft = subparsers.add_parser(
        "finetune",
        help="train and score lora / qlora / full-ft with settings from the command line",
        description="Like `adaptwise run`, with fine-tuning settings given as --set KEY=VALUE "
        "(rank, alpha, learning_rate, epochs, batch_size, max_length, val_fraction, patience, "
        "merge, resume, allow_leakage, allow_fallback, and the memory settings "
        "gradient_checkpointing, gradient_accumulation_steps, optimizer, fit, fit_memory_gb, "
        "strategy, cpu_offload, ...). They override the task file's finetune: section. On "
        "several GPUs: --devices N (or torchrun / accelerate launch -m adaptwise finetune ...).",
    )
    ft.add_argument("task", type=Path, help="task YAML file")
    ft.add_argument(
        "--methods", default="lora", help="comma-separated methods (default: %(default)s)"
    )
    ft.add_argument("--out", type=Path, help="output folder (default: runs/<task name>)")
    ft.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a fine-tuning setting, e.g. --set rank=8 --set epochs=2 (repeatable)",
    )
    add_run_options(ft)
    add_devices_option(ft)
    ft.set_defaults(handler=cmd_finetune)

    chat = subparsers.add_parser(
        "chat",
        help="chat in the terminal with the base model or an adapted one",
        description="A terminal chat for trying a model by hand. Empty line or Ctrl-D quits; "
        "/reset forgets the conversation.",
    )
    chat.add_argument("--model", help="base model (default: the embedded SmolLM2-135M-Instruct)")
    chat.add_argument(
        "--adapter", type=Path, help="a PEFT adapter folder (e.g. runs/x/lora/adapter)"
    )
    chat.add_argument("--system", default="", help="a system message")
    chat.add_argument("--max-new-tokens", type=int, default=256, help="default: %(default)s")
    chat.set_defaults(handler=cmd_chat)


def cmd_finetune(args) -> int:
    from adaptwise.launch import launch, needs_launch
    from adaptwise.progress import RichProgress
    from adaptwise.running import (
        check_run,
        method_list,
        parse_settings,
        run_one,
        run_options,
        show_run,
    )

    options = run_options(args)
    options.extra["finetune"] = parse_settings(args.settings)
    options.extra["finetune_flag"] = "--set"  # errors name the flag the user typed
    methods = method_list(args.methods)
    if needs_launch(args):
        check_run(args.task, methods, args.out, options)
        return launch(args.devices)
    with RichProgress() as ui:
        out, outcome = run_one(args.task, methods, args.out, options, ui)
    return show_run(out, outcome)


def cmd_chat(args) -> int:
    from rich.console import Console

    from experiments.errors import AdaptwiseError
    from experiments.run.chat import load_chat_model

    if args.max_new_tokens < 1:
        raise AdaptwiseError("--max-new-tokens must be at least 1")
    from adaptwise.tui.shown import shown

    console = Console()
    chat = load_chat_model(args.model, args.adapter, progress=console.print)
    console.print(f"[bold]{shown(chat.name)}[/] · empty line or Ctrl-D quits, /reset starts over")
    messages = [{"role": "system", "content": args.system}] if args.system else []
    start = list(messages)
    while True:
        try:
            text = console.input("[bold cyan]you>[/] ").strip()
        except EOFError:
            break
        if not text:
            break
        if text == "/reset":
            messages = list(start)
            continue
        messages.append({"role": "user", "content": text})
        answer = chat.reply(messages, args.max_new_tokens)
        messages.append({"role": "assistant", "content": answer})
        console.print(f"[bold green]model>[/] {shown(answer)}")
    return 0
