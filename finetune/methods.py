"""The `lora`, `qlora` and `full-ft` methods: train on the task's train split, then score the
trained model on the eval set exactly as the prompting methods are scored (zero-shot prompt).

Artefacts go to `<run out>/<method>/`: `adapter/` (PEFT format) or `model/` (full-ft),
optionally `merged/`, `loss.csv`, `loss.png`, `training.json` and `checkpoints/`.
"""

from __future__ import annotations

from pathlib import Path

from experiments.context import RunContext
from experiments.errors import AdaptwiseError, SetupError
from experiments.methods import RESOLVERS, Method, Prediction, Progress, generate_answers
from experiments.methods import score_labels as _score_labels
from experiments.task import Row
from finetune.config import METHODS, FinetuneConfig, build_config

DESCRIPTIONS = {
    "lora": "zero-shot prompt; LoRA adapter trained on the train split",
    "qlora": "zero-shot prompt; LoRA adapter trained on a 4-bit NF4 base",
    "full-ft": "zero-shot prompt; every weight fine-tuned on the train split",
}


class FinetuneMethod(Method):
    """Fine-tune a fresh copy of the run's model in `prepare`, predict with it in `predict`."""

    def __init__(
        self, name: str, options: dict, folder_name: str | None = None, label: str | None = None
    ):
        self.name = name
        self.folder_name = folder_name or name  # hybrids train into their own folder
        self.label = label or name  # the run's method name in log lines
        self.description = DESCRIPTIONS[name]
        self.cli_settings = dict(options.get("finetune") or {})
        self.config: FinetuneConfig | None = None
        self.trained: RunContext | None = None
        self.stats: dict = {}

    def prepare(self, ctx: RunContext) -> None:
        from finetune.data import check_leakage, load_raw_text, split_validation
        from finetune.trainer import train_model

        config = build_config(
            self.name, ctx.task.settings.get("finetune", {}), self.cli_settings, ctx.seed
        )
        self.config = config
        check_leakage(ctx.task.train, ctx.task.eval, config.allow_leakage, ctx.log)
        train_rows, val_rows = split_validation(ctx.task.train, config.val_fraction, config.seed)
        train_rows, val_rows = self.training_rows(train_rows), self.training_rows(val_rows)
        raw_texts = load_raw_text(ctx.task.path.parent / config.raw_text) if config.raw_text else []
        checkpoint = str(ctx.lm.path) if ctx.lm.path else ctx.options.model
        if not checkpoint:
            raise SetupError("the run's model has no checkpoint folder to fine-tune from")
        folder = Path(ctx.out_dir or Path("runs") / ctx.task.name) / self.folder_name
        tokenizer = _fresh_tokenizer(checkpoint, ctx.options.trust_remote_code)
        model = None
        if config.method == "qlora":
            model = self._qlora_base(ctx, checkpoint)
        result = train_model(
            checkpoint,
            tokenizer,
            ctx.prompt_format,
            train_rows,
            val_rows,
            config,
            folder,
            log=ctx.log,
            model=model,
            raw_texts=raw_texts,
            label=self.label,
        )
        self.stats = result.stats
        self.trained = trained_context(ctx, result.model, f"{ctx.lm.name}+{self.name}")
        if config.forgetting_probe:
            self.stats["forgetting"] = self._forgetting(ctx, self.trained)

    def training_rows(self, rows: list[Row]) -> list[Row]:
        """The rows as trained on; RAFT puts retrieved passages into them."""
        return rows

    def _forgetting(self, ctx: RunContext, trained: RunContext) -> dict:
        """Probe accuracy before (the shared base model, scored once per run) and after."""
        from finetune.probe import compare, score_probe

        if "_probe_before" not in ctx.__dict__:
            ctx.__dict__["_probe_before"] = score_probe(ctx.model, ctx.tokenizer, ctx.prompt_format)
        after = score_probe(trained.model, trained.tokenizer, trained.prompt_format)
        result = compare(ctx.__dict__["_probe_before"], after)
        if result["change"] <= -0.1:
            ctx.log(
                f"warning: {self.label} forgot general knowledge: probe accuracy "
                f"{result['accuracy_before']:.2f} -> {result['accuracy_after']:.2f}"
            )
        return result

    def _qlora_base(self, ctx: RunContext, checkpoint: str):
        from finetune.qlora import load_4bit_model, probe_4bit

        reason = probe_4bit()
        if reason is None:
            return load_4bit_model(checkpoint)
        if not self.config.allow_fallback:
            raise SetupError(
                f"qlora: 4-bit training is not supported here: {reason}; set finetune "
                "allow_fallback: true to train plain LoRA instead"
            )
        ctx.log(f"qlora: 4-bit training is not supported here ({reason}); training plain LoRA")
        self.stats_fallback = reason
        return None

    def predict(self, ctx: RunContext, rows: list[Row], progress: Progress) -> list[Prediction]:
        if self.trained is None:
            raise AdaptwiseError(f"{self.name}: predict called before prepare")
        tctx = self.trained
        prompts = [tctx.prompt_format.build([], r.messages) for r in rows]
        if ctx.task.kind == "classification":
            return _score_labels(tctx, rows, prompts, [[] for _ in rows], progress)
        return generate_answers(tctx, rows, prompts, progress)

    def extra_results(
        self, ctx: RunContext, rows: list[Row], predictions: list[Prediction]
    ) -> dict:
        out = dict(self.stats)
        if getattr(self, "stats_fallback", None):
            out.setdefault("training", {})["fallback"] = f"plain LoRA: {self.stats_fallback}"
        self.trained = None  # free the trained model: the next method loads its own
        return out


def trained_context(ctx: RunContext, model, name: str) -> RunContext:
    """A RunContext like `ctx` whose model is the trained one (same tokenizer and prompts)."""
    from experiments.models import LanguageModel

    trained = RunContext(ctx.task, ctx.options, ctx.log)
    trained.out_dir = ctx.out_dir
    # cached_property values live in the instance dict: these replace the lazy loads.
    trained.__dict__["lm"] = LanguageModel(
        model=model, tokenizer=ctx.tokenizer, name=name, path=None
    )
    trained.__dict__["prompt_format"] = ctx.prompt_format
    return trained


def _fresh_tokenizer(checkpoint: str, trust_remote_code: bool):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def resolve(name: str, options: dict) -> Method | None:
    return FinetuneMethod(name, options) if name in METHODS else None


RESOLVERS.append(resolve)
