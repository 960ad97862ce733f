"""The JSON sources `data convert` reads: Alpaca JSON, ShareGPT and OpenAI chat JSONL, each
record turned into a task record (`{"instruction","input","output"}` or `{"messages": [...]}`,
keeping `id` and `context_ids`), with errors that name the file and the record."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.errors import TaskError

SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "system": "system",
}


TO_SHAREGPT = {"user": "human", "assistant": "gpt", "system": "system"}


def json_items(source: Path) -> list[tuple[str, object]]:
    """Items of a JSON array file, or lines of a JSONL file, each with its "file:n" position."""
    try:
        text = source.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise TaskError(f"{source}: not UTF-8 text; save it as UTF-8") from None
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TaskError(f"{source}:{exc.lineno}: not valid JSON ({exc.msg})") from None
        return [(f"{source}: record {i}", item) for i, item in enumerate(items, start=1)]
    if text.lstrip().startswith("{") and "\n" in text.strip():
        try:  # one JSON object over several lines: a file, not JSON Lines
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None
        if isinstance(whole, dict):
            raise TaskError(
                f"{source}: one JSON object, not a list of records; wrap the records in [...] "
                "(or write one object per line, JSON Lines)"
                + (f"; its keys: {', '.join(list(whole)[:5])}" if whole else "")
            )
    result = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                result.append((f"{source}:{number}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise TaskError(f"{source}:{number}: not valid JSON ({exc.msg})") from None
    return result


def _object(item: object, where: str) -> dict:
    if not isinstance(item, dict):
        raise TaskError(f"{where}: expected a JSON object, got {type(item).__name__}")
    return item


def keep_ids(item: dict, record: dict) -> dict:
    for key in ("id", "context_ids"):
        if key in item:
            record = {key: item[key], **record} if key == "id" else {**record, key: item[key]}
    return record


def alpaca_record(item: object, where: str) -> dict:
    item = _object(item, where)
    if "instruction" not in item or "output" not in item:
        raise TaskError(f'{where}: an Alpaca record needs "instruction" and "output"')
    record = {"instruction": item["instruction"], "input": item.get("input", "")}
    return keep_ids(item, {**record, "output": item["output"]})


def sharegpt_record(item: object, where: str) -> dict:
    item = _object(item, where)
    turns = item.get("conversations")
    if not isinstance(turns, list):
        raise TaskError(f'{where}: a ShareGPT record needs a "conversations" list')
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or turn.get("from") not in SHAREGPT_ROLES:
            raise TaskError(
                f'{where}: turn {i} needs "from" one of {", ".join(SHAREGPT_ROLES)} '
                "(tool and function turns are not supported)"
            )
        messages.append({"role": SHAREGPT_ROLES[turn["from"]], "content": turn.get("value")})
    return keep_ids(item, {"messages": messages})


def openai_record(item: object, where: str) -> dict:
    item = _object(item, where)
    if not isinstance(item.get("messages"), list):
        raise TaskError(f'{where}: an OpenAI chat record needs a "messages" list')
    messages = []
    for i, message in enumerate(item["messages"]):
        if not isinstance(message, dict):
            raise TaskError(f"{where}: message {i} is not an object")
        role = "system" if message.get("role") == "developer" else message.get("role")
        if role not in ("system", "user", "assistant"):
            raise TaskError(
                f"{where}: message {i} role {message.get('role')!r} is not supported; use "
                "system, user or assistant (tool calls cannot be converted)"
            )
        messages.append({"role": role, "content": _content(message.get("content"), where, i)})
    return keep_ids(item, {"messages": messages})


def _content(content: object, where: str, i: int) -> str:
    """OpenAI content: a string, or a list of {"type": "text", "text"} parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" for p in content
    ):
        return "".join(str(p.get("text", "")) for p in content)
    raise TaskError(f"{where}: message {i} content must be text (images cannot be converted)")
