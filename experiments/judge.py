"""The LLM judge at work: it asks its model about each scored row that has no current verdict,
and puts the verdicts in the rows and the judge's figures in the methods' entries.

The model is a served one (`model: openai:NAME` at `base_url`), asked through the served
methods' own client (experiments/api_model.py ApiClient: no redirects, a deadline, a size cap,
a reply check), or a local one (a model folder, a .gguf, `embedded`) loaded in this process on
the first question it must answer. Either way each answer is cached (experiments/api_cache.py,
the cache of served answers, keyed by request_key over the model's identity and the request),
so a rerun asks nothing again; the local judge's identity is its path with its files' sizes
and modification times. Requests: chat messages at temperature 0, `max_tokens` from the block.

What is judged (experiments/judge_records.py `checks_of`): every row by the judge metric when
`judge` is one of the task's metrics (pairwise: against the baseline's answer to the same row,
once the baseline has answered), and the rows that retrieved passages by the RAG checks. A row
keeps its verdicts until they are stale: another judge block (results.py forgets them), or,
pairwise, a baseline answer other than the one judged against.
"""

from __future__ import annotations

import time

from experiments import judge_prompts as prompts
from experiments import judge_records as records
from experiments import metrics as metric_fns
from experiments.seeds import seed_items

ENDPOINT = "chat.completions"


class Judge:
    def __init__(self, task, options, log=print):
        from experiments.api_cache import ResponseCache, default_cache_root

        self.spec = task.judge
        self.record = task.judge.record()
        self.log = log
        self.cache = ResponseCache(default_cache_root() if options.api_cache else None, log)
        self.concurrency = options.concurrency
        self.questions = {row.id: row.text for row in task.eval}
        self._client = None
        self._lm = None

    # --- asking --------------------------------------------------------------------------

    def ask(self, texts: list[str], forms: list[str]) -> list[dict]:
        """{"raw": reply text, "usage": {...}} for each prompt (its examples: `forms`'), in
        order."""
        body = {"max_tokens": self.spec.max_tokens, "temperature": 0}
        rubric = self.spec.rubric
        bodies = [
            {"messages": prompts.messages(t, f, rubric), **body} for t, f in zip(texts, forms)
        ]
        answers = self._served(bodies) if self.spec.served else self._local(bodies)
        return [_answer(*a) for a in answers]

    def _served(self, bodies: list[dict]) -> list[tuple[dict, float, bool]]:
        if self._client is None:
            from experiments.api_model import ApiClient

            name = self.spec.model[len("openai:") :]
            self._client = ApiClient(
                self.spec.base_url, name, self.concurrency, self.cache, self.spec.api_key_env
            )
        return [(r.body, r.latency_s, r.cached) for r in self._client.map(ENDPOINT, bodies)]

    def _local(self, bodies: list[dict]) -> list[tuple[dict, float, bool]]:
        from experiments.api_cache import request_key
        from experiments.api_reply import reply_problem

        identity = local_identity(self.spec.model)
        keys = [request_key("local", identity, ENDPOINT, b) for b in bodies]
        out: list = [None] * len(bodies)
        for i, (key, body) in enumerate(zip(keys, bodies)):
            hit = self.cache.get(key, lambda reply, b=body: reply_problem(ENDPOINT, b, reply))
            if hit is not None:
                out[i] = (hit["response"], float(hit["latency_s"]), True)
        misses = [i for i, a in enumerate(out) if a is None]
        if misses:
            started = time.perf_counter()
            replies = self._generate([bodies[i]["messages"] for i in misses])
            each = (time.perf_counter() - started) / len(misses)
            for i, response in zip(misses, replies):
                self.cache.put(keys[i], response, each)
                out[i] = (response, each, False)
        return out

    def _generate(self, conversations: list[list[dict]]) -> list[dict]:
        from experiments.generation import generate, stop_token_ids

        if self._lm is None:
            from experiments.models import load_language_model

            model = None if self.spec.model == "embedded" else self.spec.model
            self.log(f"judge: loading {self.spec.model}")
            self._lm = load_language_model(model, progress=self.log)
        tok = self._lm.tokenizer
        texts = [
            tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
            for c in conversations
        ]
        stops = stop_token_ids(tok, "", False)
        made = generate(self._lm.model, tok, texts, self.spec.max_tokens, stops, batch_size=8)
        return [_local_reply(g.text, g.prompt_tokens, g.generated_tokens) for g in made]

    # --- judging the rows ----------------------------------------------------------------

    def judge_pending(self, results: dict, predictions: dict) -> bool:
        """Judge every row of the methods in `results` that lacks a current verdict; update
        the rows (`judge` in each prediction's extra) and the methods' metrics and `judge`
        entries. Whether anything changed."""
        jobs = []  # (method, prediction, check, prompt texts, baseline answer)
        changed: set[str] = set()
        entries = _judged_entries(results["methods"])
        for name in entries:
            for pred in predictions.get(name, []):
                for job in self._jobs(name, pred, predictions):
                    if job[3] is None:  # settled without asking (the baseline's own rows)
                        changed.add(name)
                    else:
                        jobs.append(job)
        if jobs:
            texts = [t for job in jobs for t in job[3]]
            forms = [_examples_form(self.record, job[2]) for job in jobs for _ in job[3]]
            replies = self.ask(texts, forms)
            cached = sum(r["usage"]["cached"] for r in replies)
            self.log(
                f"judge: {len(texts)} questions to {self.spec.model} about {len(jobs)} rows "
                f"({cached} answered from the cache)"
            )
            answers = iter(replies)
            for name, pred, check, asked, against in jobs:
                given = [next(answers) for _ in asked]
                field = dict(pred.extra.get("judge") or {})
                field[check] = _entry(self.record, check, given, against)
                pred.extra["judge"] = field
                changed.add(name)
        for name in changed:
            self._refresh(entries[name], predictions[name])
            for item in seed_items(entries[name]):
                if "predictions" not in item:  # the first seed's item: the method's own rows
                    self._refresh(item, predictions[name])
        return bool(changed)

    def _jobs(self, name: str, pred, predictions: dict):
        rec = {"retrieved": pred.extra.get("retrieved")}
        field = pred.extra.get("judge") or {}
        question = self.questions.get(str(pred.id), "")
        spec = self.spec
        for check in records.checks_of(self.record, rec):
            if check != prompts.METRIC:
                if check not in field:
                    passages = records.passages_of(rec) or []
                    yield (
                        name,
                        pred,
                        check,
                        [prompts.check_prompt(check, question, pred.output, passages)],
                        None,
                    )
            elif not spec.pairwise:
                if check not in field:
                    yield (
                        name,
                        pred,
                        check,
                        [
                            prompts.pointwise_prompt(
                                spec.rubric, spec.scale, question, pred.gold, pred.output
                            )
                        ],
                        None,
                    )
            elif name == spec.baseline:
                if field.get(check) != {"self": True, "value": 0.5}:
                    pred.extra["judge"] = {**field, check: {"self": True, "value": 0.5}}
                    yield name, pred, check, None, None
            else:
                theirs = _answer_of(predictions.get(spec.baseline), pred.id)
                if theirs is not None and (field.get(check) or {}).get("against") != theirs:
                    texts = prompts.pairwise_prompts(
                        spec.rubric, question, pred.gold, pred.output, theirs
                    )
                    yield name, pred, check, list(texts), theirs

    def _refresh(self, entry: dict, preds: list) -> None:
        """A method's metrics and `judge` entry from its rows' verdicts."""
        recs = [
            {"id": p.id, "judge": p.extra.get("judge"), "retrieved": p.extra.get("retrieved")}
            for p in preds
        ]
        values = [records.row_scores(self.record, r) for r in recs]
        metrics = {k: v for k, v in entry["metrics"].items() if k != prompts.METRIC}
        entry["metrics"] = {**metrics, **metric_fns.means(values)}
        figures = records.summary(self.record, recs)
        if figures:
            entry["judge"] = figures
        else:
            entry.pop("judge", None)


def _judged_entries(methods: dict) -> dict[str, dict]:
    """Prediction records' method name -> the entry its verdicts sum up into: each method's own,
    and each of its other seeds' item (experiments/seeds.py), whose rows are judged alike."""
    out = dict(methods)
    for entry in methods.values():
        for item in seed_items(entry):
            if isinstance(item.get("predictions"), str) and isinstance(item.get("metrics"), dict):
                out[item["predictions"]] = item
    return out


def _examples_form(spec: dict, check: str) -> str:
    """Whose worked examples a question of `check` is asked after."""
    return check if check in prompts.CHECKS else records.form_of(spec, check)


def _answer_of(preds, row_id) -> str | None:
    for pred in preds or []:
        if pred.id == row_id:
            return pred.output
    return None


def _entry(spec: dict, check: str, replies: list[dict], against: str | None) -> dict:
    """A row's stored verdict of one check (experiments/judge_records.py)."""
    form = records.form_of(spec, check)
    usage = {k: sum(r["usage"][k] for r in replies) for k in records.USAGE_KEYS}
    usage["seconds"] = round(sum(r["usage"]["seconds"] for r in replies), 4)
    usage["usage_reported"] = all(r["usage"]["usage_reported"] for r in replies)
    if form == "pairwise":
        raw = [r["raw"] for r in replies]
        verdicts = [prompts.parse(text, form) for text in raw]
        out = {"raw": raw, "verdict": verdicts, "value": prompts.pairwise_value(verdicts)}
        return {**out, "against": against, "usage": usage}
    verdict = prompts.parse(replies[0]["raw"], form)
    value = prompts.value(verdict, form)
    return {"raw": replies[0]["raw"], "verdict": verdict, "value": value, "usage": usage}


def _answer(response: dict, latency: float, cached: bool) -> dict:
    choices = response.get("choices") or [{}]
    raw = ((choices[0].get("message") or {}).get("content") or "").strip()
    usage = response.get("usage") or {}
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return {
        "raw": raw,
        "usage": {
            "requests": 1,
            "cached": int(cached),
            "prompt_tokens": prompt or 0,
            "completion_tokens": completion or 0,
            "usage_reported": isinstance(prompt, int),
            "seconds": latency,
        },
    }


def _local_reply(text: str, prompt_tokens: int, generated: int) -> dict:
    """A local judge's answer in the served reply's shape (the cache checks it as one)."""
    message = {"role": "assistant", "content": text}
    return {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": generated},
    }


def local_identity(model: str) -> str:
    """A local judge in the cache key: its path, its files' names, sizes and modification
    times (a model replaced at the same path is asked again)."""
    from pathlib import Path

    if model == "embedded":
        from experiments.models import embedded_gguf_path

        path = embedded_gguf_path()
    else:
        path = Path(model)
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    stamp = [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in files]
    return f"{model}:{stamp}"
