"""A model behind an OpenAI-compatible endpoint (`--model openai:NAME`) as the model of the
prompting and RAG methods: OpenAI itself, vLLM's and llama.cpp's servers, Ollama, gateways.

It is the same seam as the in-process model: `RunContext.lm` holds an `ApiLanguageModel`, and
`score_labels` / `generate_answers` (experiments/methods.py) hand its rows to
experiments/api_scoring.py. The client is the official `openai` package (its retries with
backoff and timeouts), requests run `--concurrency` at a time, and every response is cached
(experiments/api_cache.py). The key comes from OPENAI_API_KEY only and is never written down:
not in options, results, predictions, reports, cache entries or error lines.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from experiments.api_cache import ResponseCache, default_cache_root, request_key
from experiments.errors import AdaptwiseError

API_PREFIX = "openai:"
TIMEOUT_S = 120.0
MAX_RETRIES = 3  # the openai client's exponential backoff; 429 and 5xx are retried, 4xx not
NO_KEY = "no-key"  # sent when OPENAI_API_KEY is unset: local servers accept any key


class ApiRequestFailed(AdaptwiseError):
    """A request failed after its retries: the method fails, the run goes on with the others."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ApiUnusable(AdaptwiseError):
    """A wrong key, an unknown model or an unreachable server: every method would fail."""


def is_api_model(spec: str | None) -> bool:
    return bool(spec) and spec.startswith(API_PREFIX)


@dataclass
class ApiResponse:
    body: dict
    latency_s: float  # measured when the request was made (also for a cached answer)
    cached: bool


class ApiClient:
    """Requests to one model on one server, each answered once (cache) and `concurrency` at a
    time."""

    def __init__(self, base_url: str, model: str, concurrency: int, cache: ResponseCache):
        import openai

        self.base_url = base_url.rstrip("/")
        self.model = model
        self.concurrency = concurrency
        self.cache = cache
        self._key = os.environ.get("OPENAI_API_KEY") or ""
        self._client = openai.OpenAI(
            api_key=self._key or NO_KEY,
            base_url=self.base_url,
            timeout=TIMEOUT_S,
            max_retries=MAX_RETRIES,
        )

    def request(self, endpoint: str, body: dict) -> ApiResponse:
        """POST `body` to `completions` or `chat.completions`, or its cached answer."""
        key = request_key(self.base_url, self.model, endpoint, body)
        hit = self.cache.get(key)
        if hit is not None:
            return ApiResponse(hit["response"], float(hit.get("latency_s") or 0.0), True)
        create = (
            self._client.completions.create
            if endpoint == "completions"
            else self._client.chat.completions.create
        )
        started = time.perf_counter()
        try:
            answer = create(model=self.model, **body)
        except Exception as exc:  # noqa: BLE001 - translated to one line below, or re-raised
            raise self.translate(exc) from None
        latency = time.perf_counter() - started
        data = answer.model_dump(exclude_none=False)
        self.cache.put(key, data, latency)
        return ApiResponse(data, latency, False)

    def map(self, endpoint: str, bodies: list[dict], progress=None) -> list[ApiResponse]:
        """Every body's response, in order; the first failure cancels the requests not yet
        sent (those in flight finish and are cached) and is raised."""
        out: list[ApiResponse | None] = [None] * len(bodies)
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="api")
        try:
            futures = {pool.submit(self.request, endpoint, b): i for i, b in enumerate(bodies)}
            for future in as_completed(futures):
                out[futures[future]] = future.result()
                if progress is not None:
                    progress(1)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return out  # type: ignore[return-value]

    def check_model(self) -> None:
        """Fail fast, before any method: unreachable server, refused key, unknown model."""
        import openai

        try:
            served = [m.id for m in self._client.with_options(max_retries=1).models.list()]
        except openai.NotFoundError:
            return  # a server without /models: an unknown model is a 404 on first use
        except Exception as exc:  # noqa: BLE001
            raise self.translate(exc) from None
        if served and self.model not in served:
            shown = ", ".join(served[:8]) + (", ..." if len(served) > 8 else "")
            raise ApiUnusable(
                f"{self.base_url}: the server does not serve model {self.model!r}; it serves: "
                f"{shown} (--model openai:NAME)"
            )

    def server_template(self) -> dict | None:
        """llama.cpp's `GET /props` (chat_template, bos_token, eos_token), where served."""
        import json
        import urllib.request

        root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        request = urllib.request.Request(f"{root}/props")
        if self._key:
            request.add_header("Authorization", f"Bearer {self._key}")
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310 - user's URL
                props = json.loads(reply.read().decode("utf-8"))
        except (OSError, ValueError):
            return None
        template = props.get("chat_template") if isinstance(props, dict) else None
        return props if isinstance(template, str) and template.strip() else None

    def translate(self, exc: BaseException) -> AdaptwiseError:
        """One line for a failed request: the server, the HTTP status, the server's message."""
        import openai

        where = f"{self.base_url} (model {self.model})"
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            message = self._redact(_server_message(exc))
            if status in (401, 403):
                hint = (
                    "OPENAI_API_KEY is not set; set it to a key this server accepts"
                    if not self._key
                    else "the key in OPENAI_API_KEY was refused; set a valid one"
                )
                return ApiUnusable(f"{where}: HTTP {status}: {message}; {hint}")
            if status == 404:
                return ApiUnusable(
                    f"{where}: HTTP 404: {message}; check the model name (--model openai:NAME) "
                    "and --base-url (it usually ends in /v1)"
                )
            retried = f" after {MAX_RETRIES} retries" if status == 429 or status >= 500 else ""
            return ApiRequestFailed(f"{where}: HTTP {status}{retried}: {message}", status)
        if isinstance(exc, openai.APIConnectionError):
            cause = self._redact(str(exc.__cause__ or exc))[:160]
            return ApiUnusable(
                f"cannot reach {self.base_url} ({cause}, retried); start the server or fix "
                "--base-url / OPENAI_BASE_URL"
            )
        if isinstance(exc, openai.OpenAIError):
            return ApiRequestFailed(f"{where}: {self._redact(str(exc))[:200]}")
        raise exc

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text


def _server_message(exc) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"]).strip().splitlines()[0][:200]
        if isinstance(inner, str):
            return inner[:200]
    return (str(exc).strip().splitlines() or ["no message"])[0][:200]


@dataclass
class ApiLanguageModel:
    """What `RunContext.lm` holds for a served model: the client in place of weights, and a
    tokenizer that only renders prompts (None template: prompts go to the chat endpoint)."""

    model: ApiClient
    tokenizer: object
    name: str
    template_source: str | None  # where the chat template came from; None: the server's own
    path: None = None
    source: str = ""

    @property
    def renders_prompts(self) -> bool:
        return self.template_source is not None


def load_api_model(options, log=print) -> ApiLanguageModel:
    """Check the server and find the prompt template: --tokenizer, else the server's /props."""
    from experiments.api_template import TemplateTokenizer, chat_transcript, tokenizer_template

    name = options.model[len(API_PREFIX) :]
    base_url = options.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
    root = None if not options.api_cache else default_cache_root()
    client = ApiClient(base_url, name, options.concurrency, ResponseCache(root, log))
    client.check_model()
    if options.tokenizer:
        tokenizer = tokenizer_template(options.tokenizer, options.trust_remote_code, log)
        source = f"--tokenizer {options.tokenizer}"
    elif (props := client.server_template()) is not None:
        tokenizer = TemplateTokenizer(
            props["chat_template"], props.get("bos_token"), props.get("eos_token")
        )
        source = "the server's /props"
    else:
        tokenizer, source = chat_transcript(), None
    how = (
        f"prompts rendered with the chat template from {source}"
        if source
        else ("messages sent to the chat endpoint (the server applies its template)")
    )
    log(f"model {name} at {client.base_url}: {how}")
    return ApiLanguageModel(client, tokenizer, options.model, source, source=client.base_url)


def check_methods(methods, options) -> None:
    """Methods that train or score local weights cannot use a served model: one line."""
    if not is_api_model(options.model):
        return
    if options.calibrate:
        raise AdaptwiseError(
            f"--calibrate with --model {options.model}: calibration is not implemented for "
            "served models yet; leave --calibrate off"
        )
    for method in methods:
        if not getattr(method, "runs_on_api", False):
            raise AdaptwiseError(
                f"method {method.name!r} trains or scores local weights; with --model "
                f"{options.model} run prompting and RAG methods (zero-shot, few-shot-*, rag*), "
                "and fine-tuned ones in a second run with a local --model"
            )
