"""The OpenAI-compatible policies against a real HTTP server on loopback (vLLM's wire format)."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest

from deepresearcher.agent.policy import Generation, Policy, SamplingParams
from deepresearcher.agent.policy_openai import OpenAIChatPolicy, OpenAICompletionsPolicy
from deepresearcher.errors import (
    ContextOverflowError,
    PolicyAuthFailed,
    PolicyBadRequest,
    PolicyBadResponse,
    PolicyError,
    PolicyHTTPError,
    PolicyModelNotFound,
    PolicyTimeout,
    PolicyUnreachable,
)
from deepresearcher.protocol.base import RenderedPrompt
from servers.openai_compat import Fault, OpenAICompatServer, Reply

PROMPT = RenderedPrompt(
    text="<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n<think>",
    messages=[{"role": "user", "content": "What is the capital of France?"}],
    prefix="<think>",
)
ANSWER = " Easy.</think>\n<answer>Paris</answer>"
KEY = "sk-test-0123456789abcdef"


def completions(server: OpenAICompatServer, tokenizer, **kwargs) -> OpenAICompletionsPolicy:
    kwargs.setdefault("backoff_s", 0.01)
    return OpenAICompletionsPolicy(server.base_url, "tiny", tokenizer=tokenizer, **kwargs)


def generate(policy, prompt=PROMPT, sampling=None) -> Generation:
    async def go() -> Generation:
        try:
            return await policy.generate(prompt, sampling or SamplingParams(max_tokens=64))
        finally:
            await policy.aclose()

    return asyncio.run(go())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the happy paths -------------------------------------------------------------------------------


def test_completions_sends_the_exact_prompt_and_parses_token_ids(openai_server, tiny_tokenizer):
    openai_server.push(ANSWER)
    policy = completions(openai_server, tiny_tokenizer)
    assert isinstance(policy, Policy)
    sampling = SamplingParams(
        max_tokens=64, temperature=0.7, top_p=0.9, stop=("</answer>",), seed=7
    )
    gen = generate(policy, sampling=sampling)

    sent = openai_server.generation_requests()[0]
    assert sent.path == "/v1/completions"
    body = sent.json
    assert body["prompt"] == PROMPT.text
    assert body["model"] == "tiny"
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (
        64,
        0.7,
        0.9,
        7,
    )
    assert body["stop"] == ["</answer>"]
    assert body["logprobs"] == 1 and body["return_tokens_as_token_ids"] is True
    assert body["skip_special_tokens"] is False
    assert body["top_k"] == -1 and body["repetition_penalty"] == 1.0  # no hidden model defaults
    # The end-of-turn tokens are sent, not left to the server's generation config; the prompt
    # is the template's output, so the server adds no special tokens of its own.
    assert tiny_tokenizer.convert_tokens_to_ids("<|im_end|>") in body["stop_token_ids"]
    assert body["add_special_tokens"] is False

    # The server cut at the stop string, like vLLM; token ids are exact and end with <|im_end|>.
    assert gen.text == " Easy.</think>\n<answer>Paris"
    expected = tiny_tokenizer(gen.text, add_special_tokens=False)["input_ids"]
    im_end = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert gen.token_ids == [*expected, im_end]
    assert gen.logprobs is not None and len(gen.logprobs) == len(gen.token_ids)
    assert gen.finish_reason == "stop"
    assert gen.prompt_tokens == policy.count_tokens(PROMPT.text)
    assert gen.completion_tokens == len(gen.token_ids)
    assert gen.latency_s > 0


def test_completions_length_finish_and_no_logprobs_requested(openai_server, tiny_tokenizer):
    openai_server.push("word " * 50)
    gen = generate(
        completions(openai_server, tiny_tokenizer),
        sampling=SamplingParams(max_tokens=5, logprobs=False),
    )
    assert gen.finish_reason == "length"
    assert "logprobs" not in openai_server.generation_requests()[0].json
    assert gen.token_ids is not None and len(gen.token_ids) == 5  # re-tokenized from the text
    assert gen.logprobs is None


def test_token_ids_fall_back_to_the_tokenizer_when_the_server_ignores_the_option(tiny_tokenizer):
    # A server without vLLM's return_tokens_as_token_ids: tokens come back as strings.
    text = "Paris is the capital."
    ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    tokens = [tiny_tokenizer.decode([i]) for i in ids]
    body = {
        "choices": [
            {
                "text": text,
                "finish_reason": "stop",
                "logprobs": {"tokens": tokens, "token_logprobs": [-0.5] * len(ids)},
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": len(ids)},
    }
    with OpenAICompatServer(tokenizer=tiny_tokenizer) as server:
        server.push(Fault(200, json.dumps(body).encode()))
        gen = generate(completions(server, tiny_tokenizer))
    assert gen.token_ids == ids
    assert gen.logprobs == [-0.5] * len(ids)


def test_chat_returns_native_tool_calls(openai_server):
    call = {"name": "web_search", "arguments": {"query": ["capital of France"]}}
    openai_server.push(Reply(text="", tool_calls=[call]))
    tools = [{"type": "function", "function": {"name": "web_search", "parameters": {}}}]
    prompt = RenderedPrompt(text=None, messages=PROMPT.messages, tools=tools)
    policy = OpenAIChatPolicy(openai_server.base_url, "tiny")
    gen = generate(policy, prompt=prompt)

    sent = openai_server.generation_requests()[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.json["messages"] == PROMPT.messages
    assert sent.json["tools"] == tools
    assert gen.finish_reason == "tool_calls"
    assert gen.tool_calls is not None
    fn = gen.tool_calls[0]["function"]
    assert fn["name"] == "web_search"
    assert json.loads(fn["arguments"]) == {"query": ["capital of France"]}
    assert gen.token_ids is None and gen.logprobs is None


def test_chat_text_reply_and_token_estimate(openai_server):
    openai_server.push("The answer is Paris.")
    policy = OpenAIChatPolicy(openai_server.base_url, "tiny")
    gen = generate(policy, prompt=RenderedPrompt(text=None, messages=PROMPT.messages))
    assert gen.text == "The answer is Paris." and gen.tool_calls is None
    assert gen.finish_reason == "stop"
    assert policy.count_tokens("x" * 400) == 100  # ~4 characters per token without a tokenizer


def test_model_auto_picks_the_single_served_model(openai_server, tiny_tokenizer):
    openai_server.push(ANSWER)
    policy = OpenAICompletionsPolicy(openai_server.base_url, "auto", tokenizer=tiny_tokenizer)
    gen = generate(policy)
    assert policy.model == "tiny" and policy.name == "tiny"
    assert gen.text == ANSWER
    assert [r.path for r in openai_server.requests] == ["/v1/models", "/v1/completions"]


def test_model_auto_refuses_when_several_models_are_served(tiny_tokenizer):
    with OpenAICompatServer(models=("a", "b"), tokenizer=tiny_tokenizer) as server:
        policy = OpenAICompletionsPolicy(server.base_url, "auto", tokenizer=tiny_tokenizer)
        with pytest.raises(PolicyError) as info:
            generate(policy)
    assert isinstance(info.value, PolicyModelNotFound)
    assert "a, b" in str(info.value)


# -- authentication ----------------------------------------------------------------------------------


def test_api_key_is_sent_as_bearer_and_never_shown(monkeypatch, tiny_tokenizer):
    monkeypatch.setenv("TEST_POLICY_KEY", KEY)
    with OpenAICompatServer(tokenizer=tiny_tokenizer, api_key=KEY) as server:
        server.push(ANSWER)
        policy = completions(server, tiny_tokenizer, api_key_env="TEST_POLICY_KEY")
        assert KEY not in repr(policy)
        generate(policy)
        assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"

        # The server echoes the key back in its error message: it must be redacted.
        server.push(Fault.error(403, f"key {KEY} has no access", "PermissionDeniedError"))
        with pytest.raises(PolicyError) as info:
            generate(completions(server, tiny_tokenizer, api_key_env="TEST_POLICY_KEY"))
    error = info.value
    assert isinstance(error, PolicyAuthFailed)
    assert "TEST_POLICY_KEY" in (error.hint or "")
    assert KEY not in str(error) and KEY not in (error.hint or "") and KEY not in repr(error)


def test_missing_key_gives_an_auth_error_naming_the_variable(monkeypatch, tiny_tokenizer):
    monkeypatch.delenv("TEST_POLICY_KEY", raising=False)
    with OpenAICompatServer(tokenizer=tiny_tokenizer, api_key=KEY) as server:
        with pytest.raises(PolicyError) as info:
            generate(completions(server, tiny_tokenizer, api_key_env="TEST_POLICY_KEY"))
        assert "authorization" not in server.requests[0].headers
    assert isinstance(info.value, PolicyAuthFailed)
    assert "set the API key in the environment variable TEST_POLICY_KEY" in info.value.hint


# -- retries -----------------------------------------------------------------------------------------


def test_429_is_retried_after_the_retry_after_delay(openai_server, tiny_tokenizer):
    openai_server.push(Fault.rate_limited(retry_after=0.3), ANSWER)
    started = time.perf_counter()
    gen = generate(completions(openai_server, tiny_tokenizer, backoff_s=0.001))
    elapsed = time.perf_counter() - started
    assert gen.text == ANSWER
    assert len(openai_server.generation_requests()) == 2
    assert 0.3 <= elapsed < 2.0  # waited as told, not the (tiny) backoff, not forever


def test_5xx_is_retried_with_bounded_backoff(openai_server, tiny_tokenizer):
    openai_server.push(Fault.server_error(500), Fault.server_error(503), ANSWER)
    started = time.perf_counter()
    gen = generate(completions(openai_server, tiny_tokenizer, backoff_s=0.05))
    elapsed = time.perf_counter() - started
    assert gen.text == ANSWER
    assert len(openai_server.generation_requests()) == 3
    # Jittered exponential: attempt 0 waits in [0.025, 0.05], attempt 1 in [0.05, 0.1].
    assert 0.075 <= elapsed < 1.5


def test_retries_are_bounded(openai_server, tiny_tokenizer):
    openai_server.push(*[Fault.server_error()] * 5)
    with pytest.raises(PolicyError) as info:
        generate(completions(openai_server, tiny_tokenizer, max_retries=2, backoff_s=0.001))
    assert isinstance(info.value, PolicyHTTPError)
    assert "500" in str(info.value)
    assert len(openai_server.generation_requests()) == 3


def test_connection_refused_is_unreachable_with_a_hint(tiny_tokenizer):
    policy = OpenAICompletionsPolicy(
        f"http://127.0.0.1:{free_port()}/v1",
        "tiny",
        tokenizer=tiny_tokenizer,
        max_retries=1,
        backoff_s=0.001,
    )
    with pytest.raises(PolicyError) as info:
        generate(policy)
    assert isinstance(info.value, PolicyUnreachable)
    assert "vllm serve GAIR/DeepResearcher-7b" in info.value.hint
    assert "--base-url" in info.value.hint


def test_connect_and_pool_timeouts_are_retried(openai_server, tiny_tokenizer, monkeypatch):
    """No connection in time (nothing generated yet) is retried like a refused connection,
    and reported as unreachable, not as a generation that took the whole timeout."""
    import httpx

    failures = [httpx.ConnectTimeout("connect"), httpx.PoolTimeout("pool")]
    send = httpx.AsyncClient.send

    async def flaky(self, *args, **kwargs):
        if failures:
            raise failures.pop(0)
        return await send(self, *args, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "send", flaky)
    openai_server.push(ANSWER)
    policy = OpenAICompletionsPolicy(openai_server.base_url, "tiny", tokenizer=tiny_tokenizer,
                                     max_retries=2, backoff_s=0.001)
    assert generate(policy).text == ANSWER
    failures[:] = [httpx.ConnectTimeout("connect")] * 2
    once = OpenAICompletionsPolicy(openai_server.base_url, "tiny", tokenizer=tiny_tokenizer,
                                   max_retries=1, backoff_s=0.001)
    with pytest.raises(PolicyError) as info:
        generate(once)
    assert isinstance(info.value, PolicyUnreachable)
    assert "no connection in time (ConnectTimeout)" in str(info.value)


def test_unknown_host_is_unreachable(tiny_tokenizer):
    policy = OpenAICompletionsPolicy(
        "http://no-such-host.invalid/v1", "tiny", tokenizer=tiny_tokenizer, max_retries=0
    )
    with pytest.raises(PolicyError) as info:
        generate(policy)
    assert isinstance(info.value, PolicyUnreachable)


def test_unknown_model_lists_the_served_ones(openai_server, tiny_tokenizer):
    policy = OpenAICompletionsPolicy(
        openai_server.base_url, "GAIR/DeepResearcher-7b", tokenizer=tiny_tokenizer
    )
    with pytest.raises(PolicyError) as info:
        generate(policy)
    assert isinstance(info.value, PolicyModelNotFound)
    assert "GAIR/DeepResearcher-7b" in str(info.value)
    assert info.value.hint == "the server serves: tiny"


def test_wrong_base_url_path_says_to_check_v1(openai_server, tiny_tokenizer):
    root = openai_server.base_url.removesuffix("/v1")
    with pytest.raises(PolicyError) as info:
        generate(OpenAICompletionsPolicy(root, "tiny", tokenizer=tiny_tokenizer))
    assert isinstance(info.value, PolicyHTTPError)
    assert "/v1" in info.value.hint


def test_vllm_context_length_error_is_a_context_overflow(openai_server, tiny_tokenizer):
    openai_server.push(Fault.context_length(32768, 31000, 2000))
    with pytest.raises(ContextOverflowError) as info:
        generate(completions(openai_server, tiny_tokenizer))
    assert isinstance(info.value, ContextOverflowError)
    assert "maximum context length is 32768" in str(info.value)


def test_context_overflow_from_the_servers_own_check(tiny_tokenizer):
    with OpenAICompatServer(tokenizer=tiny_tokenizer, max_model_len=40) as server:
        with pytest.raises(ContextOverflowError):
            generate(completions(server, tiny_tokenizer), sampling=SamplingParams(max_tokens=2000))
        assert len(server.generation_requests()) == 1  # a 400 is not retried


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": "cmpl-1", "choices": [{"text": "trunc',
        b'{"id": "cmpl-1", "choices": []}',
        b"<html>502 Bad Gateway</html>",
    ],
)
def test_malformed_replies_are_bad_response(openai_server, tiny_tokenizer, body):
    openai_server.push(Fault(200, body))
    with pytest.raises(PolicyError) as info:
        generate(completions(openai_server, tiny_tokenizer))
    assert isinstance(info.value, PolicyBadResponse)


def test_a_slow_server_times_out(openai_server, tiny_tokenizer):
    openai_server.push(Fault.slow(1.0))
    started = time.perf_counter()
    with pytest.raises(PolicyError) as info:
        generate(completions(openai_server, tiny_tokenizer, timeout=0.2))
    assert isinstance(info.value, PolicyTimeout)
    assert time.perf_counter() - started < 0.9
    assert len(openai_server.generation_requests()) == 1  # a timeout is not retried


def test_completions_need_a_rendered_text(openai_server, tiny_tokenizer):
    with pytest.raises(PolicyError) as info:
        generate(
            completions(openai_server, tiny_tokenizer),
            prompt=RenderedPrompt(text=None, messages=PROMPT.messages),
        )
    assert isinstance(info.value, PolicyBadRequest)
    assert openai_server.generation_requests() == []


def test_many_concurrent_requests_share_one_client(tiny_tokenizer):
    with OpenAICompatServer(tokenizer=tiny_tokenizer, latency_s=0.05) as server:
        policy = completions(server, tiny_tokenizer)

        async def go() -> list[Generation]:
            try:
                return await asyncio.gather(
                    *[policy.generate(PROMPT, SamplingParams(max_tokens=32)) for _ in range(64)]
                )
            finally:
                await policy.aclose()

        started = time.perf_counter()
        results = asyncio.run(go())
        elapsed = time.perf_counter() - started
    assert len(results) == 64 and all(r.finish_reason == "stop" for r in results)
    assert elapsed < 64 * 0.05 / 2  # served concurrently: one after another takes >= 3.2 s


def test_chat_reasoning_content_is_kept_as_a_think_block(openai_server):
    # vLLM/SGLang with a reasoning parser return the thinking apart from the content.
    body = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": "<answer>Paris</answer>",
                    "reasoning_content": "France's capital.",
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 9},
    }
    openai_server.push(Fault(200, json.dumps(body).encode()))
    policy = OpenAIChatPolicy(openai_server.base_url, "tiny")
    gen = generate(policy, prompt=RenderedPrompt(text=None, messages=PROMPT.messages))
    assert gen.text == "<think>France's capital.</think><answer>Paris</answer>"
    assert (gen.prompt_tokens, gen.completion_tokens) == (5, 9)
