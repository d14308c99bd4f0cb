"""The contract between our rollouts and TRL's GRPO loss, checked by hand on the tiny model.

If a TRL upgrade changes how ``rollout_func`` outputs are masked, grouped or weighted, these fail.
"""

from __future__ import annotations

import math

import pytest

from miniworld import write_mini_world
from scripted import ScriptedPolicy, answer_turn, browse_turn, search_turn

torch = pytest.importorskip("torch")
trl = pytest.importorskip("trl")

QUESTIONS = {
    "Where was the founder of the Brackenhold Institute born?": ["Tarrowmere"],
    "In which country is Tarrowmere?": ["Lenivar"],
}
# Per question, four rollouts that earn different rewards: a researched right answer, a partly
# right one, a wrong one, and a malformed turn (−1).
SCRIPTS = {
    "Where was the founder of the Brackenhold Institute born?": [
        [search_turn("Brackenhold Institute founder"), browse_turn("local://wiki/Velmora_Quist"),
         answer_turn("Tarrowmere")],
        [search_turn("Velmora Quist"), answer_turn("Tarrowmere harbour")],
        [answer_turn("Ostrevan")],
        ["no tags at all"],
    ],
    "In which country is Tarrowmere?": [
        [search_turn("Tarrowmere"), answer_turn("Lenivar")],
        [answer_turn("Lenivar coast")],
        [search_turn("Tarrowmere country"), answer_turn("Ostrevan")],
        ["<answer>unclosed"],
    ],
}
EXPECTED_REWARDS = [1.0, 2 / 3, 0.0, -1.0, 1.0, 2 / 3, 0.0, -1.0]


class GroupScripts(ScriptedPolicy):
    """Rollout k of each group follows script k of its question."""

    def __init__(self, tokenizer):
        super().__init__(self._turn, tokenizer)
        self.seen: dict[str, int] = {}
        self.order: dict[tuple[str, str], int] = {}

    def _turn(self, prompt, turn):
        question = prompt.messages[1]["content"]
        key = (question, id(prompt.messages[1]))
        if key not in self.order:
            self.order[key] = self.seen.get(question, 0)
            self.seen[question] = self.order[key] + 1
        script = SCRIPTS[question][self.order[key]]
        return script[min(turn, len(script) - 1)]


@pytest.fixture(scope="module")
def trainer(tmp_path_factory, tiny_model_dir, tiny_tokenizer):
    from datasets import Dataset

    from deepresearcher.agent.build import ToolSettings, build_toolbox
    from deepresearcher.agent.config import AgentConfig
    from deepresearcher.agent.loop import Task
    from deepresearcher.train.rollout import AgentRollout, task_prompt

    root = tmp_path_factory.mktemp("contract")
    world = write_mini_world(root / "world")
    toolbox = build_toolbox(ToolSettings(index=world / "index", pages=world / "pages"))
    rollout = AgentRollout(
        toolbox, AgentConfig(date="2025-04-03", max_turns=4), reward="paper",
        policy_factory=lambda trainer: GroupScripts(tiny_tokenizer),
    )
    rows = [{"prompt": task_prompt(Task(q, g, id=f"q{i}"))}
            for i, (q, g) in enumerate(QUESTIONS.items())]
    args = trl.GRPOConfig(
        output_dir=str(root / "out"), per_device_train_batch_size=8, num_generations=4,
        max_steps=1, learning_rate=1e-3, use_cpu=True, bf16=False, gradient_checkpointing=False,
        report_to=[], beta=0.001, entropy_coef=0.001, epsilon=0.2, loss_type="grpo",
        max_completion_length=4096, save_strategy="no", temperature=1.0,
        use_bias_correction_kl=False,  # the paper's plain k3 (what trl_config sets)
    )
    trainer = trl.GRPOTrainer(model=str(tiny_model_dir), reward_funcs=[rollout.reward_func()],
                              args=args, train_dataset=Dataset.from_list(rows),
                              processing_class=tiny_tokenizer, rollout_func=rollout)
    trainer.current_gradient_accumulation_steps = 1
    batch = [dict(row) for row in rows for _ in range(4)]  # what TRL's sampler hands the step
    trainer.model.train()
    inputs = trainer._generate_and_score_completions(batch)
    return trainer, inputs


def test_rewards_and_advantages_line_up_with_groups(trainer):
    trainer, inputs = trainer
    rewards = torch.tensor(EXPECTED_REWARDS)
    got = torch.tensor(trainer._metrics["train"]["rewards/paper/mean"][-1])
    assert got == pytest.approx(rewards.mean().item(), abs=1e-6)
    grouped = rewards.view(2, 4)
    expected = (grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-4)
    assert torch.allclose(inputs["advantages"], expected.flatten(), atol=1e-5)


def test_env_mask_is_the_assistant_spans(trainer, tiny_tokenizer):
    trainer, inputs = trainer
    mask = inputs["completion_mask"] * inputs["tool_mask"]
    for row in range(mask.size(0)):
        ids = inputs["completion_ids"][row][inputs["completion_mask"][row].bool()]
        m = mask[row][inputs["completion_mask"][row].bool()]
        trained = tiny_tokenizer.decode(ids[m.bool()])
        untrained = tiny_tokenizer.decode(ids[~m.bool()])
        assert trained.startswith("<think>")
        assert "<tool_response>" not in trained and "<|im_start|>" not in trained
        if "<tool_call>" in trained:
            assert "<tool_response>" in untrained and "<|im_start|>user" in untrained


def _hand_loss(trainer, inputs, beta=0.001):
    """Masked GRPO (token-level clip 0.2, sequence-mean then batch-mean), k3 KL to the reference
    model with beta, minus the entropy bonus over the same tokens."""
    model = trainer.model
    prompt_ids, completion_ids = inputs["prompt_ids"], inputs["completion_ids"]
    ids = torch.cat([prompt_ids, completion_ids], 1)
    attention = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
    n = completion_ids.size(1)
    logits = model(input_ids=ids, attention_mask=attention).logits[:, -n - 1:-1, :].float()
    logp_all = torch.log_softmax(logits, -1)
    logp = logp_all.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
    mask = (inputs["completion_mask"] * inputs["tool_mask"]).float()
    adv = inputs["advantages"].unsqueeze(1)
    ratio = torch.exp(logp - logp.detach())
    per_token = -torch.min(ratio * adv, torch.clamp(ratio, 0.8, 1.2) * adv)
    ref = inputs["ref_per_token_logps"]
    per_token = per_token + beta * (torch.exp(ref - logp) - (ref - logp) - 1)
    policy = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return policy - 0.001 * (entropy * mask).sum() / mask.sum()


def test_trl_gradient_equals_the_hand_masked_grpo_gradient(trainer):
    trainer, inputs = trainer
    model = trainer.model
    model.zero_grad()
    captured = {}

    def keep(module, args, kwargs, output):
        if getattr(output, "log_probs", None) is not None:
            output.log_probs.retain_grad()
            captured["log_probs"] = output.log_probs

    hook = model.register_forward_hook(keep, with_kwargs=True)
    try:
        trainer.compute_loss(model, inputs).backward()
    finally:
        hook.remove()
    trl_grads = {k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    _hand_loss(trainer, inputs).backward()
    hand_grads = {k: p.grad.detach().clone() for k, p in model.named_parameters()}

    assert trl_grads.keys() == hand_grads.keys()
    worst = max((trl_grads[k] - hand_grads[k]).abs().max().item() for k in trl_grads)
    scale = max(g.abs().max().item() for g in hand_grads.values())
    assert scale > 1e-4, "the batch must produce a real gradient"
    assert worst <= 1e-6, f"TRL's gradient differs from the hand-masked one by {worst:g}"

    # Positions outside the assistant spans (tool responses, headers, padding) get exactly zero.
    grad = captured["log_probs"].grad[:, -inputs["completion_ids"].size(1):]
    mask = (inputs["completion_mask"] * inputs["tool_mask"]).bool()
    assert torch.count_nonzero(grad[~mask]) == 0
    assert torch.count_nonzero(grad[mask]) > 0
    assert not math.isnan(worst)


def _gradients(model, loss_fn):
    model.zero_grad()
    loss_fn().backward()
    grads = {k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return grads


def test_kl_gradient_is_plain_k3_against_a_moved_reference(trainer):
    """At the first step the reference is the policy, so k3 and its gradient are zero and the
    test above cannot see the KL term. Move the reference log-probs: TRL's KL gradient must then
    be the paper's k3 ("low_var_kl"), not TRL's default bias-corrected one (k3 times a ratio
    that carries gradient). trl_config sets it so (test_recipes.py)."""
    trainer, inputs = trainer
    model = trainer.model
    generator = torch.Generator().manual_seed(0)
    ref = inputs["ref_per_token_logps"]
    moved = dict(inputs, ref_per_token_logps=ref + 0.5 * torch.randn(ref.shape, generator=generator))
    trl_grads = _gradients(model, lambda: trainer.compute_loss(model, moved))
    hand = _gradients(model, lambda: _hand_loss(trainer, moved))
    without_kl = _gradients(model, lambda: _hand_loss(trainer, moved, beta=0.0))
    kl_part = max((hand[k] - without_kl[k]).abs().max().item() for k in hand)
    assert kl_part > 1e-5, "the moved reference must make the KL term count"
    worst = max((trl_grads[k] - hand[k]).abs().max().item() for k in trl_grads)
    assert worst <= 1e-6, f"TRL's KL gradient differs from plain k3 by {worst:g}"
    # The same batch with TRL's bias correction differs: the test can tell the two apart.
    trainer.args.use_bias_correction_kl = True
    try:
        corrected = _gradients(model, lambda: trainer.compute_loss(model, moved))
    finally:
        trainer.args.use_bias_correction_kl = False
    assert max((corrected[k] - hand[k]).abs().max().item() for k in hand) > 1e-6
