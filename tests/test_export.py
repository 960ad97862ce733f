"""`adaptwise export` on a real run of the tiny random Llama (tests/conftest.py) over a small QA
task with a corpus: recipes rebuild the run's prompts character for character; the GGUF, Ollama,
vLLM, adapter and merged formats hold what export.json says; every bad input is one line, exit
status 2, and nothing outside --out changes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from adaptwise.cli import main
from experiments.errors import AdaptwiseError
from experiments.export import chat_formats
from experiments.export.bundle import export_method
from experiments.export.recipe import load_recipe
from experiments.owned_files import MANIFEST

METHODS = [
    "zero-shot",
    "few-shot-random",
    "few-shot-embedding",
    "few-shot-jaccard-k2",
    "few-shot-mmr-k2",
    "rag",
    "rag-dense-k1",
    "lora",
    "full-ft",
    "rag+lora",
]
FINETUNE = {
    "max_steps": 2,
    "batch_size": 2,
    "max_length": 128,
    "rank": 4,
    "alpha": 8,
    "val_fraction": 0,
    "forgetting_probe": False,
}
DOCS = {
    "hub": "The Beacon hub needs 90 seconds to boot. The LED ring pulses blue when it is "
    "ready. Keep the hub 50 cm away from the router and from microwave ovens.",
    "refunds": "Refunds reach your card within 5 working days. Gift cards cannot be "
    "refunded. Returns are free within 30 days of delivery when the item is unused.",
    "lantern": "The Lantern outdoor light costs 89.90 euros and is rated IP65. It supports "
    "Matter from firmware 4.2.",
    "halo": "The Halo bulb costs 14.90 euros. It dims from 1 to 100 percent and lasts 25,000 "
    "hours. A Halo starter kit holds two bulbs and the hub.",
}
TRAIN = [
    ("How long does the hub take to boot?", "90 seconds", "hub"),
    ("How much is the Lantern?", "89.90 euros", "lantern"),
    ("When do refunds reach my card?", "within 5 working days", "refunds"),
    ("How long does a Halo bulb last?", "25,000 hours", "halo"),
    ("Can gift cards be refunded?", "no", "refunds"),
    ("Which rating does the Lantern have?", "IP65", "lantern"),
]
EVAL = [
    ("How far from the router should the hub be?", "50 cm", "hub"),
    ("What does a Halo cost?", "14.90 euros", "halo"),
    ("Within how many days are returns free?", "30 days", "refunds"),
    ("From which firmware does the Lantern support Matter?", "4.2", "lantern"),
]


def _rows(rows, prefix):
    return "".join(
        json.dumps({"id": f"{prefix}{i}", "input": q, "output": a, "context_ids": [d]}) + "\n"
        for i, (q, a, d) in enumerate(rows)
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model):
    """A run folder of every kind of method, on the tiny model (about a minute on 2 cores)."""
    from experiments.context import RunOptions
    from experiments.run.runner import run_task
    from experiments.task import load_task

    root = tmp_path_factory.mktemp("export-run")
    task_dir = root / "task"
    (task_dir / "docs").mkdir(parents=True)
    for name, text in DOCS.items():
        (task_dir / "docs" / f"{name}.md").write_text(text, encoding="utf-8")
    (task_dir / "train.jsonl").write_text(_rows(TRAIN, "t"), encoding="utf-8")
    (task_dir / "eval.jsonl").write_text(_rows(EVAL, "e"), encoding="utf-8")
    (task_dir / "task.yaml").write_text(
        "name: tiny-help\nkind: qa\ninstruction: Answer from the help centre.\n"
        "train: train.jsonl\neval: eval.jsonl\ncorpus: docs/\n"
        "rag:\n  chunk_tokens: 32\n  overlap_tokens: 4\n",
        encoding="utf-8",
    )
    options = RunOptions(
        model=str(tiny_model), k=2, max_new_tokens=3, extra={"finetune": dict(FINETUNE)}
    )
    out = root / "run"
    run_task(load_task(task_dir / "task.yaml"), METHODS, out, options)
    return out


def records(run_dir: Path, method: str) -> dict[str, str]:
    lines = (run_dir / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    recs = [json.loads(line) for line in lines if line.strip()]
    return {r["id"]: r["prompt"] for r in recs if r["method"] == method}


@pytest.mark.parametrize(
    "method",
    [
        "few-shot-embedding",
        "few-shot-mmr-k2",
        "few-shot-jaccard-k2",
        "few-shot-random",
        "rag",
        "rag-dense-k1",
        "rag+lora",
        "zero-shot",
    ],
)
def test_recipe_rebuilds_the_runs_prompts(run, tmp_path, tiny_model, method):
    from experiments.task import load_task

    out = tmp_path / "recipe"
    record = export_method(run, method, "recipe", out, log=lambda _m: None)
    assert (out / "export.json").is_file() and (out / "MODEL_CARD.md").is_file()
    files = record["files"]
    assert files["recipe"] == "recipe.json" and files["pool"] == "pool.jsonl"
    if method.startswith("rag"):
        assert files["index"] == "index/" and (out / "index" / "index.json").is_file()
        assert not (out / "index" / "embeddings").exists()
    if method in ("few-shot-embedding", "few-shot-mmr-k2") or method.startswith("rag"):
        assert files["pool_vectors"] == "pool-vectors.npy"
    if method == "rag+lora":
        assert (out / "adapter" / "adapter_config.json").is_file()
    assert record["recipe"]["verified_rows"] == len(EVAL)

    recipe = load_recipe(out)  # a fresh load, independent of the export's own check
    assert recipe.model_spec == str(Path(tiny_model).resolve())
    assert recipe.trained == (out / "adapter" if method == "rag+lora" else None)
    task = load_task(json.loads((run / "results.json").read_text())["task"]["path"])
    recorded = records(run, method)
    rebuilt = recipe.prompts_for(task.eval)
    assert [p.text for p in rebuilt] == [recorded[r.id] for r in task.eval]
    one = recipe.prompt_for({"input": "Is the Lantern waterproof?"})
    assert "Answer from the help centre." in one.text and "Is the Lantern waterproof?" in one.text
    assert one.text == recipe.prompt_for("Is the Lantern waterproof?").text


def test_recipe_of_a_moved_run_still_loads(run, tmp_path):
    out = tmp_path / "recipe"
    export_method(run, "rag", "recipe", out, log=lambda _m: None)
    moved = tmp_path / "elsewhere" / "shipped"
    shutil.move(str(out), moved)
    recipe = load_recipe(moved)
    assert recipe.name == "rag" and recipe.kind == "qa"
    assert "[1] " in recipe.prompt_for("How much is the Lantern?").text  # a passage


def gguf_tensors(path: Path) -> dict:
    import gguf

    reader = gguf.GGUFReader(path)
    return {
        t.name: gguf.quants.dequantize(t.data, t.tensor_type).reshape(tuple(reversed(t.shape)))
        for t in reader.tensors
    }


def test_gguf_export_of_lora(run, tmp_path, tiny_model):
    import gguf
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "gguf"
    record = export_method(run, "lora", "gguf", out, log=lambda _m: None)
    files = record["files"]
    assert files["base_gguf"] == "base-f16.gguf"
    assert files["adapter_gguf"] == "adapter-f16.gguf"
    assert files["merged_gguf"] == "merged-f16.gguf"
    assert record["format"] == "gguf" and record["quant"] == "f16"
    assert record["method"] == {
        "name": "lora",
        "family": "lora",
        "trained": "lora",
        "description": record["method"]["description"],
    }
    assert record["base_model"]["source"] == "local-folder"
    assert record["chat"]["stop"] == ["<|im_end|>"]
    assert record["chat"]["eos_token"] == "<|im_end|>"
    assert record["chat"]["system"] == "Answer from the help centre."
    assert record["generation"]["stop_at_newline"] is True
    assert record["gguf"]["lora"] == {"rank": 4, "alpha": 8.0, "peft_alpha": 8.0}
    assert (
        "llama-server -m base-f16.gguf --lora adapter-f16.gguf" in record["serve"]["llama_server"]
    )
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["command"] == "export"
    assert set(manifest["entries"]) == {p.name for p in out.iterdir()} - {MANIFEST}

    # base + the adapter's delta (from the GGUF files) = the merged GGUF, weight for weight
    base, adapter = gguf_tensors(out / "base-f16.gguf"), gguf_tensors(out / "adapter-f16.gguf")
    merged = gguf_tensors(out / "merged-f16.gguf")
    alpha = gguf.GGUFReader(out / "adapter-f16.gguf").fields["adapter.lora.alpha"].contents()
    pairs = [n[: -len(".lora_a")] for n in adapter if n.endswith(".lora_a")]
    assert pairs
    for name in pairs:
        a, b = adapter[f"{name}.lora_a"], adapter[f"{name}.lora_b"]
        want = merged[name] - base[name]
        delta = b @ a * alpha / a.shape[0]
        assert np.abs(delta - want).max() <= 2e-3 * max(np.abs(merged[name]).max(), 1e-6), name

    # the merged GGUF, loaded by transformers, computes what the adapter on its base computes
    tok = AutoTokenizer.from_pretrained(tiny_model)
    ids = torch.tensor([tok("How much is the Lantern?")["input_ids"]])
    peft = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32), run / "lora/adapter"
    ).eval()
    gguf_model = AutoModelForCausalLM.from_pretrained(str(out), gguf_file="merged-f16.gguf")
    with torch.no_grad():
        want_logits = peft(ids).logits.float()
        got_logits = gguf_model.to(torch.float32)(ids).logits
    assert (got_logits - want_logits).abs().max() <= 2e-3 * want_logits.abs().max()

    # the card's figures are the run report's own analysis of the run folder
    from experiments.report.analysis import analyse
    from experiments.report.formatting import interval_text
    from experiments.report.run_folder import load_run

    analysis = analyse(*load_run(run))
    assert record["metrics"] == analysis["intervals"]["lora"]
    assert record["cost"] == analysis["costs"]["lora"]
    card = (out / "MODEL_CARD.md").read_text()
    assert f"| exact match | {interval_text(record['metrics']['exact_match'])} |" in card
    for words in ("## Measured cost", "llama-server -m base-f16.gguf", "**vLLM**", "## Data"):
        assert words in card


def test_ollama_modelfile(run, tmp_path):
    out = tmp_path / "ollama"
    record = export_method(run, "lora", "ollama", out, quant="q8_0", log=lambda _m: None)
    assert record["files"]["adapter_gguf"] == "adapter-q8_0.gguf"
    assert record["chat"]["family"] == "chatml"
    text = (out / "Modelfile").read_text()
    lines = text.splitlines()
    assert "FROM ./base-q8_0.gguf" in lines and "ADAPTER ./adapter-q8_0.gguf" in lines
    template = chat_formats.FAMILIES[0].ollama_template
    assert f'TEMPLATE """{template}"""' in text
    assert 'SYSTEM """Answer from the help centre."""' in lines
    assert 'PARAMETER stop "<|im_end|>"' in lines and "PARAMETER temperature 0" in lines
    assert record["serve"]["ollama"].startswith("ollama create tiny-help-lora -f Modelfile")


def test_vllm_and_adapter_and_merged(run, tmp_path, tiny_model):
    vllm = export_method(run, "lora", "vllm", tmp_path / "vllm", log=lambda _m: None)
    assert vllm["files"]["adapter"] == "adapter/"
    assert "base" not in vllm["files"]  # a local base folder is referenced, not copied
    command = vllm["vllm"]["command"]
    assert command == (
        f"vllm serve {Path(tiny_model).resolve()} --enable-lora --lora-modules "
        "tiny-help-lora=adapter --max-lora-rank 8"
    )
    assert command in (tmp_path / "vllm" / "vllm-serve.sh").read_text()
    adapter = export_method(run, "lora", "adapter", tmp_path / "adapter", log=lambda _m: None)
    assert (
        tmp_path / "adapter" / adapter["files"]["adapter"] / "adapter_model.safetensors"
    ).is_file()
    with pytest.raises(AdaptwiseError, match="merge=true"):  # this run did not merge
        export_method(run, "lora", "merged", tmp_path / "merged", log=lambda _m: None)
    assert not (tmp_path / "merged").exists()


def test_full_ft_exports_its_own_weights(run, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "gguf"
    record = export_method(run, "full-ft", "gguf", out, quant="bf16", log=lambda _m: None)
    assert set(record["files"]) == {"merged_gguf", "chat_template", "model_card"}
    assert record["files"]["merged_gguf"] == "merged-bf16.gguf" and "lora" not in record["gguf"]
    assert record["serve"]["llama_server"].startswith("llama-server -m merged-bf16.gguf")
    model_dir = run / "full-ft" / "model"
    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = torch.tensor([tok("Within how many days are returns free?")["input_ids"]])
    trained = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    loaded = AutoModelForCausalLM.from_pretrained(str(out), gguf_file="merged-bf16.gguf")
    with torch.no_grad():
        want, got = trained(ids).logits, loaded.to(torch.float32)(ids).logits
    assert (got - want).abs().max() <= 1e-2 * want.abs().max()
    with pytest.raises(AdaptwiseError, match="has no adapter"):
        export_method(run, "full-ft", "adapter", tmp_path / "a", log=lambda _m: None)


def test_a_hybrids_model_says_its_prompts_need_the_recipe(run, tmp_path):
    record = export_method(run, "rag+lora", "adapter", tmp_path / "a", log=lambda _m: None)
    assert record["method"]["family"] == "hybrid" and record["method"]["trained"] == "lora"
    assert "--method rag+lora --format recipe" in record["prompts_from"]
    assert (tmp_path / "a" / "adapter" / "adapter_config.json").is_file()


# --- bad input ----------------------------------------------------------------------------


def tree(folder: Path, skip: Path) -> dict:
    out = {}
    for path in sorted(folder.rglob("*")):
        if path == skip or skip in path.parents:
            continue
        out[str(path)] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture
def cli(capsys):
    def call(*args):
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.err

    return call


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--method", "qlora", "--format", "gguf"), "no method 'qlora'"),
        (("--method", "few-shot-embedding", "--format", "gguf"), "use --format recipe"),
        (("--method", "rag", "--format", "ollama"), "use --format recipe"),
        (("--method", "lora", "--format", "recipe"), "use --format adapter, merged, gguf"),
        (("--method", "lora", "--format", "onnx"), "choose one of recipe, adapter"),
        (("--method", "lora", "--format", "gguf", "--quant", "q2_k"), "--quant 'q2_k'"),
        (("--method", "lora", "--format", "adapter", "--quant", "q8_0"), "--quant applies"),
        (("--method", "lora", "--format", "merged"), "merge=true"),
    ],
)
def test_bad_input_is_one_line(run, tmp_path, cli, args, words):
    out = tmp_path / "out"
    before = tree(run.parent, out)
    code, err = cli("export", run, *args, "--out", out)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("adaptwise: error: "), err
    assert words in lines[0], lines[0]
    assert not out.exists()
    assert tree(run.parent, out) == before


def test_missing_adapter_and_foreign_architecture_are_one_line(run, tmp_path, cli, tiny_model):
    copy = tmp_path / "run-copy"
    shutil.copytree(run, copy)
    shutil.rmtree(copy / "lora" / "adapter")
    code, err = cli("export", copy, "--method", "lora", "--format", "gguf", "--out", tmp_path / "a")
    assert code == 2 and "lora/adapter: missing" in err and "--rerun lora" in err

    # the same run on a base whose config is not a Llama's
    other = tmp_path / "qwen"
    shutil.copytree(tiny_model, other)
    config = json.loads((other / "config.json").read_text())
    config.update(model_type="qwen2", architectures=["Qwen2ForCausalLM"])
    (other / "config.json").write_text(json.dumps(config))
    moved = tmp_path / "run-qwen"
    shutil.copytree(run, moved)
    results = json.loads((moved / "results.json").read_text())
    results["options"]["model"] = str(other)
    (moved / "results.json").write_text(json.dumps(results))
    out = tmp_path / "b"
    code, err = cli("export", moved, "--method", "lora", "--format", "gguf", "--out", out)
    assert code == 2 and "supports the Llama family" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_out_is_never_an_input_and_is_replaced_only_with_overwrite(run, tmp_path, cli):
    code, err = cli("export", run, "--method", "rag", "--format", "recipe", "--out", run.parent)
    assert code == 2 and "holds the input" in err
    out = tmp_path / "recipe"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    code, err = cli("export", run, "--method", "rag", "--format", "recipe", "--out", out)
    assert code == 2 and "not empty" in err
    code, err = cli(
        "export", run, "--method", "rag", "--format", "recipe", "--out", out, "--overwrite"
    )
    assert code == 2 and "was not" in err and (out / "mine.txt").read_text() == "keep me"
    fresh = tmp_path / "fresh"
    assert cli("export", run, "--method", "rag", "--format", "recipe", "--out", fresh)[0] == 0
    code, err = cli(
        "export", run, "--method", "zero-shot", "--format", "recipe", "--out", fresh, "--overwrite"
    )
    assert code == 0, err
    assert json.loads((fresh / "export.json").read_text())["method"]["name"] == "zero-shot"
    assert not (fresh / "index").exists()  # the earlier export's files went with it
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
    mode = os.stat(fresh / "export.json").st_mode & 0o777
    assert mode == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- chat formats -------------------------------------------------------------------------


LLAMA3 = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)
PHI3 = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + "
    "message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + "
    "message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
MISTRAL = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] "
    "+ '\n\n' %}{% set rest = messages[1:] %}{% else %}{% set sys = '' %}{% set rest = messages "
    "%}{% endif %}{% for message in rest %}{% if message['role'] == 'user' %}{% if loop.first %}"
    "{{ '[INST] ' + sys + message['content'] + ' [/INST]' }}{% else %}{{ '[INST] ' + "
    "message['content'] + ' [/INST]' }}{% endif %}{% else %}{{ message['content'] + eos_token }}"
    "{% endif %}{% endfor %}"
)
ALPACA = "{% for m in messages %}### {{ m['role'] }}:\n{{ m['content'] }}\n\n{% endfor %}"


@pytest.mark.parametrize(
    ("template", "family", "bos"),
    [
        (LLAMA3, "llama3", True),
        (PHI3, "phi3", False),
        (MISTRAL, "mistral", True),
        (None, "chatml", False),
    ],
)
def test_chat_templates_are_recognised(tiny_model, template, family, bos):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    if template is not None:
        tok.chat_template = template
    found = chat_formats.recognise(tok, "model")
    assert (found.family.name, found.bos_in_template) == (family, bos)


def test_an_unknown_chat_template_is_refused(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.chat_template = ALPACA
    with pytest.raises(AdaptwiseError, match="none of the formats"):
        chat_formats.recognise(tok, "model")
