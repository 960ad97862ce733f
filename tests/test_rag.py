"""RAG: chunk spans, the embedding cache, index persistence and reload, retrieval metrics, the
`rag` method through the runner, and every bad input the issue lists (one line, exit 2, nothing
overwritten). Tiny corpora in tmp folders; the real embedded all-MiniLM-L6-v2."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from adaptwise.cli import main
from experiments.embeddings import Embedder
from experiments.errors import TaskError
from experiments.task import load_task
from rag.chunking import make_splitter, split_corpus
from rag.corpus import load_corpus
from rag.index import build_index, deserialize, recall_at_k, serialize
from rag.retrieval_metrics import grounding, retrieval_metrics
from rag.store import embedding_tokenizer, open_index

ROOT = Path(__file__).resolve().parent.parent

DOCS = {
    "hub": "# Hub setup\n\nThe Beacon hub needs 90 seconds to boot. The LED ring pulses blue "
    "when it is ready.\n\n## Placement\n\nKeep the hub 50 cm away from the router and from "
    "microwave ovens, which interfere with the Zigbee signal.\n\n## Second hub\n\nHomes larger "
    "than 200 square metres may need a second hub.",
    "refunds": "# Refunds\n\nRefunds reach your card within 5 working days. Gift cards cannot "
    "be refunded. Returns are free within 30 days of delivery when the item is unused.",
    "lantern": "# Lantern\n\nThe Lantern outdoor light costs 89.90 euros and is rated IP65. "
    "It runs on the hub and supports Matter from firmware 4.2.",
}
QUESTIONS = [
    ("How long does the hub take to boot?", "90 seconds", "hub"),
    ("How much is the Lantern?", "89.90 euros", "lantern"),
    ("When do refunds reach my card?", "within 5 working days", "refunds"),
]


class CountingEmbedder(Embedder):
    """The real embedded model, counting the texts it embeds."""

    def __init__(self) -> None:
        super().__init__()
        self.embedded = 0

    def encode(self, texts, show_progress=False):
        self.embedded += len(texts)
        return super().encode(texts, show_progress)


_SHARED = CountingEmbedder()


@pytest.fixture
def embedder() -> CountingEmbedder:
    _SHARED.embedded = 0
    return _SHARED


def make_task(folder: Path, rag: str = "") -> Path:
    corpus = folder / "corpus"
    corpus.mkdir(parents=True)
    for name, text in DOCS.items():
        (corpus / f"{name}.md").write_text(text, encoding="utf-8")
    rows = [
        json.dumps({"id": f"q{i}", "input": q, "output": a, "context_ids": [d]})
        for i, (q, a, d) in enumerate(QUESTIONS)
    ]
    (folder / "train.jsonl").write_text(rows[0] + "\n")
    (folder / "eval.jsonl").write_text("\n".join(rows) + "\n")
    settings = rag or "rag:\n  chunk_tokens: 32\n  overlap_tokens: 4\n"
    (folder / "task.yaml").write_text(
        f"name: tiny\nkind: qa\ntrain: train.jsonl\neval: eval.jsonl\ncorpus: corpus/\n{settings}"
    )
    return folder / "task.yaml"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(capsys):
    """The real CLI entry point, in-process (a subprocess would re-import torch each time)."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main(list(args))
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return run


# --- chunking ---------------------------------------------------------------------------


def test_chunks_map_back_to_their_document_spans(tmp_path):
    task = load_task(make_task(tmp_path / "t"))
    docs = load_corpus(task.corpus)
    tokenizer = embedding_tokenizer(Embedder())
    chunks = split_corpus(docs, make_splitter(tokenizer, 24, 6))
    by_id = {d.id: d.text for d in docs}
    assert len(chunks) > len(docs)  # the documents were really split
    for c in chunks:
        assert by_id[c.doc_id][c.start : c.end] == c.text
        assert len(tokenizer.tokenize(c.text)) <= 24
    hub = [c for c in chunks if c.doc_id == "hub"]
    assert [c.id for c in hub] == [f"hub#{i}" for i in range(len(hub))]
    assert all(a.start < b.start for a, b in zip(hub, hub[1:]))
    assert any(b.start < a.end for a, b in zip(hub, hub[1:]))  # overlap kept
    covered = set()
    for c in hub:
        covered.update(range(c.start, c.end))
    assert all(i in covered for i, ch in enumerate(by_id["hub"]) if not ch.isspace())


def test_bad_chunk_settings_are_task_errors():
    with pytest.raises(TaskError, match="overlap"):
        make_splitter(embedding_tokenizer(Embedder()), 32, 32)


# --- cache, persistence, reload -----------------------------------------------------------


def test_cache_reload_and_changed_document(tmp_path, embedder):
    task = load_task(make_task(tmp_path / "t"))
    index, stats = open_index(task, embedder)
    assert stats.built and stats.embedded == stats.n_chunks == embedder.embedded > 3
    folder = index.folder
    assert folder == tmp_path / "t" / ".adaptwise" / "index"
    assert not list(folder.rglob("*.pkl")) and json.loads((folder / "index.json").read_text())
    first = [h.chunk.id for h in index.search(["How much is the Lantern?"], 3)[0]]

    # Unchanged corpus: reloaded from disk, nothing embedded but the query.
    embedder.embedded = 0
    again, stats = open_index(task, embedder)
    assert not stats.built and stats.embedded == 0 and embedder.embedded == 0
    assert [h.chunk.id for h in again.search(["How much is the Lantern?"], 3)[0]] == first
    assert embedder.embedded == 1  # the query

    # A forced rebuild takes every vector from the cache.
    embedder.embedded = 0
    _, stats = open_index(task, embedder, rebuild=True)
    assert stats.built and stats.embedded == 0 and embedder.embedded == 0

    # A changed document re-embeds only its own (changed) chunks.
    n_refund_chunks = sum(c.doc_id == "refunds" for c in index.chunks)
    path = tmp_path / "t" / "corpus" / "refunds.md"
    path.write_text(path.read_text() + " Refunds for business orders go to the invoice.")
    embedder.embedded = 0
    changed, stats = open_index(task, embedder)
    assert stats.built and 1 <= stats.embedded <= n_refund_chunks + 1
    assert embedder.embedded == stats.embedded
    hit = changed.search(["Where do refunds for business orders go?"], 1)[0][0]
    assert hit.chunk.doc_id == "refunds"


def test_index_dir_override_and_langchain_retriever(tmp_path, embedder, monkeypatch):
    monkeypatch.setenv("ADAPTWISE_INDEX_DIR", str(tmp_path / "elsewhere"))
    task = load_task(make_task(tmp_path / "t"))
    index, _ = open_index(task, embedder)
    assert index.folder == tmp_path / "elsewhere" / "tiny"
    assert not (tmp_path / "t" / ".adaptwise").exists()
    docs = index.as_langchain(k=2).invoke("When do refunds reach my card?")
    assert len(docs) == 2 and docs[0].metadata["doc_id"] == "refunds"
    assert docs[0].page_content in DOCS["refunds"]
    hybrid = index.search(["Lantern price in euros"], 2, mode="hybrid")[0]
    assert hybrid[0].chunk.doc_id == "lantern"


def test_jsonl_corpus(tmp_path, embedder):
    folder = tmp_path / "t"
    make_task(folder)
    lines = [json.dumps({"id": k, "text": v}) for k, v in DOCS.items()]
    (folder / "docs.jsonl").write_text("\n".join(lines) + "\n")
    spec = (folder / "task.yaml").read_text().replace("corpus/", "docs.jsonl")
    (folder / "task.yaml").write_text(spec)
    index, stats = open_index(load_task(folder / "task.yaml"), embedder)
    assert stats.n_docs == 3 and {c.doc_id for c in index.chunks} == set(DOCS)


# --- FAISS ---------------------------------------------------------------------------------


def test_ivf_index_reaches_target_recall_and_round_trips():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((50, 32)).astype(np.float32)
    vectors = centres[rng.integers(0, 50, 6000)] + 0.4 * rng.standard_normal((6000, 32))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    index, info = build_index(vectors, "ivf")
    assert info.kind == "ivf" and info.recall_vs_exact >= 0.95 and info.nprobe >= 1
    exact, _ = build_index(vectors, "auto")
    assert type(exact).__name__ == "IndexFlatIP"
    queries = vectors[:200] + 0.05
    _, truth = exact.search(queries, 5)
    _, found = index.search(queries, 5)
    assert recall_at_k(found, truth) >= 0.9
    again = deserialize(serialize(index))
    assert again.nprobe == index.nprobe and again.search(queries, 5)[1].tolist() == found.tolist()
    with pytest.raises(ValueError):
        deserialize(b"not an index")


# --- metrics ---------------------------------------------------------------------------------


def test_retrieval_metrics_beir_definitions():
    rankings = [["a", "a", "b", "c"], ["c", "b", "x"], ["z"]]
    golds = [["b"], ["b", "x"], []]
    m = retrieval_metrics(rankings, golds, k=3)
    assert m["n_queries"] == 2  # the row without gold documents is left out
    assert m["recall@1"] == 0.0
    assert m["recall@3"] == pytest.approx((1 + 1) / 2)
    assert m["recall@1"] <= m["recall@3"] <= m["recall@10"]
    assert m["mrr@10"] == pytest.approx((1 / 2 + 1 / 2) / 2)  # documents a,b / c,b
    g = grounding(["5 days", "blue"], [["within 5 working days"], ["red"]], [["5 days"], []])
    assert g["answer_tokens_in_retrieved"] == pytest.approx(0.5)
    assert g["answer_tokens_in_gold"] == pytest.approx(1.0)


# --- the method through the runner ---------------------------------------------------------


def test_rag_method_scored_by_runner(tmp_path):
    from experiments.context import RunOptions
    from experiments.run.runner import run_task

    task = load_task(make_task(tmp_path / "t"))
    out = tmp_path / "out"
    results = run_task(task, ["rag-k2"], out, RunOptions(limit=2, max_new_tokens=6))
    entry = results["methods"]["rag-k2"]
    assert entry["retrieval"]["n_queries"] == 2 and "mrr@10" in entry["retrieval"]
    assert entry["retrieval"]["recall@2"] == 1.0
    assert "answer_tokens_in_gold" in entry["grounding"]
    assert entry["rag"]["k"] == 2 and entry["rag"]["index_kind"] == "exact"
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 2 and all(len(p["retrieved"]) == 2 for p in preds)
    assert preds[0]["retrieved"][0]["doc"] == "hub"
    assert "[1] " in preds[0]["prompt"] and "[2] " in preds[0]["prompt"]
    assert "## Retrieval" in (out / "report.md").read_text()


@pytest.mark.parametrize("method", ["rag", "rag-hybrid-k3", "rag+lora"])
def test_rag_without_corpus_fails_in_check_before_any_model_loads(tmp_path, method):
    from experiments.context import RunContext, RunOptions
    from experiments.run.registry import make_method

    (tmp_path / "train.jsonl").write_text('{"input": "a", "output": "x"}\n')
    (tmp_path / "eval.jsonl").write_text('{"input": "b", "output": "x"}\n')
    path = tmp_path / "task.yaml"
    path.write_text("kind: qa\ntrain: train.jsonl\neval: eval.jsonl\n")
    ctx = RunContext(load_task(path), RunOptions())
    with pytest.raises(TaskError) as raised:
        make_method(method, {}).check(ctx)
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and "`corpus: docs/`" in message
    assert len(message.splitlines()) == 1
    assert "lm" not in vars(ctx)  # the runner checks before anything loads


def test_rag_check_passes_with_a_corpus_and_catches_bad_settings(tmp_path):
    from experiments.context import RunContext, RunOptions
    from experiments.run.registry import make_method

    good = load_task(make_task(tmp_path / "good"))
    make_method("rag", {}).check(RunContext(good, RunOptions()))
    bad = load_task(make_task(tmp_path / "bad", rag="rag:\n  k: 0\n"))
    with pytest.raises(TaskError, match="rag.k must be at least 1"):
        make_method("rag", {}).check(RunContext(bad, RunOptions()))


# --- the commands, and every bad input ------------------------------------------------------


def test_index_and_retrieve_commands(tmp_path, run_cli):
    task = make_task(tmp_path / "t")
    proc = run_cli("index", str(task))
    assert proc.returncode == 0, proc.stderr
    assert "chunks" in proc.stdout and "exact index" in proc.stdout and "MB" in proc.stdout
    proc = run_cli("retrieve", str(task), "How much is the Lantern?", "--top", "2")
    assert proc.returncode == 0, proc.stderr
    assert "lantern#0" in proc.stdout and "Lantern" in proc.stdout


def _expect_one_line_error(proc: Result, *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("adaptwise: error: "), proc.stderr
    for word in words:
        assert word in lines[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A task with a built index, copied by the bad-input tests."""
    root = tmp_path_factory.mktemp("built")
    task = make_task(root / "t")
    assert main(["index", str(task)]) == 0
    return root / "t"


def _copy(built: Path, tmp_path: Path) -> tuple[Path, Path]:
    import shutil

    shutil.copytree(built, tmp_path / "t")
    return tmp_path / "t" / "task.yaml", tmp_path / "t" / ".adaptwise" / "index"


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        ("empty", ["corpus is empty"]),
        ("not-utf8", ["bad.md", "not UTF-8"]),
        ("unreadable", ["gone.md", "cannot be read"]),
        ("too-large", ["hub.md", "larger than"]),
        ("other-model", ["all-MiniLM-L6-v2", "other-model", "--rebuild"]),
        ("corrupt-index", [".faiss", "corrupted"]),
        ("corrupt-metadata", ["index.json", "corrupted"]),
    ],
)
def test_bad_input_one_line_exit_2_nothing_overwritten(built, tmp_path, run_cli, damage, words):
    task, index_dir = _copy(built, tmp_path)
    corpus = task.parent / "corpus"
    meta_path = index_dir / "index.json"
    if damage == "empty":
        for f in corpus.iterdir():
            f.write_text("  \n")
    elif damage == "not-utf8":
        (corpus / "bad.md").write_bytes("caf\u00e9 cr\u00e8me".encode("latin-1"))
    elif damage == "unreadable":
        (corpus / "gone.md").symlink_to(corpus / "missing.md")  # a dangling link inside
    elif damage == "too-large":
        task.write_text(task.read_text() + "  max_document_mb: 0.0001\n")
    elif damage == "other-model":
        meta = json.loads(meta_path.read_text())
        meta["model"] = "other-model"
        meta_path.write_text(json.dumps(meta))
    elif damage == "corrupt-index":
        faiss_file = index_dir / json.loads(meta_path.read_text())["faiss_file"]
        faiss_file.write_bytes(b"\x00garbage" * 50)
    elif damage == "corrupt-metadata":
        meta_path.write_text('{"version": 1, "model": ')
    before = _snapshot(index_dir)
    for command in (["index", str(task)], ["retrieve", str(task), "a question"]):
        _expect_one_line_error(run_cli(*command), *words)
        assert _snapshot(index_dir) == before
    if damage in ("other-model", "corrupt-index", "corrupt-metadata"):
        proc = run_cli("index", str(task), "--rebuild")  # the way out works
        assert proc.returncode == 0, proc.stderr
        assert "0 embedded" in proc.stdout  # the vectors came from the cache


def test_rag_embeds_each_question_once_and_prepares_its_pool(tmp_path, embedder, tiny_model):
    """Train questions are searched (for the worked examples) and pooled (for the selector);
    eval questions are searched and matched to examples: in a whole run each text reaches the
    embedding model once, and the pool's embedding happens in prepare."""
    from experiments.context import RunContext, RunOptions
    from experiments.run.registry import make_method
    from experiments.run.runner import SilentProgress, run_method

    task = load_task(make_task(tmp_path / "t", rag="rag:\n  chunk_tokens: 32\n  shots: 1\n"))
    ctx = RunContext(task, RunOptions(model=str(tiny_model), max_new_tokens=2))
    ctx.__dict__["embedder"] = embedder
    method = make_method("rag", {})
    method.check(ctx)
    method.prepare(ctx)
    train_texts = {r.text for r in task.train}
    assert ctx.questions.encoded == len(train_texts)  # searched and pooled: embedded once
    run_method(ctx, make_method("rag", {}), task.eval, SilentProgress())  # a whole method
    assert ctx.questions.encoded == len(train_texts | {r.text for r in task.eval})
