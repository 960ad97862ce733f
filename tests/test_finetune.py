"""Fine-tuning: masking, the validation split, the leakage guard, settings, and tiny training
runs (a 2-layer random model with SmolLM2's tokenizer) for save/load/merge, resume, bad inputs
and the runner."""

import json
from pathlib import Path

import pytest

from experiments.errors import AdaptwiseError, OutOfMemory, TaskError
from experiments.prompts import PromptFormat
from experiments.task import Row, Task
from finetune.config import build_config
from finetune.data import check_leakage, split_validation, to_examples

LABELS = ["billing", "shipping", "returns"]
WORDS = {
    "billing": "I was charged twice for my order",
    "shipping": "Where is my parcel, tracking has not moved",
    "returns": "I want to send the lamp back for a refund",
}


def make_rows(n: int, prefix: str = "train") -> list[Row]:
    rows = []
    for i in range(n):
        label = LABELS[i % 3]
        text = f"{WORDS[label]} (case {prefix} {i})"
        rows.append(
            Row(f"{prefix}-{i}", ({"role": "user", "content": text},), label, (), f"{prefix}:{i}")
        )
    return rows


def make_task(n_train: int = 12, n_eval: int = 3, settings: dict | None = None) -> Task:
    return Task(
        name="tiny",
        kind="classification",
        path=Path("tiny.yaml"),
        train=make_rows(n_train),
        eval=make_rows(n_eval, "eval"),
        instruction="Classify the message.",
        labels=LABELS,
        metric="accuracy",
        settings={"finetune": settings or {}},
    )


@pytest.fixture(scope="session")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.pad_token = tok.pad_token or tok.eos_token
    return tok


def fmt_for(tokenizer, task: Task) -> PromptFormat:
    from experiments.prompts import system_text

    return PromptFormat(tokenizer, system_text(task))


def quick(method: str = "lora", **overrides):
    settings = {
        "max_steps": 3,
        "batch_size": 2,
        "max_length": 64,
        "evals_per_epoch": 8,
        "rank": 4,
        "alpha": 8,
        "learning_rate": 1e-3,
        **overrides,
    }
    return build_config(method, {}, settings, seed=0)


def train(tiny_model, tokenizer, task, config, folder, **kwargs):
    from finetune.trainer import train_model

    tr, va = split_validation(task.train, config.val_fraction, config.seed)
    logs: list[str] = []
    result = train_model(
        str(tiny_model),
        tokenizer,
        fmt_for(tokenizer, task),
        tr,
        va,
        config,
        folder,
        log=logs.append,
        **kwargs,
    )
    return result, logs


# --- data: split, leakage, settings ----------------------------------------------------------


def test_validation_split_is_seeded_disjoint_and_never_touches_eval():
    task = make_task(n_train=40)
    train_a, val_a = split_validation(task.train, 0.1, seed=3)
    train_b, val_b = split_validation(task.train, 0.1, seed=3)
    _, val_c = split_validation(task.train, 0.1, seed=4)
    assert [r.id for r in val_a] == [r.id for r in val_b]
    assert [r.id for r in val_a] != [r.id for r in val_c]
    assert len(val_a) == 4 and len(train_a) == 36
    assert {r.id for r in train_a} | {r.id for r in val_a} == {r.id for r in task.train}
    assert not {r.id for r in train_a} & {r.id for r in val_a}
    assert not {r.id for r in val_a} & {r.id for r in task.eval}
    assert split_validation(task.train, 0.0, seed=0) == (task.train, [])


def test_too_few_rows_for_a_validation_split():
    with pytest.raises(TaskError, match="too few to split off a validation set"):
        split_validation(make_rows(3), 0.1, seed=0)


def test_leakage_guard_normalises_whitespace_and_case():
    train = make_rows(6)
    leaked = Row(
        "e1",
        ({"role": "user", "content": "  " + train[2].messages[0]["content"].upper() + "\n"},),
        "returns",
        (),
        "eval.jsonl:1",
    )
    with pytest.raises(TaskError, match=r"1 eval row\(s\) also appear in train.*allow_leakage"):
        check_leakage(train, [leaked], allow=False)
    logs: list[str] = []
    assert check_leakage(train, [leaked], allow=True, log=logs.append) == 1
    assert "training anyway" in logs[0]
    assert check_leakage(train, make_rows(3, "eval"), allow=False) == 0


def test_demo_task_has_no_leakage():
    from experiments.task import load_task

    root = Path(__file__).resolve().parent.parent
    task = load_task(root / "demo/support-intents/task.yaml")
    assert check_leakage(task.train, task.eval, allow=False) == 0


def test_settings_merge_task_file_method_section_and_command_line():
    task_settings = {"epochs": 3, "rank": 8, "lora": {"rank": 4, "max-length": 128}}
    cfg = build_config("lora", task_settings, {"epochs": "1.5"}, seed=7)
    assert (cfg.rank, cfg.max_length, cfg.epochs, cfg.seed) == (4, 128, 1.5, 7)
    full = build_config("full-ft", task_settings, {}, seed=0)
    assert full.rank == 8 and full.lr == 5e-5 and cfg.lr == 5e-4
    with pytest.raises(TaskError, match="unknown setting 'rnak'"):
        build_config("lora", {"rnak": 4}, {}, seed=0)
    with pytest.raises(TaskError, match="val_fraction"):
        build_config("lora", {"val_fraction": 0.9}, {}, seed=0)
    with pytest.raises(TaskError, match="not a valid value"):
        build_config("lora", {"batch_size": "many"}, {}, seed=0)
    switches = build_config("lora", {"merge": "yes", "share_prefix": False}, {}, seed=0)
    assert switches.merge is True and switches.share_prefix is False
    for bad in ("maybe", 2):  # a typo must not silently mean "off"
        with pytest.raises(TaskError, match="share_prefix: .* is not a valid value"):
            build_config("lora", {}, {"share_prefix": bad}, seed=0)


# --- masking -----------------------------------------------------------------------------------


@pytest.mark.parametrize("packing", [False, True])
def test_prompt_and_padding_tokens_are_masked(tiny_model, tokenizer, tmp_path, packing):
    """Labels are -100 on every prompt token and on padding; the completion is learned."""
    from finetune.base_model import load_model
    from finetune.sft_trainer import make_trainer

    task = make_task(n_train=6)
    fmt = fmt_for(tokenizer, task)
    examples = to_examples(task.train, fmt)
    config = quick("full-ft", packing=packing, max_length=256)
    trainer = make_trainer(
        load_model(str(tiny_model), config), tokenizer, examples, [], config, tmp_path
    )
    data = trainer.train_dataset
    completions = [
        tokenizer(e["completion"], add_special_tokens=False)["input_ids"] for e in examples
    ]
    learned = [[t for t in labels if t != -100] for labels in data["labels"]]
    assert sorted(t for seq in learned for t in seq) == sorted(t for c in completions for t in c)
    if not packing:
        for ex, ids, labels, comp in zip(examples, data["input_ids"], data["labels"], completions):
            n_prompt = len(tokenizer(ex["prompt"], add_special_tokens=False)["input_ids"])
            assert labels[:n_prompt] == [-100] * n_prompt
            assert labels[n_prompt:] == ids[n_prompt:] == comp
            assert tokenizer.decode(comp).endswith(fmt.answer_end)
        batch = trainer.data_collator([data[0], data[1]])
        lengths = [len(data[0]["input_ids"]), len(data[1]["input_ids"])]
        short = lengths.index(min(lengths))
        if lengths[0] != lengths[1]:  # the shorter row is padded, and padding is not learned
            assert (batch["labels"][short, min(lengths) :] == -100).all()
    else:
        assert len(data) < len(examples)  # several rows share one packed sequence


# --- training, saving, loading, merging ------------------------------------------------------


def test_lora_trains_saves_adapter_and_merges(tiny_model, tokenizer, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    task = make_task(n_train=12)
    result, logs = train(tiny_model, tokenizer, task, quick(merge=True), tmp_path / "lora")
    stats = result.stats["training"]
    assert stats["steps"] == 3 and stats["val_rows"] == 1 and stats["train_rows"] == 11
    assert 0 < stats["trainable_params"] < stats["total_params"]
    assert stats["train_tokens"] > 0 and stats["tokens_per_s"] > 0
    assert stats["peak_memory_mb"] > 0 and stats["best_val_loss"] is not None
    assert stats["best_step"] in (1, 2, 3)
    folder = tmp_path / "lora"
    assert (folder / "adapter" / "adapter_config.json").is_file()
    assert (folder / "adapter" / "adapter_model.safetensors").is_file()
    assert not (folder / "checkpoints").exists()  # removed once training has finished
    csv_lines = (folder / "loss.csv").read_text().splitlines()
    assert csv_lines[0] == "step,epoch,train_loss,val_loss" and len(csv_lines) >= 3
    assert (folder / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert any("validation loss" in line for line in logs)

    ids = torch.tensor([tokenizer("Where is my parcel?")["input_ids"]])
    with torch.no_grad():
        expected = result.model(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_model)
        adapted = PeftModel.from_pretrained(base, folder / "adapter").eval()
        assert torch.allclose(adapted(input_ids=ids).logits, expected, atol=1e-4)
        merged = AutoModelForCausalLM.from_pretrained(folder / "merged").eval()
        assert torch.allclose(merged(input_ids=ids).logits, expected, atol=1e-4)
        plain = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
        assert not torch.allclose(plain(input_ids=ids).logits, expected, atol=1e-4)


def test_full_ft_saves_a_loadable_model_and_lowers_the_loss(tiny_model, tokenizer, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    task = make_task(n_train=12)
    config = quick("full-ft", max_steps=5, learning_rate=3e-3)
    result, _ = train(tiny_model, tokenizer, task, config, tmp_path / "full")
    stats = result.stats["training"]
    assert stats["trainable_params"] == stats["total_params"]
    assert stats["final_train_loss"] < stats["first_train_loss"]
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "full" / "model").eval()
    ids = torch.tensor([tokenizer("hello")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=ids).logits, result.model(input_ids=ids).logits)


# --- resume and bad inputs -----------------------------------------------------------------


class Interrupt(Exception):
    pass


def interrupt_at(step: int):
    from transformers import TrainerCallback

    class Stop(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step >= step:
                raise Interrupt

    return Stop()


def test_resume_continues_from_the_last_checkpoint(tiny_model, tokenizer, tmp_path):
    task = make_task(n_train=12)
    config = quick(max_steps=4)
    folder = tmp_path / "lora"
    with pytest.raises(Interrupt):
        train(tiny_model, tokenizer, task, config, folder, callbacks=[interrupt_at(2)])
    assert (folder / "checkpoints" / "checkpoint-2").is_dir()
    assert not (folder / "adapter").exists()  # nothing half-written
    result, logs = train(tiny_model, tokenizer, task, config, folder)
    stats = result.stats["training"]
    assert any("resuming from checkpoint-2" in line for line in logs)
    assert stats["resumed_from_step"] == 2 and stats["steps"] == 4
    assert stats["steps_this_run"] == 2
    # And it ends where the uninterrupted run ends (same seed, same data order, same adapter).
    whole, _ = train(tiny_model, tokenizer, task, config, tmp_path / "whole")
    uninterrupted = whole.stats["training"]
    for key in ("best_val_loss", "final_val_loss", "final_train_loss"):
        assert stats[key] == pytest.approx(uninterrupted[key], rel=1e-5), key


def test_corrupt_checkpoint_is_one_clear_error(tiny_model, tokenizer, tmp_path):
    task = make_task(n_train=12)
    config = quick(max_steps=4)
    folder = tmp_path / "lora"
    with pytest.raises(Interrupt):
        train(tiny_model, tokenizer, task, config, folder, callbacks=[interrupt_at(2)])
    (folder / "checkpoints" / "checkpoint-2" / "trainer_state.json").write_text("{not json")
    with pytest.raises(TaskError, match="checkpoint-2 is missing or corrupt.*resume: false"):
        train(tiny_model, tokenizer, task, config, folder)
    # resume: false starts afresh instead
    result, logs = train(tiny_model, tokenizer, task, quick(max_steps=4, resume=False), folder)
    assert result.stats["training"]["resumed_from_step"] is None


def test_rows_longer_than_max_length_are_counted(tiny_model, tokenizer, tmp_path):
    task = make_task(n_train=12)
    long_row = Row("long", ({"role": "user", "content": "word " * 80},), "billing", (), "x:1")
    task.train.append(long_row)
    _, logs = train(tiny_model, tokenizer, task, quick(max_steps=1), tmp_path / "lora")
    assert any("1 of 13 rows are longer than max_length=64" in line for line in logs)


def test_out_of_memory_names_the_settings_to_lower(tiny_model, tokenizer, tmp_path, monkeypatch):
    import torch
    from trl import SFTTrainer

    def boom(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(SFTTrainer, "train", boom)
    # the one advice (advisor/fit_suggestions.py after_out_of_memory): checkpointing first
    with pytest.raises(OutOfMemory, match="training lora; turn on gradient checkpointing"):
        train(tiny_model, tokenizer, make_task(), quick(), tmp_path / "lora")


# --- the runner --------------------------------------------------------------------------------


def test_runner_scores_lora_and_records_training(tiny_model, tmp_path):
    from experiments.context import RunOptions
    from experiments.run.runner import run_task

    task = make_task(n_train=12, n_eval=3)
    options = RunOptions(model=str(tiny_model), extra={"finetune": {"max_steps": 2, "rank": 4}})
    results = run_task(task, ["zero-shot", "lora"], tmp_path / "out", options)
    entry = results["methods"]["lora"]
    assert entry["n_eval"] == 3 and "accuracy" in entry["metrics"]
    assert entry["training"]["steps"] == 2
    probe = entry["forgetting"]
    assert probe["n_questions"] >= 30 and 0 <= probe["accuracy_after"] <= 1
    assert probe["change"] == round(probe["accuracy_after"] - probe["accuracy_before"], 4)
    assert (tmp_path / "out" / "lora" / "adapter" / "adapter_config.json").is_file()
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["methods"]["lora"]["training"]["trainable_params"] > 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Training" in report and "![lora loss curve](lora/loss.png)" in report
    assert (tmp_path / "out" / "lora" / "loss.png").is_file()


def test_runner_refuses_leaked_eval_rows(tiny_model, tmp_path):
    from experiments.context import RunOptions
    from experiments.run.runner import run_task

    task = make_task(n_train=12, n_eval=2)
    task.eval.append(task.train[0])
    with pytest.raises(AdaptwiseError, match="also appear in train"):
        run_task(task, ["lora"], tmp_path / "out", RunOptions(model=str(tiny_model)))


# --- QLoRA ---------------------------------------------------------------------------------------


def test_qlora_trains_a_fresh_4bit_base_and_the_loss_falls(tiny_model, tokenizer, tmp_path):
    from finetune.nf4_base import load_4bit_model, probe_4bit

    reason = probe_4bit()
    if reason is not None:
        pytest.skip(f"4-bit training unsupported here: {reason}")
    config = quick("qlora", max_steps=6, learning_rate=3e-3, val_fraction=0.0)
    model = load_4bit_model(str(tiny_model))
    result, _ = train(tiny_model, tokenizer, make_task(), config, tmp_path / "q", model=model)
    stats = result.stats["training"]
    assert stats["final_train_loss"] < stats["first_train_loss"]
    assert 0 < stats["trainable_params"] < stats["total_params"]
    assert (tmp_path / "q" / "adapter" / "adapter_model.safetensors").is_file()


def test_qlora_without_4bit_support_fails_or_falls_back(monkeypatch):
    from experiments.errors import SetupError
    from finetune import nf4_base as qlora
    from finetune.qlora import QloraMethod

    monkeypatch.setattr(qlora, "probe_4bit", lambda: "no 4-bit kernels")

    class Ctx:
        logs: list[str] = []

        def log(self, message):
            self.logs.append(message)

    method = QloraMethod("qlora", {})
    method.config = build_config("qlora", {}, {}, seed=0)
    with pytest.raises(SetupError, match="not supported here: no 4-bit kernels.*allow_fallback"):
        method.starting_model(Ctx(), "unused")
    method.config = build_config("qlora", {"allow_fallback": True}, {}, seed=0)
    ctx = Ctx()
    assert method.starting_model(ctx, "unused") is None  # None: train plain LoRA
    assert "training plain LoRA" in ctx.logs[-1]


# --- adapters, chat and the command line ------------------------------------------------------


def test_adapter_for_another_base_model_is_one_clear_error(tiny_model, tokenizer, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from finetune.adapters import load_adapter, reply

    result, _ = train(tiny_model, tokenizer, make_task(), quick(max_steps=1), tmp_path / "lora")
    adapter = tmp_path / "lora" / "adapter"
    same = load_adapter(AutoModelForCausalLM.from_pretrained(tiny_model), adapter)
    assert isinstance(reply(same, tokenizer, [{"role": "user", "content": "hi"}], 4), str)

    other = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    )
    with pytest.raises(AdaptwiseError, match="trained for another base model"):
        load_adapter(other, adapter)
    with pytest.raises(AdaptwiseError, match="not a PEFT adapter folder"):
        load_adapter(other, tmp_path)
    del torch


def test_finetune_command_rejects_leaked_eval_rows_with_exit_2(tiny_model, tmp_path):
    import subprocess
    import sys

    rows = [
        {"id": f"r{i}", "input": f"message number {i}", "output": LABELS[i % 3]} for i in range(8)
    ]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "eval.jsonl").write_text(json.dumps({**rows[0], "id": "e0"}) + "\n")
    (tmp_path / "task.yaml").write_text(
        "name: tiny\nkind: classification\ntrain: train.jsonl\neval: eval.jsonl\n"
    )

    def run(*extra):  # the settings are typed and checked in-process (test_settings_merge...)
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "adaptwise",
                "finetune",
                str(tmp_path / "task.yaml"),
                "--model",
                str(tiny_model),
                "--out",
                str(tmp_path / "out"),
                *extra,
            ],
            capture_output=True,
            text=True,
            check=False,
        )

    leak = run()
    assert leak.returncode == 2
    errors = [line for line in leak.stderr.splitlines() if line.startswith("adaptwise: error")]
    assert len(errors) == 1 and "also appear in train" in errors[0]
    assert "Traceback" not in leak.stderr
    assert not (tmp_path / "out" / "lora" / "adapter").exists()


def test_parse_settings():
    from adaptwise.running import parse_settings

    assert parse_settings(["rank=8", "learning_rate = none"]) == {
        "rank": "8",
        "learning_rate": None,
    }
    with pytest.raises(AdaptwiseError, match="expected KEY=VALUE"):
        parse_settings(["rank"])


def test_runner_scores_qlora_with_its_4bit_model(tiny_model, tmp_path):
    from experiments.context import RunOptions
    from experiments.run.runner import run_task
    from finetune.nf4_base import probe_4bit

    if probe_4bit() is not None:
        pytest.skip("4-bit training unsupported here")
    options = RunOptions(
        model=str(tiny_model),
        extra={"finetune": {"max_steps": 2, "rank": 4, "forgetting_probe": False}},
    )
    results = run_task(make_task(), ["qlora"], tmp_path / "out", options)
    entry = results["methods"]["qlora"]
    assert entry["n_eval"] == 3 and entry["training"]["steps"] == 2
    assert (tmp_path / "out" / "qlora" / "adapter" / "adapter_config.json").is_file()


def test_packed_rows_do_not_attend_to_each_other(tiny_model, tokenizer):
    """Packing relies on position ids restarting at 0 for each row, with no attention mask and
    no cache (TRL passes use_cache=False in training): then rows are masked from each other."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    a = tokenizer("I was charged twice", add_special_tokens=False)["input_ids"]
    b = tokenizer("Where is my parcel now?", add_special_tokens=False)["input_ids"]
    packed = torch.tensor([a + b])
    positions = torch.tensor([list(range(len(a))) + list(range(len(b)))])
    with torch.no_grad():
        together = model(input_ids=packed, position_ids=positions, use_cache=False).logits[0]
        alone_a = model(input_ids=torch.tensor([a])).logits[0]
        alone_b = model(input_ids=torch.tensor([b])).logits[0]
    assert torch.allclose(together[: len(a)], alone_a, atol=1e-4)
    assert torch.allclose(together[len(a) :], alone_b, atol=1e-4)


def _packed_items(tiny_model, tokenizer):
    """The tiny model (eval mode), its trainer and the last two packed sequences of a train set
    (rows really share sequences, and the two differ in length)."""
    from finetune.base_model import load_model
    from finetune.sft_trainer import make_trainer

    task = make_task(n_train=9)
    examples = to_examples(task.train, fmt_for(tokenizer, task))
    config = quick("full-ft", max_length=128, batch_size=2)
    model = load_model(str(tiny_model), config).eval()
    trainer = make_trainer(model, tokenizer, examples, [], config, Path("unused"))
    items = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))][-2:]
    assert any(len(item["seq_lengths"]) > 1 for item in items)
    assert len(items[0]["input_ids"]) != len(items[1]["input_ids"])
    return model, trainer, items


def _rows(items):
    for item in items:
        start = 0
        for n in item["seq_lengths"]:
            yield item["input_ids"][start : start + n]
            start += n


def test_packed_batch_keeps_one_sequence_per_row_and_rows_stay_apart(tiny_model, tokenizer):
    """The layout for models without row attention: one packed sequence per batch row, padded
    to the longest; each row's logits are those of that row run alone, and the first label of
    every row is masked."""
    import torch

    from finetune.batches import PackedBatchCollator
    from finetune.row_attention import restore_sdpa

    model, _, items = _packed_items(tiny_model, tokenizer)
    restore_sdpa(model)
    batch = PackedBatchCollator(tokenizer.pad_token_id)(items)
    width = max(len(item["input_ids"]) for item in items)
    assert batch["input_ids"].shape == (2, width) and "attention_mask" not in batch
    with torch.no_grad():
        together = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        for i, item in enumerate(items):
            start = 0
            for n in item["seq_lengths"]:
                ids = item["input_ids"][start : start + n]
                assert batch["position_ids"][i, start : start + n].tolist() == list(range(n))
                assert int(batch["labels"][i, start]) == -100
                alone = model(input_ids=torch.tensor([ids])).logits[0]
                assert torch.allclose(together[i, start : start + n], alone, atol=1e-4)
                start += n


@pytest.mark.parametrize("share_prefix", [False, True])
def test_flat_step_with_row_attention_keeps_rows_apart(tiny_model, tokenizer, share_prefix):
    """The CPU layout: the step's rows end to end with no padding, attention within each row
    (row attention), the prompt opening they share once at the start when `share_prefix`; each
    row's logits are those of that row run alone."""
    import torch

    from finetune.batches import FlatBatchCollator
    from finetune.row_attention import NAME

    model, trainer, items = _packed_items(tiny_model, tokenizer)
    assert isinstance(trainer.data_collator, FlatBatchCollator)
    assert model.config._attn_implementation == NAME
    batch = FlatBatchCollator(share_prefix=share_prefix)(items)
    rows = list(_rows(items))
    shared = batch["shared_prefix_len"]
    if share_prefix:  # the rows' system turn and instruction are the same
        assert shared >= 8 and all(r[:shared] == rows[0][:shared] for r in rows)
    else:
        assert shared == 0
    assert batch["input_ids"].shape == (1, shared + sum(len(r) - shared for r in rows))
    with torch.no_grad():
        together = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0]
        start = shared
        for ids in rows:
            alone = model(input_ids=torch.tensor([ids])).logits[0]
            assert torch.allclose(together[:shared], alone[:shared], atol=1e-4)
            end = start + len(ids) - shared
            assert torch.allclose(together[start:end], alone[shared:], atol=1e-4)
            assert batch["labels"][0, start].item() == -100  # predicted across rows: no loss
            start = end


def test_row_attention_without_offsets_is_plain_sdpa(tiny_model, tokenizer):
    """A model left on row attention generates as on SDPA: batched, left-padded prompts."""
    import torch

    from finetune.base_model import load_model
    from finetune.row_attention import restore_sdpa, use_row_attention

    model = load_model(str(tiny_model), quick("full-ft")).eval()
    texts = ["Hi", "Where is my parcel now?"]
    batch = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left")
    assert int(batch["attention_mask"].sum()) < batch["attention_mask"].numel()
    with torch.no_grad():
        plain = model(**batch).logits
        use_row_attention(model)
        rows = model(**batch).logits
        restore_sdpa(model)
    assert model.config._attn_implementation == "sdpa"
    assert torch.allclose(plain, rows, atol=1e-5)


def test_packed_and_padded_rows_layouts_train_identically(tiny_model, tokenizer, tmp_path):
    """The benchmark's two layouts (same rows per step; packed and flattened vs each row padded
    to max_length) give the same losses: packing changes the time, not the training."""
    task = make_task(n_train=20)
    stats = {}
    for layout in ("packed", "padded-rows"):
        config = quick("lora", max_length=128, batch_size=2, max_steps=3, val_fraction=0.2)
        result, _ = train(tiny_model, tokenizer, task, config, tmp_path / layout, layout=layout)
        stats[layout] = result.stats["training"]
        assert result.model.config._attn_implementation == "sdpa"  # as loaded, for inference
    packed, padded = stats["packed"], stats["padded-rows"]
    assert packed["train_tokens"] == padded["train_tokens"] > 0
    for key in ("first_train_loss", "final_train_loss", "best_val_loss"):
        assert packed[key] == pytest.approx(padded[key], rel=1e-3), key


def test_validation_loss_is_the_mean_over_completion_tokens(tiny_model, tokenizer):
    """Not the mean of per-batch means: the batch size and layout must not change it."""
    import torch
    import torch.nn.functional as F

    from finetune.base_model import load_model
    from finetune.sft_trainer import make_trainer

    task = make_task(n_train=7)
    examples = to_examples(task.train, fmt_for(tokenizer, task))
    losses = {}
    for batch_size, packing in ((1, False), (3, False), (2, True)):
        config = quick("full-ft", max_length=128, batch_size=batch_size, packing=packing)
        model = load_model(str(tiny_model), config)
        trainer = make_trainer(model, tokenizer, examples[:1], examples, config, Path("unused"))
        losses[(batch_size, packing)] = trainer.evaluate()["eval_loss"]
    total = count = 0
    with torch.no_grad():
        for ex in examples:
            prompt = tokenizer(ex["prompt"], add_special_tokens=False)["input_ids"]
            full = tokenizer(ex["prompt"] + ex["completion"], add_special_tokens=False)["input_ids"]
            logits = model(input_ids=torch.tensor([full])).logits[0]
            targets = torch.tensor(full[1:])
            keep = torch.arange(1, len(full)) >= len(prompt)
            total += F.cross_entropy(logits[:-1][keep], targets[keep], reduction="sum").item()
            count += int(keep.sum())
    for value in losses.values():
        assert value == pytest.approx(total / count, rel=1e-4)


def test_padded_baseline_pads_every_row_to_max_length(tiny_model, tokenizer, tmp_path):
    """The benchmark's baseline (the seed's collate): packing off, padded to max_length."""
    from finetune.base_model import load_model
    from finetune.sft_trainer import make_trainer

    task = make_task(n_train=6)
    examples = to_examples(task.train, fmt_for(tokenizer, task))
    config = quick("full-ft", packing=False, pad_to_multiple_of=128, max_length=128)
    trainer = make_trainer(
        load_model(str(tiny_model), config), tokenizer, examples, [], config, tmp_path
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    assert batch["input_ids"].shape == (3, 128)
    real = sum(len(trainer.train_dataset[i]["input_ids"]) for i in range(3))
    assert int((batch["labels"] != -100).sum()) < real < 3 * 128


# --- raw-text rows and the completion-only loss ------------------------------------------------


def test_raw_text_rows_learn_every_token_next_to_masked_prompt_rows(
    tiny_model, tokenizer, tmp_path
):
    from finetune.base_model import load_model
    from finetune.data import raw_examples
    from finetune.sft_trainer import make_trainer

    task = make_task(n_train=6)
    chat = to_examples(task.train, fmt_for(tokenizer, task))
    raw = raw_examples(["- File: a.py\nContent:\nprint('hello')\n", "# Notes\nThe hub is blue."])
    config = quick("full-ft", packing=False, max_length=256)
    trainer = make_trainer(
        load_model(str(tiny_model), config), tokenizer, chat + raw, [], config, tmp_path
    )
    data = trainer.train_dataset
    for i, example in enumerate(raw, start=len(chat)):
        ids, labels = data[i]["input_ids"], data[i]["labels"]
        expected = tokenizer(example["completion"], add_special_tokens=False)["input_ids"]
        assert ids[: len(expected)] == expected  # no prompt: the text starts the sequence
        assert labels == ids  # every raw token is learned (the end-of-text token too)
    for i in range(len(chat)):  # the chat rows keep their prompt masked
        assert data[i]["labels"][0] == -100


def test_raw_text_file_errors_name_file_and_line(tmp_path):
    from finetune.data import load_raw_text

    path = tmp_path / "raw.jsonl"
    path.write_text('{"id": "a", "text": "fine"}\n{"id": "b", "txt": "typo"}\n', encoding="utf-8")
    with pytest.raises(TaskError, match=r"raw\.jsonl:2: expected"):
        load_raw_text(path)
    with pytest.raises(TaskError, match="raw-text file not found"):
        load_raw_text(tmp_path / "missing.jsonl")
    path.write_text('{"id": "a", "text": "fine"}\n\n', encoding="utf-8")
    assert load_raw_text(path) == ["fine"]


def test_runner_trains_on_raw_text_mixed_with_question_rows(tiny_model, tmp_path):
    from experiments.context import RunOptions
    from experiments.run.runner import run_task

    (tmp_path / "raw.jsonl").write_text(
        "".join(
            json.dumps({"id": f"r{i}", "text": f"- File: src/m{i}.py\nContent:\nx = {i}\n"}) + "\n"
            for i in range(4)
        ),
        encoding="utf-8",
    )
    task = make_task(n_train=12, n_eval=2, settings={"raw_text": "raw.jsonl"})
    task.path = tmp_path / "task.yaml"
    options = RunOptions(model=str(tiny_model), extra={"finetune": {"max_steps": 2, "rank": 4}})
    results = run_task(task, ["lora"], tmp_path / "out", options)
    training = results["methods"]["lora"]["training"]
    assert training["raw_text_rows"] == 4
    assert training["train_rows"] == 4 + len(split_validation(task.train, 0.1, 0)[0])


def test_completion_loss_matches_trls_fused_loss(tiny_model, tokenizer, tmp_path):
    """The CPU path that projects only completion positions gives TRL's loss and gradients."""
    import torch
    from trl import SFTTrainer

    from finetune.base_model import load_model
    from finetune.sft_trainer import make_trainer

    task = make_task(n_train=8)
    config = quick("full-ft", max_length=128)
    model = load_model(str(tiny_model), config)
    trainer = make_trainer(
        model, tokenizer, to_examples(task.train, fmt_for(tokenizer, task)), [], config, tmp_path
    )
    assert type(trainer).compute_loss is not SFTTrainer.compute_loss
    batch = next(iter(trainer.get_train_dataloader()))
    results = []
    for compute in (SFTTrainer.compute_loss, type(trainer).compute_loss):
        model.zero_grad(set_to_none=True)
        loss = compute(trainer, model, dict(batch))
        loss.backward()
        grad = model.get_output_embeddings().weight.grad.clone()
        results.append((loss.detach(), grad))
    (loss_trl, grad_trl), (loss_ours, grad_ours) = results
    assert torch.allclose(loss_trl, loss_ours, atol=1e-5)
    assert torch.allclose(grad_trl, grad_ours, atol=1e-6)


# --- several processes ---------------------------------------------------------------------------


def write_task_files(folder: Path, finetune: str, n_train: int = 16, n_eval: int = 3) -> Path:
    """A classification task on disk (train.jsonl, eval.jsonl, task.yaml); its path."""
    for name, part in (("train", make_rows(n_train)), ("eval", make_rows(n_eval, "eval"))):
        (folder / f"{name}.jsonl").write_text(
            "".join(
                json.dumps({"id": r.id, "input": r.messages[0]["content"], "output": r.output})
                + "\n"
                for r in part
            ),
            encoding="utf-8",
        )
    (folder / "task.yaml").write_text(
        "name: tiny\nkind: classification\ntrain: train.jsonl\neval: eval.jsonl\n"
        f"labels: [{', '.join(LABELS)}]\nfinetune: {finetune}\n",
        encoding="utf-8",
    )
    return folder / "task.yaml"


def test_two_process_data_parallel_training_writes_once_and_agrees(tiny_model, tmp_path):
    """`accelerate launch` on several GPUs starts one process per device through
    torch.distributed.run; two CPU processes (gloo) take the same path: both train in step,
    only the main process writes the adapter and training.json, and the run completes. The
    tiny model fits one device, so `strategy: auto` is DDP; batch_size is the step's batch of
    both processes together."""
    import os
    import subprocess
    import sys

    task = write_task_files(
        tmp_path,
        "{max_steps: 2, rank: 4, batch_size: 2, max_length: 64, forgetting_probe: false}",
    )
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_PORT": "29517"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            "29517",
            "-m",
            "adaptwise",
            "finetune",
            str(task),
            "--model",
            str(tiny_model),
            "--methods",
            "lora",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    training = json.loads((out / "lora" / "training.json").read_text())
    assert training["steps"] == 2
    assert training["distributed"] == {"strategy": "ddp", "world_size": 2, "cpu_offload": False}
    assert training["memory_settings"]["micro_batch"] == 1  # 2 sequences a step, 1 each
    assert (out / "lora" / "adapter" / "adapter_config.json").is_file()
    assert not list((out / "lora").glob(".adapter.*"))  # no staging folder left behind
    results = json.loads((out / "results.json").read_text())
    assert results["methods"]["lora"]["n_eval"] == 3
    assert results["methods"]["lora"]["processes"] == 2
    assert [p["id"] for p in map(json.loads, (out / "predictions.jsonl").open())] == [
        f"eval-{i}" for i in range(3)
    ]  # scored in shares (eval-0 and eval-2 by one process, eval-1 by the other), in order


def test_fsdp_on_two_processes_trains_like_one_and_its_checkpoint_scores_alike(
    tiny_model, tmp_path
):
    """FSDP2 over 2 gloo processes (`--devices 2`, strategy fsdp: the model sharded as it
    loads) trains full fine-tuning and LoRA for the same steps on the same data as one
    process: every logged train and validation loss within 1e-3 of the one-process run
    (measured: equal to the 5 decimals loss.csv keeps). The full weights gathered to the first
    process load in one process (here, as the base of a zero-shot run) and score the eval rows
    as the sharded run did: the same labels, log-likelihoods within 2e-3."""
    import os
    import subprocess
    import sys

    from adaptwise.cli import main

    task = write_task_files(
        tmp_path,
        "{max_steps: 3, rank: 4, batch_size: 4, max_length: 64, forgetting_probe: false, "
        "learning_rate: 1.0e-3, evals_per_epoch: 4}",
        n_eval=4,
    )
    sharded, alone = tmp_path / "sharded", tmp_path / "alone"
    common = ["finetune", str(task), "--model", str(tiny_model), "--methods", "full-ft,lora"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "adaptwise", *common, "--devices", "2"]
        + ["--set", "strategy=fsdp", "--out", str(sharded)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert main([*common, "--out", str(alone)]) == 0

    results = json.loads((sharded / "results.json").read_text())
    assert results["options"]["devices"] == 2
    for method in ("full-ft", "lora"):
        training = results["methods"][method]["training"]
        assert training["distributed"] == {
            "strategy": "fsdp",
            "world_size": 2,
            "cpu_offload": False,
        }
        assert training["steps"] == 3
        curves = [
            (folder / method / "loss.csv").read_text().splitlines()[1:]
            for folder in (sharded, alone)
        ]
        assert len(curves[0]) == len(curves[1]) == 3
        for row_sharded, row_alone in zip(*curves):
            a, b = row_sharded.split(","), row_alone.split(",")
            assert a[:2] == b[:2]  # step, epoch
            for x, y in zip(a[2:], b[2:]):
                assert float(x) == pytest.approx(float(y), abs=1e-3), (method, a, b)
    assert (sharded / "lora" / "adapter" / "adapter_model.safetensors").is_file()

    # The gathered full-ft checkpoint, loaded in this one process.
    reloaded = tmp_path / "reloaded"
    model = str(sharded / "full-ft" / "model")
    argv = ["run", str(task), "--model", model, "--methods", "zero-shot", "--out", str(reloaded)]
    assert main(argv) == 0

    def predictions(folder, method):
        rows = [json.loads(line) for line in (folder / "predictions.jsonl").open()]
        return {r["id"]: r for r in rows if r["method"] == method}

    scored, again = predictions(sharded, "full-ft"), predictions(reloaded, "zero-shot")
    assert scored.keys() == again.keys() and len(scored) == 4
    for row_id, row in scored.items():
        assert row["output"] == again[row_id]["output"]
        assert row["label_logprobs"] == pytest.approx(again[row_id]["label_logprobs"], abs=2e-3)


def test_shared_prefix_stops_before_any_row_loses_a_label():
    """Only prompt tokens are shared, each row keeps at least one of them (its first token is
    predicted across rows, so must carry no loss), and raw-text rows share nothing."""
    from finetune.batches import MIN_SHARED_PREFIX, FlatBatchCollator

    prompt = list(range(100, 120))
    a = {"input_ids": prompt + [1, 2], "labels": [-100] * 20 + [1, 2]}
    b = {"input_ids": prompt + [3], "labels": [-100] * 20 + [3]}
    batch = FlatBatchCollator()([a, b])
    assert batch["shared_prefix_len"] == 19  # the same prompts: all but their last token
    assert batch["input_ids"][0].tolist() == prompt + [1, 2] + [prompt[-1], 3]
    assert batch["labels"][0].tolist() == [-100] * 20 + [1, 2, -100, 3]
    raw = {"input_ids": prompt + [4], "labels": prompt + [4]}
    assert FlatBatchCollator()([a, raw])["shared_prefix_len"] == 0
    short = {"input_ids": prompt[: MIN_SHARED_PREFIX - 1] + [5], "labels": [-100] * 7 + [5]}
    assert FlatBatchCollator()([a, short])["shared_prefix_len"] == 0
