"""The layers hold (import-linter), no two modules import each other in a circle, the core never
imports the UI, and `adaptwise --help` never imports the heavy stack."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CORE = [
    "advisor",
    "rag",
    "finetune",
    "experiments.task",
    "experiments.run.runner",
    "experiments.methods",
    "experiments.selectors",
    "experiments.models",
    "experiments.lm_scoring",
    "experiments.generation",
]


def loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint('\\n'.join(sys.modules))"
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return {name.split(".")[0] for name in proc.stdout.split()}


def test_core_packages_import_without_ui_libraries():
    modules = loaded_after("\n".join(f"import {m}" for m in CORE))
    assert "experiments" in modules and "rag" in modules
    assert not modules & {"textual", "rich"}


def test_help_does_not_import_torch():
    modules = loaded_after("from adaptwise.cli import build_parser\nbuild_parser().format_help()")
    assert "adaptwise" in modules
    assert not modules & {"torch", "transformers", "sentence_transformers", "langchain_core"}


PACKAGES = ["adaptwise", "advisor", "experiments", "rag", "finetune"]


def test_import_linter_contracts_hold():
    """The layers and the forbidden UI imports of pyproject.toml's [tool.importlinter]."""
    import os
    import shutil

    command = shutil.which("lint-imports")
    assert command, "lint-imports is missing: bash install.sh test installs import-linter"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run([command], capture_output=True, text=True, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def module_imports() -> dict[str, set[str]]:
    """Every module of the packages -> the package modules it imports anywhere in its file (at
    module level or inside a function: a lazy import still ties the two modules together),
    counting imports by string too: `importlib.import_module("a.b")` and a registry entry
    "a.b:function" (experiments/run/registry.py) import a.b as surely as `import a.b` does."""
    import ast
    import re

    by_string = re.compile(r"([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+)(?::[A-Za-z_]\w*)?")

    files = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join(parts)] = path

    def known(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets.add(base)
                targets.update(f"{base}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module":
                targets.update(a.value for a in node.args if isinstance(a, ast.Constant))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                named = by_string.fullmatch(node.value)
                if named and ":" in node.value and named.group(1).split(".")[0] in PACKAGES:
                    targets.add(named.group(1))
        graph[module] = {m for m in map(known, targets) if m and m != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                return path[path.index(imported) :] + [imported]
            if imported not in state and (cycle := visit(imported)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycles_between_modules():
    graph = module_imports()
    assert "experiments.run.runner" in graph and "adaptwise.tui.app" in graph
    # the registry's string imports are counted: it names each method family's module
    assert {"rag.methods", "finetune.methods", "finetune.hybrid"} <= graph[
        "experiments.run.registry"
    ]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
