"""The recommendation: a ladder of methods to try, in order, each with the answers that put it
there; the methods ruled out and why; and the warnings from Meta's series and the seeds.

The order is Meta's: start simple (in-context learning), measure, and add complexity (RAG, then
PEFT, then full fine-tuning) only until the goal is met. The answers decide which rungs are on
the ladder, which fine-tuning variant fits the hardware, and what to watch out for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial

from advisor.hosting_costs import advice_line
from advisor.questions import Answers

# Order of the ladder: cheapest first (Meta, "Adapting LLMs", part 1).
ORDER = (
    "zero-shot",
    "few-shot-embedding",
    "rag",
    "lora",
    "qlora",
    "rag+lora",
    "rag+qlora",
    "full-ft",
)
LOW_SCORE = 0.5  # Meta: "for starting accuracy under 50%, a few hundred examples help a lot"


@dataclass
class Advice:
    method: str
    reasons: list[str]


@dataclass
class Recommendation:
    ladder: list[Advice] = field(default_factory=list)
    ruled_out: list[Advice] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    hosting: str | None = None  # per month at the answered queries/day; None: not answered

    @property
    def methods(self) -> list[str]:
        return [r.method for r in self.ladder]

    def reasons_for(self, method: str) -> list[str]:
        return next((r.reasons for r in self.ladder + self.ruled_out if r.method == method), [])

    def to_dict(self) -> dict:
        return asdict(self)


# (method, gpu GB or None for CPU, model) -> None if it fits, else the reason it does not.
FitCheck = Callable[[str, float | None, str], str | None]


def recommend(answers: Answers, fit: FitCheck | None = None) -> Recommendation:
    """Turn answers into a ladder; `fit` says whether a fine-tuning method fits the hardware."""
    fit = fit or partial(estimator_fit, gpus=answers.gpu_count)
    rec = Recommendation()
    a = answers

    rec.ladder.append(Advice("zero-shot", ["baseline: start simple and measure before adapting"]))
    rec.ladder.append(
        Advice(
            "few-shot-embedding",
            [
                "in-context learning is the cheapest adaptation: nearest-neighbour examples in the "
                "prompt (KATE) need no training"
            ],
        )
    )

    _rag(a, rec)
    _peft(a, rec, fit)
    _full_ft(a, rec, fit)
    rec.ruled_out.append(
        Advice(
            "continued pre-training",
            [
                "needs billions of domain tokens and GPU weeks "
                "(FinPythia: 24B tokens, 18 days): not viable for a small "
                "team"
            ],
        )
    )
    rec.ruled_out.append(Advice("pre-training", ["10^5-10^7 GPU hours: not viable"]))
    _warnings(a, rec)
    if a.queries_per_day is not None:
        rec.hosting = advice_line(a.queries_per_day, gpu=a.gpu_memory_gb is not None)
    rec.ladder.sort(key=lambda r: ORDER.index(r.method) if r.method in ORDER else len(ORDER))
    return rec


def _rag(a: Answers, rec: Recommendation) -> None:
    """RAG on the ladder when the answers call for it and the task has a corpus."""
    rag_reasons = _rag_reasons(a)
    if rag_reasons and a.has_corpus is False:
        rec.ruled_out.append(
            Advice(
                "rag",
                [
                    "the task has no corpus to retrieve from: add `corpus: docs/` (a folder of "
                    ".txt/.md files, or a .jsonl of {id, text}) to the task file to try it ("
                    + "; ".join(rag_reasons)
                    + ")"
                ],
            )
        )
    elif rag_reasons:
        rec.ladder.append(Advice("rag", rag_reasons))
    else:
        rec.ruled_out.append(
            Advice(
                "rag",
                [
                    "no external or changing knowledge, citations or low hallucination "
                    "tolerance asked for: retrieval would add cost without a need"
                ],
            )
        )


def _peft(a: Answers, rec: Recommendation, fit: FitCheck) -> None:
    """The PEFT rung (LoRA, or QLoRA where only its 4-bit base fits) and, beside RAG, the
    hybrid of both; ruled out with the reason when it does not fit."""
    peft = _peft_decision(a, rec)
    if not peft:
        return
    method, reasons = peft
    problem = fit(method, a.gpu_memory_gb, a.model)
    if problem and method == "lora":
        q_problem = fit("qlora", a.gpu_memory_gb, a.model)
        if q_problem is None:
            rec.ruled_out.append(Advice("lora", [problem]))
            method, reasons = (
                "qlora",
                reasons + [f"LoRA does not fit ({problem}); QLoRA's 4-bit base does"],
            )
            problem = None
    if problem:
        rec.ruled_out.append(Advice(method, [problem]))
    else:
        rec.ladder.append(Advice(method, reasons))
        if "rag" in rec.methods:
            rec.ladder.append(
                Advice(
                    f"rag+{method}",
                    [
                        "RAG and fine-tuning are complementary: fine-tune for behaviour, "
                        "retrieve for facts (Balaguer et al. 2024: +6 points from fine-tuning, "
                        "+5 more from RAG on top)"
                    ],
                )
            )


def _rag_reasons(a: Answers) -> list[str]:
    reasons = []
    if a.external_knowledge == "yes":
        reasons.append(
            "you need knowledge the model lacks -> retrieval, since fine-tuning does "
            "not inject new knowledge well"
        )
    if a.data_dynamics in ("monthly", "weekly"):
        reasons.append(
            f"your knowledge changes {a.label('data_dynamics').lower()} -> RAG before "
            "any fine-tuning: a fine-tuned model's knowledge goes stale"
        )
    if a.citations == "yes":
        reasons.append("answers must cite sources -> RAG can cite the passages it used")
    if a.hallucination_tolerance == "low":
        reasons.append("low tolerance for made-up answers -> RAG grounds answers in retrieved text")
    return reasons


def _peft_decision(a: Answers, rec: Recommendation) -> tuple[str, list[str]] | None:
    """Whether PEFT goes on the ladder, and why; records why not in `rec.ruled_out`."""
    if a.labeled_examples == "0-49":
        rec.ruled_out.append(
            Advice(
                "lora",
                [
                    "fewer than 50 labeled examples: curate 50-100 good ones first "
                    "(quality over quantity, LIMA)"
                ],
            )
        )
        return None
    reasons = []
    if a.custom_style == "yes":
        reasons.append(
            "you need a custom tone, behaviour or format -> fine-tuning is typically right for that"
        )
    if _low_score_calls_for_tuning(a):
        reasons.append(
            f"measured zero-shot score {a.zero_shot_score:.2f} is under 0.5 -> a few "
            "hundred fine-tuning examples tend to help a lot"
        )
    if not reasons:
        if a.external_knowledge == "yes" or a.task_diversity == "many":
            why = (
                "the need is knowledge, not behaviour"
                if a.external_knowledge == "yes"
                else "many diverse tasks: fine-tuning would specialise the model"
            )
            if a.external_knowledge == "yes" and _low_score(a):
                why += (
                    f"; a measured zero-shot score of {a.zero_shot_score:.2f} does not change "
                    "that: fine-tuning does not inject the missing knowledge"
                )
            rec.ruled_out.append(Advice("lora", [f"{why}; prompting and RAG come first"]))
            return None
        reasons.append(
            "if prompting does not meet the goal, PEFT is the viable fine-tuning "
            "route (1-6% of parameters trained)"
        )
    if a.task_diversity == "many":
        reasons.append(
            "with many diverse tasks, train on all of them together to avoid specialising the model"
        )
    if a.budget == "low":
        return "qlora", reasons + ["low budget -> QLoRA's 4-bit base needs the least memory"]
    return "lora", reasons


def _low_score(a: Answers) -> bool:
    return a.zero_shot_score is not None and a.zero_shot_score < LOW_SCORE


def _low_score_calls_for_tuning(a: Answers) -> bool:
    """Meta's "under 50%, a few hundred examples help a lot" is about behaviour; when the need
    is knowledge, a low score means missing facts, which fine-tuning does not inject."""
    return _low_score(a) and a.external_knowledge != "yes"


def _full_ft(a: Answers, rec: Recommendation, fit: FitCheck) -> None:
    if a.labeled_examples != "5000+":
        rec.ruled_out.append(
            Advice(
                "full-ft",
                [
                    f"{a.label('labeled_examples').lower()} labeled examples: full "
                    "fine-tuning needs thousands, and on fewer it overfits and "
                    "forgets; PEFT gets most of the gain"
                ],
            )
        )
    elif a.budget != "high":
        rec.ruled_out.append(
            Advice(
                "full-ft",
                [
                    f"{a.budget} budget: full fine-tuning updates every weight and costs "
                    "GPU days; try PEFT first"
                ],
            )
        )
    elif a.custom_style != "yes" and not _low_score_calls_for_tuning(a):
        rec.ruled_out.append(
            Advice(
                "full-ft",
                [
                    "nothing calls for changing every weight: no custom behaviour or "
                    "format, and "
                    + (
                        "the low measured score comes from missing knowledge, which "
                        "fine-tuning does not inject"
                        if _low_score(a)
                        else "no low measured score"
                    )
                ],
            )
        )
    else:
        problem = fit("full-ft", a.gpu_memory_gb, a.model)
        if problem:
            rec.ruled_out.append(Advice("full-ft", [problem]))
        else:
            rec.ladder.append(
                Advice(
                    "full-ft",
                    [
                        "5,000+ examples and a high budget: full fine-tuning when "
                        "downstream quality is paramount, after PEFT"
                    ],
                )
            )


def _warnings(a: Answers, rec: Recommendation) -> None:
    tuned = [m for m in rec.methods if m in ("lora", "qlora", "full-ft")]
    if tuned and a.external_knowledge == "yes":
        rec.warnings.append(
            "Fine-tuning does not inject new knowledge well (Ovadia et al. 2023): "
            "use it for behaviour and format, and RAG for facts."
        )
    if tuned and a.custom_style == "yes":
        rec.warnings.append(
            "If your training outputs were written by a stronger model, imitation "
            "teaches style, not facts (Gudibande et al. 2023)."
        )
    if tuned and a.data_dynamics == "weekly":
        rec.warnings.append(
            "Your data changes weekly: anything fine-tuned into the model goes "
            "stale; plan a retraining cadence or keep facts in RAG."
        )
    if "full-ft" in rec.methods:
        rec.warnings.append(
            "Full fine-tuning risks catastrophic forgetting: compare the general-"
            "knowledge probe before and after."
        )
    if tuned:
        rec.warnings.append(
            "Check your data before training: duplicates, train/eval leakage and "
            "label balance decide fine-tuning results."
        )
    if a.expertise in ("none", "search") and tuned:
        rec.warnings.append(
            "No fine-tuning experience on the team: adaptwise runs the training, "
            "but budget time to read the loss curves and per-example errors."
        )
    if a.expertise in ("none", "finetuning") and "rag" in rec.methods:
        rec.warnings.append(
            "No search-system experience on the team: start with adaptwise's "
            "built-in FAISS pipeline and check retrieval recall before tuning it."
        )


# The training set-up the advisor assumes when it checks fit: what a small team would run first.
ADVISOR_SETUP = {"batch": 1, "seq": 1024, "gradient_checkpointing": True, "precision": "bf16"}


def estimator_fit(method: str, gpu_gb: float | None, model: str, gpus: int = 1) -> str | None:
    """Fit check from the calibrated memory estimator (advisor/memory.py): on one GPU, or on
    `gpus` of them, sharded with FSDP (QLoRA is not sharded)."""
    from advisor.architectures import resolve_shape
    from advisor.fit_suggestions import fits, suggest_fit
    from experiments.errors import AdaptwiseError

    try:
        shape = resolve_shape(model)
    except AdaptwiseError:
        return None  # unknown architecture: let the run find out
    params_b = shape.total_params / 1e9
    if gpu_gb is None:
        if method == "qlora":
            return "QLoRA needs a CUDA GPU for its 4-bit kernels; this machine has none"
        if params_b > CPU_TRAINABLE_B:
            return f"{model} has {params_b:.1f}B parameters: training it on a CPU is not practical"
        return None
    settings = dict(ADVISOR_SETUP)
    if method == "full-ft":
        settings["optimizer"] = "paged-adamw-8bit"
    ok, est = fits(shape, method, gpu_gb, **settings)
    if not ok and gpus > 1 and method != "qlora":
        settings.update(devices=gpus, strategy="fsdp")
        ok, est = fits(shape, method, gpu_gb, **settings)
    if ok:
        return None
    hint = suggest_fit(shape, method, gpu_gb, **settings)
    fix = f"; it would fit with: {hint[0].change}" if hint else ""
    where = f"each of {gpus} GPUs with FSDP" if settings.get("devices") else "the GPU"
    return (
        f"needs about {est.total_gb:.1f} GB of GPU memory at batch 1, sequence 1024 with "
        f"gradient checkpointing; {where} has {gpu_gb:g} GB{fix}"
    )


# LLaMA-Factory's rule of thumb (DOMAIN.md section 5): GB ~ k x billions of parameters.
RULE_OF_THUMB_K = {"qlora": 0.5, "lora": 2.0, "full-ft": 18.0}
KNOWN_PARAMS_B = {
    "smollm2-135m": 0.135,
    "qwen2.5-0.5b": 0.49,
    "llama-2-7b": 6.74,
    "mistral-7b": 7.24,
    "qwen2.5-7b": 7.62,
    "llama-3-8b": 8.03,
    "llama-2-13b": 13.0,
}
CPU_TRAINABLE_B = 1.0  # beyond ~1B parameters, training on a CPU takes days


def rule_of_thumb_fit(method: str, gpu_gb: float | None, model: str) -> str | None:
    """A coarse fit check used when no detailed estimator is given."""
    params = KNOWN_PARAMS_B.get(model.lower())
    if params is None:
        return None  # unknown size: let the run find out
    if gpu_gb is None:
        if method == "qlora":
            return "QLoRA needs a CUDA GPU for its 4-bit kernels; this machine has none"
        if params > CPU_TRAINABLE_B:
            return f"{model} has {params:g}B parameters: training it on a CPU is not practical"
        return None
    need = RULE_OF_THUMB_K[method] * params
    if need > gpu_gb:
        return f"needs about {need:.0f} GB of GPU memory, the GPU has {gpu_gb:g} GB"
    return None
