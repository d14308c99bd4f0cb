"""The training rewards by name (``grpo.reward``): each scores one finished episode.

The rollout scores every episode once with the configured reward, inside the episode
(:class:`~deepresearcher.agent.loop.Agent`'s ``reward``), and stores the value in the trajectory;
TRL's reward function (:func:`trl_reward_func`) hands that same value to the trainer. Add a reward
with :func:`register_reward`; it reads the episode's ``golds``, ``answer``, ``status``,
:meth:`~deepresearcher.agent.trajectory.Trajectory.response_text` or anything else it records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from deepresearcher.agent.loop import EpisodeReward, paper_episode_reward
from deepresearcher.agent.trajectory import Trajectory
from deepresearcher.errors import ConfigError
from deepresearcher.protocol.metrics import exact_match, f1_score, normalize_answer

TRLRewardFunc = Callable[..., list[float | None]]


def _answer(episode: Trajectory) -> str | None:
    """The final answer of an episode that gave one."""
    return episode.answer if episode.status == "answered" and episode.answer else None


def f1(episode: Trajectory) -> float:
    """F1 of the final answer, 0 without one (no format penalty)."""
    answer = _answer(episode)
    return f1_score(answer, episode.golds or []) if answer else 0.0


def em(episode: Trajectory) -> float:
    """Exact match of the final answer, 0 without one."""
    answer = _answer(episode)
    return exact_match(answer, episode.golds or []) if answer else 0.0


def cover_em(episode: Trajectory) -> float:
    """1 if a normalized gold alias occurs in the normalized answer on word boundaries."""
    answer = _answer(episode)
    pred = f" {normalize_answer(answer)} " if answer else ""
    golds = episode.golds or []
    return float(any(f" {normalize_answer(g)} " in pred for g in golds if g.strip()))


# The paper's reward (PROTOCOL.md §7) is the agent's own default, so ask and eval record it too.
REWARDS: dict[str, EpisodeReward] = {
    "paper": paper_episode_reward, "f1": f1, "em": em, "cover_em": cover_em,
}


def register_reward(name: str, reward: EpisodeReward) -> EpisodeReward:
    """Make ``reward`` available as ``grpo.reward=<name>`` (replacing one of that name)."""
    if not name or not name.isidentifier():
        raise ConfigError(f"a reward's name must be an identifier, not {name!r}",
                          hint="TRL logs it as rewards/<name>/mean")
    REWARDS[name] = reward
    return reward


def get_reward(name: str) -> EpisodeReward:
    """The reward called ``name``."""
    try:
        return REWARDS[name]
    except KeyError:
        raise ConfigError(f"unknown reward {name!r}",
                          hint=f"choose one of: {', '.join(REWARDS)}, or register one "
                          "(deepresearcher.train.rewards.register_reward)") from None


def trl_reward_func(name: str) -> TRLRewardFunc:
    """TRL's reward function for the reward ``name``: it computes nothing, and returns the value
    each episode was scored with in the rollout (the rollout's ``reward`` field, which TRL passes
    on as a keyword argument), so the trainer trains on exactly what the trajectory records. TRL
    logs it as ``rewards/<name>/mean``."""
    get_reward(name)  # an unknown name fails here, before the trainer is built

    def reward_func(completions: Sequence[Any], *, reward: Sequence[float | None],
                    **_: Any) -> list[float | None]:
        return list(reward)

    reward_func.__name__ = name
    return reward_func
