"""The layers hold (import-linter), no folder-level import runs back up (the layers' folders and
the two ends the contract cannot name), no two modules import each other in a circle, the core
never imports the UI, and `adaptwise --help` never imports the heavy stack."""

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
    assert {"rag.methods", "finetune.families", "finetune.hybrid"} <= graph[
        "experiments.run.registry"
    ]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def layer_order() -> list[str]:
    """The folders, top to bottom: pyproject.toml's layers contract (the one place the order is
    written), between the two ends it cannot name: the command line's root modules of adaptwise/
    above every layer, the base modules of experiments/ below every layer."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["type"] == "layers"]
    assert all(":" not in layer and "|" not in layer for layer in layers), "one folder a layer"
    return ["adaptwise", *layers, "experiments"]


def folder_of(module: str) -> str:
    """The package directory a module's file lies in: experiments.run.runner -> experiments.run,
    experiments.task -> experiments; a package (its __init__.py) is its own folder."""
    if (ROOT / module.replace(".", "/")).is_dir():
        return module
    return module.rpartition(".")[0]


def layer_of(folder: str, order: list[str]) -> str | None:
    """The layer of `order` a folder belongs to: itself, or the contract's layer it lies inside
    (adaptwise.tui.screens is part of adaptwise.tui, as import-linter counts it). The two ends
    hold only their root modules: a new folder under adaptwise/ or experiments/ is in no layer
    until the contract names it."""
    ends = (order[0], order[-1])
    for layer in order:
        if folder == layer or (layer not in ends and folder.startswith(layer + ".")):
            return layer
    return None


def upward_arrows(
    graph: dict[str, set[str]], layers: dict[str, str], order: list[str]
) -> dict[tuple[str, str], tuple[str, str]]:
    """Each (importer's layer, imported layer) whose arrow runs up `order`, with one example
    (importer, imported) module pair, the first by name."""
    rank = {layer: i for i, layer in enumerate(order)}
    upward: dict[tuple[str, str], tuple[str, str]] = {}
    for module in sorted(graph):
        for imported in sorted(graph[module]):
            above, below = layers[module], layers[imported]
            if rank[above] > rank[below]:
                upward.setdefault((above, below), (module, imported))
    return upward


def test_folder_check_finds_an_upward_import():
    order = ["top", "middle", "base"]
    graph = {"top.a": {"middle.b"}, "middle.b": {"base.c", "top.a"}, "base.c": set()}
    layers = {module: module.split(".")[0] for module in graph}
    assert upward_arrows(graph, layers, order) == {("middle", "top"): ("middle.b", "top.a")}
    graph["middle.b"].discard("top.a")
    assert upward_arrows(graph, layers, order) == {}

    order = ["adaptwise", "adaptwise.tui", "rag", "experiments"]
    assert layer_of("adaptwise.tui.screens", order) == "adaptwise.tui"
    assert layer_of("adaptwise", order) == "adaptwise"
    assert layer_of("experiments", order) == "experiments"
    assert layer_of("experiments.new", order) is None
    assert layer_of("adaptwise.new", order) is None


def test_no_folder_level_import_runs_back_up():
    """Each folder is one layer, and an import between two folders runs down the order of
    pyproject.toml's layers contract, the CLI's adaptwise/ above it and experiments/'s base
    modules below it (lazy and string imports counted, as module_imports counts them)."""
    assert folder_of("experiments.run.runner") == "experiments.run"
    assert folder_of("experiments.task") == "experiments"
    assert folder_of("adaptwise.cli") == "adaptwise"
    assert folder_of("experiments.run") == "experiments.run"

    graph = module_imports()
    order = layer_order()
    folders = {module: folder_of(module) for module in graph}
    layers = {module: layer_of(folder, order) for module, folder in folders.items()}
    unplaced = sorted({folders[m] for m, layer in layers.items() if layer is None})
    assert not unplaced, f"folders in no layer (name them in pyproject.toml's layers): {unplaced}"
    assert set(order) == set(layers.values()), "a layer of the order holds no module"

    upward = upward_arrows(graph, layers, order)
    assert not upward, "folder-level imports that run back up:\n" + "\n".join(
        f"  {above} -> {below} (e.g. {module} imports {imported})"
        for (above, below), (module, imported) in sorted(upward.items())
    )
    # the check sees a real upward import: the base importing the runner
    graph["experiments.task"] = graph["experiments.task"] | {"experiments.run.runner"}
    assert upward_arrows(graph, layers, order) == {
        ("experiments", "experiments.run"): ("experiments.task", "experiments.run.runner")
    }


def test_no_two_classes_share_a_name():
    """A class name says which thing it is: two classes of one name (a corpus Document and a
    repository's) would make every import of it ambiguous to a reader."""
    import ast
    from collections import defaultdict

    where = defaultdict(list)
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.ClassDef):
                    where[node.name].append(str(path.relative_to(ROOT)))
    assert len(where) > 50
    shared = {name: paths for name, paths in where.items() if len(paths) > 1}
    assert not shared, shared
