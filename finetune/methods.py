"""What the fine-tuning methods share, top-down: prepare (the rows, the memory settings, the
model training starts from), train (finetune/trainer.py), then predict with the trained model on
the eval set exactly as the prompting methods score (zero-shot prompt). Each family is a file of
its own that says what is its own: the model its training starts from (`starting_model`):
`lora` (finetune/lora.py), `qlora` (finetune/qlora.py), `full-ft` (finetune/full_ft.py);
finetune/families.py builds them by name.

Artefacts go to `<run out>/<method>/`: `adapter/` (PEFT format) or `model/` (full-ft),
optionally `merged/`, `loss.csv`, `loss.png`, `training.json` and `checkpoints/`.
"""

from __future__ import annotations

import json
from pathlib import Path

from experiments.context import RunContext
from experiments.distributed import is_main
from experiments.errors import AdaptwiseError, OutOfMemory, SetupError
from experiments.methods import Method, Prediction, Progress, generate_answers
from experiments.methods import score_labels as _score_labels
from experiments.models import model_bytes
from experiments.owned_files import claim
from experiments.task import Row
from finetune.config import FinetuneConfig, build_config
from finetune.fitting import shares_base


class FinetuneMethod(Method):
    """Fine-tune in `prepare`, predict with the trained model in `predict`.

    LoRA trains its adapter on the run's own base model and scores through it; the adapter is
    removed in `extra_results`, so the next method sees the base exactly as before. QLoRA and
    full fine-tuning train a copy of their own, with the shared base freed meanwhile when both
    do not fit (finetune/fitting.py); the next method that needs it loads it again."""

    def __init__(
        self, name: str, options: dict, folder_name: str | None = None, label: str | None = None
    ):
        self.name = name
        self.trains = name
        self.folder_name = folder_name or name  # hybrids train into their own folder
        self.label = label or name  # the run's method name in log lines
        self.cli_settings = dict(options.get("finetune") or {})
        self.flag = options.get("finetune_flag", "--finetune")  # how the CLI names overrides
        self.config: FinetuneConfig | None = None
        self.trained: RunContext | None = None
        self.stats: dict = {}
        self.memory: dict = {}
        self._shared_state: dict | None = None
        self._adapter_model = None  # the PEFT model wrapping the shared base, while it has one
        self.needs_base = shares_base(name)
        self.options = options
        self.seed_override: int | None = None  # set by reseeded(): another seed's training

    def check(self, ctx: RunContext) -> None:
        """Validate the settings before any model loads (one line, exit 2, in seconds)."""
        from finetune.sharding import check_strategy

        precision = ctx.options.precision or ctx.task.precision or "auto"
        check_strategy(self._config(ctx), precision, ctx.options.devices)

    def _config(self, ctx: RunContext) -> FinetuneConfig:
        config = build_config(
            self.name,
            ctx.task.settings.get("finetune", {}),
            self.cli_settings,
            ctx.seed,
            flag=self.flag,
        )
        if self.seed_override is not None:
            config.seed = self.seed_override
        return config

    def seed_list(self, ctx: RunContext) -> list[int]:
        """seed, seed+1, ...: `run --seeds N`, else the task file's `finetune: seeds:`."""
        config = self._config(ctx)
        return [config.seed + i for i in range(ctx.options.seeds or config.seeds)]

    def reseeded(self, seed: int) -> FinetuneMethod:
        """This method trained with `seed`, into `<run out>/<folder>@seed<seed>/`."""
        from experiments.seeds import seed_name

        other = self.trained_anew()(
            self.name, self.options, seed_name(self.folder_name, seed), f"{self.label} seed {seed}"
        )
        other.seed_override = seed
        return other

    def prepare(self, ctx: RunContext) -> None:
        """Train (prepare: rows, memory settings, model) and load what scoring uses."""
        from finetune.sharding import resolve_strategy
        from finetune.trainer import train_model

        self.config = self._config(ctx)
        train_rows, val_rows, raw_texts = self._rows(ctx)
        checkpoint = str(ctx.lm.path) if ctx.lm.path else ctx.options.model
        if not checkpoint:
            raise SetupError("the run's model has no checkpoint folder to fine-tune from")
        folder = Path(ctx.out_dir or Path("runs") / ctx.task.folder_name) / self.folder_name
        # Never train into a folder of the user's; the first process records the claim.
        claim(folder.parent, "run", [folder.name], record=is_main())
        if self.config.forgetting_probe:
            self._probe_before(ctx)  # on the base, before LoRA trains on it
        config = self.config = self._fit_memory(ctx, checkpoint)
        strategy = resolve_strategy(config)
        tokenizer = _fresh_tokenizer(checkpoint, ctx.options.trust_remote_code)
        model = self._training_model(ctx, checkpoint, strategy)
        try:
            result = train_model(
                checkpoint,
                tokenizer,
                ctx.prompt_format,
                train_rows,
                val_rows,
                config,
                folder,
                log=ctx.log,
                emit=ctx.emit,
                model=model,
                raw_texts=raw_texts,
                label=self.label,
                precision=ctx.precision,
            )
        except BaseException:
            self.release(ctx)  # the shared base leaves a failed training as it came in
            raise
        self.stats = result.stats
        trained = result.model
        if strategy == "fsdp":
            del model
            trained = result.model = self._load_whole(ctx, result, tokenizer)
        self.trained = trained_context(ctx, trained, f"{ctx.lm.name}+{self.name}")
        if config.forgetting_probe:
            self.stats["forgetting"] = self._forgetting(ctx, self.trained)

    def _rows(self, ctx: RunContext) -> tuple[list[Row], list[Row], list[str]]:
        """(train rows, validation rows, raw texts), leakage into the eval rows refused."""
        from finetune.data import check_leakage, load_raw_text, split_validation

        config = self.config
        check_leakage(ctx.task.train, ctx.task.eval, config.allow_leakage, ctx.log)
        train_rows, val_rows = split_validation(ctx.task.train, config.val_fraction, config.seed)
        raw_texts = load_raw_text(ctx.task.path.parent / config.raw_text) if config.raw_text else []
        return self.training_rows(train_rows), self.training_rows(val_rows), raw_texts

    def _fit_memory(self, ctx: RunContext, checkpoint: str) -> FinetuneConfig:
        """The config with the memory settings the fit chose (finetune/fitting.py), said in one
        line; OutOfMemory when even the leanest do not fit; the shared base freed when both
        do not fit together."""
        from finetune.fitting import apply_choice, plan_memory
        from finetune.sharding import check_strategy, resolve_strategy

        config = self.config
        check_strategy(config, ctx.precision)
        memory = plan_memory(config, checkpoint, ctx.precision, model_bytes(ctx.model))
        self.memory = memory.to_dict()
        choice = memory.choice
        if choice is not None and not choice.fits and config.fit == "auto":
            raise OutOfMemory(
                f"{self.label} needs about {choice.estimate_gb:.1f} GB with the leanest settings "
                f"({choice.describe()}) and {choice.budget_gb:.1f} GB is usable"
                f"{_bound_by(memory.budget_source)}; "
                f"{choice.suggestion or 'use a smaller model'} (or set finetune fit: off to try)"
            )
        if config.strategy == "fsdp" and resolve_strategy(config) == "single":
            ctx.log(
                f"{self.label}: strategy fsdp shards over several processes (--devices N); "
                "this run has one, which trains alone"
            )
        if choice is not None:
            ctx.log(
                f"{self.label}: memory settings {choice.describe()} "
                f"(estimate {choice.estimate_gb:.1f} GB of {_budget(choice)}"
                f"{_bound_by(memory.budget_source, ', ')})"
            )
        if memory.release_shared:
            ctx.log(
                f"{self.label}: freeing the shared {memory.shared_gb:.1f} GB base model while "
                "this trains (both do not fit)"
            )
            ctx.release_model()
        return apply_choice(config, choice)

    def trained_anew(self) -> type[FinetuneMethod]:
        """The class that trains this method again (another seed): its own family's."""
        return type(self)

    def _training_model(self, ctx: RunContext, checkpoint: str, strategy: str):
        """The model training starts from: sharded as it loads (FSDP: a sharded copy of its own,
        LoRA's too), else the family's own (`starting_model`)."""
        from finetune.sharding import load_sharded

        if strategy == "fsdp":
            return load_sharded(checkpoint, self.config, ctx.precision)
        return self.starting_model(ctx, checkpoint)

    def starting_model(self, ctx: RunContext, checkpoint: str):
        """The model this family's training starts from; None: the trainer loads a copy of
        its own. Each family says (finetune/lora.py, qlora.py, full_ft.py)."""
        raise NotImplementedError(f"{self.name}: a fine-tuning family names its starting model")

    def adapter_on_shared_base(self, ctx: RunContext):
        """A fresh adapter put onto the run's shared base (one copy; `release` takes it off)."""
        from finetune.base_model import add_adapter

        self._shared_state = _training_state(ctx.model)
        self._adapter_model = add_adapter(ctx.model, self.config)
        return self._adapter_model

    def _load_whole(self, ctx: RunContext, result, tokenizer):
        """The checkpoint FSDP training saved, loaded whole in this process to score its rows
        (as `adaptwise chat` and `export` load it): the adapter on the run's shared base
        (taken off again in `release`), or the full model. The sharded model is freed first.
        `merge: true` writes merged/ from the adapter loaded here."""
        from experiments.atomic import write_text_atomic
        from experiments.distributed import barrier
        from experiments.models import free_memory
        from finetune.saving import save_dir, save_merged
        from finetune.sharding import release_weights

        training = result.stats["training"]
        release_weights(result.model)  # its hooks keep it alive: let go of its weights now
        result.model = None
        free_memory()
        model = self._load_weights(
            ctx, Path(training["adapter" if self.config.uses_lora else "model"])
        )
        if self.config.uses_lora and self.config.merge:
            merged = Path(training["adapter"]).parent / "merged"
            if is_main():
                save_dir(merged, lambda d: save_merged(model, tokenizer, d))
                write_text_atomic(
                    merged.parent / "training.json",
                    json.dumps({**training, "merged": str(merged)}, indent=2, default=str) + "\n",
                )
            training["merged"] = str(merged)
            barrier()
        return model

    def load_saved(self, ctx: RunContext, weights: Path) -> None:
        """Predict with weights saved earlier instead of training them: a PEFT adapter folder
        (put onto the run's own base, one copy, and taken off in release()) or a full model
        folder. A sweep's winner and `adaptwise predict` load a method's model this way."""
        self.config = self._config(ctx)
        model = self._load_weights(ctx, Path(weights))
        self.trained = trained_context(ctx, model, f"{ctx.lm.name}+{self.name}")

    def _load_weights(self, ctx: RunContext, weights: Path):
        """Saved weights, in eval mode: an adapter folder onto the run's shared base (one copy;
        release() takes it off again) or a full model folder."""
        from finetune.base_model import load_model

        if (weights / "adapter_config.json").is_file():
            from finetune.adapters import load_adapter

            self._shared_state = _training_state(ctx.model)
            model = self._adapter_model = load_adapter(ctx.model, weights)
        else:
            model = load_model(str(weights), self.config, ctx.precision)
        return model.eval()

    def training_rows(self, rows: list[Row]) -> list[Row]:
        """The rows as trained on; RAFT puts retrieved passages into them."""
        return rows

    def _probe_before(self, ctx: RunContext) -> None:
        """Score the forgetting probe on the base model, once per run."""
        from finetune.forgetting_probe import score_probe

        if "_probe_before" not in ctx.__dict__:
            ctx.__dict__["_probe_before"] = score_probe(ctx.model, ctx.tokenizer, ctx.prompt_format)

    def _forgetting(self, ctx: RunContext, trained: RunContext) -> dict:
        """Probe accuracy before (the shared base model, scored once per run) and after."""
        from finetune.forgetting_probe import compare, score_probe

        after = score_probe(trained.model, trained.tokenizer, trained.prompt_format)
        result = compare(ctx.__dict__["_probe_before"], after)
        if result["change"] <= -0.1:
            ctx.log(
                f"warning: {self.label} forgot general knowledge: probe accuracy "
                f"{result['accuracy_before']:.2f} -> {result['accuracy_after']:.2f}"
            )
        return result

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
        out["precision"] = ctx.precision
        out["memory"] = self.memory
        self.release(ctx)
        return out

    def release(self, ctx: RunContext) -> None:
        """Drop the trained model; a LoRA adapter on the shared base is taken off it."""
        from experiments.models import free_memory

        trained, self.trained = self.trained, None
        adapter, self._adapter_model = self._adapter_model, None
        if self._shared_state is not None and adapter is not None:
            restore_base(adapter, self._shared_state)
        self._shared_state = None
        del trained, adapter
        free_memory()


def _budget(choice) -> str:
    return "no budget" if choice.budget_gb is None else f"{choice.budget_gb:.1f} GB"


def _bound_by(source: str | None, before: str = " ") -> str:
    """Which limit the budget is (advisor/memory_limits.py), for a log line."""
    return f"{before}bound by {source}" if source else ""


def _training_state(model) -> dict:
    """What training changes on the shared base and `restore_base` puts back."""
    return {
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "use_cache": getattr(model.config, "use_cache", None),
    }


def restore_base(peft_model, state: dict) -> None:
    """Take the LoRA adapter off the shared base (not merged) and undo training's switches, so
    that the base computes exactly what it computed before the adapter was trained on it."""
    from finetune.sft_trainer import end_training

    end_training(peft_model)
    base = peft_model.unload() if hasattr(peft_model, "unload") else peft_model
    for name in ("peft_config", "_hf_peft_config_loaded"):
        if name in base.__dict__:
            delattr(base, name)
    flags = state["requires_grad"]
    for name, parameter in base.named_parameters():
        if name in flags:
            parameter.requires_grad_(flags[name])
    if state["use_cache"] is not None:
        base.config.use_cache = state["use_cache"]
    base.eval()


def trained_context(ctx: RunContext, model, name: str) -> RunContext:
    """A RunContext like `ctx` whose model is the trained one (same tokenizer and prompts)."""
    from experiments.models import LanguageModel

    trained = RunContext(ctx.task, ctx.options, ctx.log, ctx.emit)
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
