"""Our async research episodes as TRL's ``rollout_func``.

TRL hands the rollout the prompts of this process (each repeated ``num_generations`` times, the
copies contiguous, so GRPO groups line up) and the trainer. Each prompt carries its dataset row
(:func:`task_prompt`). We run one episode per prompt with the trainer's own model, all episodes on
one event loop so that generation is batched across them, score each once with the configured
reward, and return for each: the prompt ids, the completion ids (every assistant turn *and* every
tool response, as the chat template renders them), one log-prob per completion token, ``env_mask``
(1 on assistant tokens, 0 on tool responses and role headers: PROTOCOL.md §7) and the episode's
reward. TRL multiplies the mask into the policy loss, the KL term and the entropy term, and trains
on the reward through :func:`~deepresearcher.train.rewards.trl_reward_func`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deepresearcher.agent.config import AgentConfig
from deepresearcher.agent.loop import Agent, Task
from deepresearcher.agent.toolbox import Toolbox
from deepresearcher.agent.trajectory import Trajectory, write_jsonl
from deepresearcher.train.rewards import TRLRewardFunc, get_reward, trl_reward_func

PolicyFactory = Callable[[Any], Any]  # trainer -> Policy

# Where a prompt's user message keeps its dataset row. TRL gives ``rollout_func`` the prompts and
# nothing else of the rows, so what the rollout needs of a row travels inside its prompt.
TASK_KEY = "task"


def task_prompt(task: Task) -> list[dict[str, Any]]:
    """The dataset prompt of a task: the paper's ``[{"role": "user", "content": q}]``, whose
    message also carries the row's id, golds and data source (chat templates read only the role
    and the content)."""
    golds = list(task.golds) if task.golds is not None else None
    row = {"id": task.id, "golds": golds, "data_source": task.data_source}
    return [{"role": "user", "content": task.question, TASK_KEY: row}]


def prompt_question(prompt: Any) -> str:
    """The question of a dataset prompt: the paper's ``[{"role": "user", "content": q}]`` or text."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Sequence) and prompt:
        last = prompt[-1]
        if isinstance(last, Mapping) and isinstance(last.get("content"), str):
            return last["content"]
    raise ValueError(f"cannot read a question from prompt {prompt!r:.120}")


def prompt_task(prompt: Any) -> Task:
    """The task a dataset prompt carries (:func:`task_prompt`); a prompt without a row (plain
    text, a bare message) is its question alone, with no golds to score it against."""
    question = prompt_question(prompt)
    row = prompt[-1].get(TASK_KEY) if not isinstance(prompt, str) else None
    if not isinstance(row, Mapping):
        return Task(question=question)
    golds = row.get("golds")
    return Task(question=question, golds=list(golds) if golds is not None else None,
                id=row.get("id"), data_source=row.get("data_source"))


def step_tasks(prompts: Sequence[Any], *, group_size: int, offset: int = 0) -> list[Task]:
    """The episodes of this process's prompts: each prompt's own task, placed in its GRPO group.

    TRL repeats each prompt ``group_size`` times, the copies contiguous, and gives each process
    a contiguous slice of the step starting at ``offset``; its advantages compare the rewards of
    each run of ``group_size``. The k-th copy is rollout k of its group, and its episode is called
    ``<row id>#k`` (as evaluation names its samples)."""
    tasks = []
    for i, prompt in enumerate(prompts):
        group, rollout = divmod(offset + i, group_size)
        if rollout and i and prompt != prompts[i - 1]:
            raise RuntimeError(
                f"prompts {i - 1} and {i} of this process are in GRPO group {group} but differ: "
                "the trainer no longer hands the rollout each prompt's copies contiguously")
        task = prompt_task(prompt)
        episode = f"{task.id}#{rollout}" if task.id is not None else str(offset + i)
        tasks.append(replace(task, id=episode, group=group, rollout=rollout))
    return tasks


@dataclass
class RolloutStats:
    """What one rollout call did, for logs."""

    episodes: int = 0
    seconds: float = 0.0
    generate_seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)

    def tool_seconds(self) -> float:
        return max(0.0, self.seconds - self.generate_seconds)


def completion_logprobs(trajectory: Trajectory, completion_ids: list[int], mask: list[int]) -> list[float]:
    """One log-prob per completion token: the sampled log-prob where the re-serialized assistant
    tokens are the sampled ones, NaN where re-serialization changed them (TRL then applies no
    importance correction there), and 0.0 on tool tokens (masked out of every loss term)."""
    # One assistant span per turn, in order (a turn without sampled ids keeps its place).
    sampled = [(turn.token_ids, turn.logprobs) for turn in trajectory.turns]
    out = [0.0] * len(completion_ids)
    spans = _runs(mask)
    for k, (start, end) in enumerate(spans):
        ids = completion_ids[start:end]
        turn_ids, turn_logprobs = sampled[k] if k < len(sampled) else (None, None)
        # One log-prob per sampled token, or none of them are used (a backend that returned
        # fewer would shift every later log-prob onto the wrong token).
        if (turn_ids is not None and turn_logprobs is not None
                and len(turn_logprobs) == len(turn_ids)):
            # The first assistant tokens are the forced prefix (not sampled): align from the end.
            offset = len(ids) - len(turn_ids)
            if offset >= 0 and ids[offset:] == turn_ids:
                out[start + offset:end] = turn_logprobs
                out[start:start + offset] = [math.nan] * offset
                continue
        out[start:end] = [math.nan] * (end - start)
    return out


def _runs(mask: list[int]) -> list[tuple[int, int]]:
    runs, start = [], None
    for i, m in enumerate(mask):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(mask)))
    return runs


class AgentRollout:
    """A TRL ``rollout_func`` that runs deep-research episodes.

    ``reward`` names the reward (:mod:`deepresearcher.train.rewards`) each episode is scored with,
    once, against its own row's golds; give TRL :meth:`reward_func` as its reward function.
    ``policy_factory`` builds the generation backend from the trainer (default: the trainer's
    model through :class:`~deepresearcher.agent.policy_hf.HFPolicy`, batched across the step's
    episodes).
    """

    def __init__(
        self,
        toolbox: Toolbox,
        config: AgentConfig,
        *,
        reward: str = "paper",
        policy_factory: PolicyFactory | None = None,
        trajectories_dir: Path | None = None,
        max_batch_size: int = 64,
        eval_config: AgentConfig | None = None,
    ) -> None:
        self.toolbox = toolbox
        self.config = config
        # Episodes while the trainer evaluates (the model in eval mode) run with this config
        # (e.g. greedy decoding); None: the training one.
        self.eval_config = eval_config
        self.reward_name = reward
        self.reward = get_reward(reward)
        self.policy_factory = policy_factory or self._hf_policy
        self.trajectories_dir = trajectories_dir
        self.max_batch_size = max_batch_size
        self.last_stats = RolloutStats()
        self._ended_at: float | None = None
        self._cache_seen = (0, 0)  # search cache (hits, lookups) already logged

    def reward_func(self) -> TRLRewardFunc:
        """TRL's reward function: the rewards this rollout scored, passed through unchanged."""
        return trl_reward_func(self.reward_name)

    def _hf_policy(self, trainer: Any) -> Any:
        from deepresearcher.agent.policy_hf import HFPolicy

        model = trainer.accelerator.unwrap_model(trainer.model)
        return HFPolicy(model, trainer.processing_class, name="policy",
                        context_window=self.config.context_window,
                        max_batch_size=self.max_batch_size, max_wait_ms=100)

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, list[Any]]:
        # Between the end of the previous rollout and now the trainer computed the loss and
        # updated the weights: that is the previous step's update time.
        update_seconds = None if self._ended_at is None else time.perf_counter() - self._ended_at
        evaluating = not bool(getattr(getattr(trainer, "model", None), "training", True))
        group_size = getattr(trainer, "num_generations_eval" if evaluating else "num_generations",
                             None) or 1
        accelerator = _processes(trainer)
        # Every process holds as many prompts: this one's slice starts at its rank times that.
        offset = accelerator.process_index * len(prompts) if accelerator is not None else 0
        tasks = step_tasks(prompts, group_size=int(group_size), offset=offset)
        config = self.eval_config if evaluating and self.eval_config is not None else self.config
        policy = self.policy_factory(trainer)
        model = getattr(policy, "model", None)
        was_training = bool(getattr(model, "training", False))
        if model is not None:
            model.eval()
        if accelerator is not None and getattr(trainer, "use_vllm", False):
            # TRL synced the engine's weights just before this call; in server mode only the
            # main process sends them, so the others wait until it is done before they ask for
            # their first turn (TRL's own generation waits in a gather of the prompts).
            accelerator.wait_for_everyone()
        started = time.perf_counter()
        try:
            with full_weights(trainer):
                trajectories = asyncio.run(self._run(policy, tasks, config))
        finally:
            if model is not None and was_training:
                model.train()
        stats = RolloutStats(episodes=len(trajectories), seconds=time.perf_counter() - started)
        batch_stats = getattr(policy, "stats", None)
        stats.generate_seconds = float(getattr(batch_stats, "generate_seconds", 0.0))
        for t in trajectories:
            stats.statuses[t.status] = stats.statuses.get(t.status, 0) + 1
        self.last_stats = stats
        self._log(trainer, trajectories, stats, update_seconds)
        result = self.to_trl(trajectories, eos_id=_eos_id(trainer))
        self._ended_at = time.perf_counter()
        return result

    async def _run(self, policy: Any, tasks: list[Task],
                   config: AgentConfig | None = None) -> list[Trajectory]:
        agent = Agent(policy, self.toolbox, config or self.config, reward=self.reward)
        try:
            return await agent.run_many(tasks, concurrency=len(tasks) or 1)
        finally:
            closer = getattr(policy, "aclose", None)
            if closer is not None:
                await closer()
            # Each rollout runs in its own event loop: close the tools' connection pools while
            # this one still runs (they are made again on the next step), or every step would
            # leave its sockets open.
            await self.toolbox.aclose()

    @staticmethod
    def to_trl(trajectories: Sequence[Trajectory], *, eos_id: int) -> dict[str, list[Any]]:
        """The rollout contract: prompt/completion ids, log-probs, env_mask, and each episode's
        reward as scored in it (None for an episode without golds), with its id and status."""
        out: dict[str, list[Any]] = {
            "prompt_ids": [], "completion_ids": [], "logprobs": [], "env_mask": [],
            "reward": [], "status": [], "trajectory": [],
        }
        for t in trajectories:
            if t.tokens is None:
                raise RuntimeError(
                    f"episode {t.id} has no token record: the policy needs a tokenizer with a chat "
                    "template and AgentConfig(record_tokens=True)"
                )
            completion, mask = list(t.tokens.completion_ids), list(t.tokens.loss_mask)
            if not completion:  # nothing fit in the context: one masked token keeps shapes valid
                completion, mask = [eos_id], [0]
            out["prompt_ids"].append(list(t.tokens.prompt_ids))
            out["completion_ids"].append(completion)
            out["env_mask"].append(mask)
            out["logprobs"].append(completion_logprobs(t, completion, mask))
            out["reward"].append(t.reward)
            out["status"].append(t.status)
            out["trajectory"].append(t.id)
        return out

    def _log(self, trainer: Any, trajectories: list[Trajectory], stats: RolloutStats,
             update_seconds: float | None) -> None:
        """Step metrics and the step's trajectory file, over *all* processes of the run: each
        process ran its share of the episodes, so counts are summed across them, times are the
        slowest process's, and the main process writes every episode into one file."""
        metrics = getattr(trainer, "_metrics", None)
        mode = "train" if getattr(getattr(trainer, "model", None), "training", True) else "eval"
        scored = [t for t in trajectories if t.metrics]
        hits = calls = 0
        cache = getattr(self.toolbox.search_backend, "cache_stats", None)
        if callable(cache):
            # The cache counts since it opened: this step's share is the difference.
            total_hits, total_calls = cache()
            hits, calls = total_hits - self._cache_seen[0], total_calls - self._cache_seen[1]
            self._cache_seen = (total_hits, total_calls)
        local = [
            len(trajectories),
            stats.statuses.get("format_error", 0),
            stats.statuses.get("answered", 0),
            stats.statuses.get("context_exhausted", 0),
            sum(len(t.turns) for t in trajectories),
            sum(t.usage.search_calls for t in trajectories),
            sum(t.usage.browse_calls for t in trajectories),
            len(scored),
            sum(t.metrics["f1"] for t in scored),
            sum(t.metrics["em"] for t in scored),
            stats.seconds,
            stats.generate_seconds,
            stats.tool_seconds(),
            hits,
            calls,
        ]
        ranks = _across_processes(trainer, [float(v) for v in local])
        total = [sum(rank[i] for rank in ranks) for i in range(len(local))]
        slowest = [max(rank[i] for rank in ranks) for i in range(len(local))]
        n = max(total[0], 1.0)
        values = {
            "rollout/format_error_rate": total[1] / n,
            "rollout/answered_rate": total[2] / n,
            "rollout/context_exhausted_rate": total[3] / n,
            "rollout/turns": total[4] / n,
            "rollout/search_calls": total[5] / n,
            "rollout/browse_calls": total[6] / n,
            "time/rollout": slowest[10],
            "time/generation": slowest[11],
            "time/tools": slowest[12],
        }
        if update_seconds is not None and mode == "train":
            values["time/update_previous_step"] = update_seconds
        if total[7]:
            values["rollout/f1"] = total[8] / total[7]
            values["rollout/em"] = total[9] / total[7]
        if callable(cache):
            values["tools/search_cache_hit_rate"] = total[13] / total[14] if total[14] else 0.0
        if metrics is not None:
            for key, value in values.items():
                metrics[mode][key].append(value)
        if self.trajectories_dir is not None:
            everything = _gather_episodes(trainer, trajectories)
            if _is_main(trainer):
                step = int(getattr(getattr(trainer, "state", None), "global_step", 0))
                path = self.trajectories_dir / f"{mode}_step_{step:06d}.jsonl"
                # A training step generates once: a step rerun after a resume replaces its
                # file. An evaluation runs several batches at one step: they append.
                write_jsonl(path, everything, append=mode == "eval")


@contextlib.contextmanager
def full_weights(trainer: Any) -> Iterator[None]:
    """Whole weights on every process for the length of a rollout.

    An episode makes one generate call per turn, and processes make different numbers of them
    (episodes end at different turns), so generation must not need the other processes. Under
    DeepSpeed ZeRO-3 the shards are gathered once for the rollout (TRL's
    ``unwrap_model_for_generation``, which also pauses activation checkpointing); under DDP or one
    process there is nothing to gather; vLLM engines hold their own weights."""
    accelerator = getattr(trainer, "accelerator", None)
    wrapped = getattr(trainer, "model_wrapped", None)
    if accelerator is None or wrapped is None or getattr(trainer, "use_vllm", False):
        yield
        return
    from trl.models.utils import unwrap_model_for_generation

    with unwrap_model_for_generation(wrapped, accelerator, gather_deepspeed3_params=True):
        yield


def _processes(trainer: Any) -> Any:
    """The trainer's accelerator when the run has several processes, else None."""
    accelerator = getattr(trainer, "accelerator", None)
    if accelerator is None or int(getattr(accelerator, "num_processes", 1)) <= 1:
        return None
    return accelerator


def _across_processes(trainer: Any, values: list[float]) -> list[list[float]]:
    """``values`` of every process (a collective call: every process makes it)."""
    accelerator = _processes(trainer)
    if accelerator is None:
        return [values]
    import torch

    mine = torch.tensor([values], dtype=torch.float64, device=accelerator.device)
    return [list(map(float, row)) for row in accelerator.gather(mine).tolist()]


def _gather_episodes(trainer: Any, trajectories: list[Trajectory]) -> list[Trajectory]:
    """Every process's episodes on the main process, in process order; an empty list on the
    others (a collective call). Only the main process writes them, so they are sent to it alone:
    an all-gather would copy a large step's episodes (thousands, with their pages' extracts) to
    every process."""
    if _processes(trainer) is None:
        return list(trajectories)
    import torch.distributed as dist

    main = dist.get_rank() == 0
    parts: list[Any] | None = [None] * dist.get_world_size() if main else None
    dist.gather_object(list(trajectories), parts, dst=0)
    return [t for part in parts or [] for t in part]


def _is_main(trainer: Any) -> bool:
    accelerator = getattr(trainer, "accelerator", None)
    return bool(getattr(accelerator, "is_main_process", True))


def _eos_id(trainer: Any) -> int:
    tokenizer = getattr(trainer, "processing_class", None)
    eos = getattr(tokenizer, "eos_token_id", None)
    return int(eos) if eos is not None else 0

