"""Tools registered by name: a calculator added without touching the loop, called, recorded."""

from __future__ import annotations

import ast
import asyncio
import json
import operator
from typing import Any

import pytest

from deepresearcher.agent.config import AgentConfig
from deepresearcher.agent.loop import Agent, Task
from deepresearcher.agent.tools import FunctionTool
from deepresearcher.agent.trajectory import ToolRecord, Trajectory
from deepresearcher.errors import ConfigError
from deepresearcher.protocol import ProfileSettings, get_profile
from deepresearcher.protocol.deepresearcher7b import TOOLS
from scripted import ScriptedPolicy, answer_turn, search_turn

_OPERATORS: dict[type, Any] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.USub: operator.neg, ast.UAdd: operator.pos,
}


def evaluate(expression: str) -> float | int:
    """Arithmetic on numbers only: any other syntax is a ValueError (no eval())."""

    def value(node: ast.AST) -> float | int:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.operand))
        raise ValueError(f"not arithmetic: {ast.dump(node)[:40]}")

    return value(ast.parse(expression, mode="eval").body)


CALCULATOR = FunctionTool(
    name="calculate",
    description="Evaluate an arithmetic expression (+, -, *, / and parentheses).",
    parameters={"type": "object",
                "properties": {"expression": {"type": "string", "description": "e.g. 2+3*4"}},
                "required": ["expression"]},
    function=lambda arguments: str(evaluate(arguments["expression"])),
)


def calculate_turn(expression: str, think: str = " Let me compute it. ") -> str:
    call = {"name": "calculate", "arguments": {"expression": expression}}
    return f"{think}</think>\n<tool_call>\n{json.dumps(call)}\n</tool_call>"


@pytest.fixture
def config() -> AgentConfig:
    return AgentConfig(date="2025-04-03", max_turns=4)


def run(agent: Agent, question: str) -> Trajectory:
    return asyncio.run(agent.run(Task(question, golds=["14"])))


def test_a_registered_tool_is_shown_called_and_recorded(tiny_tokenizer, toolbox, config):
    policy = ScriptedPolicy([calculate_turn("2+3*4"), answer_turn("14")], tiny_tokenizer)
    t = run(Agent(policy, toolbox, config, tools=[CALCULATOR]), "What is 2+3*4?")

    assert t.status == "answered" and t.answer == "14" and t.metrics["em"] == 1.0
    turn = t.turns[0]
    assert turn.action.name == "calculate" and turn.observation == "14"
    assert turn.tool is not None
    assert turn.tool.name == "calculate" and turn.tool.arguments == {"expression": "2+3*4"}
    assert turn.tool.error is None and turn.tool.seconds >= 0
    assert t.usage.search_calls == 0 and t.usage.browse_calls == 0
    # The model saw the calculator listed after the paper's two tools, then its result.
    first = policy.prompts[0].text
    assert first.index('"browse_webpage"') < first.index('"name": "calculate"')
    assert "<tool_response>\n14\n</tool_response>" in policy.prompts[1].text
    assert {"role": "tool", "name": "calculate", "content": "14"} in t.messages
    # The record survives the trajectory file.
    assert Trajectory.model_validate_json(t.to_json()) == t


def test_a_failing_tool_call_is_recorded_and_the_episode_goes_on(tiny_tokenizer, toolbox, config):
    script = [calculate_turn("__import__('os')"), calculate_turn("1/0"), answer_turn("14")]
    t = run(Agent(ScriptedPolicy(script, tiny_tokenizer), toolbox, config, tools=[CALCULATOR]),
            "What is 2+3*4?")

    assert t.status == "answered"
    assert t.turns[0].tool.error.startswith("ValueError: not arithmetic")
    assert t.turns[1].observation == "Error: ZeroDivisionError: division by zero"
    assert t.turns[1].tool.error == "ZeroDivisionError: division by zero"


def test_built_in_tools_still_run_beside_a_registered_one(tiny_tokenizer, toolbox, config):
    script = [search_turn("Tarrowmere"), calculate_turn("(2+3)*4"), answer_turn("20")]
    t = run(Agent(ScriptedPolicy(script, tiny_tokenizer), toolbox, config, tools=[CALCULATOR]),
            "q")

    search = t.turns[0].tool
    assert search.name == "web_search" and search.queries == ["Tarrowmere"] and search.hits > 0
    assert search.arguments == {"query": ["Tarrowmere"]}
    assert t.turns[0].observation.startswith("[{'search_query': 'Tarrowmere'")
    assert t.turns[1].observation == "20" and t.usage.search_calls == 1


def test_a_call_to_an_unregistered_tool_is_a_format_error(tiny_tokenizer, toolbox, config):
    policy = ScriptedPolicy([calculate_turn("2+3*4")], tiny_tokenizer)
    t = run(Agent(policy, toolbox, config), "What is 2+3*4?")

    assert t.status == "format_error" and t.error == "unknown tool 'calculate'"
    assert t.turns[0].tool is None and t.turns[0].observation is None


def test_a_profile_built_without_a_registered_tool_is_refused(tiny_tokenizer, toolbox, config):
    profile = get_profile("deepresearcher-7b", ProfileSettings(date="2025-04-03"))
    with pytest.raises(ConfigError, match="without tool 'calculate'"):
        Agent(ScriptedPolicy([], tiny_tokenizer), toolbox, config, profile=profile,
              tools=[CALCULATOR])
    twice = FunctionTool("web_search", "again", {"type": "object"}, lambda arguments: "")
    with pytest.raises(ConfigError, match="registered twice"):
        Agent(ScriptedPolicy([], tiny_tokenizer), toolbox, config, tools=[twice])


@pytest.mark.parametrize("name", ["deepresearcher-7b", "native-tools", "compact"])
def test_profiles_list_registered_tools_after_their_own(name):
    plain = get_profile(name, ProfileSettings(date="2025-04-03"))
    extended = get_profile(name, ProfileSettings(date="2025-04-03", tools=(CALCULATOR.schema,)))

    assert extended.tools() == [*plain.tools(), CALCULATOR.schema]
    assert extended.tool_names == (*plain.tool_names, "calculate")
    if name == "deepresearcher-7b":
        assert plain.tools() is TOOLS  # the paper's exact tool text when nothing is added


def test_old_tool_records_still_load():
    record = ToolRecord.model_validate({"name": "web_search", "queries": ["a"], "hits": 3,
                                        "error": None, "seconds": 0.1})
    assert record.arguments is None and record.details == {} and record.hits == 3


def test_policies_and_profiles_declare_what_the_loop_uses(tiny_tokenizer):
    from deepresearcher.agent.policy import Policy
    from deepresearcher.protocol.base import PromptProfile
    from deepresearcher.train.expert import ExpertPolicy

    assert isinstance(ScriptedPolicy([], tiny_tokenizer), Policy)
    assert isinstance(ExpertPolicy([], tiny_tokenizer), Policy)
    for name in ("deepresearcher-7b", "native-tools", "compact"):
        assert isinstance(get_profile(name, ProfileSettings(date="2025-04-03")), PromptProfile)
