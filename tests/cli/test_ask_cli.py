"""``deepresearcher ask`` as a user runs it: a real process, a real HTTP policy server on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from miniworld import write_mini_world
from scripted import answer_turn, browse_turn, search_turn

QUESTION = "Where was the founder of the Brackenhold Institute born?"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = write_mini_world(tmp_path_factory.mktemp("ask_world"))
    (root / "world.json").write_text(json.dumps({"site": "wiki"}), encoding="utf-8")
    return root


def ask(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "deepresearcher.cli.main", "ask", *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )


def test_ask_streams_the_episode_and_prints_the_answer(openai_server, tiny_tokenizer_dir, world):
    openai_server.push(
        search_turn("Brackenhold Institute founder"),
        browse_turn("local://wiki/Brackenhold_Institute"),
        search_turn("Velmora Quist birthplace"),
        browse_turn("local://wiki/Velmora_Quist"),
        answer_turn("Tarrowmere"),
    )
    result = ask(QUESTION, "--base-url", openai_server.base_url, "--model", "tiny",
                 "--tokenizer", str(tiny_tokenizer_dir), "--world", str(world),
                 "--date", "2025-04-03")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "search Brackenhold Institute founder" in out
    assert "browse local://wiki/Brackenhold_Institute" in out
    assert "answer Tarrowmere" in out
    assert "sources" in out and "local://wiki/Velmora_Quist" in out
    # The exact deepresearcher-7b prompt went to the completions endpoint.
    first = openai_server.generation_requests()[0]
    assert first.path == "/v1/completions"
    assert first.json["prompt"].endswith("<|im_start|>assistant\n<think>")
    assert "* Today is 2025-04-03\n" in first.json["prompt"]


def test_ask_json_prints_the_trajectory(openai_server, tiny_tokenizer_dir, world):
    openai_server.push(search_turn("Tarrowmere"), answer_turn("Lenivar"))
    result = ask("In which country is Tarrowmere?", "--base-url", openai_server.base_url,
                 "--model", "tiny", "--tokenizer", str(tiny_tokenizer_dir),
                 "--index", str(world / "index"), "--json")
    assert result.returncode == 0, result.stderr
    trajectory = json.loads(result.stdout)
    assert trajectory["schema_version"] == 1
    assert trajectory["status"] == "answered" and trajectory["answer"] == "Lenivar"
    assert trajectory["turns"][0]["tool"]["queries"] == ["Tarrowmere"]


def test_ask_exit_code_1_on_a_malformed_turn(openai_server, tiny_tokenizer_dir, world):
    openai_server.push("I refuse to use the format.")
    result = ask(QUESTION, "--base-url", openai_server.base_url, "--model", "tiny",
                 "--tokenizer", str(tiny_tokenizer_dir), "--world", str(world))
    assert result.returncode == 1
    assert "format_error" in result.stdout


def test_ask_unreachable_server_exits_3_with_a_hint(tiny_tokenizer_dir, world):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    result = ask(QUESTION, "--base-url", f"http://127.0.0.1:{port}/v1", "--model", "tiny",
                 "--tokenizer", str(tiny_tokenizer_dir), "--world", str(world))
    assert result.returncode == 3
    assert "unreachable" in result.stdout


def test_ask_missing_index_is_one_clear_line(tiny_tokenizer_dir, tmp_path):
    result = ask(QUESTION, "--base-url", "http://127.0.0.1:9/v1", "--model", "tiny",
                 "--tokenizer", str(tiny_tokenizer_dir), "--index", str(tmp_path / "none"))
    assert result.returncode == 2
    assert "error:" in result.stderr and "deepresearcher index build" in result.stderr
    assert "Traceback" not in result.stderr


def test_ask_missing_local_model_is_a_clear_error(world, tmp_path):
    result = ask(QUESTION, "--model", str(tmp_path / "no-model"), "--world", str(world))
    assert result.returncode == 2
    assert "no model or tokenizer" in result.stderr and "Traceback" not in result.stderr


def test_ask_with_a_chat_model_and_native_tool_calls(openai_server, world):
    from servers.openai_compat import Reply

    openai_server.push(
        Reply(text="", tool_calls=[{"name": "web_search",
                                    "arguments": json.dumps({"query": ["Velmora Quist"]})}]),
        Reply(text="", tool_calls=[{"name": "browse_webpage", "arguments": json.dumps(
            {"url_list": ["local://wiki/Velmora_Quist"]})}]),
        Reply(text="<answer>Tarrowmere</answer>"),
    )
    result = ask("Where was Velmora Quist born?", "--base-url", openai_server.base_url,
                 "--model", "tiny", "--profile", "native-tools", "--world", str(world), "--json")
    assert result.returncode == 0, result.stderr
    trajectory = json.loads(result.stdout)
    assert trajectory["answer"] == "Tarrowmere" and trajectory["profile"] == "native-tools"
    requests = openai_server.generation_requests()
    assert all(r.path == "/v1/chat/completions" for r in requests)
    last = requests[-1].json
    assert [m["role"] for m in last["messages"]] == ["system", "user", "assistant", "tool",
                                                     "assistant", "tool"]
    assert "Tarrowmere" in last["messages"][-1]["content"]
    assert last["tools"][0]["function"]["name"] == "web_search"


HOSTILE = "clear\x1b[2J title\x1b]0;pwned\x07 csi\x9b31m rlo\u202eevil"
HOSTILE_SHOWN = r"clear\x1b[2J title\x1b]0;pwned\x07 csi\x9b31m rlo\u202eevil"
RAW = ("\x1b", "\x07", "\x9b", "\u202e")


def test_model_output_reaches_the_terminal_inert(openai_server, tiny_tokenizer_dir, world):
    """Escape sequences, a C1 CSI and a bidi override in what the model writes are shown as
    escapes in the live view and the answer panel; --json keeps the exact characters."""
    script = (search_turn(f"query {HOSTILE}", think=f" think {HOSTILE} "),
              browse_turn(f"local://wiki/{HOSTILE}"),
              answer_turn(f"Tarrowmere {HOSTILE}"))
    common = [QUESTION, "--base-url", openai_server.base_url, "--model", "tiny", "--tokenizer",
              str(tiny_tokenizer_dir), "--world", str(world)]
    openai_server.push(*script)
    result = ask(*common)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert [raw for raw in RAW if raw in out + result.stderr] == []
    assert f"think  think {HOSTILE_SHOWN}" in out
    assert f"search query {HOSTILE_SHOWN}" in out
    assert f"browse local://wiki/{HOSTILE_SHOWN}" in out
    assert f"answer Tarrowmere {HOSTILE_SHOWN}" in out
    assert out.count(f"Tarrowmere {HOSTILE_SHOWN}") == 2  # the live line and the answer panel

    openai_server.push(*script)
    result = ask(*common, "--json")
    assert result.returncode == 0, result.stderr
    assert [raw for raw in RAW if raw in result.stdout + result.stderr] == []
    trajectory = json.loads(result.stdout)
    assert trajectory["answer"] == f"Tarrowmere {HOSTILE}"
    assert trajectory["turns"][0]["tool"]["queries"] == [f"query {HOSTILE}"]


MARKUP = "[/x] [bold red]loud[/] [link=http://evil]"


def test_a_hostile_question_and_error_reach_the_terminal_as_given(openai_server,
                                                                   tiny_tokenizer_dir, world):
    """Markup in the question and in the policy server's error message is shown as text (no
    MarkupError, no restyling), control characters as escapes; the trajectory records the
    error's class as ``error_kind``."""
    from servers.openai_compat import Fault

    question = f"Who founded {MARKUP} {HOSTILE}?"
    shown_question = f"Who founded {MARKUP} {HOSTILE_SHOWN}?"
    reply = f"bad request {MARKUP} {HOSTILE}"
    common = [question, "--base-url", openai_server.base_url, "--model", "tiny", "--tokenizer",
              str(tiny_tokenizer_dir), "--world", str(world)]
    openai_server.push(Fault.error(400, reply, "BadRequestError"))
    result = ask(*common)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr and "MarkupError" not in result.stderr
    assert [raw for raw in RAW if raw in result.stdout + result.stderr] == []
    assert f"question {shown_question}" in result.stdout
    assert f"bad request {MARKUP} {HOSTILE_SHOWN}" in result.stdout  # the answer panel

    openai_server.push(Fault.error(400, reply, "BadRequestError"))
    result = ask(*common, "--json")
    assert result.returncode == 3, result.stderr
    trajectory = json.loads(result.stdout)
    assert trajectory["question"] == question  # the exact data
    assert trajectory["status"] == "error" and trajectory["error_kind"] == "policy http_error"
    assert trajectory["error"].startswith("policy http_error: ") and reply in trajectory["error"]
