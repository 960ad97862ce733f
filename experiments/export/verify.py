"""`adaptwise verify`: does the served model answer as the measured one did?

The method's eval rows go to the served endpoint with exactly the prompts the run used (the
`prompt` of each row in predictions.jsonl, examples and retrieved passages included), sent as
text to the completions endpoint so that no chat template stands between the two. Labels are
scored by the best means the server offers (experiments/api_labels.py); generated answers
greedily, stopped as the run stopped them. Each row's served answer is compared with the run's:

- agreement: the share of rows with the same prediction (the gate: `--min-agreement`);
- the metric served vs measured, with the report's own paired test (McNemar on right/wrong);
- the largest difference of a label's log-probability, where the server gives prompt
  log-probs (the only path that computes the same number the run did);
- the rows that differ, with both answers.

When agreement is low it names the likely cause:
- a chat template: the server's own template (llama.cpp's /props) renders a conversation
  differently from the model the run measured, so clients that send messages get other prompts;
- an adapter not applied: the served answers are the base model's (the run's zero-shot rows,
  whose prompts are the same for a fine-tuned method) more often than the method's;
- otherwise quantization or numerics: export at f16 and verify again.

The outcome is written as `verify.json` in the run folder and as a section of its report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from experiments.errors import AdaptwiseError

VERIFY_FILE = "verify.json"
DEFAULT_MIN_AGREEMENT = 0.95
DEFAULT_CONCURRENCY = 4  # llama-server runs one slot: more requests only queue
ADAPTER_METHODS = ("lora", "qlora")
PROBE_MESSAGES = ({"role": "user", "content": "Which colour is the sky?"},)


@dataclass
class ServedRow:
    """What the served scoring needs of an eval row (as experiments.task.Row names it)."""

    id: str
    output: str  # the gold answer


@dataclass
class Verification:
    method: str
    server: str  # masked base URL and model
    scoring: str  # how the served labels or answers were obtained
    rows: int
    agreement: float
    min_agreement: float
    metric: str
    measured: float
    served: float
    paired_test: dict
    max_logprob_diff: float | None
    differing: list[dict]
    template: dict
    cause: str | None
    seconds: float
    base_agreement: float | None = None  # with the run's zero-shot rows (an adapter check)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.agreement >= self.min_agreement and self.cause is None

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items()}
        out["passed"] = self.passed
        return out

    def line(self) -> str:
        """The one line `verify` ends with."""
        head = (
            f"{self.method} at {self.server}: agreement {self.agreement:.3f} on {self.rows} rows "
            f"(--min-agreement {self.min_agreement:g}); {self.metric} served {self.served:.3f} vs "
            f"measured {self.measured:.3f}"
        )
        if self.passed:
            return head + "; the served model answers as the measured one did"
        return head + f"; likely cause: {self.cause or quantization_hint()}"


def quantization_hint() -> str:
    return (
        "quantization or numerics (the prompts and template match): export at f16 "
        "(adaptwise export --quant f16) and verify again"
    )


def verify_method(
    run_dir: Path,
    method: str,
    model: str,
    base_url: str | None,
    concurrency: int = DEFAULT_CONCURRENCY,
    cache: bool = True,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    limit: int | None = None,
    log=print,
    start=None,
    progress=None,
) -> Verification:
    """Verify the run's `method` against `model` (openai:NAME) served at `base_url`."""
    from experiments.api_cache import ResponseCache, default_cache_root
    from experiments.api_model import API_PREFIX, ApiClient, base_url_of, is_api_model
    from experiments.export.source import read_method

    if not is_api_model(model):
        raise AdaptwiseError(f"--model {model}: name the served model as openai:NAME")
    if not 0 < min_agreement <= 1:
        raise AdaptwiseError(f"--min-agreement {min_agreement:g}: give a share from 0 to 1")
    started = time.perf_counter()
    source = read_method(Path(run_dir), method)
    task = source.results["task"]
    records = source.predictions  # in the run's order of eval rows
    if limit:
        records = records[:limit]
    if not records:
        raise AdaptwiseError(f"{run_dir}: {method} has no predictions to verify")
    client = ApiClient(
        base_url_of(base_url),
        model[len(API_PREFIX) :],
        concurrency,
        ResponseCache(default_cache_root() if cache else None, log),
    )
    client.check_model()
    tokenizer = _run_tokenizer(source)
    template = _template_check(client, tokenizer, source)
    if start is not None:
        start(f"verify {method}", len(records))
    served = _serve_rows(client, source, tokenizer, records, log, progress)
    return _compare(source, task, records, served, client, template, min_agreement, started)


def _run_tokenizer(source):
    """The tokenizer of the model the run measured (its chat template and end-of-turn text)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source.base.checkpoint())
    except (OSError, ValueError) as exc:
        raise AdaptwiseError(
            f"{source.run_dir}: the run's model {source.base.name} does not load its tokenizer "
            f"({str(exc).splitlines()[0][:120]}); verify needs it for the end-of-turn text"
        ) from None


def _template_check(client, tokenizer, source) -> dict:
    """The server's chat template (llama.cpp's /props) against the measured model's, on one
    conversation with the method's system text; {} when the server does not show its own."""
    from experiments.api_template import TemplateTokenizer
    from experiments.prompts import system_text

    props = client.server_template()
    if props is None or not getattr(tokenizer, "chat_template", None):
        return {"checked": False, "why": "the server does not show its chat template (/props)"}
    messages = [
        {"role": "system", "content": system_text(source.prompt_task())},
        *PROBE_MESSAGES,
    ]
    served = TemplateTokenizer(
        props["chat_template"], props.get("bos_token"), props.get("eos_token")
    ).apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    measured = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return {
        "checked": True,
        "same": served == measured,
        "served": served,
        "measured": measured,
    }


def _serve_rows(client, source, tokenizer, records, log, progress) -> list:
    """The served predictions, one per record, through the same code as a served run."""
    from experiments.api_language_model import ApiLanguageModel
    from experiments.prompts import Prompt, PromptFormat, system_text

    task = source.results["task"]
    prompt_format = PromptFormat(tokenizer, system_text(source.prompt_task()))
    # The records' prompts are already rendered with the run's template: sent as they are.
    lm = ApiLanguageModel(client, tokenizer, client.where, template_source="the run's records")
    ctx = SimpleNamespace(
        task=SimpleNamespace(kind=task["kind"], labels=list(task.get("labels") or [])),
        prompt_format=prompt_format,
        lm=lm,
        log=log,
        max_new_tokens=_max_new_tokens(source),
    )
    rows = [ServedRow(str(r["id"]), str(r.get("gold", ""))) for r in records]
    prompts = [Prompt(str(r.get("prompt", "")), "") for r in records]
    tick = progress or (lambda _n: None)
    if task["kind"] == "classification":
        return lm.score_labels(ctx, rows, prompts, [[] for _ in rows], tick)
    return lm.generate_answers(ctx, rows, prompts, tick)


def _max_new_tokens(source) -> int:
    from experiments.context import default_max_new_tokens

    recorded = source.options.get("max_new_tokens")
    return int(recorded or default_max_new_tokens(source.results["task"]["kind"]))


def _compare(source, task, records, served, client, template, min_agreement, started):
    from experiments.metrics import METRICS_BY_KIND, row_values
    from experiments.report.stats import mcnemar_test
    from experiments.user_metric import is_user_metric

    kind, metric = task["kind"], task["metric"]
    if is_user_metric(metric):  # the served answers are compared by the kind's first metric:
        metric = METRICS_BY_KIND[kind][0]  # verify runs no code that a results.json names
    measured_out = [str(r.get("output", "")) for r in records]
    served_out = [p.output for p in served]
    same = [_same(kind, a, b) for a, b in zip(measured_out, served_out)]
    gold = [str(r.get("gold", "")) for r in records]
    measured_right = [row_values(kind, metric, o, g)[1] for o, g in zip(measured_out, gold)]
    served_values = [row_values(kind, metric, o, g) for o, g in zip(served_out, gold)]
    served_right = [right for _, right in served_values]
    measured_score = _mean(_metric_values(kind, metric, records))
    served_score = _mean([values.get(metric, 0.0) for values, _ in served_values])
    test = mcnemar_test(served_right, measured_right)
    differing = [
        {"id": r["id"], "measured": a, "served": b, "gold": g}
        for r, a, b, g, s in zip(records, measured_out, served_out, gold, same)
        if not s
    ]
    scoring = sorted({p.extra.get("scoring") for p in served if p.extra.get("scoring")})
    verification = Verification(
        method=source.name,
        server=client.where,
        scoring=", ".join(scoring),
        rows=len(records),
        agreement=sum(same) / len(same),
        min_agreement=min_agreement,
        metric=metric,
        measured=measured_score,
        served=served_score,
        paired_test={
            "test": test.test,
            "difference": round(test.diff, 4),
            "p_value": round(test.p, 4),
            "discordant": list(test.discordant or ()),
        },
        max_logprob_diff=_logprob_diff(records, served),
        differing=differing,
        template=template,
        cause=None,
        seconds=0.0,
    )
    verification.base_agreement = _base_agreement(source, records, served_out)
    verification.cause = _cause(verification, source)
    verification.seconds = round(time.perf_counter() - started, 2)
    unmapped = sum(bool(p.extra.get("unmapped")) for p in served)
    if unmapped:
        verification.notes.append(
            f"{unmapped} served answers named no label (counted as differing)"
        )
    return verification


def _same(kind: str, a: str, b: str) -> bool:
    if kind == "classification":
        return a == b
    return " ".join(a.split()) == " ".join(b.split())


def _metric_values(kind: str, metric: str, records: list[dict]) -> list[float]:
    from experiments.report.comparisons import row_scores

    return [row_scores(kind, r).get(metric, 0.0) for r in records]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _logprob_diff(records: list[dict], served: list) -> float | None:
    diffs = []
    for record, prediction in zip(records, served):
        ours, theirs = record.get("label_logprobs"), prediction.extra.get("label_logprobs")
        if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
            diffs += [abs(float(a) - float(b)) for a, b in zip(ours, theirs)]
    return round(max(diffs), 4) if diffs else None


def _base_agreement(source, records: list[dict], served_out: list[str]) -> float | None:
    """For an adapter method, how often the served answers equal the base model's: the run's
    zero-shot rows, whose prompts are the same."""
    if source.trained_method not in ADAPTER_METHODS:
        return None
    base = {str(r["id"]): r for r in source.records if r.get("method") == "zero-shot"}
    pairs = [
        (str(base[str(r["id"])].get("output", "")), s)
        for r, s in zip(records, served_out)
        if str(r["id"]) in base and base[str(r["id"])].get("prompt") == r.get("prompt")
    ]
    if not pairs:
        return None
    return sum(a == b for a, b in pairs) / len(pairs)


def _cause(v: Verification, source) -> str | None:
    """Why the served model answers otherwise, where it can be told; None when it does not."""
    if v.template.get("checked") and not v.template.get("same"):
        return (
            "chat template: the server renders a conversation differently from the model the "
            "run measured (verify.json: template), so clients that send messages get other "
            "prompts; serve the export's own template (llama-server --jinja, the GGUF's)"
        )
    if v.agreement >= v.min_agreement:
        return None
    if v.base_agreement is not None and v.base_agreement > v.agreement:
        return (
            f"the adapter is not applied: the served answers equal the base model's (the run's "
            f"zero-shot) on {v.base_agreement:.0%} of the rows and the method's on "
            f"{v.agreement:.0%}; serve the adapter too (llama-server --lora adapter-*.gguf, "
            "adaptwise serve EXPORT) or the merged model"
        )
    return quantization_hint()


def write_verification(run_dir: Path, verification: Verification) -> None:
    """verify.json in the run folder, and the verification in results.json and its reports."""
    import json

    from experiments.atomic import write_text_atomic
    from experiments.owned_files import claim
    from experiments.report.run_folder import load_run
    from experiments.report.write import write_reports
    from experiments.run_files import write_results

    run_dir = Path(run_dir)
    claim(run_dir, "run", [VERIFY_FILE])
    path = run_dir / VERIFY_FILE
    try:
        existing = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        existing = {}
    existing = existing if isinstance(existing, dict) else {}
    existing[verification.method] = verification.to_dict()
    write_text_atomic(path, json.dumps(existing, indent=2, ensure_ascii=False) + "\n")
    results, records = load_run(run_dir)
    summary = {k: v for k, v in verification.to_dict().items() if k not in ("differing",)}
    summary["template"] = {
        "checked": verification.template.get("checked"),
        "same": verification.template.get("same"),
    }
    summary["differing_rows"] = len(verification.differing)
    results.setdefault("verify", {})[verification.method] = summary
    write_results(run_dir, results)
    write_reports(run_dir, results, records)
