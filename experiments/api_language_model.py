"""The served model (`--model openai:NAME`) as `RunContext.lm` holds it: the checked client, the
template its prompts are rendered with, and its answers to the model interface
(experiments/scoring_model.py), which experiments/api_labels.py and api_scoring.py compute.

Its client (the key, the URL, the model list, every request) is experiments/api_model.py; this
module sits above the scoring modules (they import api_model), so that the model can call them.
"""

from __future__ import annotations

from dataclasses import dataclass

from experiments.api_cache import ResponseCache, default_cache_root
from experiments.api_labels import score_labels_api
from experiments.api_model import API_PREFIX, ApiClient, ApiUnusable, base_url_of
from experiments.api_scoring import generate_answers_api
from experiments.plain_text import plain
from experiments.prediction import Prediction


@dataclass
class ApiLanguageModel:
    """What `RunContext.lm` holds for a served model: the client in place of weights, and a
    tokenizer that only renders prompts (None template: prompts go to the chat endpoint). The
    served implementation of the model interface (experiments/scoring_model.py)."""

    model: ApiClient
    tokenizer: object
    name: str
    template_source: str | None  # where the chat template came from; None: the server's own
    path: None = None
    source: str = ""

    @property
    def renders_prompts(self) -> bool:
        return self.template_source is not None

    def score_labels(self, ctx, rows, prompts, content_free, progress) -> list[Prediction]:
        """Each row's label by the first way this server offers (experiments/api_labels.py);
        `content_free` is unused: a served run refuses --calibrate before it starts."""
        return score_labels_api(ctx, rows, prompts, progress)

    def generate_answers(self, ctx, rows, prompts, progress) -> list[Prediction]:
        """Greedy completions, one request per row (experiments/api_scoring.py)."""
        return generate_answers_api(ctx, rows, prompts, progress)


def load_api_model(options, log=print) -> ApiLanguageModel:
    """Check the server and find the prompt template: --tokenizer, else the server's /props."""
    from experiments.api_template import TemplateTokenizer, chat_transcript, tokenizer_template

    name = options.model[len(API_PREFIX) :]
    root = None if not options.api_cache else default_cache_root()
    cache = ResponseCache(root, log)
    client = ApiClient(base_url_of(options.base_url), name, options.concurrency, cache)
    client.check_model()
    if options.tokenizer:
        tokenizer = tokenizer_template(options.tokenizer, options.trust_remote_code, log)
        source = f"--tokenizer {options.tokenizer}"
    elif (props := client.server_template()) is not None:
        tokenizer = TemplateTokenizer(
            props["chat_template"], props.get("bos_token"), props.get("eos_token")
        )
        _check_template(client, tokenizer)
        source = "the server's /props"
    else:
        tokenizer, source = chat_transcript(), None
    how = (
        f"prompts rendered with the chat template from {source}"
        if source
        else ("messages sent to the chat endpoint (the server applies its template)")
    )
    log(f"model {name} at {client.shown_url}: {how}")
    return ApiLanguageModel(client, tokenizer, options.model, source, source=client.shown_url)


def _check_template(client: ApiClient, tokenizer) -> None:
    """A /props template renders the turns prompts are made of, or it is one line now (not an
    error in the middle of the first method)."""
    turns = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "u"},
    ]
    try:
        rendered = tokenizer.apply_chat_template(turns, add_generation_prompt=True)
        if not isinstance(rendered, str):
            raise TypeError(f"it renders a {type(rendered).__name__}, not text")
    except Exception as exc:  # noqa: BLE001 - the server's template: any failure is its fault
        first = plain(str(exc), one_line=True)[:160] or type(exc).__name__
        raise ApiUnusable(
            f"{client.where}: GET /props: its chat_template does not render "
            f"({type(exc).__name__}: {first}); --tokenizer renders prompts without /props"
        ) from None
