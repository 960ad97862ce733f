"""The core never imports the UI, and `adaptwise --help` never imports the heavy stack."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CORE = [
    "advisor",
    "rag",
    "finetune",
    "experiments.task",
    "experiments.runner",
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
