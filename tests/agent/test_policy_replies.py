"""Hostile model-server replies on loopback: what is read is capped by what was asked for."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import tracemalloc
import zlib

import pytest

from deepresearcher.agent.policy import SamplingParams
from deepresearcher.agent.policy_openai import OpenAIChatPolicy, OpenAICompletionsPolicy
from deepresearcher.errors import PolicyBadResponse, PolicyError, PolicyTimeout
from deepresearcher.protocol.base import RenderedPrompt
from deepresearcher.tools.http import reply_limit
from servers.openai_compat import Fault, OpenAICompatServer

PROMPT = RenderedPrompt(
    text="<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    messages=[{"role": "user", "content": "What is the capital of France?"}],
)


def _completion(text: str, **extra: object) -> bytes:
    return json.dumps({"id": "cmpl-1", "object": "text_completion", "model": "tiny",
                       "choices": [{"index": 0, "text": text, "finish_reason": "length",
                                    **extra}]}).encode()


def _chat(text: str) -> bytes:
    return json.dumps({"id": "chat-1", "object": "chat.completion", "model": "tiny",
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": text}}]}).encode()


def _run(policy: object, max_tokens: int = 2000) -> tuple[object, int, float]:
    """Generate once: the generation or the error, peak Python memory, seconds."""

    async def go() -> object:
        try:
            return await policy.generate(PROMPT, SamplingParams(max_tokens=max_tokens))  # type: ignore[attr-defined]
        except PolicyError as exc:
            return exc
        finally:
            await policy.aclose()  # type: ignore[attr-defined]

    tracemalloc.start()
    started = time.perf_counter()
    result = asyncio.run(go())
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, peak, seconds


def _completions(server: OpenAICompatServer, tokenizer: object, **kw: object):
    return OpenAICompletionsPolicy(server.base_url, "tiny", tokenizer=tokenizer, max_retries=0,
                                   **kw)  # type: ignore[arg-type]


def test_a_5_mb_completion_to_a_2000_token_request_is_the_servers_error(
    openai_server: OpenAICompatServer, tiny_tokenizer: object
) -> None:
    openai_server.push(Fault(200, _completion("The answer is " + "x" * (5 << 20))))
    result, peak, _ = _run(_completions(openai_server, tiny_tokenizer))
    assert isinstance(result, PolicyError) and isinstance(result, PolicyBadResponse)
    assert "at most 2,000 tokens" in str(result)
    # The reply was not read whole, let alone tokenized: memory stays near the cap.
    assert peak < 4 * reply_limit(2000), f"peak {peak:,}"


@pytest.mark.parametrize("api", ["completions", "chat"])
@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_a_compressed_bomb_reply_stops_at_the_cap(
    openai_server: OpenAICompatServer, tiny_tokenizer: object, api: str, coding: str
) -> None:
    reply = (_completion if api == "completions" else _chat)("y" * (64 << 20))
    body = gzip.compress(reply, 9) if coding == "gzip" else zlib.compress(reply, 9)
    openai_server.push(Fault(200, body, {"Content-Encoding": coding}))
    policy = (_completions(openai_server, tiny_tokenizer) if api == "completions" else
              OpenAIChatPolicy(openai_server.base_url, "tiny", max_retries=0))
    result, peak, _ = _run(policy, max_tokens=500)
    assert isinstance(result, PolicyError) and isinstance(result, PolicyBadResponse)
    assert peak < 4 * reply_limit(500) + (1 << 20), f"peak {peak:,}"


@pytest.mark.parametrize("coding", ["br", "zstd", "gzip, gzip, gzip"])
def test_codings_that_were_not_asked_for_are_refused(
    openai_server: OpenAICompatServer, tiny_tokenizer: object, coding: str
) -> None:
    openai_server.push(Fault(200, b"\x1b\x00\x00\x00", {"Content-Encoding": coding}))
    result, _, _ = _run(_completions(openai_server, tiny_tokenizer))
    assert isinstance(result, PolicyError) and isinstance(result, PolicyBadResponse)
    assert "not asked for" in str(result) or "at most" in str(result)
    assert openai_server.requests[-1].headers["accept-encoding"] == "gzip, deflate"


def test_an_honest_gzip_reply_is_read(openai_server: OpenAICompatServer,
                                      tiny_tokenizer: object) -> None:
    openai_server.push(Fault(200, gzip.compress(_completion("<answer>Paris</answer>")),
                             {"Content-Encoding": "gzip"}))
    result, _, _ = _run(_completions(openai_server, tiny_tokenizer), max_tokens=64)
    assert getattr(result, "text", None) == "<answer>Paris</answer>"


def test_more_token_ids_than_asked_for_is_the_servers_error(
    openai_server: OpenAICompatServer, tiny_tokenizer: object
) -> None:
    ids = [f"token_id:{i % 100 + 10}" for i in range(300)]
    openai_server.push(Fault(200, _completion("z" * 300, logprobs={
        "tokens": ids, "token_logprobs": [-0.1] * 300})))
    result, _, _ = _run(_completions(openai_server, tiny_tokenizer), max_tokens=100)
    assert isinstance(result, PolicyError) and isinstance(result, PolicyBadResponse)
    assert "300 tokens for a request of at most 100" in str(result)


def test_a_reply_dripped_slowly_ends_at_the_timeout(openai_server: OpenAICompatServer,
                                                    tiny_tokenizer: object) -> None:
    # Each piece comes well within the read timeout; the whole reply would take ~4 s.
    openai_server.push(Fault(200, _completion("w" * 4000), drip_s=0.06))
    result, _, seconds = _run(_completions(openai_server, tiny_tokenizer, timeout=0.8))
    assert isinstance(result, PolicyError) and isinstance(result, PolicyTimeout)
    assert seconds < 2.5


def test_a_huge_error_reply_is_capped_too(openai_server: OpenAICompatServer,
                                          tiny_tokenizer: object) -> None:
    openai_server.push(Fault(500, b'{"error": {"message": "' + b"e" * (8 << 20) + b'"}}'))
    result, peak, _ = _run(_completions(openai_server, tiny_tokenizer))
    assert isinstance(result, PolicyError) and isinstance(result, PolicyBadResponse)
    assert peak < 4 * reply_limit(2000)
