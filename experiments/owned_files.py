"""Which entries of an output folder adaptwise wrote, so that no command deletes or replaces a
file it did not write.

Every folder a command writes holds `.adaptwise-output.json`, naming the command and the
top-level entries (files and folders) it wrote there. A command may replace an entry only when
that manifest lists it; `--overwrite` clears a folder only when everything in it is listed, and
never a folder that is, or holds, one of the command's inputs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from experiments.atomic import write_text_atomic
from experiments.errors import TaskError

MANIFEST = ".adaptwise-output.json"
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def read_manifest(folder: Path) -> dict | None:
    """{"command", "entries"} of `folder`, or None when it has none (or an unreadable one)."""
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("command"), str):
        return None
    entries = data.get("entries")
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        return None
    return {"command": data["command"], "entries": entries}


def manifest_text(command: str, entries: Iterable[str]) -> str:
    return json.dumps({"command": command, "entries": sorted(set(entries))}, indent=1) + "\n"


def is_inside(folder: Path | str, path: Path | str) -> bool:
    """Whether `path` is `folder` or lies below it once both are resolved (symbolic links and
    `..` followed): the one test of a path named in a file staying where it must."""
    root, resolved = Path(folder).resolve(), Path(path).resolve()
    return resolved == root or root in resolved.parents


def refuse_inputs(out: Path, inputs: Iterable[Path | str | None], flag: str = "--out") -> None:
    """`out` must not be one of the inputs, nor a folder that holds one."""
    for path in inputs:
        if path is None:
            continue
        if is_inside(out, path):
            raise TaskError(
                f"{out}: this folder holds the input {path}; choose another {flag}: inputs "
                "are never written over"
            )


def check_replaceable(
    out: Path, command: str, overwrite: bool, inputs: Iterable[Path | str | None] = ()
) -> None:
    """Refuse an output folder that holds an input, is a file, or holds anything this command
    did not write (with `overwrite`) or anything at all (without it)."""
    out = Path(out)
    refuse_inputs(out, inputs)
    if out.exists() and not out.is_dir():
        raise TaskError(f"{out}: exists and is not a folder; choose another --out")
    if not out.is_dir():
        return
    present = sorted(p.name for p in out.iterdir())
    if not present:
        return
    if not overwrite:
        raise TaskError(f"{out}: folder exists and is not empty; choose another or --overwrite")
    manifest = read_manifest(out)
    if manifest is None or manifest["command"] != command:
        raise TaskError(
            f"{out}: --overwrite replaces only a folder written by `adaptwise {command}`, and "
            "this one was not; choose another --out"
        )
    foreign = [name for name in present if name not in {*manifest["entries"], MANIFEST}]
    if foreign:
        raise TaskError(
            f"{out / foreign[0]}: not written by `adaptwise {command}`, so --overwrite will not "
            "delete it; move it away or choose another --out"
        )


def claim(folder: Path, command: str, names: Iterable[str], record: bool = True) -> None:
    """Record `names` (top-level entries of `folder`) as written by `command`, refusing any that
    exists already without the manifest listing it. Call before writing them; `record` False
    only checks (nothing is written)."""
    folder = Path(folder)
    names = list(names)
    if folder.exists() and not folder.is_dir():
        raise TaskError(f"{folder}: exists and is not a folder; choose another --out")
    manifest = read_manifest(folder) if folder.is_dir() else None
    if manifest and manifest["command"] != command:
        raise TaskError(
            f"{folder}: written by `adaptwise {manifest['command']}`, not `adaptwise {command}`; "
            "choose another --out"
        )
    owned = set(manifest["entries"]) if manifest else set()
    for name in names:
        if name not in owned and (folder / name).exists():
            raise TaskError(
                f"{folder / name}: already there and not written by adaptwise, which never "
                "replaces a file it did not write; move it away or choose another --out"
            )
    if not record or (manifest and set(names) <= owned):
        return
    write_text_atomic(folder / MANIFEST, manifest_text(command, owned | set(names)))


def plain_name(value: object, prefix: str = "", suffix: str = "") -> str | None:
    """`value` if it is a plain file name (letters, digits, `._-`, no folder part) starting
    with `prefix` and ending with `suffix`, else None: names read from a file that adaptwise
    wrote (an index's FAISS file, a cache's vectors) must not point anywhere else."""
    if (
        isinstance(value, str)
        and _PLAIN_NAME.fullmatch(value)
        and ".." not in value
        and value.startswith(prefix)
        and value.endswith(suffix)
    ):
        return value
    return None
