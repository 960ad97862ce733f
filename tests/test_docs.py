"""The README and docs/ stay true: their links lead somewhere, the commands they show exist.

- Every relative link in README.md and docs/*.md (`[text](path)`, `[text](path#anchor)`,
  `[text](#anchor)`) names an existing file, and an anchor names a heading of that file
  (GitHub's slugs). Links to http(s):// and mailto: are not followed.
- Every `adaptwise SUBCOMMAND ... --flag` shown in a code block or inline code names a
  subcommand of the CLI's parser (and a sub-subcommand, e.g. `data from-repo`), and every
  `--flag` after it is an option of that (sub)parser. The parser is built in-process.
- README.md is a front door: at most 250 lines.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from adaptwise.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 250


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


FENCE = re.compile(r"^\s*(```|~~~)")


def split_fences(text: str) -> tuple[str, list[str]]:
    """The prose (fenced blocks blanked, so line numbers hold) and the fenced blocks."""
    prose, blocks, block, fenced = [], [], [], False
    for line in text.splitlines():
        if FENCE.match(line):
            if fenced:
                blocks.append("\n".join(block))
                block = []
            fenced = not fenced
            prose.append("")
        elif fenced:
            block.append(line)
            prose.append("")
        else:
            prose.append(line)
    return "\n".join(prose), blocks


INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.S)


PARAGRAPH_BREAK = re.compile(r"(\n\s*\n)")  # a code span never crosses a blank line


def without_inline_code(prose: str) -> str:
    """The prose with each code span blanked (its length kept, so offsets hold)."""
    parts = PARAGRAPH_BREAK.split(prose)
    return "".join(
        part if i % 2 else INLINE_CODE.sub(lambda m: " " * len(m.group(0)), part)
        for i, part in enumerate(parts)
    )


def inline_code(prose: str) -> list[str]:
    return [m.group(2) for part in PARAGRAPH_BREAK.split(prose) for m in INLINE_CODE.finditer(part)]


# ---------------------------------------------------------------------------------------------
# (a) links


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lowercase, punctuation other than '-' and
    '_' removed, each space a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    prose, _ = split_fences(path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for line in prose.splitlines():
        m = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")  # GitHub numbers repeated headings
    return out


LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = re.compile(r"^(https?://|mailto:)", re.I)


def relative_links(path: Path) -> list[tuple[int, str]]:
    prose, _ = split_fences(path.read_text(encoding="utf-8"))
    prose = without_inline_code(prose)
    links = []
    for m in LINK.finditer(prose):
        target = m.group(1)
        if not EXTERNAL.match(target):
            links.append((prose.count("\n", 0, m.start()) + 1, target))
    return links


def broken_links(path: Path) -> list[str]:
    problems = []
    for line, target in relative_links(path):
        where = f"{path.relative_to(ROOT)}:{line}: ({target})"
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            problems.append(f"{where}: no file {file_part}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            problems.append(f"{where}: no heading with the anchor #{anchor} in {linked.name}")
    return problems


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    assert broken_links(path) == []


def test_link_check_sees_a_broken_file_and_anchor(tmp_path, monkeypatch):
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    (tmp_path / "there.md").write_text("# A title: `code` and more!\n\n## Two_words - here\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md) [ok](there.md#a-title-code-and-more) [ok](there.md#two_words---here)\n"
        "[web](https://example.com/x) `[code](missing.md)`\n\n```\n[fenced](missing.md)\n```\n"
        "[bad](missing.md) [bad](there.md#nowhere) [bad](#nor-here)\n"
    )
    assert [p.split(": (")[1].split(")")[0] for p in broken_links(page)] == [
        "missing.md",
        "there.md#nowhere",
        "#nor-here",
    ]


# ---------------------------------------------------------------------------------------------
# (b) the commands shown exist


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def command_lines(text: str) -> list[str]:
    """Each shell line of the fenced blocks (continuations joined, comments cut) and each
    inline code span, in that order."""
    prose, blocks = split_fences(text)
    lines = []
    for block in blocks:
        joined = re.sub(r"\\\n", " ", block)
        for line in joined.splitlines():
            lines.append(re.sub(r"(^|\s)#.*", "", line))
    return lines + [span.replace("\n", " ") for span in inline_code(prose)]


def words(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError:  # an unbalanced quote in prose-like code: split on spaces
        return line.split()


SEPARATORS = {"&&", "||", "|", ";", "&"}


def adaptwise_commands(line: str) -> list[list[str]]:
    """The words after each `adaptwise` of a line, up to the end of its shell command."""
    tokens = words(line)
    commands = []
    for i, token in enumerate(tokens):
        if token == "adaptwise":
            rest = []
            for word in tokens[i + 1 :]:
                if word in SEPARATORS:
                    break
                rest.append(word)
            commands.append(rest)
    return commands


FLAG = re.compile(r"--[A-Za-z][A-Za-z0-9-]*")


def command_problems(words_after: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """What in `adaptwise WORDS...` the parser does not know (empty: all of it is known)."""
    problems, shown, current, i = [], "adaptwise", parser, 0
    while True:  # the top-level options, then each level of subcommand
        while i < len(words_after) and words_after[i].startswith("--"):
            flag = words_after[i].split("=", 1)[0]
            if flag not in options(current):
                problems.append(f"{shown}: no option {flag}")
            i += 1
        choices = subparsers(current)
        if not choices or i >= len(words_after):
            break
        name = words_after[i]
        if name not in choices:
            if re.fullmatch(r"[a-z][a-z-]*", name):
                problems.append(f"{shown}: no subcommand {name!r}")
            return problems
        shown, current, i = f"{shown} {name}", choices[name], i + 1
    known = options(current)
    for word in words_after[i:]:
        word = word.lstrip("[(")  # `[--prs prs.json]`: an optional part
        if word.startswith("--"):  # also `--a/--b`, `--flag=value`
            problems += [f"{shown}: no option {f}" for f in FLAG.findall(word) if f not in known]
    return problems


def unknown_commands(path: Path, parser: argparse.ArgumentParser) -> list[str]:
    problems = []
    for line in command_lines(path.read_text(encoding="utf-8")):
        for command in adaptwise_commands(line):
            problems += [
                f"{path.relative_to(ROOT)}: {p}" for p in command_problems(command, parser)
            ]
    return problems


@pytest.fixture(scope="module")
def parser():
    return build_parser()


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_commands_shown_exist(path, parser):
    assert unknown_commands(path, parser) == []


# Flags the pages show for other programs than adaptwise, and which program takes each.
OTHER_PROGRAMS_FLAGS = {
    "--no-deps": "pip install",
    "--unpinned": "install.sh",
    "--port": "tests/api_server.py",
    "--smoke": "bench/gpu_check.py",
    "--mem": "a job scheduler (Slurm's sbatch)",
    "--lora": "llama-server",
    "--jinja": "llama-server",
    "--enable-lora": "vllm serve",
    "--lora-modules": "vllm serve",
    "--max-lora-rank": "vllm serve",
}
LONE_FLAG = re.compile(r"(?<![\w-])--[A-Za-z][A-Za-z0-9-]*")


def every_option(parser: argparse.ArgumentParser) -> set[str]:
    found = set(options(parser))
    for sub in subparsers(parser).values():
        found |= every_option(sub)
    return found


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_flags_shown_alone_exist(path, parser):
    """A flag shown without its command (`--budget`, in code) is an option of some adaptwise
    command, or of another program the page names."""
    known = every_option(parser) | set(OTHER_PROGRAMS_FLAGS)
    shown = {
        flag
        for line in command_lines(path.read_text(encoding="utf-8"))
        for flag in LONE_FLAG.findall(line)
    }
    assert sorted(shown - known) == []


def test_docs_show_commands_of_every_kind(parser):
    """The check reads what the pages show: subcommands, a sub-subcommand, flags."""
    shown = [
        command
        for path in doc_files()
        for line in command_lines(path.read_text(encoding="utf-8"))
        for command in adaptwise_commands(line)
    ]
    assert len(shown) > 50
    assert ["data", "from-repo", "path/to/repo", "--out", "repo-task", "[--prs", "prs.json]"] in (
        shown
    )
    assert any(c[:1] == ["plan"] and "--refresh-probe" in c for c in shown)


def test_command_check_sees_unknown_subcommands_and_flags(parser):
    text = (
        "```bash\nadaptwise run t.yaml --methods zero-shot \\\n  --no-such-flag   # --not-a-flag\n"
        "bash install.sh && adaptwise data from-repo r --out o --nope\n```\n"
        "`adaptwise nonsense --x` and `adaptwise --debug plan t.yaml --budget 1h`, "
        "`adaptwise data fix t.yaml --prs p`, `adaptwise run --precision auto|bf16`\n"
    )
    commands = [c for line in command_lines(text) for c in adaptwise_commands(line)]
    found = [p for c in commands for p in command_problems(c, parser)]
    assert found == [
        "adaptwise run: no option --no-such-flag",
        "adaptwise data from-repo: no option --nope",
        "adaptwise: no subcommand 'nonsense'",
        "adaptwise data fix: no option --prs",
    ]


# ---------------------------------------------------------------------------------------------
# (c) the README is a front door


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move some to docs/"
