"""The async episode loop: render, generate, parse, act, observe; many episodes on one event loop."""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from deepresearcher.agent.config import AgentConfig
from deepresearcher.agent.policy import Policy, SamplingParams
from deepresearcher.agent.toolbox import Toolbox
from deepresearcher.agent.tools import BrowseTool, SearchTool, Tool, ToolContext
from deepresearcher.agent.trajectory import (
    ActionRecord,
    Tokens,
    ToolRecord,
    Trajectory,
    Turn,
)
from deepresearcher.errors import (
    ConfigError,
    ContextOverflowError,
    DeepResearcherError,
    PolicyError,
    error_kind,
)
from deepresearcher.interrupt import raise_if_interrupted
from deepresearcher.protocol import ProfileSettings, get_profile
from deepresearcher.protocol.base import Answer, FormatError, Message, PromptProfile, ToolCall
from deepresearcher.protocol.masking import assistant_spans, mask_from_offsets
from deepresearcher.protocol.metrics import exact_match, f1_score, paper_reward
from deepresearcher.types import BrowseMemory

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """Something that happened in an episode, for live display.

    ``kind``: ``start``, ``generate``, ``turn`` (parsed action), ``observation``, ``end`` (its
    data holds the finished ``trajectory``).
    """

    kind: str
    episode_id: str
    turn: int
    data: dict[str, Any] = field(default_factory=dict)


EventSink = Callable[[Event], Awaitable[None] | None]


@dataclass(frozen=True)
class Task:
    """A question to research, with its gold answers when known.

    ``group`` and ``rollout`` place a training episode in its GRPO group (the episodes of one
    question whose rewards are compared with each other) and within it.
    """

    question: str
    golds: Sequence[str] | None = None
    id: str | None = None
    data_source: str | None = None
    group: int | None = None
    rollout: int | None = None


EpisodeReward = Callable[[Trajectory], float]


def paper_episode_reward(trajectory: Trajectory) -> float:
    """The paper's training reward of a finished episode (PROTOCOL.md §7): −1 for unbalanced
    tags or no answer, else the answer's F1, read from the conversation as the original trained
    on it (:meth:`Trajectory.response_text`)."""
    return paper_reward(trajectory.response_text(), trajectory.golds or [])


class Agent:
    """Joins a policy, a prompt profile and a toolbox into episodes.

    ``tools`` are registered beside the built-in search and browse (which run on ``toolbox``);
    a turn's tool call is dispatched by name through ``self.tools``. ``reward`` scores each
    finished episode that has golds, once, into ``Trajectory.reward`` (default: the paper's
    reward; training passes the configured one).
    """

    def __init__(
        self,
        policy: Policy,
        toolbox: Toolbox,
        config: AgentConfig | None = None,
        *,
        profile: PromptProfile | None = None,
        reward: EpisodeReward | None = None,
        tools: Sequence[Tool] = (),
    ) -> None:
        self.policy = policy
        self.toolbox = toolbox
        self.config = config or AgentConfig()
        self.reward = reward or paper_episode_reward
        self.date = self.config.resolved_date()
        self.profile = profile or get_profile(
            self.config.profile,
            ProfileSettings(date=self.date, max_queries=self.config.max_queries,
                            max_results=self.config.search_k,
                            tools=tuple(tool.schema for tool in tools)),
        )
        self.tools = _registry(self.profile, toolbox, tools)
        self.context_window = self.config.context_window or policy.context_window

    async def run(self, task: Task | str, *, events: EventSink | None = None) -> Trajectory:
        """Run one episode to its end. Never raises for model or tool failures: they end the
        episode with a status and are recorded in the trajectory."""
        if isinstance(task, str):
            task = Task(question=task)
        episode = _Episode(self, task, events)
        return await episode.run()

    async def run_many(
        self,
        tasks: Sequence[Task | str],
        *,
        concurrency: int = 32,
        events: EventSink | None = None,
        on_done: Callable[[Trajectory], Awaitable[None] | None] | None = None,
    ) -> list[Trajectory]:
        """Run episodes concurrently (at most ``concurrency`` at once), results in task order."""
        slots = asyncio.Semaphore(concurrency)

        async def one(task: Task | str) -> Trajectory:
            async with slots:
                trajectory = await self.run(task, events=events)
            if on_done is not None:
                maybe = on_done(trajectory)
                if asyncio.iscoroutine(maybe):
                    await maybe
            return trajectory

        return list(await asyncio.gather(*(one(t) for t in tasks)))

    def settings(self) -> dict[str, Any]:
        cfg = self.config.model_dump()
        cfg["date"] = self.date
        cfg["context_window"] = self.context_window
        cfg["search"] = self.toolbox.search_backend.name
        cfg["reader"] = type(self.toolbox.reader).__name__
        return cfg


def _registry(profile: PromptProfile, toolbox: Toolbox, extra: Sequence[Tool]) -> dict[str, Tool]:
    """The tools by name: the built-in search and browse under the profile's names, then
    ``extra``, each of which the profile must know (its parser rejects other names)."""
    tools: dict[str, Tool] = {
        profile.search_tool: SearchTool(toolbox, profile.search_tool),
        profile.browse_tool: BrowseTool(toolbox, profile.browse_tool),
    }
    for tool in extra:
        if tool.name in tools:
            raise ConfigError(f"tool {tool.name!r} is registered twice",
                              hint="give each tool its own name")
        if tool.name not in profile.tool_names:
            raise ConfigError(
                f"the {profile.name} profile was built without tool {tool.name!r}",
                hint="build it with ProfileSettings(tools=(tool.schema, ...)), or let the Agent "
                     "build the profile",
            )
        tools[tool.name] = tool
    return tools


class _Episode:
    def __init__(self, agent: Agent, task: Task, events: EventSink | None) -> None:
        self.agent = agent
        self.task = task
        self.events = events
        self.profile = agent.profile
        self.policy = agent.policy
        self.config = agent.config
        self.memory = BrowseMemory()
        self.messages: list[Message] = self.profile.initial_messages(task.question)
        self.trajectory = Trajectory(
            id=task.id or uuid.uuid4().hex[:12],
            question=task.question,
            golds=list(task.golds) if task.golds is not None else None,
            data_source=task.data_source,
            group=task.group,
            rollout=task.rollout,
            profile=self.profile.name,
            model=self.policy.name,
            settings=agent.settings(),
            started_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        )
        self.tool_context = ToolContext(task.question, self.profile, self.memory,
                                        self.trajectory.usage)

    async def emit(self, kind: str, turn: int, **data: Any) -> None:
        if self.events is None:
            return
        maybe = self.events(Event(kind, self.trajectory.id, turn, data))
        if asyncio.iscoroutine(maybe):
            await maybe

    async def run(self) -> Trajectory:
        started = time.perf_counter()
        t = self.trajectory
        await self.emit("start", 0, question=t.question)
        try:
            await self._loop()
        except DeepResearcherError as exc:
            t.status, t.error = "error", f"{type(exc).__name__}: {exc}"
            t.error_kind = error_kind(exc)
        except Exception as exc:  # a bug or a library's own error: this episode ends, not the batch
            logger.exception("episode %s failed unexpectedly", t.id)
            t.status, t.error = "error", f"internal error: {type(exc).__name__}: {exc}"
            t.error_kind = error_kind(exc)
        t.messages = self.messages
        t.sources = self._sources()
        if t.golds is not None:
            self._score()
        if self.config.record_tokens:
            t.tokens = self._tokens()
        t.cost = self.agent.toolbox.episode_cost(self.memory)
        t.seconds = round(time.perf_counter() - started, 4)
        await self.emit("end", len(t.turns), status=t.status, answer=t.answer, error=t.error,
                        sources=t.sources, trajectory=t)
        return t

    async def _loop(self) -> None:
        t = self.trajectory
        template = self.policy.tokenizer
        for index in range(self.config.max_turns):
            raise_if_interrupted()  # a Ctrl-C dropped in a finalizer stops here
            prompt = self.profile.render(self.messages, template)
            budget = self._turn_budget(prompt.text, prompt.messages)
            if budget is None:
                t.status = "context_exhausted"
                return
            sampling = SamplingParams(
                max_tokens=budget, temperature=self.config.temperature, top_p=self.config.top_p,
                seed=self.config.seed, logprobs=self.config.record_tokens,
            )
            await self.emit("generate", index)
            try:
                generation = await self.policy.generate(prompt, sampling)
            except ContextOverflowError:
                t.status = "context_exhausted"
                return
            except PolicyError as exc:
                t.status, t.error = "error", f"policy {exc.kind}: {exc}"
                t.error_kind = error_kind(exc)
                return
            text = prompt.prefix + generation.text
            action = self.profile.parse(text, generation.tool_calls)
            turn = Turn(
                index=index, text=text, action=ActionRecord.from_action(action),
                finish_reason=generation.finish_reason, prompt_tokens=generation.prompt_tokens,
                completion_tokens=generation.completion_tokens,
                token_ids=generation.token_ids if self.config.record_tokens else None,
                logprobs=generation.logprobs if self.config.record_tokens else None,
                generate_seconds=round(generation.latency_s, 4),
            )
            t.turns.append(turn)
            t.usage.prompt_tokens += generation.prompt_tokens or 0
            t.usage.completion_tokens += generation.completion_tokens or 0
            await self.emit("turn", index, action=turn.action.model_dump(exclude_none=True))
            if isinstance(action, Answer):
                self.messages.append({"role": "assistant", "content": text})
                t.status, t.answer = "answered", action.answer
                return
            if isinstance(action, FormatError):
                self.messages.append({"role": "assistant", "content": text})
                t.status, t.error = "format_error", action.reason
                return
            assert isinstance(action, ToolCall)
            if action.name not in self.agent.tools:
                # The profile parsed a call the agent has no tool for (a profile built with
                # other tools): as an unknown name in the parser, the episode ends here.
                self.messages.append({"role": "assistant", "content": text})
                t.status, t.error = "format_error", (
                    f"unknown tool {action.name!r} (registered: {', '.join(self.agent.tools)})")
                return
            if index == self.config.max_turns - 1:
                # No turn is left to read the result: record the call, skip the tool.
                self.messages.append(self.profile.turn_messages(action, "")[0])
                break
            observation, record = await self._act(action)
            turn.observation, turn.tool = observation, record
            self.messages.extend(self.profile.turn_messages(action, observation))
            await self.emit("observation", index, tool=record.model_dump(), observation=observation)
        t.status = "max_turns"

    def _turn_budget(self, text: str | None, messages: list[Message]) -> int | None:
        """Tokens the next turn may use, or None when it cannot fit (the context guard)."""
        if text is not None:
            used = self.policy.count_tokens(text)
        else:
            used = self.policy.count_tokens(json.dumps(messages, ensure_ascii=False))
        room = self.agent.context_window - used
        wanted = self.config.max_tokens_per_turn
        if room >= wanted:
            return wanted
        if self.config.context_policy == "shrink" and room >= self.config.min_turn_tokens:
            return room
        return None

    async def _act(self, action: ToolCall) -> tuple[str, ToolRecord]:
        """Run the call's tool from the registry: its observation and its record."""
        tool = self.agent.tools[action.name]
        started = time.perf_counter()
        try:
            output = await tool.run(action.arguments, self.tool_context)
        except Exception as exc:  # a tool that raised: this call fails, not the episode
            if not isinstance(exc, DeepResearcherError):
                logger.exception("tool %s failed unexpectedly", action.name)
            record = ToolRecord(name=action.name, arguments=action.arguments,
                                error=f"{type(exc).__name__}: {exc}",
                                seconds=round(time.perf_counter() - started, 4))
            return self.profile.format_failure(), record
        return output.observation, output.record

    def _sources(self) -> list[str]:
        """URLs whose pages gave the episode extracts, in the order they were first read."""
        seen: dict[str, None] = {}
        for turn in self.trajectory.turns:
            if turn.tool is None or turn.tool.name != self.profile.browse_tool:
                continue
            for url in turn.tool.urls:
                if url not in turn.tool.refused_urls and url not in turn.tool.failed_urls:
                    seen.setdefault(url, None)
        return list(seen)

    def _score(self) -> None:
        t = self.trajectory
        golds = t.golds or []
        prediction = t.answer if t.status == "answered" and t.answer is not None else ""
        t.metrics = {
            "f1": f1_score(prediction, golds) if prediction else 0.0,
            "em": exact_match(prediction, golds) if prediction else 0.0,
        }
        # The text the paper's reward reads; set before any reward reads the episode.
        response = self._paper_response()
        if response is not None:
            t.set_response_text(response)
        t.reward = float(self.agent.reward(t))

    def _paper_response(self) -> str | None:
        """The episode as the original scored it (PROTOCOL.md §5): the conversation after the
        initial prompt, tool turns re-rendered from the parsed calls, and a final answer (or
        malformed) turn as sampled after its rendered prompt; an episode that ended otherwise
        re-rendered whole with the generation prompt. None when the profile renders no text."""
        template = self.policy.tokenizer
        try:
            initial = self.profile.render(self.messages[:2], template)
            if initial.text is None:
                return None
            start = len(initial.text) - len(initial.prefix)
            turns = self.trajectory.turns
            if self.trajectory.status in ("answered", "format_error") and turns:
                before = self.profile.render(self.messages[:-1], template)
                assert before.text is not None
                text = before.text + turns[-1].text[len(before.prefix):]
            else:
                whole = self.profile.render(self.messages, template)
                assert whole.text is not None
                text = whole.text[: len(whole.text) - len(whole.prefix)]
        except Exception:  # a template that cannot render this conversation: the plain text
            return None
        return text[start:]

    def _tokens(self) -> Tokens | None:
        tokenizer = self.policy.tokenizer
        if tokenizer is None or not hasattr(tokenizer, "apply_chat_template"):
            return None
        turns = self.trajectory.turns
        cut = bool(turns) and turns[-1].finish_reason == "length" and turns[-1].tool is None
        return episode_tokens(self.messages, tokenizer, self.profile, truncated=cut)


def episode_tokens(messages: list[Message], tokenizer: Any, profile: PromptProfile, *,
                   truncated: bool = False) -> Tokens | None:
    """The conversation as (prompt ids, completion ids, loss mask) with the policy's tokenizer.

    The completion ends at the last ``<|im_end|>`` (the template's trailing newline is not part of
    any turn). ``truncated``: the last turn hit its token budget, so the model never ended it; its
    ``<|im_end|>`` is left out rather than trained on, and trainers can tell the episode was cut.
    """
    n_initial = 2
    tools = profile.tools()
    try:
        prompt_text = tokenizer.apply_chat_template(
            messages[:n_initial], tools=tools, add_generation_prompt=True, tokenize=False
        )
        full_text = tokenizer.apply_chat_template(
            messages, tools=tools, add_generation_prompt=False, tokenize=False
        )
    except Exception:  # a template that cannot render this conversation: no tokens, no crash
        return None
    if not full_text.startswith(prompt_text):
        return None
    if full_text.endswith("<|im_end|>\n"):
        full_text = full_text[: -len("<|im_end|>\n" if truncated else "\n")]
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    rest = full_text[len(prompt_text):]
    encoded = tokenizer(rest, add_special_tokens=False, return_offsets_mapping=True)
    # The completion starts inside the assistant turn opened by the generation prompt.
    spans = [(s - len("<|im_start|>assistant\n"), e - len("<|im_start|>assistant\n"))
             for s, e in assistant_spans("<|im_start|>assistant\n" + rest)]
    mask = mask_from_offsets([tuple(o) for o in encoded["offset_mapping"]], spans)
    return Tokens(prompt_ids=list(prompt_ids), completion_ids=list(encoded["input_ids"]),
                  loss_mask=mask)
