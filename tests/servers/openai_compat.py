"""A real OpenAI-compatible HTTP server on loopback, standing in for vLLM in tests and benchmarks.

It speaks the wire format of vLLM's OpenAI server: ``GET /v1/models``, ``POST /v1/completions``
(log-probs, ``return_tokens_as_token_ids``, EOS token id returned but not its text) and
``POST /v1/chat/completions`` (native ``tool_calls``). Replies are scripted (a queue, or a function
of the request), faults are injected per request, and every request is recorded.

    with OpenAICompatServer(tokenizer=tok) as server:
        server.push("<think>…</think><answer>Paris</answer>", Fault.rate_limited(retry_after=0.05))
        policy = OpenAICompletionsPolicy(server.base_url, "tiny", tokenizer=tok)

Standalone (to point ``deepresearcher ask --base-url`` at it):
``python tests/servers/openai_compat.py --port 8000 --tokenizer DIR --text "<think>…"``.

For benchmarks: it is a ``ThreadingHTTPServer`` with HTTP/1.1 keep-alive and a deep listen
backlog, so dozens of concurrent clients are served in parallel; ``latency_s`` simulates generation.
"""

from __future__ import annotations

import argparse
import collections
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

try:
    from servers.web_pages import QuietServer
except ImportError:  # run as a script: python tests/servers/openai_compat.py
    from web_pages import QuietServer  # type: ignore[no-redef]

__all__ = ["Fault", "OpenAICompatServer", "RecordedRequest", "Reply"]


@dataclass
class Reply:
    """A successful reply. ``text`` is the completion (or message content); ``tool_calls`` are
    native calls (``{"name", "arguments"}`` dicts or full OpenAI ones); ``finish_reason`` defaults
    to ``stop`` (``tool_calls`` when calls are given; ``length`` when ``max_tokens`` cut it)."""

    text: str = ""
    tool_calls: list[dict[str, Any]] | None = None
    finish_reason: str | None = None
    delay_s: float = 0.0


@dataclass
class Fault:
    """A failed or odd reply: any status, headers and raw body."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    drip_s: float = 0.0  # > 0: the body is sent 64 bytes at a time, this long apart

    @staticmethod
    def error(
        status: int,
        message: str,
        type_: str,
        headers: dict[str, str] | None = None,
        delay_s: float = 0.0,
    ) -> Fault:
        """An error in the OpenAI/vLLM JSON shape ``{"error": {"message", "type", ...}}``."""
        body = {"error": {"message": message, "type": type_, "param": None, "code": status}}
        return Fault(status, json.dumps(body).encode(), headers or {}, delay_s)

    @staticmethod
    def rate_limited(retry_after: float | str | None = 1) -> Fault:
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return Fault.error(429, "Rate limit reached, please retry later", "RateLimitError", headers)

    @staticmethod
    def server_error(status: int = 500) -> Fault:
        return Fault.error(status, "Internal Server Error", "InternalServerError")

    @staticmethod
    def unauthorized() -> Fault:
        return Fault.error(401, "Incorrect API key provided.", "AuthenticationError")

    @staticmethod
    def model_not_found(model: str) -> Fault:
        return Fault.error(404, f"The model `{model}` does not exist.", "NotFoundError")

    @staticmethod
    def context_length(
        max_model_len: int = 32768, prompt_tokens: int = 31000, max_tokens: int = 2000
    ) -> Fault:
        """vLLM's 400 for a request that does not fit (its wording for the completions API)."""
        message = (
            f"This model's maximum context length is {max_model_len} tokens. However, you "
            f"requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, "
            f"{max_tokens} in the completion). Please reduce the length of the messages or "
            "completion."
        )
        return Fault.error(400, message, "BadRequestError")

    @staticmethod
    def malformed() -> Fault:
        return Fault(200, b'{"id": "cmpl-1", "choices": [{"text": "trunc', {})

    @staticmethod
    def slow(delay_s: float, reply: str = "late") -> Reply:
        return Reply(text=reply, delay_s=delay_s)


@dataclass
class RecordedRequest:
    """One request the server received: headers are lower-cased; ``json`` is the parsed body."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any


Script = Callable[[RecordedRequest], "Reply | Fault | str"]


class OpenAICompatServer:
    """An OpenAI-compatible server on ``127.0.0.1`` (a free port), run in a background thread.

    ``models``: served model ids; requests for others get vLLM's 404. ``tokenizer``: when given,
    completions return exact token ids and ``usage`` counts from it; otherwise one token per
    character. ``script``: a function ``request -> Reply | Fault | str`` used when the queue is
    empty (default: ``default_text``). ``api_key``: when set, requests must carry it as a bearer
    token. ``max_model_len``: when set (with a tokenizer), requests that do not fit get vLLM's 400.
    ``latency_s``: added to every generation request. ``port``: 0 picks a free one.
    ``fault_all``: when set (also on a running server), every request gets this reply, the model
    list included: a server that is up but broken.
    """

    def __init__(
        self,
        *,
        models: Iterable[str] = ("tiny",),
        tokenizer: Any = None,
        script: Script | None = None,
        default_text: str = "<think>ok</think>\n<answer>ok</answer>",
        api_key: str | None = None,
        max_model_len: int | None = None,
        latency_s: float = 0.0,
        port: int = 0,
        fault_all: Fault | None = None,
    ) -> None:
        self.models = list(models)
        self.requested_port = port
        self.tokenizer = tokenizer
        self.script = script
        self.default_text = default_text
        self.api_key = api_key
        self.max_model_len = max_model_len
        self.latency_s = latency_s
        self.fault_all = fault_all
        self.requests: list[RecordedRequest] = []
        self._queue: collections.deque[Reply | Fault | str] = collections.deque()
        self._lock = threading.Lock()
        self._httpd: QuietServer | None = None
        self._thread: threading.Thread | None = None
        self._eos_id: int | None = None
        if tokenizer is not None:
            eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
            self._eos_id = eos if isinstance(eos, int) else tokenizer.eos_token_id

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> OpenAICompatServer:
        handler = type("Handler", (_Handler,), {"app": self})
        httpd = QuietServer(("127.0.0.1", self.requested_port), handler, bind_and_activate=False)
        httpd.request_queue_size = 1024  # a burst of concurrent connects must not be refused
        httpd.allow_reuse_address = True
        httpd.server_bind()
        httpd.server_activate()
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="openai-compat",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> OpenAICompatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """The API root, with ``/v1``, as clients take it."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- scripting ---------------------------------------------------------------------------------

    def push(self, *replies: Reply | Fault | str) -> None:
        """Queue replies for the next generation requests, in order."""
        with self._lock:
            self._queue.extend(replies)

    def generation_requests(self) -> list[RecordedRequest]:
        """Recorded requests to the two generation endpoints."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith("completions")]

    def _next(self, request: RecordedRequest) -> Reply | Fault | str:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
        if self.script is not None:
            return self.script(request)
        return self.default_text

    # -- request handling (runs in the server's threads) -------------------------------------------

    def handle(
        self, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        request = RecordedRequest(method, path, headers, body)
        with self._lock:
            self.requests.append(request)
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return _fault(Fault.unauthorized())
        if self.fault_all is not None:
            return _fault(self.fault_all)
        if method == "GET" and path == "/v1/models":
            data = [
                {
                    "id": m,
                    "object": "model",
                    "created": 0,
                    "owned_by": "vllm",
                    "max_model_len": self.max_model_len,
                }
                for m in self.models
            ]
            return _json(200, {"object": "list", "data": data})
        if method != "POST" or path not in ("/v1/completions", "/v1/chat/completions"):
            return _json(404, {"detail": "Not Found"})
        if not isinstance(body, dict):
            return _fault(Fault.error(400, "request body is not a JSON object", "BadRequestError"))
        model = body.get("model")
        if model not in self.models:
            return _fault(Fault.model_not_found(str(model)))
        reply = self._next(request)
        if isinstance(reply, str):
            reply = Reply(text=reply)
        delay = self.latency_s + reply.delay_s
        if delay:
            time.sleep(delay)
        if isinstance(reply, Fault):
            return _fault(reply)
        if path == "/v1/completions":
            return self._completion(body, reply)
        return self._chat(body, reply)

    def _encode(self, text: str) -> list[int]:
        if self.tokenizer is None:
            return [ord(c) for c in text]
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _decode(self, ids: list[int]) -> str:
        if self.tokenizer is None:
            return "".join(chr(i) for i in ids)
        return str(self.tokenizer.decode(ids, skip_special_tokens=False))

    def _prompt_tokens(self, body: dict[str, Any]) -> int:
        if "prompt" in body:
            return len(self._encode(str(body["prompt"])))
        return len(self._encode(json.dumps(body.get("messages"))))

    def _completion(self, body: dict[str, Any], reply: Reply) -> tuple[int, dict[str, str], bytes]:
        prompt_tokens = self._prompt_tokens(body)
        max_tokens = int(body.get("max_tokens") or 16)
        if self.max_model_len is not None and prompt_tokens + max_tokens > self.max_model_len:
            return _fault(Fault.context_length(self.max_model_len, prompt_tokens, max_tokens))
        text, finish = reply.text, reply.finish_reason or "stop"
        for stop in body.get("stop") or []:
            if stop in text:
                text = text[: text.index(stop)]
        ids = self._encode(text)
        if len(ids) > max_tokens:
            ids, finish = ids[:max_tokens], "length"
            text = self._decode(ids)
        elif finish == "stop" and self._eos_id is not None:
            # Like vLLM: the EOS token is among the sampled ids, its text is not in the output.
            ids = [*ids, self._eos_id]
        choice: dict[str, Any] = {
            "index": 0,
            "text": text,
            "finish_reason": finish,
            "stop_reason": None,
        }
        if body.get("logprobs") is not None:
            as_ids = bool(body.get("return_tokens_as_token_ids"))
            tokens = [f"token_id:{i}" if as_ids else self._decode([i]) for i in ids]
            choice["logprobs"] = {
                "text_offset": [0] * len(ids),
                "token_logprobs": [-0.25] * len(ids),
                "tokens": tokens,
                "top_logprobs": [{t: -0.25} for t in tokens],
            }
        else:
            choice["logprobs"] = None
        return _json(
            200,
            {
                "id": f"cmpl-{len(self.requests)}",
                "object": "text_completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [choice],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": len(ids),
                    "total_tokens": prompt_tokens + len(ids),
                },
            },
        )

    def _chat(self, body: dict[str, Any], reply: Reply) -> tuple[int, dict[str, str], bytes]:
        prompt_tokens = self._prompt_tokens(body)
        calls = None
        if reply.tool_calls:
            calls = []
            for i, call in enumerate(reply.tool_calls):
                fn = call.get("function", call)
                args = fn.get("arguments", {})
                calls.append(
                    {
                        "id": call.get("id", f"chatcmpl-tool-{i}"),
                        "type": "function",
                        "function": {
                            "name": fn["name"],
                            "arguments": args if isinstance(args, str) else json.dumps(args),
                        },
                    }
                )
        finish = reply.finish_reason or ("tool_calls" if calls else "stop")
        message: dict[str, Any] = {
            "role": "assistant",
            "content": reply.text or None,
            "tool_calls": calls or [],
        }
        completion_tokens = len(self._encode(reply.text))
        return _json(
            200,
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        )


def _json(status: int, payload: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()


class _Dripping(bytes):
    """A reply body sent a few bytes at a time (``Fault.drip_s``)."""

    every_s: float = 0.0


def _fault(fault: Fault) -> tuple[int, dict[str, str], bytes]:
    if fault.delay_s:
        time.sleep(fault.delay_s)
    body = fault.body
    if fault.drip_s:
        body = _Dripping(body)
        body.every_s = fault.drip_s
    return fault.status, {"Content-Type": "application/json", **fault.headers}, body


class _Handler(BaseHTTPRequestHandler):
    app: OpenAICompatServer
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections as with a real server
    # Headers and body are separate small writes; with Nagle on, the client's delayed ACK stalls
    # every reply by ~40 ms.
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        path = self.path.split("?", 1)[0]
        status, out_headers, payload = self.app.handle(self.command, path, headers, raw)
        try:
            self.send_response(status)
            for key, value in out_headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if isinstance(payload, _Dripping):
                for start in range(0, len(payload), 64):
                    self.wfile.write(payload[start : start + 64])
                    self.wfile.flush()
                    time.sleep(payload.every_s)
            else:
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            self.close_connection = True

    do_GET = _serve
    do_POST = _serve

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read self.requests
        return


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted, replying ``--text`` to every generation request."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", action="append", help="served model id (repeatable)")
    parser.add_argument("--tokenizer", help="a tokenizer directory, for exact token ids")
    parser.add_argument("--text", default="<think>ok</think>\n<answer>ok</answer>")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per generation")
    args = parser.parse_args(argv)
    tokenizer = None
    if args.tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    server = OpenAICompatServer(
        models=args.model or ["tiny"],
        tokenizer=tokenizer,
        default_text=args.text,
        latency_s=args.latency,
        port=args.port,
    ).start()
    print(f"serving {', '.join(server.models)} at {server.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
