"""Meta's decision questions ("Adapting LLMs", part 2) as data, and the answers to them."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from advisor.hosting_costs import parse_queries_per_day
from experiments.errors import AdaptwiseError


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    why: str  # one line on why it matters, shown under the question
    choices: tuple[tuple[str, str], ...]  # (value, label)
    default: str


QUESTIONS: tuple[Question, ...] = (
    Question(
        "external_knowledge",
        "Does the application need knowledge the model does not have (your documents, "
        "products, policies)?",
        "Fine-tuning is typically not useful for injecting new knowledge; retrieval is.",
        (("no", "No"), ("yes", "Yes")),
        "no",
    ),
    Question(
        "custom_style",
        "Does it need a custom tone, behaviour, vocabulary or output format (e.g. strict JSON)?",
        "Tone, style and format are what fine-tuning teaches best.",
        (("no", "No"), ("yes", "Yes")),
        "no",
    ),
    Question(
        "hallucination_tolerance",
        "How tolerant is the application of made-up answers?",
        "RAG grounds answers in retrieved passages, which keeps hallucinations down.",
        (("low", "Low: a wrong answer is costly"), ("medium", "Medium"), ("high", "High")),
        "medium",
    ),
    Question(
        "labeled_examples",
        "How many labeled input/output examples do you have?",
        "50-100 good examples can already move a model; full fine-tuning needs thousands.",
        (
            ("0-49", "Fewer than 50"),
            ("50-499", "50 to 499"),
            ("500-4999", "500 to 4,999"),
            ("5000+", "5,000 or more"),
        ),
        "50-499",
    ),
    Question(
        "data_dynamics",
        "How often does the knowledge the application relies on change?",
        "A fine-tuned model's knowledge goes stale quickly on a dynamic corpus.",
        (("static", "Rarely"), ("monthly", "About monthly"), ("weekly", "Weekly or faster")),
        "static",
    ),
    Question(
        "citations",
        "Must answers cite their sources (transparency, audit)?",
        "RAG can cite the passages it used; a fine-tuned model cannot.",
        (("no", "No"), ("yes", "Yes")),
        "no",
    ),
    Question(
        "expertise",
        "What does the team already know how to run?",
        "RAG needs a search system; fine-tuning needs training and evaluation skills.",
        (
            ("none", "Neither"),
            ("search", "Search / retrieval"),
            ("finetuning", "Fine-tuning"),
            ("both", "Both"),
        ),
        "none",
    ),
    Question(
        "budget",
        "What compute budget is there for adaptation?",
        "Full fine-tuning costs GPU days; PEFT a fraction; prompting and RAG little up front.",
        (
            ("low", "Low: hours of one GPU at most"),
            ("medium", "Medium: a few GPU days"),
            ("high", "High"),
        ),
        "medium",
    ),
    Question(
        "task_diversity",
        "How many different tasks must the one model handle?",
        "Fine-tuning specialises a model; many diverse tasks favour prompting or RAG.",
        (
            ("one", "One narrow task"),
            ("few", "A few related tasks"),
            ("many", "Many diverse tasks"),
        ),
        "one",
    ),
    Question(
        "gpus",
        "How many GPUs can the team train on at once (of the size found or given)?",
        "A model whose training does not fit one GPU can be sharded over several with FSDP.",
        (
            ("1", "One, or none"),
            ("2", "2"),
            ("4", "4"),
            ("8", "8 (one node)"),
            ("16", "16 or more (several nodes)"),
        ),
        "1",
    ),
)
QUESTION_BY_ID = {q.id: q for q in QUESTIONS}


@dataclass(frozen=True)
class NumberQuestion:
    """A question answered with a number; empty means not answered (None)."""

    id: str
    text: str
    why: str
    placeholder: str


# Asked after the choice questions; optional.
NUMBER_QUESTIONS: tuple[NumberQuestion, ...] = (
    NumberQuestion(
        "queries_per_day",
        "How many queries per day will the adapted model serve in production?",
        "A hosted model's prompting costs per query; a self-hosted small model costs an "
        "always-on machine: which is cheaper depends on the volume.",
        "e.g. 10000; leave empty to skip",
    ),
)


@dataclass(frozen=True)
class Answers:
    """The questionnaire's answers, plus what the machine and a first run tell."""

    external_knowledge: str = "no"
    custom_style: str = "no"
    hallucination_tolerance: str = "medium"
    labeled_examples: str = "50-499"
    data_dynamics: str = "static"
    citations: str = "no"
    expertise: str = "none"
    budget: str = "medium"
    task_diversity: str = "one"
    gpus: str = "1"  # GPUs of gpu_memory_gb each that one training may use
    gpu_memory_gb: float | None = None  # None: CPU only
    model: str = "smollm2-135m"  # an architecture name, config.json or model folder
    zero_shot_score: float | None = None  # measured primary metric of zero-shot, 0-1
    has_corpus: bool | None = None  # whether the task names a corpus; None: no task known
    queries_per_day: float | None = None  # production volume; None: not asked or skipped

    def label(self, question_id: str) -> str:
        """The chosen answer as the user read it, for reasons that cite it."""
        value = getattr(self, question_id)
        return dict(QUESTION_BY_ID[question_id].choices).get(value, value)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def gpu_count(self) -> int:
        """The GPUs one training may use (1 without a GPU)."""
        return int(self.gpus) if self.gpu_memory_gb else 1

    def hardware(self) -> str:
        """ "CPU only", "GPU 24 GB" or "4 x GPU 24 GB"."""
        if not self.gpu_memory_gb:
            return "CPU only"
        count = f"{self.gpu_count} x " if self.gpu_count > 1 else ""
        return f"{count}GPU {self.gpu_memory_gb:g} GB"


def parse_answers(data: object, source: str = "answers") -> Answers:
    """Validate a mapping of answers (from YAML, JSON or the TUI); one clear error per problem."""
    if data is None:
        return Answers()
    if not isinstance(data, dict):
        raise AdaptwiseError(f"{source}: expected a mapping of question ids to answers")
    known = {f.name for f in fields(Answers)}
    values = {}
    for key, value in data.items():
        if key not in known:
            raise AdaptwiseError(
                f"{source}: unknown question {key!r}; known: {', '.join(sorted(known))}"
            )
        if key in QUESTION_BY_ID:
            allowed = [v for v, _ in QUESTION_BY_ID[key].choices]
            value = str(value).lower() if isinstance(value, bool | int | str) else value
            value = {"true": "yes", "false": "no"}.get(value, value)
            if value not in allowed:
                raise AdaptwiseError(f"{source}: {key} must be one of {', '.join(allowed)}")
        elif key in ("gpu_memory_gb", "zero_shot_score") and value is not None:
            if not isinstance(value, int | float) or value < 0:
                raise AdaptwiseError(f"{source}: {key} must be a non-negative number")
            if key == "zero_shot_score" and value > 1:
                raise AdaptwiseError(f"{source}: zero_shot_score is a fraction between 0 and 1")
        elif key == "queries_per_day":
            value = parse_queries_per_day(value, f"{source}: queries_per_day")
        elif key == "has_corpus" and value is not None and not isinstance(value, bool):
            raise AdaptwiseError(f"{source}: has_corpus must be true or false")
        values[key] = value
    return Answers(**values)


def load_answers(path: str | Path) -> Answers:
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AdaptwiseError(f"{path}: no such answers file") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise AdaptwiseError(f"{path}: not a readable YAML file ({type(exc).__name__})") from None
    return parse_answers(data, str(path))


def dump_answers(answers: Answers) -> str:
    """YAML for `--answers`, with each question as a comment above its answer."""
    lines = ["# adaptwise answers: edit and pass to `adaptwise advise --answers FILE`"]
    for q in QUESTIONS:
        allowed = " | ".join(v for v, _ in q.choices)
        lines += [f"# {q.text} ({allowed})", f"{q.id}: {getattr(answers, q.id)}"]
    lines += [
        "# GPU memory in GB, or null for CPU only",
        f"gpu_memory_gb: {answers.gpu_memory_gb if answers.gpu_memory_gb is not None else 'null'}",
        "# model architecture name, config.json or model folder",
        f"model: {answers.model}",
        f"# {NUMBER_QUESTIONS[0].text} (a number, or null)",
        "queries_per_day: "
        + (f"{answers.queries_per_day:g}" if answers.queries_per_day is not None else "null"),
    ]
    return "\n".join(lines) + "\n"
