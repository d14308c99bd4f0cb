"""Policies served over HTTP by any OpenAI-compatible server (vLLM, SGLang, llama.cpp, hosted APIs).

``OpenAICompletionsPolicy`` sends the exact prompt string (rendered here with the model's own chat
template) to ``/completions`` and gets token ids and log-probs back: the right choice for the
DeepResearcher-7b format and for training. ``OpenAIChatPolicy`` sends messages and tool schemas to
``/chat/completions`` and gets native tool calls back: the choice for hosted chat models.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import ssl
import time
from typing import Any

import httpx

from deepresearcher.agent.policy import FinishReason, Generation, SamplingParams
from deepresearcher.errors import (
    ContextOverflowError,
    PolicyAuthFailed,
    PolicyBadRequest,
    PolicyBadResponse,
    PolicyError,
    PolicyHTTPError,
    PolicyModelNotFound,
    PolicyRateLimited,
    PolicyTimeout,
    PolicyUnreachable,
)
from deepresearcher.protocol.base import RenderedPrompt
from deepresearcher.tools.http import (
    BodyError,
    Retry,
    parse_retry_after,
    reply_limit,
    send_bounded,
    with_retries,
)

# Statuses worth another try: rate limits and transient server trouble.
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


class _RetryableReply(Exception):
    """A reply with one of ``RETRY_STATUSES``, while retries are left."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response

# How servers word "prompt + max_tokens does not fit": vLLM (old and new wording), OpenAI, SGLang,
# llama.cpp. Matched case-insensitively against the error message of a 400.
_CONTEXT_PATTERNS = re.compile(
    r"maximum context length|context length|context window|context size|exceeds the available "
    r"context|max_model_len|too many tokens|reduce the length",
    re.IGNORECASE,
)

# Connections per httpx pool; see _OpenAIPolicy._http.
POOL_SHARD_SIZE = 8

# The most bytes read from a reply that is not a generation (GET /models lists every served model).
MODELS_REPLY_BYTES = 8 * 1024 * 1024

# A chat policy without a tokenizer estimates tokens from characters: about 4 characters per token is
# the usual figure for English with BPE vocabularies; the guard errs on the side of overestimating.
CHARS_PER_TOKEN = 4

UNREACHABLE_HINT = (
    "is the server running? e.g. `vllm serve GAIR/DeepResearcher-7b --max-model-len 32768` "
    "(default http://localhost:8000/v1); check --base-url, which must include /v1"
)


class _OpenAIPolicy:
    """What both OpenAI-compatible policies share: the client, retries and error mapping."""

    endpoint = ""  # "/completions" or "/chat/completions"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        tokenizer: Any = None,
        context_window: int = 32768,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 300.0,
        connect_timeout: float = 10.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        max_connections: int = 256,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        """Configure the client; nothing is sent until the first call.

        ``base_url`` includes the version prefix, like the OpenAI SDK: ``http://localhost:8000/v1``.
        The API key is read from the environment variable ``api_key_env`` (never from arguments, so
        it never lands in configs, logs or tracebacks); servers that need no key get none.
        ``timeout`` bounds a whole generation; ``max_retries`` bounds retries of 429/5xx and
        connection failures, with jittered exponential backoff that honors ``Retry-After``.
        ``model="auto"`` asks ``GET /models`` on first use and takes the single served model.
        ``extra_body`` is merged into every request (server-specific sampling options).
        """
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = model
        self.tokenizer = tokenizer
        self.context_window = context_window
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        # A server's Retry-After is honored up to max_backoff_s, so no retry is refused for it.
        self.retry = Retry(retries=max_retries, backoff_s=backoff_s,
                           max_backoff_s=max_backoff_s, max_wait_s=max_backoff_s)
        self.max_connections = max_connections
        self.extra_body = dict(extra_body or {})
        self._api_key = os.environ.get(api_key_env) or None
        self._clients: list[httpx.AsyncClient] = []
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._in_flight: list[int] = []
        self._ssl: ssl.SSLContext | None = None
        self._model_lock: asyncio.Lock | None = None

    def __repr__(self) -> str:
        # Spelled out so that no future attribute (such as the key) leaks through a default repr.
        return f"{type(self).__name__}(base_url={self.base_url!r}, model={self.model!r})"

    # -- public API --------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` by the model's tokenizer (or a ~4 characters/token estimate)."""
        if self.tokenizer is not None:
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return -(-len(text) // CHARS_PER_TOKEN)

    async def list_models(self) -> list[str]:
        """Ids of the models the server serves (``GET /models``)."""
        data = await self._request("GET", "/models")
        try:
            return [str(m["id"]) for m in data["data"]]
        except (KeyError, TypeError) as exc:
            raise self._bad_response("/models", f"no model list in the reply ({exc!r})") from exc

    async def aclose(self) -> None:
        """Close the connection pool."""
        clients, self._clients = self._clients, []
        for client in clients:
            # RuntimeError: its event loop is gone already; nothing is left to close.
            with contextlib.suppress(RuntimeError):
                await client.aclose()

    async def __aenter__(self) -> _OpenAIPolicy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- plumbing ----------------------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        """A client for the running event loop (a pool cannot be shared across loops).

        Connections are spread over several small pools, the least busy one taking the next
        request: httpcore scans its whole pool for every request, which at 64 concurrent requests
        in one pool cost ~8 ms of CPU each.
        """
        loop = asyncio.get_running_loop()
        if self._client_loop is not loop:
            self._clients, self._in_flight = [], []
            self._client_loop = loop
            self._model_lock = asyncio.Lock()
        shards = max(1, -(-self.max_connections // POOL_SHARD_SIZE))
        per_shard = -(-self.max_connections // shards)
        if self._clients:
            least = self._in_flight.index(min(self._in_flight))
            if self._in_flight[least] < per_shard or len(self._clients) == shards:
                return self._clients[least]
        # Pools are added only as concurrency grows: a client costs an SSL context to build.
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        self._clients.append(
            httpx.AsyncClient(
                headers=headers,
                timeout=httpx.Timeout(self.timeout, connect=self.connect_timeout),
                limits=httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard),
                verify=self._ssl,
                # Proxies from the environment are for the web, not for a local model server.
                trust_env=False,
            )
        )
        self._in_flight.append(0)
        return self._clients[-1]

    async def _resolve_model(self) -> str:
        """The model id to send; resolves ``"auto"`` once, from ``GET /models``."""
        if self.model != "auto":
            return self.model
        self._http()
        assert self._model_lock is not None
        async with self._model_lock:
            if self.model == "auto":
                models = await self.list_models()
                if len(models) != 1:
                    raise PolicyModelNotFound(
                        f"model='auto' needs exactly one served model, the server at "
                        f"{self.base_url} serves {len(models)}: {', '.join(models) or 'none'}",
                        hint="pass one of them with --model",
                    )
                self.model = self.name = models[0]
        return self.model

    def _redact(self, text: str) -> str:
        """``text`` with the API key blanked out (servers sometimes echo what they were sent)."""
        if self._api_key and self._api_key in text:
            text = text.replace(self._api_key, "***")
        return text

    def _bad_response(self, path: str, why: str) -> PolicyError:
        return PolicyBadResponse(
            self._redact(f"malformed reply from {self.base_url}{path}: {why}"),
            hint="is --base-url an OpenAI-compatible API (ending in /v1)?",
        )

    def _wait_asked(self, exc: BaseException) -> float | None:
        """The wait a retryable reply asks for (``Retry-After``), at most ``max_backoff_s``."""
        if isinstance(exc, _RetryableReply):
            after = parse_retry_after(exc.response.headers.get("retry-after"))
            if after is not None:
                return min(after, self.max_backoff_s)
        return None

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None,
                       *, limit: int = MODELS_REPLY_BYTES) -> Any:
        """Send one request with bounded retries; the parsed JSON reply or a typed error.

        Retries go through the one retry path of every HTTP client here
        (:func:`~deepresearcher.tools.http.with_retries`): a refused or dropped connection, no
        free connection in time, and the statuses of ``RETRY_STATUSES`` are tried again, with
        jittered exponential backoff that honors ``Retry-After`` (up to ``max_backoff_s``); a
        timeout is not (a generation that took the whole timeout would likely do so again).
        At most ``limit`` bytes of the reply are read (decoded); a longer reply is the server's
        error. ``timeout`` bounds each attempt whole, the reply's body included.
        """
        client = self._http()
        shard = self._clients.index(client)
        url = f"{self.base_url}{path}"

        async def attempt() -> httpx.Response:
            try:
                self._in_flight[shard] += 1
                try:
                    request = client.build_request(method, url, json=body)
                    response = await asyncio.wait_for(send_bounded(client, request, limit),
                                                      self.timeout)
                finally:
                    # The pools may have been replaced meanwhile (aclose, a new event loop).
                    if shard < len(self._clients) and self._clients[shard] is client:
                        self._in_flight[shard] -= 1
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # Refused, or no connection in time (none free in the pool): nothing was
                # generated yet, so the request may be sent again.
                detail = (_cause(exc) if isinstance(exc, httpx.ConnectError)
                          else f"no connection in time ({type(exc).__name__})")
                raise PolicyUnreachable(
                    self._redact(f"cannot connect to {self.base_url}: {detail}"),
                    hint=UNREACHABLE_HINT,
                ) from exc
            except (httpx.TimeoutException, asyncio.TimeoutError) as exc:
                raise PolicyTimeout(
                    f"no reply from {url} within {self.timeout:g} s ({type(exc).__name__})",
                    hint="raise the policy server's timeout (--timeout), or lower max tokens per "
                    "turn / concurrency",
                ) from exc
            except BodyError as exc:
                raise self._bad_response(path, f"{exc} (asked for {_asked(body)})") from exc
            except httpx.TransportError as exc:
                raise PolicyUnreachable(
                    self._redact(f"connection to {self.base_url} failed: {_cause(exc)}"),
                    hint=UNREACHABLE_HINT,
                ) from exc
            if response.status_code in RETRY_STATUSES:
                raise _RetryableReply(response)
            return response

        try:
            response = await with_retries(
                attempt, self.retry,
                should_retry=lambda exc: isinstance(exc, PolicyUnreachable | _RetryableReply),
                wait_asked=self._wait_asked, label=f"{method} {self._redact(url)}")
        except _RetryableReply as exc:
            response = exc.response  # the retries are spent: its typed error below
        if response.status_code >= 400:
            raise await self._http_error(path, response)
        try:
            return response.json()
        except ValueError as exc:
            snippet = response.text[:200]
            raise self._bad_response(path, f"not JSON: {snippet!r}") from exc

    async def _http_error(self, path: str, response: httpx.Response) -> PolicyError:
        """The typed error for a failed reply."""
        status = response.status_code
        message = self._redact(_error_message(response))
        where = f"{self.base_url}{path}"
        if status in (401, 403):
            if self._api_key:
                hint = (
                    f"the key in ${self.api_key_env} was refused; check it is valid for this server"
                )
            else:
                hint = f"set the API key in the environment variable {self.api_key_env}"
            return PolicyAuthFailed(f"{where} answered {status}: {message}", hint=hint)
        if status == 404:
            if "model" in message.lower():
                served = await self._served_models()
                hint = (
                    f"the server serves: {', '.join(served)}"
                    if served
                    else "pass a model the server serves (see GET /models)"
                )
                return PolicyModelNotFound(
                    f"model {self.model!r} not found at {self.base_url}: {message}",
                    hint=hint,
                )
            return PolicyHTTPError(
                f"{where} answered 404: {message}",
                hint="check --base-url: it must be the API root including /v1",
            )
        if status in (400, 413, 422) and _CONTEXT_PATTERNS.search(message):
            return ContextOverflowError(
                f"prompt plus max tokens exceed the context window of {self.model!r}: {message}",
                hint="lower max tokens per turn, or serve the model with a longer --max-model-len",
            )
        if status == 429:
            return PolicyRateLimited(
                f"rate limited by {where} after {self.max_retries} retries: {message}",
                hint="lower concurrency or raise the quota",
            )
        return PolicyHTTPError(f"{where} answered {status}: {message}")

    async def _served_models(self) -> list[str]:
        """The served model ids for a hint; empty when the server cannot say."""
        try:
            return (await self.list_models())[:20]
        except PolicyError:
            return []

    def _sampling_body(self, sampling: SamplingParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "max_tokens": sampling.max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        return body


class OpenAICompletionsPolicy(_OpenAIPolicy):
    """A policy on ``POST {base_url}/completions``: exact prompt text in, tokens and log-probs out.

    Requests vLLM's ``return_tokens_as_token_ids`` so that token ids come back exactly (as
    ``token_id:123`` strings); when a server ignores it, ids come from tokenizing the text.
    """

    endpoint = "/completions"

    def __init__(self, base_url: str, model: str, *, tokenizer: Any, **kwargs: Any) -> None:
        """``tokenizer`` is the served model's own tokenizer (renders prompts, counts tokens)."""
        super().__init__(base_url, model, tokenizer=tokenizer, **kwargs)
        from deepresearcher.agent.policy_hf import end_of_turn_ids

        # End-of-turn tokens sent with each request, not left to the server's generation config
        # (vLLM --generation-config vllm, or a checkpoint without one, would stop at EOS only).
        self.stop_token_ids = end_of_turn_ids(tokenizer)

    async def generate(self, prompt: RenderedPrompt, sampling: SamplingParams) -> Generation:
        """Complete ``prompt.text`` (the chat template already applied, forced prefix included)."""
        if prompt.text is None:
            raise PolicyBadRequest(
                "the completions API needs a rendered prompt text, and this profile gave none",
                hint="use the chat API (--api chat) for this profile",
            )
        started = time.perf_counter()
        model = await self._resolve_model()
        body: dict[str, Any] = {
            "model": model,
            "prompt": prompt.text,
            **self._sampling_body(sampling),
            # The template's own special tokens must come back as text and be counted as tokens.
            "skip_special_tokens": False,
            "spaces_between_special_tokens": False,
            "stop_token_ids": list(self.stop_token_ids),
            # The prompt is the chat template's output already: no second BOS.
            "add_special_tokens": False,
            # vLLM applies a checkpoint's generation_config defaults to fields a request leaves out
            # (Qwen2.5-Instruct: top_k=20, repetition_penalty=1.05); neutral values keep the
            # sampling distribution what SamplingParams say, which the log-probs must match.
            "top_k": -1,
            "repetition_penalty": 1.0,
            **self.extra_body,
        }
        if sampling.logprobs:
            body["logprobs"] = 1
            body["return_tokens_as_token_ids"] = True
        data = await self._request("POST", self.endpoint, body,
                                   limit=reply_limit(sampling.max_tokens))
        try:
            choice = data["choices"][0]
            text = choice.get("text") or ""
            finish = choice.get("finish_reason")
            usage = data.get("usage") or {}
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise self._bad_response(self.endpoint, f"no completion choice ({exc!r})") from exc
        if not isinstance(text, str):
            raise self._bad_response(self.endpoint, "choice text is not a string")
        token_ids, logprobs = self._tokens(choice.get("logprobs"), text)
        if token_ids is not None and len(token_ids) > sampling.max_tokens:
            raise self._bad_response(self.endpoint, f"{len(token_ids):,} tokens for a request of "
                                     f"at most {sampling.max_tokens:,}")
        return Generation(
            text=text,
            token_ids=token_ids,
            logprobs=logprobs,
            finish_reason=_finish_reason(finish),
            prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
            completion_tokens=_int_or_none(usage.get("completion_tokens"))
            or (len(token_ids) if token_ids is not None else None),
            latency_s=time.perf_counter() - started,
        )

    def _tokens(self, block: Any, text: str) -> tuple[list[int] | None, list[float] | None]:
        """Token ids and log-probs from a completion's ``logprobs`` block."""
        tokens = block.get("tokens") if isinstance(block, dict) else None
        raw_logprobs = block.get("token_logprobs") if isinstance(block, dict) else None
        logprobs: list[float] | None = None
        if isinstance(raw_logprobs, list):
            # The first token of an echoed prompt has no log-prob (null); nothing here echoes, but a
            # null must not crash the episode.
            logprobs = [float(x) if x is not None else 0.0 for x in raw_logprobs]
        if (
            isinstance(tokens, list)
            and tokens
            and all(isinstance(t, str) and t.startswith("token_id:") for t in tokens)
        ):
            try:
                ids = [int(t[len("token_id:") :]) for t in tokens]
            except ValueError:
                ids = None
            if ids is not None:
                if logprobs is not None and len(logprobs) != len(ids):
                    logprobs = None
                return ids, logprobs
        if isinstance(tokens, list) and not tokens and not text:
            return [], logprobs or []
        if self.tokenizer is None:
            return None, None
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        # Re-tokenized text need not match what was sampled; log-probs are only kept if they align.
        if logprobs is not None and len(logprobs) != len(ids):
            logprobs = None
        return ids, logprobs


class OpenAIChatPolicy(_OpenAIPolicy):
    """A policy on ``POST {base_url}/chat/completions``: messages and tools in, text and native
    tool calls out. Token ids and log-probs are not returned (chat APIs do not give exact ids)."""

    endpoint = "/chat/completions"

    def __init__(self, base_url: str, model: str, *, tokenizer: Any = None, **kwargs: Any) -> None:
        """``tokenizer`` is optional: without it tokens are estimated at ~4 characters each."""
        super().__init__(base_url, model, tokenizer=tokenizer, **kwargs)

    async def generate(self, prompt: RenderedPrompt, sampling: SamplingParams) -> Generation:
        """One assistant message for ``prompt.messages`` with ``prompt.tools`` offered."""
        started = time.perf_counter()
        model = await self._resolve_model()
        body: dict[str, Any] = {
            "model": model,
            "messages": prompt.messages,
            **self._sampling_body(sampling),
            **self.extra_body,
        }
        if prompt.tools:
            body["tools"] = prompt.tools
        data = await self._request("POST", self.endpoint, body,
                                   limit=reply_limit(sampling.max_tokens))
        try:
            choice = data["choices"][0]
            message = choice["message"]
            text = message.get("content") or ""
            tool_calls = message.get("tool_calls") or None
            usage = data.get("usage") or {}
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise self._bad_response(self.endpoint, f"no message in the reply ({exc!r})") from exc
        if not isinstance(text, str) or (
            tool_calls is not None and not isinstance(tool_calls, list)
        ):
            raise self._bad_response(self.endpoint, "message content or tool_calls malformed")
        # Reasoning models on vLLM/SGLang return their thinking separately; keep it in the turn text
        # the way the completion backends see it.
        reasoning = message.get("reasoning_content") or message.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            text = f"<think>{reasoning}</think>{text}"
        finish = _finish_reason(choice.get("finish_reason"))
        if tool_calls and finish == "stop":
            finish = "tool_calls"
        return Generation(
            text=text,
            token_ids=None,
            logprobs=None,
            finish_reason=finish,
            prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
            completion_tokens=_int_or_none(usage.get("completion_tokens")),
            tool_calls=tool_calls,
            latency_s=time.perf_counter() - started,
        )


def _finish_reason(value: Any) -> FinishReason:
    if value == "length":
        return "length"
    if value in ("tool_calls", "function_call"):
        return "tool_calls"
    return "stop"  # "stop", "eos", null and server-specific reasons all mean the turn ended


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _error_message(response: httpx.Response) -> str:
    """The server's error message: OpenAI ``{"error": {"message"}}``, vLLM's older flat
    ``{"message"}``, FastAPI's ``{"detail"}``, or the start of the raw body."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:300].strip() or response.reason_phrase
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
        if isinstance(error, str):
            return error
        for key in ("message", "detail"):
            if isinstance(data.get(key), str):
                return data[key]
    return json.dumps(data)[:300]


def _asked(body: dict[str, Any] | None) -> str:
    tokens = (body or {}).get("max_tokens")
    return f"at most {tokens:,} tokens" if isinstance(tokens, int) else "no generation"


def _cause(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__
