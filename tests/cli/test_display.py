"""What the CLI shows: text it did not write is made inert (control, bidi and format characters
shown as escapes, never parsed as markup), and ``--json`` keeps the exact data."""

from __future__ import annotations

import io
import json
import sys
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.text import Text
from typer.testing import CliRunner

from deepresearcher.cli.display import console, inert, inert_json, print_error
from deepresearcher.cli.main import app, main

UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}
KEPT = "\n\t\u200c\u200d"  # newline, tab, zero-width non-joiner and joiner
HOSTILE = "clear\x1b[2J title\x1b]0;pwned\x07 csi\x9b31m rlo\u202eevil"
HOSTILE_SHOWN = r"clear\x1b[2J title\x1b]0;pwned\x07 csi\x9b31m rlo\u202eevil"
# A file name rich would read as markup: "[/x]" closes no tag (a MarkupError), "[bold]" vanishes.
MARKUP_NAME = "x[/x]y [bold]z"


def unsafe(char: str) -> bool:
    return char not in KEPT and unicodedata.category(char) in UNSAFE_CATEGORIES


def raw_unsafe(text: str) -> list[str]:
    return [char for char in text if unsafe(char)]


# ------------------------------------------------------------------------------ the sanitizer


def test_each_unsafe_character_is_shown_as_its_escape():
    assert inert(HOSTILE) == HOSTILE_SHOWN
    assert inert("\x00\x7f\x85\u200b\u2066\u2069\ufeff\u2028") == (
        r"\x00\x7f\x85\u200b\u2066\u2069\ufeff\u2028")
    assert inert("tag\U000e0041") == r"tag\U000e0041"  # invisible "ASCII smuggling" tags
    assert inert("lone \udcff") == r"lone \udcff"  # surrogateescape'd bytes of a path
    # Kept: line breaks, tabs, and the joiners that emoji and several scripts need.
    assert inert("a\n\tb 👩\u200d💻 می\u200cخواهم") == "a\n\tb 👩\u200d💻 می\u200cخواهم"
    assert inert(Path("/tmp/a\x1bb")) == r"/tmp/a\x1bb"


def test_the_unsafe_set_is_unicodes_controls_and_format_characters():
    missed, extra = [], []
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        changed = inert(char) != char
        if unsafe(char) and not changed:
            missed.append(hex(code))
        elif changed and not unsafe(char) and unicodedata.category(char) != "Cn":
            extra.append(hex(code))  # Cn: format characters newer than this Python's tables
    assert (missed, extra) == ([], [])


@given(st.text(alphabet=st.characters(codec=None, exclude_categories=())))
def test_inert_text_holds_no_unsafe_character_and_is_stable(value):
    shown = inert(value)
    assert raw_unsafe(shown) == []
    assert inert(shown) == shown
    # Nothing is dropped: each unsafe character becomes an escape of 4 to 10 visible characters.
    assert len(shown) >= len(value) + 3 * len(raw_unsafe(value))


@given(st.text(alphabet=st.characters(exclude_categories=("Cc", "Cf", "Cs", "Zl", "Zp"))
               | st.sampled_from(KEPT)))
def test_printable_text_is_unchanged(value):
    assert inert(value) == value


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(st.characters(codec=None)),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(st.characters(codec=None)), inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_inert_json_decodes_to_the_same_data(value):
    for document in (json.dumps(value, ensure_ascii=False),
                     json.dumps(value, ensure_ascii=False, indent=2)):
        shown = inert_json(document)
        assert raw_unsafe(shown) == []
        assert json.loads(shown) == value


def test_the_console_makes_inert_what_reaches_it_unescaped():
    out = io.StringIO()
    terminal = console(file=out, force_terminal=True, color_system="standard", width=200,
                       highlight=False)
    terminal.print(HOSTILE)  # a str: markup and rich's own stripping of BEL, CR... come after
    terminal.print(Text(f"styled {HOSTILE}", style="bold red"))  # a Text made elsewhere
    written = out.getvalue()
    assert "\x1b[2J" not in written and "\x1b]0;" not in written
    assert "\x9b" not in written and "\u202e" not in written
    assert written.count(HOSTILE_SHOWN) == 1  # the str, BEL included
    assert r"styled clear\x1b[2J" in written
    assert "\x1b[1;31m" in written  # rich's own colour codes still pass


def test_an_error_quoting_markup_is_printed_as_given():
    out = io.StringIO()
    print_error(f"no index at /tmp/{MARKUP_NAME}", f"build /tmp/{MARKUP_NAME}\x1b[2J",
                to=console(file=out, width=40, soft_wrap=True))
    assert out.getvalue() == (f"error: no index at /tmp/{MARKUP_NAME}\n"
                              f"hint: build /tmp/{MARKUP_NAME}\\x1b[2J\n")


# ----------------------------------------------------------------------------- help and flags


def commands():
    import typer

    def walk(command, path):
        yield path
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, [*path, name])

    return list(walk(typer.main.get_command(app), []))


def test_help_shows_flags_without_a_value():
    runner = CliRunner()
    for path in commands():
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, path
        assert "<bool>" not in result.output, path
    shown = runner.invoke(app, ["search", "--help"], env={"COLUMNS": "200"}).output
    assert "--k" in shown and "<int range>" in shown  # options that take a value keep their type
    # A flag takes no value: `--json true` is an extra argument, as the help now says.
    assert runner.invoke(app, ["cache", "stats", "x.sqlite", "--json", "true"]).exit_code == 2


# ------------------------------------------------------------------ real commands, through main()


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["deepresearcher", *args])
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.setenv("NO_COLOR", "1")
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    return exited.value.code, out, err


@pytest.mark.parametrize("command", [
    ["search", "q", "--index", "{path}"],
    ["index", "build", "{path}", "--out", "{tmp}/index"],
    ["index", "info", "{path}"],
    ["world", "question", "{path}"],
    ["cache", "stats", "{path}"],
    ["eval", "--data", "{path}", "--out", "{tmp}/run"],
    ["eval", "compare", "{path}", "{tmp}"],
    ["eval", "score", "{path}", "--out", "{tmp}/scored"],
    ["sft", "{path}", "--model", "m", "--out", "{tmp}/sft"],
    ["ask", "q", "--index", "{path}", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"],
    ["browse", "local://corpus/1", "--index", "{path}"],
], ids=lambda command: " ".join(command[:2]))
def test_a_path_holding_markup_is_named_exactly_in_the_error(monkeypatch, capsys, tmp_path,
                                                             command):
    path = str(tmp_path / MARKUP_NAME)
    code, _, err = run_main(monkeypatch, capsys,
                            *(arg.format(path=path, tmp=tmp_path) for arg in command))
    assert code == 2, err
    assert "Traceback" not in err and "MarkupError" not in err
    [line] = [line for line in err.splitlines() if line.startswith("error: ")]
    assert path in line  # the path as given: "[/x]" did not crash, "[bold]" was not eaten


def test_usage_errors_quote_what_was_typed_inert(monkeypatch, capsys):
    code, _, err = run_main(monkeypatch, capsys, "search", "q", f"--x{HOSTILE}")
    assert code == 2
    assert raw_unsafe(err) == [] and f"No such option: --x{HOSTILE_SHOWN}" in err


def test_an_unexpected_error_prints_an_inert_traceback(monkeypatch, capsys, tmp_path):
    import deepresearcher.cli.cache as cache_cli

    def broken(path, **_):
        raise RuntimeError(f"bug reading {path}")

    monkeypatch.setattr(cache_cli, "_open", broken)
    code, _, err = run_main(monkeypatch, capsys, "cache", "stats", f"{tmp_path}/{HOSTILE}")
    assert code == 1
    assert "Traceback" in err and f"RuntimeError: bug reading {tmp_path}/{HOSTILE_SHOWN}" in err
    assert raw_unsafe(err) == []


def test_output_under_a_markup_path_is_printed_exactly(monkeypatch, capsys, tmp_path):
    from deepresearcher.tools.cache import ToolCache

    world = tmp_path / MARKUP_NAME / "world"
    code, out, err = run_main(monkeypatch, capsys, "world", "build", "--out", str(world),
                              "--entities", "30", "--no-index")
    assert code == 0, err
    assert str(world / "corpus.jsonl") in out and str(world / "world.json") in out

    store = ToolCache(tmp_path / MARKUP_NAME / "tools.sqlite")
    store.put(f"ns {HOSTILE} [/x]", {"q": 1}, {"hits": []})
    store.close()
    code, out, err = run_main(monkeypatch, capsys, "cache", "stats",
                              str(tmp_path / MARKUP_NAME / "tools.sqlite"))
    assert code == 0, err
    assert str(tmp_path / MARKUP_NAME / "tools.sqlite") in out
    assert f"ns {HOSTILE_SHOWN} [/x]" in out and raw_unsafe(out) == []


def test_a_question_from_a_world_file_is_printed_inert(monkeypatch, capsys, tmp_path):
    from deepresearcher.world import build_world

    build_world(tmp_path / "w", seed=0, entities=30, index=False)
    questions = tmp_path / "w" / "questions" / "test.jsonl"
    first, *rest = questions.read_text(encoding="utf-8").splitlines()
    record = {**json.loads(first), "question": f"Who? {HOSTILE} [/x]"}
    questions.write_text("\n".join([json.dumps(record), *rest]) + "\n", encoding="utf-8")

    code, out, _ = run_main(monkeypatch, capsys, "world", "question", str(tmp_path / "w"))
    assert code == 0 and out == f"Who? {HOSTILE_SHOWN} [/x]\n"
    code, out, _ = run_main(monkeypatch, capsys, "world", "question", str(tmp_path / "w"),
                            "--json")
    assert code == 0 and raw_unsafe(out) == []
    assert json.loads(out)["question"] == f"Who? {HOSTILE} [/x]"  # the exact data


def test_eval_tables_show_file_contents_and_run_names_inert(monkeypatch, capsys, tmp_path):
    source = f"src {HOSTILE} [/x]"
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps({
        "key": "q1#0", "id": "q1", "sample": 0, "data_source": source, "question": "Q?",
        "golds": ["Tarrowmere"], "status": "answered", "answer": "Tarrowmere", "scores": {},
        "usage": {"search_calls": 1}, "turns": 2}) + "\n", encoding="utf-8")
    runs = [tmp_path / f"run {name} {MARKUP_NAME}" for name in ("a", "b")]
    for run in runs:
        code, out, err = run_main(monkeypatch, capsys, "eval", "score", str(results),
                                  "--out", str(run))
        assert code == 0, err
        assert f"src {HOSTILE_SHOWN} [/x]" in out and str(run / "report.md") in err
        assert raw_unsafe(out + err) == []
    code, out, err = run_main(monkeypatch, capsys, "eval", "compare", *map(str, runs))
    assert code == 0, err
    title = " ".join(f"A = {runs[0]} B = {runs[1]}".split())
    assert title in " ".join(out.split())  # (the title wraps to the table's width)
    assert f"src {HOSTILE_SHOWN} [/x]" in out
    assert raw_unsafe(out) == []
    code, out, _ = run_main(monkeypatch, capsys, "eval", "compare", *map(str, runs), "--json")
    assert json.loads(out)["sources"][0]["source"] == source


def test_search_results_are_shown_inert_and_kept_exact_in_json(monkeypatch, capsys, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"id": "1", "contents": f'"Evil {HOSTILE} [/x]"\n'
                                  f"Ray Lake died {HOSTILE} [bold]"}) + "\n", encoding="utf-8")
    index = tmp_path / MARKUP_NAME
    code, _, err = run_main(monkeypatch, capsys, "index", "build", str(corpus), "--out", str(index))
    assert code == 0 and f"on disk at {index}" in err
    code, out, _ = run_main(monkeypatch, capsys, "search", "Ray Lake", "--index", str(index))
    assert code == 0 and raw_unsafe(out) == []
    assert f"1. Evil {HOSTILE_SHOWN} [/x]" in out and f"Ray Lake died {HOSTILE_SHOWN} [bold]" in out
    code, out, _ = run_main(monkeypatch, capsys, "search", "Ray Lake", "--index", str(index),
                            "--json")
    assert code == 0 and raw_unsafe(out) == []
    assert json.loads(out)[0]["snippet"] == f"Ray Lake died {HOSTILE} [bold]"


def test_log_records_reach_the_terminal_inert():
    import subprocess

    code = (
        "import logging, sys\n"
        "from deepresearcher.cli.display import inert_logging\n"
        "inert_logging()\n"
        "logging.getLogger('deepresearcher.agent.toolbox').warning('fetching %s failed', "
        "sys.argv[1])\n"
        "logging.getLogger('x').info('not shown')\n"
    )
    done = subprocess.run([sys.executable, "-c", code, HOSTILE], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0
    assert done.stderr == f"fetching {HOSTILE_SHOWN} failed\n"
