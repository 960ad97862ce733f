"""A small OpenAI-compatible server for the tests: the embedded model, loaded by adaptwise's
own model code, behind /v1/models, /v1/completions (string or list prompt, echo + logprobs,
max_tokens, temperature 0, stop), /v1/chat/completions and llama.cpp's /props, with `usage`.

It counts requests (GET /test/counts), can refuse prompt logprobs (a server without them),
hide /props (clients then send chat messages), answer 503 after N requests, and checks a key
(401 on a wrong one, 404 on an unknown model). With `structured`, it offers constrained
decoding as real servers do: llama.cpp's `grammar` of quoted alternatives and vLLM's
`guided_choice` on completions, OpenAI's `response_format` json_schema (an enum, or an object of
one enum) on chat: greedy decoding restricted at each step to the tokens that continue an
allowed answer. With `top_logprobs`, a plain completion or chat answer carries its first
token's alternatives. Run it by hand for the figures in docs/planning.md and docs/served-models.md:

    python3 tests/api_server.py --port 8765 [--key KEY] [--no-logprobs]
"""

from __future__ import annotations

import copy
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch
from hostile_server import openai_reply


class ModelServer:
    def __init__(self, name: str = "smollm2", api_key: str | None = None, logprobs=True):
        from experiments.models import load_language_model

        self.name = name
        self.api_key = api_key
        self.logprobs = logprobs
        self.lm = load_language_model(None, progress=lambda _m: None)
        self.lock = threading.Lock()  # one forward at a time (2 cores, shared)
        self.counts: Counter = Counter()  # path -> requests answered
        self.prompts: list[str] = []  # each request's prompt (or messages) as JSON, in order
        self.props = True  # False: no /props, so clients send chat messages
        self.fail_after: int | None = None  # answer 503 once this many requests were answered
        self.structured = False  # constrained decoding (grammar, guided_choice, json_schema)
        self.top_logprobs = False  # the first generated token's alternatives
        self.httpd: ThreadingHTTPServer | None = None

    # --- the model ---------------------------------------------------------------------

    def _encode(self, text: str):
        enc = self.lm.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return enc["input_ids"], [start for start, _ in enc["offset_mapping"]]

    def _generate(self, text: str, max_tokens: int, stop: list[str]) -> tuple[str, int, int]:
        """Greedy, through adaptwise's own generate(); single-token stops end it, as in-process."""
        from experiments.generation import generate

        tok = self.lm.tokenizer
        stop_ids = {tok.eos_token_id}
        for s in stop:
            ids = tok(s, add_special_tokens=False)["input_ids"]
            if len(ids) == 1:
                stop_ids.add(ids[0])
        out = generate(self.lm.model, tok, [text], max_tokens, sorted(stop_ids), batch_size=1)[0]
        answer = out.text
        for s in stop:
            if s and s in answer:
                answer = answer[: answer.index(s)]
        return answer, out.prompt_tokens, out.generated_tokens

    def _forward(self, ids: list[int], cache=None):
        """Logits of `ids` on top of `cache` (None: from the start), and the extended cache."""
        from experiments.lm_scoring import _cache_of, _cache_parameter

        name = _cache_parameter(self.lm.model)
        out = self.lm.model(input_ids=torch.tensor([ids]), use_cache=True, **{name: cache})
        return out.logits[0].float(), _cache_of(out)

    @torch.inference_mode()
    def _echo_all(self, texts: list[str]) -> list[tuple]:
        """Every prompt's tokens and their log-probs. The prompts' shared opening (a row's labels
        share its whole prompt) runs once, each rest on a copy of its keys and values: the same
        figures as one forward per prompt, to float rounding, in a fraction of the test's time."""
        encoded = [self._encode(text) for text in texts]
        shortest = min(len(ids) for ids, _ in encoded)
        shared = 0
        while shared < shortest - 1 and len({ids[shared] for ids, _ in encoded}) == 1:
            shared += 1
        opening, cache = self._forward(encoded[0][0][:shared]) if shared else (None, None)
        echoed = []
        for ids, offsets in encoded:
            rest, _ = self._forward(ids[shared:], copy.deepcopy(cache) if shared else None)
            logits = torch.cat([opening, rest]) if shared else rest
            logprobs = torch.log_softmax(logits, dim=-1)
            values = [None] + [float(logprobs[i - 1, ids[i]]) for i in range(1, len(ids))]
            tokens = self.lm.tokenizer.convert_ids_to_tokens(ids)
            best = int(logprobs[-1].argmax())
            echoed.append((ids, offsets, tokens, values, best, float(logprobs[-1, best])))
        return echoed

    @torch.inference_mode()
    def _choose(self, text: str, options: list[str]) -> tuple[str, int]:
        """Greedy decoding of `text` restricted to spelling one of `options` (token by token,
        as a grammar-constrained sampler does); (the answer, tokens generated)."""
        tok = self.lm.tokenizer
        prompt = tok(text, add_special_tokens=False)["input_ids"]
        live = {o: tok(o, add_special_tokens=False)["input_ids"] for o in options}
        chosen: list[int] = []
        end = tok.convert_tokens_to_ids("<|im_end|>")
        logits, cache = self._forward(prompt)  # the prompt once; each chosen token on its cache
        logits = logits[-1]
        while True:
            done = [o for o, ids in live.items() if len(ids) == len(chosen)]
            following = {ids[len(chosen)] for ids in live.values() if len(ids) > len(chosen)}
            if not following:
                return done[0], len(chosen)
            if chosen:
                step, cache = self._forward(chosen[-1:], cache)
                logits = step[-1]
            allowed = sorted(following) + ([end] if done else [])
            best = max(allowed, key=lambda i: float(logits[i]))
            if best == end:
                return done[0], len(chosen) + 1
            chosen.append(best)
            live = {o: ids for o, ids in live.items() if ids[: len(chosen)] == chosen}

    @torch.inference_mode()
    def _first_token_alternatives(self, text: str, n: int) -> list[dict]:
        tok = self.lm.tokenizer
        ids = tok(text, add_special_tokens=False)["input_ids"]
        logits = self.lm.model(input_ids=torch.tensor([ids])).logits[0, -1].float()
        values, top = torch.log_softmax(logits, dim=-1).topk(n)
        return [{"token": tok.decode([int(i)]), "logprob": float(v)} for v, i in zip(values, top)]

    def _options(self, body: dict) -> list[str] | None:
        """The answers a constrained request allows (None: not constrained, or not offered)."""
        import re

        if not self.structured:
            return None
        if isinstance(body.get("guided_choice"), list):
            return [str(x) for x in body["guided_choice"]]
        if isinstance(body.get("grammar"), str):
            return [json.loads(a) for a in re.findall(r'"(?:[^"\\]|\\.)*"', body["grammar"])]
        schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema")
        if isinstance(schema, dict) and "enum" in schema:
            return [json.dumps(x) for x in schema["enum"]]
        if isinstance(schema, dict) and schema.get("type") == "object":
            (name, inner), *_ = schema["properties"].items()
            return [json.dumps({name: x}) for x in inner["enum"]]
        return None

    def completions(self, body: dict) -> dict:
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else stop
        max_tokens = body.get("max_tokens", 16)
        choices, n_prompt, n_done = [], 0, 0
        echoes = body.get("echo") and body.get("logprobs") is not None
        echoed = self._echo_all(prompts) if echoes else []
        for index, text in enumerate(prompts):
            if echoes:
                ids, offsets, tokens, values, best, best_lp = echoed[index]
                new = self.lm.tokenizer.decode([best]) if max_tokens else ""
                logprobs = {
                    "tokens": tokens + ([new] if max_tokens else []),
                    "token_logprobs": values + ([best_lp] if max_tokens else []),
                    "top_logprobs": None,
                    "text_offset": offsets + ([len(text)] if max_tokens else []),
                }
                choices.append(_choice(index, text + new, logprobs))
                n_prompt, n_done = n_prompt + len(ids), n_done + (1 if max_tokens else 0)
                continue
            options = self._options(body)
            if options is not None:
                answer, made = self._choose(text, options)
                used = len(self._encode(text)[0])
            else:
                answer, used, made = self._generate(text, max_tokens, stop)
            logprobs = None
            if self.top_logprobs and isinstance(body.get("logprobs"), int) and not options:
                top = self._first_token_alternatives(text, body["logprobs"])
                logprobs = {"top_logprobs": [{t["token"]: t["logprob"] for t in top}]}
            choices.append(_choice(index, text + answer if body.get("echo") else answer, logprobs))
            n_prompt, n_done = n_prompt + used, n_done + made
        self.prompts.append(json.dumps(body["prompt"]))
        return openai_reply("text_completion", self.name, choices, n_prompt, n_done)

    def chat(self, body: dict) -> dict:
        text = self.lm.tokenizer.apply_chat_template(
            body["messages"], tokenize=False, add_generation_prompt=True
        )
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else stop
        end = "<|im_end|>"
        options = self._options(body)
        if options is not None:
            answer, made = self._choose(text, options)
            used = len(self._encode(text)[0])
        else:
            answer, used, made = self._generate(text, body.get("max_tokens") or 64, [end, *stop])
        self.prompts.append(json.dumps(body["messages"]))
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": answer},
            "finish_reason": "stop",
        }
        if self.top_logprobs and body.get("logprobs") and options is None:
            top = self._first_token_alternatives(text, int(body.get("top_logprobs") or 1))
            choice["logprobs"] = {"content": [{**top[0], "top_logprobs": top}]}
        return openai_reply("chat.completion", self.name, [choice], used, made)

    # --- HTTP ----------------------------------------------------------------------------

    def start(self) -> str:
        """Serve on 127.0.0.1 (a free port) in a thread; returns the base URL (…/v1)."""
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


def _choice(index: int, text: str, logprobs) -> dict:
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": "stop"}


def _error(status: int, message: str) -> tuple[int, dict]:
    return status, {"error": {"message": message, "type": "invalid_request_error"}}


def _handler(server: ModelServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            if server.api_key is None:
                return True
            return self.headers.get("Authorization") == f"Bearer {server.api_key}"

        def do_GET(self):
            if not self._authorised():
                return self._send(*_error(401, "Incorrect API key provided"))
            if self.path == "/v1/models":
                model = {"id": server.name, "object": "model", "owned_by": "tests"}
                return self._send(200, {"object": "list", "data": [model]})
            if self.path == "/test/counts":
                return self._send(200, {"counts": dict(server.counts)})
            if self.path == "/props" and server.props:
                tok = server.lm.tokenizer
                props = {"chat_template": tok.chat_template}
                props.update(bos_token=tok.bos_token, eos_token=tok.eos_token)
                return self._send(200, props)
            self._send(*_error(404, f"no route {self.path}"))

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if not self._authorised():
                return self._send(*_error(401, "Incorrect API key provided"))
            if body.get("model") != server.name:
                return self._send(*_error(404, f"The model `{body.get('model')}` does not exist"))
            if self.path == "/v1/completions":
                if body.get("echo") and body.get("logprobs") is not None and not server.logprobs:
                    return self._send(*_error(400, "echo with logprobs is not supported"))
                handle = server.completions
            elif self.path == "/v1/chat/completions":
                handle = server.chat
            else:
                return self._send(*_error(404, f"no route {self.path}"))
            if server.fail_after is not None and sum(server.counts.values()) >= server.fail_after:
                return self._send(*_error(503, "the test server is overloaded"))
            with server.lock:
                payload = handle(body)
                server.counts[self.path] += 1
            self._send(200, payload)

    return Handler


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--key")
    parser.add_argument("--no-logprobs", action="store_true")
    args = parser.parse_args()
    served = ModelServer(api_key=args.key, logprobs=not args.no_logprobs)
    httpd = ThreadingHTTPServer(("127.0.0.1", args.port), _handler(served))
    print(f"serving {served.name} on http://127.0.0.1:{args.port}/v1", flush=True)
    httpd.serve_forever()
