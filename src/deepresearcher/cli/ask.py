"""``deepresearcher ask``: run one research episode with a live view of what the agent does."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from deepresearcher.agent.build import DEFAULT_MODEL, ToolSettings
from deepresearcher.cli import display
from deepresearcher.cli.common import (
    ExtractTimeout,
    FetchTimeout,
    MaxPageBytes,
    ReaderBaseUrl,
    ReaderKeyEnv,
    ReaderKind,
    ReaderModel,
)

# Exit codes of ``ask``: 0 answered; 1 ended without an answer (format error, max turns, context
# exhausted); 3 the policy or a tool failed; 2 (from main) a usage or configuration error.
EXIT_NO_ANSWER = 1
EXIT_ERROR = 3


def register(app: typer.Typer) -> None:
    app.command("ask")(ask)


def ask(
    question: str = typer.Argument(..., help="The question to research."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m",
                              help="Model name or local path (Hugging Face) or the served name."),
    base_url: str | None = typer.Option(None, "--base-url",
                                        help="OpenAI-compatible server, e.g. http://localhost:8000/v1 "
                                        "(vLLM, SGLang, llama.cpp). Without it the model runs "
                                        "locally with transformers."),
    api: str = typer.Option("auto", "--api", help="auto, completions or chat."),
    profile: str = typer.Option("deepresearcher-7b", "--profile",
                                help="Prompt profile: deepresearcher-7b or native-tools."),
    tokenizer: str | None = typer.Option(None, "--tokenizer",
                                         help="Tokenizer name or path (default: the model's)."),
    search: str = typer.Option("local", "--search",
                               help="local, a web provider (serper, tavily, brave, searxng, "
                               "ddgs) or a fallback chain like serper,searxng."),
    endpoint: str | None = typer.Option(None, "--endpoint",
                                        help="The web search provider's API base URL."),
    cache: Path | None = typer.Option(None, "--cache",
                                      help="Shared tool cache (SQLite): searches, pages, "
                                      "reader outputs."),
    cache_mode: str = typer.Option("read-write", "--cache-mode",
                                   help="read-write, replay (fail closed on a miss) or off."),
    reader: ReaderKind = "extractive",
    reader_model: ReaderModel = None,
    reader_base_url: ReaderBaseUrl = None,
    reader_key_env: ReaderKeyEnv = "OPENAI_API_KEY",
    allow_host: list[str] = typer.Option([], "--allow-host",
                                         help="Host the fetch guard lets through even if "
                                         "private (repeatable)."),
    allow_private: bool = typer.Option(False, "--allow-private",
                                       help="Let the fetcher reach private and loopback "
                                       "addresses."),
    max_page_bytes: MaxPageBytes = ToolSettings.max_page_bytes,
    fetch_timeout: FetchTimeout = ToolSettings.fetch_timeout_s,
    extract_timeout: ExtractTimeout = ToolSettings.extract_timeout_s,
    prices: Path | None = typer.Option(None, "--prices",
                                       help="YAML price table for the cost estimate "
                                       "(see docs/cost.md)."),
    index: Path | None = typer.Option(None, "--index", help="Local search index directory."),
    world: Path | None = typer.Option(None, "--world",
                                      help="A world directory (its index and pages)."),
    max_turns: int = typer.Option(10, "--max-turns", min=1),
    max_tokens: int = typer.Option(2000, "--max-tokens", min=1, help="Tokens per turn."),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0,
                                      help="Sampling temperature (0 = greedy)."),
    date: str | None = typer.Option(None, "--date", help="Date in the system prompt (YYYY-MM-DD)."),
    context_window: int | None = typer.Option(None, "--context-window", min=1),
    timeout: float | None = typer.Option(None, "--timeout", min=0.001,
                                         help="Seconds the policy server (--base-url) has for "
                                         "each generation request [default: 300]."),
    device: str = typer.Option("cpu", "--device", help="Device for a local model: cpu, cuda, cuda:1, ... or auto."),
    as_json: bool = typer.Option(False, "--json", help="Print the full trajectory as JSON."),
) -> None:
    """Research a question: search, browse, reason, answer, live."""
    from deepresearcher.agent.config import AgentConfig
    from deepresearcher.api import Researcher
    from deepresearcher.cli.common import quiet_hf
    from deepresearcher.tools.usage import load_prices

    config = AgentConfig(profile=profile, max_turns=max_turns, max_tokens_per_turn=max_tokens,
                         temperature=temperature, date=date, context_window=context_window)
    tools = ToolSettings(
        search=search, index=index, world=world, endpoint=endpoint, cache=cache,
        cache_mode=cache_mode, reader=reader, reader_model=reader_model,
        reader_base_url=reader_base_url, reader_api_key_env=reader_key_env,
        allow_hosts=tuple(allow_host), allow_private=allow_private,
        max_page_bytes=max_page_bytes, fetch_timeout_s=fetch_timeout,
        extract_timeout_s=extract_timeout,
        prices=load_prices(prices) if prices is not None else None,
    )
    console = display.console(stderr=as_json, highlight=False)
    quiet_hf()
    with console.status("loading the model…"):
        researcher = Researcher.from_settings(
            model, base_url=base_url, api=api,  # type: ignore[arg-type]
            tokenizer=tokenizer, device=device, timeout=timeout, tools=tools, config=config)
    view = LiveView(console)
    try:
        trajectory = researcher.run(question, on_event=view.on_event)
    finally:
        view.stop()
        researcher.close()
    if as_json:
        sys.stdout.write(display.inert_json(trajectory.model_dump_json(indent=2)) + "\n")
    else:
        view.summary(trajectory)
    if trajectory.status == "answered":
        raise typer.Exit(0)
    raise typer.Exit(EXIT_ERROR if trajectory.status == "error" else EXIT_NO_ANSWER)


class LiveView:
    """Prints think / search / browse / answer as they happen, with a spinner while generating.
    What the model wrote, the tools returned and the question are shown inert (cli/display.py)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._status: Any = None

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def on_event(self, event: Any) -> None:
        if event.kind == "generate":
            self.stop()
            self._status = self.console.status(f"turn {event.turn + 1}: thinking…")
            self._status.start()
            return
        self.stop()
        data = event.data
        if event.kind == "start":
            self.console.print(display.text(("question ", "bold"), data["question"]))
        elif event.kind == "turn":
            self._turn(event.turn, data["action"])
        elif event.kind == "observation":
            self._observation(data["tool"])

    def _turn(self, turn: int, action: dict[str, Any]) -> None:
        # Inert before str.strip and split, which take some controls (FS, US, NEL...) for spaces.
        think = display.inert(action.get("think") or "").strip()
        if think:
            self.console.print(display.text(f"  think  {_clip(think, 400)}", style="dim italic"))
        kind = action["type"]
        if kind == "tool_call":
            args = action.get("arguments") or {}
            if action.get("name") == "web_search":
                shown = " | ".join(str(q) for q in args.get("query", []))
                self.console.print(display.text(("  search ", "bold cyan"), shown))
            else:
                for url in args.get("url_list", []):
                    self.console.print(display.text(("  browse ", "bold magenta"), str(url)))
        elif kind == "answer":
            self.console.print(display.text(("  answer ", "bold green"),
                                            str(action.get("answer", ""))))
        else:
            self.console.print(display.text(("  format error ", "bold red"),
                                            str(action.get("reason", ""))))

    def _observation(self, tool: dict[str, Any]) -> None:
        if tool.get("error"):
            self.console.print(display.text(f"         tool failed: {tool['error']}", style="red"))
            return
        if tool["name"] == "web_search":
            self.console.print(Text(f"         {tool['hits']} results", style="cyan"))
        else:
            parts = [f"{tool['extracts']} new extracts"]
            if tool.get("refused_urls"):
                parts.append(f"{len(tool['refused_urls'])} refused (not in the latest search)")
            if tool.get("failed_urls"):
                parts.append(f"{len(tool['failed_urls'])} failed")
            self.console.print(Text("         " + ", ".join(parts), style="magenta"))

    def summary(self, trajectory: Any) -> None:
        body = Text()
        if trajectory.status == "answered":
            body.append(display.inert(trajectory.answer or ""), style="bold")
        else:
            body.append(f"no answer ({trajectory.status})", style="bold red")
            if trajectory.error:
                body.append(f"\n{display.inert(trajectory.error)}", style="red")
        if trajectory.sources:
            body.append("\n\nsources:\n", style="dim")
            for url in trajectory.sources:
                body.append(f"  {display.inert(url)}\n", style="dim")
        usage = trajectory.usage
        subtitle = (f"{len(trajectory.turns)} turns · {usage.search_calls} searches · "
                    f"{usage.pages_read} pages · {trajectory.seconds:.1f}s")
        self.console.print(Panel(body, title="answer", subtitle=subtitle, expand=False))
        if trajectory.cost is not None:
            self.console.print(Text(cost_line(trajectory.cost), style="dim"))


def cost_line(cost: Any) -> str:
    """One line of what the tools spent: searches, pages, reader tokens, estimated USD."""
    parts = [f"search {cost.search_upstream} upstream / {cost.search_cached} cached",
             f"pages {cost.pages_fetched} fetched / {cost.pages_cached} cached "
             f"({cost.fetch_bytes / 1024:,.0f} KiB)"]
    if cost.reader_calls:
        parts.append(f"reader {cost.reader_upstream} calls / {cost.reader_cached} cached, "
                     f"{cost.reader_prompt_tokens:,} + {cost.reader_completion_tokens:,} tokens")
    parts.append(f"≈ ${cost.usd:.4f}")
    return "cost: " + " · ".join(parts)


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
