"""The LLM reader against a real OpenAI-compatible server on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepresearcher.errors import (
    ReaderAuthFailed,
    ReaderBadResponse,
    ReaderError,
    ReaderUnreachable,
)
from deepresearcher.tools.base import Reader
from deepresearcher.tools.cache import ToolCache
from deepresearcher.tools.http import Retry
from deepresearcher.tools.llm_reader import LLMReader, parse_reply
from deepresearcher.tools.usage import ToolUsage, counting
from deepresearcher.types import BrowseMemory, Document, PageExtract
from servers.openai_compat import Fault, OpenAICompatServer

DOC = Document(
    url="https://example.org/ray-lake",
    title="Ray Lake",
    chunks=("Ray Lake was a singer. He founded The Real Thing in 1970.",
            "He was born in Liverpool in 1946.",
            "He died in 2000 in Liverpool."),
)
QUESTION = "Where was the founder of The Real Thing born?"


def note(information: str, read_more: bool = True) -> str:
    return json.dumps({"information": information, "read_more": read_more})


@pytest.fixture
def server() -> Iterator[OpenAICompatServer]:
    with OpenAICompatServer(models=("reader",), api_key="sk-test-secret") as s:
        yield s


@pytest.fixture
def reader(server: OpenAICompatServer, monkeypatch: pytest.MonkeyPatch) -> LLMReader:
    monkeypatch.setenv("READER_KEY", "sk-test-secret")
    return LLMReader(server.base_url, "reader", api_key_env="READER_KEY",
                     retry=Retry(retries=2, backoff_s=0.01))


def read(reader: LLMReader, memory: BrowseMemory, usage: ToolUsage | None = None,
         document: Document = DOC) -> list[PageExtract]:
    async def go() -> list[PageExtract]:
        with counting(usage or ToolUsage()):
            return await reader.read(document, question=QUESTION,
                                     sub_question="Ray Lake birthplace", memory=memory)

    return asyncio.run(go())


def test_reads_until_the_model_says_stop(server: OpenAICompatServer, reader: LLMReader) -> None:
    assert isinstance(reader, Reader)
    server.push(note("Ray Lake founded The Real Thing in 1970."),
                note("Ray Lake was born in Liverpool in 1946.", read_more=False))
    memory = BrowseMemory()
    usage = ToolUsage()
    extracts = read(reader, memory, usage)
    assert extracts == [
        PageExtract(0, "Ray Lake founded The Real Thing in 1970."),
        PageExtract(1, "Ray Lake was born in Liverpool in 1946."),
    ]
    requests = server.generation_requests()
    assert len(requests) == 2
    first = requests[0].json["messages"]
    assert first[0]["role"] == "system" and "JSON" in first[0]["content"]
    assert QUESTION in first[1]["content"] and "Ray Lake birthplace" in first[1]["content"]
    assert DOC.chunks[0] in first[1]["content"] and "part 1 of 3" in first[1]["content"]
    assert "(none yet)" in first[1]["content"]
    # the second call is told what the episode already has
    second = requests[1].json["messages"][1]["content"]
    assert "ray lake founded the real thing in 1970." in second
    assert requests[0].headers["authorization"] == "Bearer sk-test-secret"
    assert memory.read_chunks[DOC.url] == {0, 1}
    # tokens as the server counted them (one per character of the JSON messages / reply)
    assert usage.reader_calls == 2 and usage.reader_cached == 0
    assert usage.reader_prompt_tokens == sum(
        len(json.dumps(r.json["messages"])) for r in requests)
    assert usage.reader_completion_tokens == len(
        note("Ray Lake founded The Real Thing in 1970.")) + len(
        note("Ray Lake was born in Liverpool in 1946.", read_more=False))
    # browsing again reads on from the first unread chunk
    server.push(note("Ray Lake died in 2000."))
    assert read(reader, memory) == [PageExtract(2, "Ray Lake died in 2000.")]
    assert "part 3 of 3 (the last part)" in server.generation_requests()[2].json["messages"][1][
        "content"]
    assert read(reader, memory) == []  # every chunk read: nothing to ask


def test_always_stops_at_the_last_chunk(server: OpenAICompatServer, reader: LLMReader) -> None:
    server.script = lambda request: note("", read_more=True)
    assert read(reader, BrowseMemory()) == []
    assert len(server.generation_requests()) == 3


def test_chunk_budget_per_url(server: OpenAICompatServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("READER_KEY", "sk-test-secret")
    reader = LLMReader(server.base_url, "reader", api_key_env="READER_KEY", max_chunks_per_url=2)
    server.script = lambda request: note("a fact " + str(len(server.requests)))
    memory = BrowseMemory()
    assert [e.page_number for e in read(reader, memory)] == [0, 1]
    assert len(server.generation_requests()) == 2
    assert [e.page_number for e in read(reader, memory)] == [2]


def test_malformed_replies_are_read_leniently(server: OpenAICompatServer,
                                              reader: LLMReader) -> None:
    server.push(
        'Sure! Here it is:\n```json\n{"information": "Born in Liverpool.", "read_more": "yes"}\n```',
        "I found: {\"information\": [\"Founded in 1970.\", \"Singer.\"]} hope it helps",
        '{"read_more": "no"}',
    )
    memory = BrowseMemory()
    extracts = read(reader, memory)
    assert extracts == [PageExtract(0, "Born in Liverpool."),
                        PageExtract(1, "Founded in 1970.\nSinger.")]
    assert memory.read_chunks[DOC.url] == {0, 1, 2}


def test_parse_reply() -> None:
    assert parse_reply('{"information": "x", "read_more": false}').read_more is False
    assert parse_reply("The page says he was born in 1946.").information == (
        "The page says he was born in 1946.")
    assert parse_reply("None.").information == ""
    assert parse_reply("No relevant information in this part.").information == ""
    assert parse_reply('<think>{"information": "no"}</think>{"information": "yes"}') == (
        parse_reply('{"information": "yes"}'))
    assert parse_reply('{"information": "x"').information == '{"information": "x"'  # broken JSON
    assert parse_reply('{"continue": "stop"}').read_more is False
    assert parse_reply("").information == ""


def test_duplicate_extracts_are_dropped(server: OpenAICompatServer, reader: LLMReader) -> None:
    memory = BrowseMemory()
    memory.seen.add("born in liverpool.")
    server.push(note("Born in  Liverpool."), note("New fact.", read_more=False))
    assert read(reader, memory) == [PageExtract(1, "New fact.")]


def test_outputs_are_cached(server: OpenAICompatServer, reader: LLMReader,
                            tmp_path: Path) -> None:
    reader.cache = ToolCache(tmp_path / "c.sqlite")
    server.push(note("Fact one.", read_more=False))
    first = read(reader, BrowseMemory())
    usage = ToolUsage()
    again = read(reader, BrowseMemory(), usage)
    assert first == again == [PageExtract(0, "Fact one.")]
    assert len(server.generation_requests()) == 1
    assert usage.reader_calls == 1 and usage.reader_cached == 1
    assert usage.reader_prompt_tokens == 0


def test_transient_errors_are_retried(server: OpenAICompatServer, reader: LLMReader) -> None:
    server.push(Fault.rate_limited(retry_after=0.01), Fault.server_error(503),
                note("Fact.", read_more=False))
    assert read(reader, BrowseMemory()) == [PageExtract(0, "Fact.")]
    assert len(server.generation_requests()) == 3


def test_errors_are_typed_and_never_show_the_key(server: OpenAICompatServer,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("READER_KEY", "sk-wrong-key")
    reader = LLMReader(server.base_url, "reader", api_key_env="READER_KEY")
    memory = BrowseMemory()
    with pytest.raises(ReaderError) as caught:
        read(reader, memory)
    assert isinstance(caught.value, ReaderAuthFailed) and "READER_KEY" in (caught.value.hint or "")
    assert "sk-wrong-key" not in str(caught.value) and "sk-wrong-key" not in repr(reader)
    assert DOC.url not in memory.read_chunks or not memory.read_chunks[DOC.url]

    monkeypatch.setenv("READER_KEY", "sk-test-secret")
    server.push(Fault.malformed())
    with pytest.raises(ReaderError) as caught:
        read(reader, BrowseMemory())
    assert isinstance(caught.value, ReaderBadResponse)


def test_a_reply_larger_than_asked_for_is_refused(server: OpenAICompatServer,
                                                  reader: LLMReader) -> None:
    import json

    huge = json.dumps({"choices": [{"message": {"content": "x" * (4 << 20)}}]}).encode()
    server.push(Fault(200, huge))
    with pytest.raises(ReaderError) as caught:
        read(reader, BrowseMemory())
    assert isinstance(caught.value, ReaderBadResponse) and "cap" in str(caught.value)
    assert len(server.generation_requests()) == 1  # the server's error: not retried


def test_unreachable_server() -> None:
    reader = LLMReader("http://127.0.0.1:9/v1", "reader", retry=Retry(retries=0))
    with pytest.raises(ReaderError) as caught:
        read(reader, BrowseMemory())
    assert isinstance(caught.value, ReaderUnreachable)


def test_calls_in_flight_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many episodes browsing at once: at most ``concurrency`` reader calls reach the server
    together (the rest wait for a slot, not in the connection pool against their timeout)."""
    import threading

    with OpenAICompatServer(models=("reader",), latency_s=0.15,
                            default_text=note("a fact", read_more=False)) as server:
        in_flight, peak, lock = [0], [0], threading.Lock()
        handle = server.handle

        def counting_handle(*args, **kwargs):
            with lock:
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
            try:
                return handle(*args, **kwargs)
            finally:
                with lock:
                    in_flight[0] -= 1

        monkeypatch.setattr(server, "handle", counting_handle)
        reader = LLMReader(server.base_url, "reader", concurrency=2)

        async def go() -> None:
            docs = [Document(url=f"https://example.org/{i}", title="t", chunks=(f"fact {i}",))
                    for i in range(8)]
            await asyncio.gather(*(reader.read(d, question=QUESTION, sub_question="s",
                                               memory=BrowseMemory()) for d in docs))
            await reader.aclose()

        asyncio.run(go())
        assert len(server.generation_requests()) == 8
        assert peak[0] == 2
