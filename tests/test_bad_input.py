"""Hostile and careless input, table-driven: each case is the command as a user types it, the exit
status, the key words of its one line, and proof that nothing outside its output changed (the
whole tree is hashed before and after).

The cases are the reliability issue's reproductions: the `--overwrite` deletions, a run over
the user's own files, a crafted index naming a file outside its folder, a task name that climbs
out of `runs/`, secrets copied out of a repository, links out of a corpus.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from adaptwise.cli import main
from experiments.owned_files import MANIFEST

ROOT = Path(__file__).resolve().parent.parent
DEMO_CLASSIFY = ROOT / "demo" / "support-intents"
DEMO_QA = ROOT / "demo" / "helpdesk-qa"


def tree_digest(folder: Path, skip: Path | None = None) -> dict[str, str]:
    """Every file, folder and link under `folder` (outside `skip`) with a hash of its content."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            out[rel] = "link:" + os.readlink(path)
        elif path.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """The real CLI entry point in-process, run from `tmp_path` (so `runs/` lands there)."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> Outcome:
        capsys.readouterr()
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return Outcome(code, out.out, out.err)

    return run


def one_line(outcome: Outcome, *words: str) -> None:
    assert outcome.code == 2, (outcome.stdout, outcome.stderr)
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("adaptwise: error: "), outcome.stderr
    assert "Traceback" not in outcome.stderr
    for word in words:
        assert word in lines[0], lines[0]


# --- the inputs the cases damage ---------------------------------------------------------------


def make_repo(root: Path) -> Path:
    """A small repository with code, a page, a .git folder and secret-bearing files."""
    repo = root / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / "src").mkdir()
    (repo / "README.md").write_text("# Widget\n\nThe widget turns gears.\n")
    (repo / "src" / "widget.py").write_text(
        "def turn(gear):\n    return gear + 1\n\n\nDB_PASSWORD = 'hunter2hunter2'\n"
    )
    (repo / "src" / "gears.py").write_text("GEARS = [1, 2, 3]\n\n\ndef count():\n    return 3\n")
    (repo / "credentials.json").write_text(
        json.dumps({"private_key": PEM, "client_email": "bot@example.com"})
    )
    (repo / "secrets.yaml").write_text("api_token: tok_9f8e7d6c5b4a\n")
    (repo / "settings.ini").write_text("[db]\nhost = localhost\npassword = s3cretPassw0rd\n")
    (repo / "deploy.sh").write_text(f"#!/bin/sh\nexport GH=ghp_{'a1' * 18}\ncat <<EOF\n{PEM}EOF\n")
    return repo


PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAuWq0secretkeymaterial\n"
    "-----END RSA PRIVATE KEY-----\n"
)
SECRETS = ("MIIEowIBAAKCAQEA", "hunter2hunter2", "tok_9f8e7d6c5b4a", "s3cretPassw0rd", "a1a1a1a1a1")


def copy_demo(demo: Path, root: Path) -> Path:
    target = root / demo.name
    shutil.copytree(demo, target, ignore=shutil.ignore_patterns(".adaptwise"))
    return target / "task.yaml"


def alpaca_source(root: Path) -> Path:
    src = root / "src"
    src.mkdir()
    rows = [
        {"instruction": "Route it.", "input": f"parcel {i} is late", "output": "shipping"}
        for i in range(10)
    ]
    (src / "plain.json").write_text(json.dumps(rows))
    (src / "notes.txt").write_text("my notes beside the source\n")
    return src / "plain.json"


# --- Data lost: the --overwrite deletions and a run over the user's files -----------------------


@dataclass
class Case:
    id: str
    setup: Callable[[Path], list]  # tmp_path -> argv
    words: tuple[str, ...]


DATA_LOST = [
    Case(
        "from-repo-out-is-the-repo",
        lambda t: ["data", "from-repo", make_repo(t), "--out", t / "repo", "--overwrite"],
        ("holds the input", "repo"),
    ),
    Case(
        "from-repo-out-holds-the-repo",
        lambda t: ["data", "from-repo", make_repo(t), "--out", t, "--overwrite"],
        ("holds the input",),
    ),
    Case(
        "fix-out-is-the-corpus",
        lambda t: [
            "data",
            "fix",
            copy_demo(DEMO_QA, t),
            "--out",
            t / "helpdesk-qa" / "corpus",
            "--overwrite",
        ],
        ("holds the input", "corpus"),
    ),
    Case(
        "fix-out-is-a-folder-of-the-users",
        lambda t: [
            "data",
            "fix",
            copy_demo(DEMO_CLASSIFY, t),
            "--out",
            _users_folder(t),
            "--overwrite",
        ],
        ("--overwrite replaces only a folder written by `adaptwise data fix`",),
    ),
    Case(
        "convert-out-is-the-source-folder",
        lambda t: [
            "data",
            "convert",
            alpaca_source(t),
            "--from",
            "alpaca",
            "--kind",
            "generation",
            "--out",
            t / "src",
            "--overwrite",
        ],
        ("holds the input", "plain.json"),
    ),
    Case(
        "run-over-a-hand-written-report",
        lambda t: [
            "run",
            copy_demo(DEMO_CLASSIFY, t),
            "--methods",
            "zero-shot",
            "--out",
            _users_report(t),
        ],
        ("report.md", "not written by adaptwise"),
    ),
    Case(
        "run-out-holds-the-eval-file",
        lambda t: ["run", _eval_named_predictions(t), "--methods", "zero-shot", "--out", t / "t"],
        ("holds the input",),
    ),
    Case(
        "run-out-is-a-file",
        lambda t: ["run", copy_demo(DEMO_CLASSIFY, t), "--out", _a_file(t)],
        ("not a folder",),
    ),
]


def _users_folder(t: Path) -> Path:
    folder = t / "mine"
    folder.mkdir()
    (folder / "thesis.txt").write_text("three years of work\n")
    return folder


def _users_report(t: Path) -> Path:
    folder = t / "out"
    folder.mkdir()
    (folder / "report.md").write_text("# My own report\n")
    return folder


def _eval_named_predictions(t: Path) -> Path:
    task = copy_demo(DEMO_CLASSIFY, t / "x")
    folder = t / "t"
    folder.mkdir()
    shutil.move(task.parent / "eval.jsonl", folder / "predictions.jsonl")
    task.write_text(task.read_text().replace("eval: eval.jsonl", "eval: ../../t/predictions.jsonl"))
    return task


def _a_file(t: Path) -> Path:
    (t / "out.txt").write_text("mine\n")
    return t / "out.txt"


@pytest.mark.parametrize("case", DATA_LOST, ids=[c.id for c in DATA_LOST])
def test_no_command_deletes_or_replaces_what_it_did_not_write(case, cli, tmp_path):
    argv = case.setup(tmp_path)
    before = tree_digest(tmp_path)
    one_line(cli(*argv), *case.words)
    assert tree_digest(tmp_path) == before


def test_overwrite_replaces_a_previous_output_of_the_same_command(cli, tmp_path):
    source = alpaca_source(tmp_path)
    out = tmp_path / "task"
    args = ["data", "convert", source, "--from", "alpaca", "--kind", "generation", "--out", out]
    assert cli(*args).code == 0
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["command"] == "data convert"
    assert set(manifest["entries"]) == {"task.yaml", "train.jsonl", "eval.jsonl"}
    one_line(cli(*args), "not empty", "--overwrite")
    assert cli(*args, "--overwrite").code == 0
    # A file of the user's put into the output folder makes it theirs: never cleared.
    (out / "my-notes.md").write_text("mine\n")
    before = tree_digest(tmp_path)
    one_line(cli(*args, "--overwrite"), "my-notes.md", "not written by")
    assert tree_digest(tmp_path) == before
    # Another command's output is not this one's to clear.
    (out / "my-notes.md").unlink()
    one_line(cli("data", "fix", out / "task.yaml", "--out", out, "--overwrite"), "holds the input")


def test_files_are_created_with_the_users_umask(cli, tmp_path):
    source = alpaca_source(tmp_path)
    out = tmp_path / "task"
    old = os.umask(0o022)
    try:
        import importlib

        import experiments.atomic

        importlib.reload(experiments.atomic)
        from experiments.atomic import write_text_atomic

        write_text_atomic(tmp_path / "f.txt", "x")
        assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
        assert (
            cli(
                "data", "convert", source, "--from", "alpaca", "--kind", "generation", "--out", out
            ).code
            == 0
        )
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o755
    assert (out / "train.jsonl").stat().st_mode & 0o777 == 0o644


# --- Outside the named folders ------------------------------------------------------------------


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> Path:
    """The demo QA task with its index built once; the cases copy it."""
    root = tmp_path_factory.mktemp("indexed")
    task = copy_demo(DEMO_QA, root)
    assert main(["index", str(task)]) == 0
    return task.parent


@pytest.mark.parametrize(
    "faiss_file", ["index-/../../../VICTIM.txt", "../VICTIM.txt", "/tmp/VICTIM.txt", "index-x"]
)
def test_crafted_index_names_no_file_outside_its_folder(indexed, cli, tmp_path, faiss_file):
    task_dir = tmp_path / "work" / "helpdesk-qa"
    shutil.copytree(indexed, task_dir)
    victim = tmp_path / "VICTIM.txt"
    victim.write_text("keep me\n")
    meta_path = task_dir / ".adaptwise" / "index" / "index.json"
    meta = json.loads(meta_path.read_text())
    meta["faiss_file"] = faiss_file
    meta_path.write_text(json.dumps(meta))
    corpus_doc = next((task_dir / "corpus").iterdir())
    corpus_doc.write_text(corpus_doc.read_text() + "\nA changed line forces a rebuild.\n")
    one_line(cli("index", task_dir / "task.yaml"), "index.json", "corrupted", "--rebuild")
    assert victim.read_text() == "keep me\n"
    assert cli("index", task_dir / "task.yaml", "--rebuild").code == 0
    assert victim.read_text() == "keep me\n"
    meta = json.loads(meta_path.read_text())
    assert meta["faiss_file"].startswith("index-") and "/" not in meta["faiss_file"]


def test_crafted_embedding_cache_names_no_file_outside(indexed, cli, tmp_path):
    task_dir = tmp_path / "helpdesk-qa"
    shutil.copytree(indexed, task_dir)
    cache = next((task_dir / ".adaptwise" / "index" / "embeddings").glob("*.json"))
    meta = json.loads(cache.read_text())
    meta["vectors"] = "../../../VICTIM.npy"
    cache.write_text(json.dumps(meta))
    (tmp_path / "VICTIM.npy").write_bytes(b"not mine to touch")
    (task_dir / "corpus" / "new-page.md").write_text("A new page about printers.\n")
    one_line(cli("index", task_dir / "task.yaml"), "embedding cache is corrupted")
    assert (tmp_path / "VICTIM.npy").read_bytes() == b"not mine to touch"


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("../../escaped_by_name", "escaped_by_name"),
        ("/etc/cron.d/x", "etc-cron.d-x"),
        ("a\x00b", "a-b"),
        ("x" * 300, "x" * 80),
        ("..", "task"),
    ],
)
def test_task_name_never_leaves_the_folder_it_names(tmp_path, cli, monkeypatch, name, folder):
    task = copy_demo(DEMO_QA, tmp_path / "in")
    text = task.read_text().replace("name: helpdesk-qa", f"name: {json.dumps(name)}")
    task.write_text(text)
    from experiments.task import load_task
    from rag.settings import index_location, rag_settings

    loaded = load_task(task)
    assert loaded.folder_name == folder
    monkeypatch.setenv("ADAPTWISE_INDEX_DIR", str(tmp_path / "indexes"))
    assert index_location(loaded, rag_settings(loaded)) == tmp_path / "indexes" / folder
    before = tree_digest(tmp_path, skip=tmp_path / "indexes")
    outcome = cli("index", task)
    assert outcome.code == 0, outcome.stderr
    assert [p.name for p in (tmp_path / "indexes").iterdir()] == [folder]
    assert tree_digest(tmp_path, skip=tmp_path / "indexes") == before


def test_run_default_folder_is_the_sanitised_name(tmp_path, cli):
    task = copy_demo(DEMO_CLASSIFY, tmp_path / "in")
    task.write_text(task.read_text().replace("name: support-intents", "name: ../../escaped"))
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "escaped").write_text("a file where the run folder would go\n")
    # The run refuses before loading any model, and names the sanitised folder.
    one_line(cli("run", task, "--methods", "zero-shot"), "runs/escaped", "not a folder")
    assert not (tmp_path.parent / "escaped").exists()


def test_from_repo_leaves_secrets_behind(tmp_path, cli):
    repo = make_repo(tmp_path)
    outcome = cli("data", "from-repo", repo, "--out", tmp_path / "task", "--eval-fraction", "0.3")
    assert outcome.code == 0, outcome.stderr
    assert "secret-bearing" in outcome.stdout and "redacted" in outcome.stdout
    written = "".join(p.read_text() for p in (tmp_path / "task").iterdir())
    for secret in SECRETS:
        assert secret not in written, secret
    assert "[REDACTED]" in written and "def turn(gear)" in written  # the code itself is kept


def test_corpus_links_to_outside_files_are_not_read(tmp_path, cli):
    task = copy_demo(DEMO_QA, tmp_path / "in")
    outside = tmp_path / "private.md"
    outside.write_text("PRIVATE-NOTE-7731 my diary, not part of the corpus\n")
    (task.parent / "corpus" / "diary.md").symlink_to(outside)
    outcome = cli("index", task)
    assert outcome.code == 0, outcome.stderr
    said = " ".join(outcome.stdout.split())  # rich wraps long paths at the terminal's width
    assert "skipped 1 link" in said and "diary.md" in "".join(outcome.stdout.split())
    meta = json.loads((task.parent / ".adaptwise" / "index" / "index.json").read_text())
    assert not any("PRIVATE-NOTE-7731" in c["text"] for c in meta["chunks"])


# --- Rerun and resume ------------------------------------------------------------------------


class StopAt:
    """The runner's progress, raising KeyboardInterrupt (Ctrl-C) when `method` starts scoring."""

    def __init__(self, method: str | None = None):
        self.method, self.lines = method, []

    def start(self, label: str, total: int) -> None:
        if self.method and label.endswith(f"· {self.method}"):
            raise KeyboardInterrupt

    def advance(self, n: int) -> None: ...
    def finish(self) -> None: ...

    def log(self, message: str) -> None:
        self.lines.append(message)


def _metrics(results: dict) -> dict:
    return {m: e["metrics"] for m, e in results["methods"].items()}


def test_interrupted_run_reruns_no_finished_method(tiny_model, tmp_path):
    from test_finetune import make_task

    from experiments.context import RunOptions
    from experiments.run.runner import run_task

    task = make_task(n_train=12, n_eval=3)
    options = RunOptions(
        model=str(tiny_model),
        extra={"finetune": {"max_steps": 2, "rank": 4, "forgetting_probe": False}},
    )
    methods = ["zero-shot", "few-shot-random", "lora"]
    whole = run_task(task, methods, tmp_path / "whole", options)
    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        run_task(task, methods, out, options, progress=StopAt("few-shot-random"))
    assert set(json.loads((out / "results.json").read_text())["methods"]) == {"zero-shot"}
    again = StopAt()
    resumed = run_task(task, methods, out, options, progress=again)
    kept = [line for line in again.lines if "kept from the earlier run" in line]
    assert len(kept) == 1 and "zero-shot" in kept[0]
    assert _metrics(resumed) == _metrics(whole)
    stored = json.loads((out / "results.json").read_text())
    assert _metrics(stored) == _metrics(json.loads((tmp_path / "whole/results.json").read_text()))
    # A third run redoes nothing; --rerun redoes what it names.
    third = StopAt("zero-shot")  # would raise if zero-shot were scored again
    run_task(task, methods, out, options, progress=third)
    assert sum("kept from the earlier run" in line for line in third.lines) == 3
    rerun = StopAt()
    run_task(task, methods, out, options, progress=rerun, rerun={"few-shot-random"})
    assert sum("kept from the earlier run" in line for line in rerun.lines) == 2


def test_results_made_with_other_options_are_not_relabelled(tiny_model, tmp_path):
    from test_finetune import make_task

    from experiments.context import RunOptions
    from experiments.run.runner import run_task

    task = make_task(n_train=12, n_eval=3)
    out = tmp_path / "out"
    run_task(task, ["zero-shot", "few-shot-random"], out, RunOptions(model=str(tiny_model)))
    log = StopAt()
    results = run_task(task, ["zero-shot"], out, RunOptions(model=str(tiny_model), k=2), log)
    assert set(results["methods"]) == {"zero-shot"}  # few-shot-random (k=4) is not kept as k=2
    assert any("other k" in line and "replaces" in line for line in log.lines)


@pytest.mark.parametrize(
    ("damage", "words"),
    [("[]", "cannot be read"), ('{"methods": {}}\n', None)],
)
def test_damaged_results_in_out_are_replaced_in_one_line(tiny_model, tmp_path, damage, words):
    from test_finetune import make_task

    from experiments.context import RunOptions
    from experiments.run.runner import run_task

    task = make_task(n_train=12, n_eval=3)
    out = tmp_path / "out"
    options = RunOptions(model=str(tiny_model))
    run_task(task, ["zero-shot"], out, options)
    (out / "results.json").write_text(damage)
    (out / "predictions.jsonl").write_text('{"method": "zero-shot", "id": \n')
    log = StopAt()
    results = run_task(task, ["zero-shot"], out, options, log)
    assert set(results["methods"]) == {"zero-shot"}
    if words:
        assert any(words in line for line in log.lines)


def test_eval_rows_longer_than_the_context_are_counted_wrong_with_a_warning(tiny_model, tmp_path):
    from dataclasses import replace

    from test_finetune import make_task

    from experiments.context import RunOptions
    from experiments.run.runner import run_task

    task = make_task(n_train=12, n_eval=3)
    long_row = replace(
        task.eval[0], messages=({"role": "user", "content": "refund " * 700},), id="long"
    )
    task.eval = [long_row, *task.eval[1:]]  # the tiny model's context is 512 tokens
    log = StopAt()
    results = run_task(
        task, ["zero-shot"], tmp_path / "out", RunOptions(model=str(tiny_model)), log
    )
    warned = [line for line in log.lines if "longer than the model's context" in line]
    assert len(warned) == 1 and "1 of 3" in warned[0]
    records = [json.loads(x) for x in (tmp_path / "out/predictions.jsonl").read_text().splitlines()]
    skipped = next(r for r in records if r["id"] == "long")
    assert skipped["output"] == "" and not skipped["correct"] and "exceeds" in skipped["skipped"]
    assert results["methods"]["zero-shot"]["n_eval"] == 3


# --- One line, not a traceback: models, adapters, data tools, the estimator ----------------------


def _empty_eval_split(t: Path) -> list:
    task = copy_demo(DEMO_CLASSIFY, t)
    (task.parent / "eval.jsonl").write_text("not json\n{broken\n")
    return ["data", "check", task, "--no-tokens"]


def _broken_context_ids(t: Path) -> list:
    (t / "rows.csv").write_text('question,answer,docs\nWhat is it?,A lamp,"[broken"\n')
    return ["data", "convert", t / "rows.csv", "--from", "csv", "--kind", "qa", "--map",
            "input=question,output=answer,context_ids=docs", "--out", t / "task"]  # fmt: skip


def _zero_heads(t: Path) -> list:
    config = {"vocab_size": 100, "hidden_size": 64, "intermediate_size": 128,
              "num_hidden_layers": 2, "num_attention_heads": 0}  # fmt: skip
    (t / "config.json").write_text(json.dumps(config))
    return ["estimate", "--model", t / "config.json", "--method", "lora"]


def _config_only_model(t: Path) -> list:
    (t / "model").mkdir()
    (t / "model" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return ["chat", "--model", t / "model"]


def _bad_gguf(t: Path) -> list:
    (t / "broken.gguf").write_bytes(b"GGUF\x03\x00\x00\x00truncated")
    return ["chat", "--model", t / "broken.gguf"]


def _adapter(t: Path, weights: str | None) -> list:
    folder = t / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    if weights:
        (folder / weights).write_bytes(b"\x80\x04 a pickle, never loaded")
    return ["chat", "--adapter", folder]


def _damaged_run(t: Path) -> list:
    folder = t / "run"
    folder.mkdir()
    task = {"name": "t", "kind": "classification", "metric": "accuracy", "n_eval": 1}
    results = {"task": task, "methods": {"zero-shot": {"n_eval": 1}}}
    (folder / "results.json").write_text(json.dumps(results))
    return ["report", folder]


ONE_LINE = [
    ("report-method-without-metrics", _damaged_run, 2, ("zero-shot", "has no accuracy")),
    (
        "data-check-json-to-a-folder",
        lambda t: ["data", "check", copy_demo(DEMO_CLASSIFY, t), "--no-tokens", "--json", t],
        2,
        ("Is a directory", "name a file"),
    ),
    ("data-check-split-with-no-readable-row", _empty_eval_split, 1, ("eval",)),
    ("convert-csv-broken-context-ids", _broken_context_ids, 2, ("context_ids", "JSON list")),
    ("estimate-zero-heads", _zero_heads, 2, ("num_attention_heads", "1 or more")),
    ("chat-config-only-model", _config_only_model, 2, ("could not load model",)),
    ("chat-corrupt-gguf", _bad_gguf, 2, ("broken.gguf", "not a readable GGUF")),
    ("chat-adapter-without-weights", lambda t: _adapter(t, None), 2, ("no adapter_model",)),
    ("chat-pickled-adapter", lambda t: _adapter(t, "adapter_model.bin"), 2, ("pickle",)),
    ("chat-max-new-tokens-0", lambda t: ["chat", "--max-new-tokens", "0"], 2, ("at least 1",)),
    (
        "finetune-set-names-set",
        lambda t: ["finetune", copy_demo(DEMO_CLASSIFY, t), "--set", "rank"],
        2,
        ("--set 'rank'",),
    ),
]


@pytest.mark.parametrize(("setup", "code", "words"), [c[1:] for c in ONE_LINE],
                         ids=[c[0] for c in ONE_LINE])  # fmt: skip
def test_every_failure_is_one_line(cli, tmp_path, setup, code, words):
    argv = setup(tmp_path)
    before = tree_digest(tmp_path)
    outcome = cli(*argv)
    assert "Traceback" not in outcome.stderr + outcome.stdout
    assert outcome.code == code, (outcome.stdout, outcome.stderr)
    if code == 2:
        one_line(outcome, *words)
    else:
        assert all(w in outcome.stdout for w in words), outcome.stdout
    assert tree_digest(tmp_path, skip=tmp_path / "task") == before


def test_remote_code_model_is_refused_in_one_line(cli, tmp_path, tiny_model):
    folder = tmp_path / "custom"
    shutil.copytree(tiny_model, folder)
    config = json.loads((folder / "config.json").read_text())
    auto_map = {"AutoConfig": "mod.Config", "AutoModelForCausalLM": "mod.Model"}
    config.update(model_type="totally-custom", auto_map=auto_map)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "mod.py").write_text("raise SystemExit('the model's own code ran')\n")
    outcome = cli("chat", "--model", folder)
    one_line(outcome, "--trust-remote-code")
    assert "weights_only" not in outcome.stderr


def test_debug_shows_the_traceback(cli, tmp_path, monkeypatch):
    argv = _zero_heads(tmp_path)
    monkeypatch.setenv("ADAPTWISE_DEBUG", "1")
    from experiments.errors import AdaptwiseError

    with pytest.raises(AdaptwiseError):
        main([str(a) for a in argv])


def test_a_run_that_fails_before_any_result_leaves_no_output_folder(cli, tmp_path):
    task = copy_demo(DEMO_CLASSIFY, tmp_path / "in")
    _config_only_model(tmp_path)
    out = tmp_path / "out"
    outcome = cli(
        "run", task, "--methods", "zero-shot", "--model", tmp_path / "model", "--out", out
    )
    errors = [line for line in outcome.stderr.splitlines() if line.startswith("adaptwise: error")]
    assert outcome.code == 2 and len(errors) == 1 and "could not load model" in errors[0]
    assert "Traceback" not in outcome.stderr and not out.exists()


# --- Unclear or noisy ----------------------------------------------------------------------------


def _json_object_source(t: Path) -> list:
    (t / "one.json").write_text(json.dumps({"instruction": "a", "output": "b"}, indent=2))
    return ["data", "convert", t / "one.json", "--from", "alpaca", "--kind", "generation",
            "--out", t / "task"]  # fmt: skip


def _non_utf8_train(t: Path) -> list:
    task = copy_demo(DEMO_CLASSIFY, t)
    (task.parent / "train.jsonl").write_bytes("caf\u00e9\n".encode("latin-1"))
    return ["data", "fix", task, "--out", t / "fixed"]


def _index_dir_is_a_file(t: Path) -> list:
    task = copy_demo(DEMO_QA, t)
    (t / "idx").write_text("a file of mine\n")
    return ["index", task, "--index-dir", t / "idx"]


NOISY = [
    ("convert-a-json-object", _json_object_source, ("one JSON object", "wrap the records")),
    ("fix-non-utf8-train", _non_utf8_train, ("no train rows left", "not UTF-8")),
    ("index-dir-is-a-file", _index_dir_is_a_file, ("idx", "not a folder")),
    (
        "run-finetune-bad-value-before-loading",
        lambda t: [
            "run",
            copy_demo(DEMO_CLASSIFY, t),
            "--methods",
            "lora",
            "--finetune",
            "rank=many",
            "--out",
            t / "out",
        ],  # fmt: skip
        ("rank", "not a valid value"),
    ),
    (
        "finetune-set-unknown-setting",
        lambda t: [
            "finetune",
            copy_demo(DEMO_CLASSIFY, t),
            "--set",
            "ranks=8",
            "--out",
            t / "out",
        ],  # fmt: skip
        ("--set unknown setting 'ranks'",),
    ),
    *[
        (
            f"finetune-devices-{name}",
            # Checked in the first process, before the others start.
            lambda t, extra=extra: [
                "finetune",
                copy_demo(DEMO_CLASSIFY, t),
                "--out",
                t / "out",
                *extra,
            ],  # fmt: skip
            words,
        )
        for name, extra, words in (
            ("zero", ["--devices", "0"], ("--devices must be at least 1",)),
            (
                "batch-not-shared-evenly",
                ["--devices", "2", "--set", "batch_size=3"],
                ("batch_size (3) must be a multiple of the 2 processes",),
            ),
            (
                "qlora-fsdp",
                ["--devices", "2", "--methods", "qlora", "--set", "strategy=fsdp"],
                ("qlora does not train under fsdp", "4-bit"),
            ),
            (
                "fsdp-8-bit-optimizer",
                ["--devices", "2", "--methods", "full-ft", "--set", "strategy=fsdp"]
                + ["--set", "optimizer=adamw-8bit"],
                ("8-bit optimizers", "sharded"),
            ),
            (
                "cpu-offload-without-a-gpu",
                ["--devices", "2", "--set", "strategy=fsdp", "--set", "cpu_offload=true"],
                ("without a GPU", "host memory already"),
            ),
            (
                "cpu-offload-with-ddp",
                ["--devices", "2", "--set", "strategy=ddp", "--set", "cpu_offload=true"],
                ("cpu_offload is FSDP's",),
            ),
        )
    ],
    (
        "run-ladder-on-devices",
        lambda t: ["run", copy_demo(DEMO_CLASSIFY, t), "--ladder", "--devices", "2"],
        ("--ladder runs in one process",),
    ),
]


@pytest.mark.parametrize(("setup", "words"), [c[1:] for c in NOISY], ids=[c[0] for c in NOISY])
def test_noisy_cases_say_what_to_do(cli, tmp_path, setup, words):
    argv = setup(tmp_path)
    before = tree_digest(tmp_path)
    outcome = cli(*argv)
    errors = [line for line in outcome.stderr.splitlines() if line.startswith("adaptwise: error")]
    assert outcome.code == 2 and len(errors) == 1, outcome.stderr
    assert "Traceback" not in outcome.stderr
    for word in words:
        assert word in errors[0], errors[0]
    assert tree_digest(tmp_path) == before  # nothing written, no empty --out left


def test_convert_makes_ids_unique_and_from_repo_takes_a_string_comment(cli, tmp_path):
    rows = [{"id": "same", "instruction": "Route it.", "input": f"parcel {i}", "output": "x"}
            for i in range(6)]  # fmt: skip
    (tmp_path / "dup.json").write_text(json.dumps(rows))
    out = tmp_path / "task"
    assert cli("data", "convert", tmp_path / "dup.json", "--from", "alpaca", "--kind",
               "generation", "--out", out).code == 0  # fmt: skip
    from experiments.task import load_task

    task = load_task(out / "task.yaml")  # run accepts it: no repeated id
    ids = [r.id for r in task.train + task.eval]
    assert len(set(ids)) == 6 and "same" in ids
    repo = make_repo(tmp_path)
    prs = [{"number": 3, "title": "Fix", "comments": "one comment as a string", "diff": ""}]
    (tmp_path / "prs.json").write_text(json.dumps(prs))
    outcome = cli("data", "from-repo", repo, "--prs", tmp_path / "prs.json", "--out",
                  tmp_path / "repo-task")  # fmt: skip
    assert outcome.code == 0, outcome.stderr
    raw = (tmp_path / "repo-task" / "raw.jsonl").read_text()
    assert "- one comment as a string" in raw and "- o\\n- n" not in raw


def test_report_md_carries_no_raw_html_from_the_users_names(tmp_path):
    from experiments.report.markdown import render_report

    task = {"name": "<script>alert(1)</script>", "kind": "classification", "metric": "accuracy",
            "n_eval": 1, "n_train": 1, "labels": ["<img src=x onerror=alert(1)>", "b"]}  # fmt: skip
    text = render_report({"task": task, "methods": {}, "options": {"model": "<b>m</b>"}})
    assert "<script" not in text and "<img" not in text and "<b>" not in text
    assert "&lt;script>" in text


@pytest.mark.parametrize(
    ("errno_name", "words"),
    [("EROFS", "read-only"), ("ENOSPC", "free some disk space"), ("EACCES", "may write to")],
)
def test_file_system_faults_are_one_line(cli, tmp_path, monkeypatch, errno_name, words):
    import errno

    import experiments.data.task_folder_writer as output

    def fail(*args, **kwargs):
        code = getattr(errno, errno_name)
        raise OSError(code, os.strerror(code), str(tmp_path / "task" / "train.jsonl"))

    monkeypatch.setattr(output, "set_default_modes", fail)
    source = alpaca_source(tmp_path)
    outcome = cli("data", "convert", source, "--from", "alpaca", "--kind", "generation", "--out",
                  tmp_path / "task")  # fmt: skip
    one_line(outcome, "train.jsonl", words)
    assert not (tmp_path / "task").exists() and not list(tmp_path.glob(".task.*"))


def test_an_index_with_malformed_chunks_is_one_line(indexed, cli, tmp_path):
    task_dir = tmp_path / "helpdesk-qa"
    shutil.copytree(indexed, task_dir)
    meta_path = task_dir / ".adaptwise" / "index" / "index.json"
    meta = json.loads(meta_path.read_text())
    meta["chunks"] = [{"id": 1, "unexpected": "field"}] * len(meta["chunks"])
    meta_path.write_text(json.dumps(meta))
    one_line(cli("index", task_dir / "task.yaml"), "index.json", "corrupted", "--rebuild")


def test_report_on_a_read_only_run_folder_is_one_line(cli, tmp_path, monkeypatch):
    import errno

    import experiments.report.write as report

    folder = tmp_path / "run"
    folder.mkdir()
    task = {"name": "t", "kind": "classification", "metric": "accuracy", "n_eval": 0,
            "n_train": 0, "labels": ["a", "b"]}  # fmt: skip
    (folder / "results.json").write_text(json.dumps({"task": task, "methods": {}}))

    def read_only(path, text):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(report, "write_text_atomic", read_only)
    monkeypatch.setattr("experiments.owned_files.write_text_atomic", read_only)
    one_line(cli("report", folder), "run", "Read-only file system", "writable folder")


def test_devices_must_agree_with_the_launcher(cli, tmp_path, monkeypatch):
    """Under torchrun (which sets LOCAL_RANK and WORLD_SIZE) --devices is the launcher's count."""
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    task = copy_demo(DEMO_CLASSIFY, tmp_path)
    outcome = cli("finetune", task, "--devices", "3", "--out", tmp_path / "out")
    one_line(outcome, "--devices 3, but the launcher started 2 processes")
