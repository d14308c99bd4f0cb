"""SFT loss cost: TRL's full-logits loss versus ours, which projects only trained positions.

Builds a small world, the quickstart's tokenizer and tiny model and terse expert demonstrations in
the compact profile, then times the forward and backward pass of both losses on the same batch of
TRL's own collator (median of repeats), and prints the ratio.

    python benchmarks/bench_sft_loss.py
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=300)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sft-") as tmp:
        run_benchmark(args, Path(tmp))


def run_benchmark(args: argparse.Namespace, root: Path) -> None:
    from deepresearcher.agent.config import AgentConfig
    from deepresearcher.cli.common import quiet_hf
    from deepresearcher.models.tiny import build_tiny_qwen2
    from deepresearcher.train.expert import generate_expert_trajectories
    from deepresearcher.train.quickstart import world_tokenizer
    from deepresearcher.train.sft import build_sft_trainer
    from deepresearcher.world import build_world

    quiet_hf()
    build_world(root / "world", seed=0, entities=args.entities)
    tokenizer = world_tokenizer(root / "world", root / "model")
    build_tiny_qwen2(root / "model", tokenizer, hidden_size=128, layers=2)
    asyncio.run(generate_expert_trajectories(
        root / "world", "train", tokenizer=tokenizer, out=root / "expert.jsonl", limit=32,
        style="terse", config=AgentConfig(temperature=0.0, date="2025-04-03", profile="compact",
                                          max_turns=4, search_k=3, max_queries=1)))
    trainer, _ = build_sft_trainer(root / "expert.jsonl", root / "model", root / "out",
                                   max_length=1536, max_steps=1)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(args.batch)])
    model = trainer.model
    model.train()
    full = type(trainer).__mro__[1].compute_loss  # TRL's own

    def timed(compute) -> float:
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            compute(model, dict(batch)).backward()
            model.zero_grad()
            times.append(time.perf_counter() - started)
        return statistics.median(times[1:])  # the first pass warms up

    theirs = timed(lambda *a: full(trainer, *a))
    ours = timed(trainer.compute_loss)
    trained = int((batch["labels"] != -100).sum())
    print(f"batch: {args.batch} rows, {batch['input_ids'].numel()} tokens, {trained} trained on")
    print(f"TRL full-logits loss, forward + backward: {theirs:.3f} s")
    print(f"selected-positions loss, forward + backward: {ours:.3f} s")
    print(f"speed-up: {theirs / ours:.2f}x")


if __name__ == "__main__":
    main()
