"""A model behind an OpenAI-compatible endpoint (`--model openai:NAME`) as the model of the
prompting and RAG methods: OpenAI itself, vLLM's and llama.cpp's servers, Ollama, gateways.

It is the same seam as the in-process model: `RunContext.lm` holds an `ApiLanguageModel`
(experiments/api_language_model.py), which answers the model interface
(experiments/scoring_model.py) through experiments/api_labels.py and api_scoring.py; this
module is its client. The client is the official `openai` package (its retries with
backoff) over experiments/api_transport.py's HTTP client (no redirects, a deadline for each try,
a size cap), for `/props` too; every reply passes experiments/api_reply.py's check before it is
scored or cached (experiments/api_cache.py), and requests run `--concurrency` at a time. The key
comes from OPENAI_API_KEY only, is refused unless it is printable ASCII, and is never written
down or shown in any form: not in options, results, predictions, reports, cache entries or
error lines; nor is a password in the base URL, which is shown and recorded masked.
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from experiments.api_cache import ResponseCache, request_key
from experiments.errors import AdaptwiseError
from experiments.plain_text import plain

API_PREFIX = "openai:"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
TIMEOUT_S = 120.0  # each try of a request: connecting, sending and the whole reply, in all
MAX_RETRIES = 3  # the openai client's exponential backoff; 429 and 5xx are retried, 4xx not
NO_KEY = "no-key"  # sent when OPENAI_API_KEY is unset: local servers accept any key
RETRYABLE = (408, 409, 429)  # and every 5xx: the statuses the openai client tries again
KEY_ENV = "OPENAI_API_KEY"  # a served method's key; a served judge names its own (judge_spec)


class ApiRequestFailed(AdaptwiseError):
    """A request failed after its retries: the method fails, the run goes on with the others."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ApiUnusable(AdaptwiseError):
    """A wrong key, an unknown model or an unreachable server: every method would fail."""


def is_api_model(spec: str | None) -> bool:
    return bool(spec) and spec.startswith(API_PREFIX)


def base_url_of(flag: str | None) -> str:
    """The server a run talks to: --base-url, else OPENAI_BASE_URL, else OpenAI's; checked."""
    url = (flag or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).strip().rstrip("/")
    where = "--base-url" if flag else "OPENAI_BASE_URL"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or not url.isprintable():
        raise ApiUnusable(
            f"{where} {masked_url(url)!r} is not an http(s) URL; give the server's address, "
            "e.g. http://127.0.0.1:8000/v1"
        )
    return url


def masked_url(url: str) -> str:
    """`url` as it is shown and recorded: a user name or password in it becomes `***`."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


_CHARACTERS = {"\r": "a carriage return", "\n": "a line feed", " ": "a space", "\t": "a tab"}


def api_key(env: str | None = KEY_ENV) -> str:
    """The key in the variable `env` (OPENAI_API_KEY; "" when unset, or `env` None), refused in
    one line that never shows it when it holds anything but printable ASCII: a space, a line
    end pasted with it, a control character."""
    key = (os.environ.get(env) or "") if env else ""
    for position, char in enumerate(key, 1):
        if not "!" <= char <= "~":
            other = "a non-ASCII character" if ord(char) > 127 else "a control character"
            found = _CHARACTERS.get(char, other)
            raise ApiUnusable(
                f"{env} holds {found} at character {position} of {len(key)}; set it to "
                "the key alone (printable ASCII, no spaces or line ends)"
            )
    return key


@dataclass
class ApiResponse:
    body: dict
    latency_s: float  # measured when the request was made (also for a cached answer)
    cached: bool


class ApiClient:
    """Requests to one model on one server, each answered once (cache) and `concurrency` at a
    time, every one through experiments/api_transport.py's client (no redirects, a deadline, a
    size cap) and experiments/api_reply.py's check."""

    def __init__(
        self,
        base_url: str,
        model: str,
        concurrency: int,
        cache: ResponseCache,
        key_env: str | None = KEY_ENV,
    ):
        import openai

        from experiments.api_transport import http_client

        self.base_url = base_url.rstrip("/")
        self.shown_url = masked_url(self.base_url)  # what is printed and recorded
        self.model = model
        self.served_model: str | None = None  # the weights the server names, where it does
        self.label_path: str | None = None  # how labels are scored here (api_labels.py)
        self.refused_paths: set[str] = set()  # the ways this server does not offer
        self.concurrency = concurrency
        self.cache = cache
        self.key_env = key_env  # the variable the key is read from (None: no key is sent)
        self._key = api_key(key_env)
        self._client = openai.OpenAI(
            api_key=self._key or NO_KEY,
            base_url=self.base_url,
            max_retries=MAX_RETRIES,
            http_client=http_client(self.base_url, TIMEOUT_S, max(concurrency, 1) + 1),
        )

    @property
    def where(self) -> str:
        return f"{self.shown_url} (model {self.model})"

    def request(self, endpoint: str, body: dict) -> ApiResponse:
        """POST `body` to `completions` or `chat.completions`, or its cached answer."""
        from experiments.api_reply import reply_problem

        key = request_key(self.shown_url, self.model, endpoint, body, self.served_model)
        hit = self.cache.get(key, lambda reply: reply_problem(endpoint, body, reply))
        if hit is not None:
            return ApiResponse(hit["response"], float(hit["latency_s"]), True)
        resource = (
            self._client.completions if endpoint == "completions" else self._client.chat.completions
        )
        started = time.perf_counter()
        data = self._fetch(
            f"POST /{endpoint.replace('.', '/')}",
            lambda: resource.with_raw_response.create(model=self.model, **_fields(resource, body)),
            lambda reply: reply_problem(endpoint, body, reply),
        )
        latency = time.perf_counter() - started
        self.cache.put(key, data, latency)
        return ApiResponse(data, latency, False)

    def _fetch(self, what: str, send, check, unusable: bool = False, absent=()):
        """The checked JSON of the reply to `send()`, None when its HTTP status is one of
        `absent`; one line naming the server otherwise (ApiUnusable when `unusable`: a
        failure before any work)."""
        import openai

        from experiments.api_reply import MalformedReply, parse_reply
        from experiments.api_transport import ReplyRefused

        fail = ApiUnusable if unusable else ApiRequestFailed
        try:
            raw = send()
        except ReplyRefused as exc:
            raise fail(f"{self.where}: {what}: {exc}; the reply was not used") from None
        except Exception as exc:  # noqa: BLE001 - translated to one line below, or re-raised
            if isinstance(exc, openai.APIStatusError) and exc.status_code in absent:
                return None
            error = self.translate(exc, what)
            raise (ApiUnusable(str(error)) if unusable else error) from None
        try:
            data = parse_reply(raw.content)
            problem = check(data)
        except MalformedReply as exc:
            problem = str(exc)
        if problem is not None:
            unused = "it was not used" if unusable else "it was not scored or cached"
            raise fail(
                f"{self.where}: {what}: malformed reply: {self._redact(plain(problem))[:200]}; "
                + unused
            )
        return data

    def map(self, endpoint: str, bodies: list[dict], progress=None) -> list[ApiResponse]:
        """Every body's response, in order; the first failure cancels the requests not yet
        sent (those in flight finish and are cached) and is raised, saying how many were
        answered."""
        out: list[ApiResponse | None] = [None] * len(bodies)
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="api")
        failure = None
        try:
            futures = {pool.submit(self.request, endpoint, b): i for i, b in enumerate(bodies)}
            for future in as_completed(futures):
                try:
                    out[futures[future]] = future.result()
                except ApiRequestFailed as exc:
                    failure = exc
                    break
                if progress is not None:
                    progress(1)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if failure is not None:
            answered = sum(
                f.done() and not f.cancelled() and f.exception() is None for f in futures
            )
            raise ApiRequestFailed(
                f"{failure} ({answered} of {len(bodies)} requests answered and cached; a rerun "
                "asks only the others)",
                failure.status,
            )
        return out  # type: ignore[return-value]

    def check_model(self) -> None:
        """Fail fast, before any method: unreachable server, refused key, unknown model, a
        model list that is not one."""
        from experiments.api_reply import reply_problem

        models = self._fetch(
            "GET /models",
            lambda: self._client.with_options(max_retries=1).models.with_raw_response.list(),
            lambda reply: reply_problem("models", {}, reply),
            unusable=True,
            absent=(404,),  # a server without /models: an unknown model is a 404 on first use
        )
        if models is None:
            return
        entries = {m["id"]: m for m in models["data"]}
        if entries and self.model not in entries:
            shown = ", ".join(plain(name, True)[:80] for name in list(entries)[:8])
            raise ApiUnusable(
                f"{self.where}: the server does not serve model {self.model!r}; it serves: "
                f"{shown}{', ...' if len(entries) > 8 else ''} (--model openai:NAME)"
            )
        root = entries.get(self.model, {}).get("root")  # vLLM: the weights behind the name
        if isinstance(root, str) and root and root != self.model:
            self.served_model = plain(root, True)[:200]

    def server_template(self) -> dict | None:
        """llama.cpp's `GET /props` (chat_template, bos_token, eos_token), where served; None
        where the server has no /props. A /props that answers something else is one line."""
        import httpx2

        root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        client = self._client.with_options(max_retries=1)
        try:
            props = self._fetch(
                "GET /props",
                lambda: client.get(f"{root}/props", cast_to=httpx2.Response),
                _props_problem,
                unusable=True,
                absent=(404, 405, 501),  # no /props: not llama.cpp's server
            )
        except ApiUnusable as exc:
            raise ApiUnusable(f"{exc}; or --tokenizer renders prompts without /props") from None
        if props is None or not (props.get("chat_template") or "").strip():
            return None
        path = props.get("model_path")
        if isinstance(path, str) and path and self.served_model is None:
            self.served_model = plain(path, True)[:200]
        return props

    def translate(self, exc: BaseException, what: str = "") -> AdaptwiseError:
        """One line for a failed request (`what`: "GET /props"): the server, the HTTP status,
        the server's message, and how many tries were made."""
        import openai

        where = f"{self.where}: {what}" if what else self.where
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            message = self._redact(plain(_server_message(exc), one_line=True))
            if 300 <= status < 400:
                location = masked_url(plain(exc.response.headers.get("location", "?"), True))
                return ApiUnusable(
                    f"{where}: HTTP {status}, a redirect to {self._redact(location)[:200]}: "
                    "redirects are not followed (the key would go with them); give the address "
                    "it names as --base-url if you trust it"
                )
            if status in (401, 403):
                hint = (
                    f"{self.key_env or 'no key variable'} is not set; set it to a key this "
                    "server accepts"
                    if not self._key
                    else f"the key in {self.key_env} was refused; set a valid one"
                )
                return ApiUnusable(f"{where}: HTTP {status}: {message}; {hint}")
            if status == 404:
                return ApiUnusable(
                    f"{where}: HTTP 404: {message}; check the model name (--model openai:NAME) "
                    "and --base-url (it usually ends in /v1)"
                )
            return ApiRequestFailed(f"{where}: HTTP {status} ({_tries(exc)}): {message}", status)
        if isinstance(exc, openai.APIConnectionError):
            import httpx2

            cause = self._redact(plain(exc.__cause__ or exc, one_line=True))[:160]
            unreached = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.ProxyError)
            if isinstance(exc, openai.APITimeoutError) and not isinstance(exc.__cause__, unreached):
                return ApiRequestFailed(
                    f"{where}: no reply within {TIMEOUT_S:g} s ({_tries(exc)}); the server may "
                    "be overloaded: lower --concurrency"
                )
            if exc.__cause__ is not None and not isinstance(exc.__cause__, unreached):
                return ApiRequestFailed(  # reached, but what came back was not HTTP
                    f"{where}: the reply broke off or was not HTTP ({cause}; {_tries(exc)})"
                )
            return ApiUnusable(
                f"cannot reach {self.shown_url} ({cause}; {_tries(exc)}); start the server or "
                "fix --base-url / OPENAI_BASE_URL"
            )
        if isinstance(exc, openai.OpenAIError):
            return ApiRequestFailed(f"{where}: {self._redact(plain(exc, one_line=True))[:200]}")
        raise exc

    def _redact(self, text: str) -> str:
        """`text` without the key or the URL's password, in any form they may be quoted in."""
        secrets = [self._key] if self._key else []
        password = urlsplit(self.base_url).password
        if password:
            secrets += [password, unquote(password)]
        for secret in secrets:
            forms = {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1], quote(secret, safe="")}
            for form in sorted(forms, key=len, reverse=True):
                if form:
                    text = text.replace(form, "***")
        return text


def _fields(resource, body: dict) -> dict:
    """`body` as the openai client's `create` takes it: the fields it knows as arguments, the
    others (a server's own: llama.cpp's `grammar`, vLLM's `guided_choice`) in `extra_body`."""
    import inspect

    known = inspect.signature(resource.create).parameters
    fields = {k: v for k, v in body.items() if k in known}
    extra = {k: v for k, v in body.items() if k not in known}
    return {**fields, "extra_body": extra} if extra else fields


def _tries(exc) -> str:
    """How many tries a failed request took, from the openai client's own count, and why a
    retryable answer was not tried again."""
    request = getattr(exc, "request", None)
    count = request.headers.get("x-stainless-retry-count", "0") if request is not None else "0"
    tries = int(count) + 1 if count.isdigit() else 1
    text = f"{tries} tr{'ies' if tries > 1 else 'y'}"
    response = getattr(exc, "response", None)
    status = getattr(exc, "status_code", 0)
    if tries == 1 and response is not None and (status in RETRYABLE or status >= 500):
        wait = response.headers.get("retry-after", "")
        try:
            seconds = float(wait)
        except ValueError:
            seconds = None
        if seconds is not None and math.isfinite(seconds) and seconds > 0:
            text += f"; not retried: the server asks to wait {seconds:,.0f} s"
        elif response.headers.get("x-should-retry") == "false":
            text += "; not retried: the server said not to"
    return text


def _props_problem(props: object) -> str | None:
    if not isinstance(props, dict):
        return "/props is not a JSON object"
    template = props.get("chat_template")
    if template is not None and not isinstance(template, str):
        return "chat_template is not text"
    for name in ("bos_token", "eos_token"):
        if props.get(name) is not None and not isinstance(props[name], str):
            return f"{name} is not text"
    return None


def _server_message(exc) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"]).strip().splitlines()[0][:200]
        if isinstance(inner, str):
            return inner[:200]
    return (str(exc).strip().splitlines() or ["no message"])[0][:200]


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
