"""A Ctrl-C that lands in a finalizer is dropped by Python; the guard raises it again at the
next safe point (every agent turn, every trainer step)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from deepresearcher.interrupt import ctrl_c_guard, interrupt_noted, raise_if_interrupted


@pytest.fixture
def sigint_reaches_python():
    """Python's own handler (a test run started in the background inherits SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


class CtrlCInFinalizer:
    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs here, inside __del__, and its exception is dropped


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ctrl_c_dropped_in_a_finalizer_is_raised_at_the_next_check(sigint_reaches_python):
    with ctrl_c_guard():
        CtrlCInFinalizer()  # collected at once: the KeyboardInterrupt is raised and dropped
        with pytest.raises(KeyboardInterrupt):
            raise_if_interrupted()
        raise_if_interrupted()  # raised once: acted on
    # Without the guard the same Ctrl-C is lost: nothing raises afterwards.
    CtrlCInFinalizer()
    raise_if_interrupted()


def test_a_ctrl_c_raised_normally_still_raises_at_once(sigint_reaches_python):
    with ctrl_c_guard(), pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
    raise_if_interrupted()  # leaving the guard forgets it


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_noted_interrupt_is_not_raised_again(sigint_reaches_python):
    with ctrl_c_guard():
        CtrlCInFinalizer()
        interrupt_noted()
        try:
            raise_if_interrupted()
        except KeyboardInterrupt:
            pytest.fail("a Ctrl-C the caller noted was raised again")
        CtrlCInFinalizer()  # a new one after that is raised
        with pytest.raises(KeyboardInterrupt):
            raise_if_interrupted()


def test_an_ignored_sigint_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with ctrl_c_guard():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_the_agent_loop_stops_at_the_next_turn(sigint_reaches_python, tiny_tokenizer, toolbox):
    """An episode whose first turn drops a Ctrl-C (in a finalizer) stops before its next turn."""
    import asyncio

    from deepresearcher.agent.config import AgentConfig
    from deepresearcher.agent.loop import Agent
    from scripted import ScriptedPolicy, search_turn

    def script(prompt, turn):
        if turn == 0:
            CtrlCInFinalizer()
        return search_turn("Brackenhold Institute founder")

    policy = ScriptedPolicy(script, tiny_tokenizer)
    agent = Agent(policy, toolbox, AgentConfig(date="2025-04-03", max_turns=5))
    with ctrl_c_guard(), pytest.raises(KeyboardInterrupt):
        asyncio.run(agent.run("Where was the founder of the Brackenhold Institute born?"))
    assert len(policy.prompts) == 1
