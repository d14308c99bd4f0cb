"""Does the quickstart's tiny model learn to copy by content within a CPU budget?

Builds a small world, the quickstart's tokenizer and a random tiny Qwen2, trains it on one copy
task, and every ``--every`` steps prints the training loss, the accuracy on the task's own copied
tokens and the accuracy on a content-copy probe: random tokens ``A``, a random gap ``G`` of 10-80
tokens, then ``A`` again; a model that copies by content predicts the second ``A`` (its first token
excepted), one that copies by position or memorises text does not.

Tasks:
  span      corpus text with spans re-inserted at random later positions (loss on the copies)
  fixed     a corpus span repeated at a fixed distance (``--length``; loss on the repeat)
  random    random tokens, a span of random length repeated right after itself (loss on the repeat)

``--circuit`` starts from a model whose weights already copy by content: a previous-token head
in layer 0 and an induction head in layer 1, written into the random model before training (RoPE
base 1e6, as in Qwen2.5). ``--steps 0`` measures a model as built.

    python benchmarks/probe_copy.py --task span --steps 1000
    python benchmarks/probe_copy.py --task fixed --steps 300 --length 128
    python benchmarks/probe_copy.py --task random --steps 400 --tokens 64
    python benchmarks/probe_copy.py --circuit --steps 0
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("span", "fixed", "random"), default="span")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--window", type=int, default=256, help="corpus window (span task)")
    parser.add_argument("--length", type=int, default=128, help="span length (fixed task)")
    parser.add_argument("--tokens", type=int, default=0,
                        help="random task: draw from this many token ids (0: the whole vocabulary)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--init-std", type=float, default=0.1)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--entities", type=int, default=300)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--circuit", action="store_true",
                        help="start from a hand-built previous-token + induction head circuit")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="probe-copy-") as tmp:
        run(args, Path(tmp))


def run(args: argparse.Namespace, root: Path) -> None:
    import torch
    import torch.nn.functional as F

    from deepresearcher.cli.common import quiet_hf
    from deepresearcher.models.tiny import build_tiny_qwen2
    from deepresearcher.train.quickstart import world_tokenizer
    from deepresearcher.world.build import build_world

    quiet_hf()
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    build_world(root / "world", seed=args.seed, entities=args.entities, index=False)
    corpus = [json.loads(line)["contents"]
              for line in (root / "world" / "corpus.jsonl").read_text().splitlines() if line]
    tok = world_tokenizer(root / "world", root / "model")
    model = build_tiny_qwen2(root / "model", tok, hidden_size=args.hidden, layers=args.layers,
                             heads=4, kv_heads=2, seed=args.seed, init_std=args.init_std)
    if args.circuit:
        from transformers import Qwen2ForCausalLM

        config = model.config
        config.rope_parameters["rope_theta"] = 1e6
        rebuilt = Qwen2ForCausalLM(config)
        rebuilt.load_state_dict(model.state_dict())
        model = rebuilt
        install_copy_circuit(model, seed=args.seed)
    model.train()
    ids: list[int] = []
    for text in corpus:
        ids.extend(tok(text, add_special_tokens=False)["input_ids"])
    vocab = len(tok)
    low = 100  # above the byte-level and special tokens
    high = vocab if not args.tokens else min(vocab, low + args.tokens)
    rng = random.Random(args.seed)

    def sample() -> tuple[list[int], list[int]]:
        """A sequence and its loss mask (1 where the next token is a copied one)."""
        if args.task == "fixed":
            start = rng.randrange(len(ids) - args.length)
            seg = ids[start:start + args.length]
            return seg + seg, [0] * (args.length + 1) + [1] * (args.length - 1)
        if args.task == "random":
            n = rng.randrange(8, 65)
            seg = [rng.randrange(low, high) for _ in range(n)]
            return seg + seg, [0] * (n + 1) + [1] * (n - 1)
        start = rng.randrange(len(ids) - args.window)
        seq, mask = list(ids[start:start + args.window]), [0] * args.window
        for _ in range(4):
            n = rng.randrange(6, 25)
            a = rng.randrange(len(seq) - n)
            span, at = seq[a:a + n], rng.randrange(a + n, len(seq) + 1)
            seq = seq[:at] + span + seq[at:]
            mask = mask[:at] + [0] + [1] * (n - 1) + mask[at:]
        return seq, mask

    probe_rng = random.Random(10_000 + args.seed)
    probes = []
    for _ in range(32):
        a = [probe_rng.randrange(low, vocab) for _ in range(20)]
        gap = [probe_rng.randrange(low, vocab) for _ in range(probe_rng.randrange(10, 81))]
        probes.append(a + gap + a)

    def probe_accuracy() -> float:
        model.eval()
        hits = total = 0
        with torch.no_grad():
            for seq in probes:
                x = torch.tensor([seq])
                pred = model(input_ids=x).logits[0, -20:-1].argmax(-1)
                hits += int((pred == x[0, -19:]).sum())
                total += 19
        model.train()
        return hits / total

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 20))
    head = model.get_output_embeddings()
    print(f"task={args.task} steps={args.steps} batch={args.batch} lr={args.lr} "
          f"hidden={args.hidden} layers={args.layers} vocab={vocab}")
    print(f"{'step':>6} {'seconds':>8} {'loss':>7} {'task acc':>9} {'probe acc':>10}")
    t0 = time.perf_counter()
    seen = 0
    print(f"{'init':>6} {0.0:>8.1f} {'-':>7} {'-':>9} {probe_accuracy():>10.3f}", flush=True)
    for step in range(args.steps):
        batch = [sample() for _ in range(args.batch)]
        width = max(len(s) for s, _ in batch)
        x = torch.tensor([s + [0] * (width - len(s)) for s, _ in batch])
        m = torch.tensor([k + [0] * (width - len(k)) for _, k in batch])[:, 1:].bool()
        seen += int(x.numel())
        hidden = model.get_decoder()(input_ids=x).last_hidden_state[:, :-1][m]
        logits, target = head(hidden), x[:, 1:][m]
        loss = F.cross_entropy(logits, target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        warmup.step()
        optimizer.zero_grad()
        if step % args.every == 0 or step == args.steps - 1:
            task_acc = float((logits.argmax(-1) == target).float().mean())
            print(f"{step:>6} {time.perf_counter() - t0:>8.1f} {loss.item():>7.3f} "
                  f"{task_acc:>9.3f} {probe_accuracy():>10.3f}", flush=True)
    print(f"tokens seen: {seen:,}")


def install_copy_circuit(model, *, seed: int = 0, prev_margin: float = 20.0,
                         match: float = 30.0, copy_gain: float = 5.0, quiet: float = 0.1,
                         final_scale: float = 1.0) -> dict[str, float]:
    """Write a content-copy circuit into a random 2-layer Qwen2, in place.

    The residual stream is split: token identity in the first half (the embeddings are random
    there and zero elsewhere), the previous token's identity in the next ``head_dim`` dimensions.

    - Layer 0, KV group 0 (heads 0 and 1): a previous-token head. Its queries and keys are biases
      only, shaped on the fast RoPE frequencies so that the score peaks one position back (the
      weights of the frequencies maximise the worst margin over 2,048 positions); its value copies
      the token's first ``head_dim`` coordinates into the previous-token dimensions.
    - Layer 1, KV group 0: an induction head. The query reads the current token, the key reads the
      previous-token dimensions, both through the same random orthonormal map onto the slow RoPE
      frequencies (nearly position-free over a few hundred tokens), so a position whose previous
      token is the current token scores ``match``; the value copies that position's own token
      into the token dimensions with ``copy_gain``, which the tied embeddings turn into its logit.

    Every other attention output and MLP is scaled by ``quiet`` so its noise stays small, and the
    final norm by ``final_scale`` (smaller values temper the initial logits).
    """
    import numpy as np
    import torch

    config = model.config
    hidden = config.hidden_size
    head = hidden // config.num_attention_heads
    half = head // 2
    theta = config.rope_parameters["rope_theta"] ** (-np.arange(half) / half)
    token_dims = hidden // 2
    gen = torch.Generator().manual_seed(seed)
    content = [i for i in range(half) if theta[i] * 512 <= 0.5]
    fast = [i for i in range(half) if i < content[0] and theta[i] * 4096 >= 2 * math.pi]
    margin, weights = _peak_one_back(theta[fast])
    scale = math.sqrt(prev_margin * math.sqrt(head) / margin)
    first, second = (layer.self_attn for layer in model.model.layers[:2])
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        emb.zero_()
        emb[:, :token_dims] = torch.randn(emb.shape[0], token_dims, generator=gen) * math.sqrt(
            hidden / token_dims)
        for layer in model.model.layers:
            layer.mlp.down_proj.weight.mul_(quiet)
            layer.self_attn.o_proj.weight.mul_(quiet)
        for proj in (first.q_proj, second.q_proj):
            proj.weight[: 2 * head].zero_()
            proj.bias[: 2 * head].zero_()
        for proj in (first.k_proj, first.v_proj, second.k_proj, second.v_proj):
            proj.weight[:head].zero_()
            proj.bias[:head].zero_()
        for proj in (first.o_proj, second.o_proj):
            proj.weight[:, : 2 * head].zero_()
        # layer 0: previous-token head
        for h in (0, 1):
            for w, i in zip(weights, fast, strict=True):
                first.q_proj.bias[h * head + i] = scale * w * math.cos(theta[i])
                first.q_proj.bias[h * head + i + half] = -scale * w * math.sin(theta[i])
        for i in fast:
            first.k_proj.bias[i] = scale
        for i in range(head):
            first.v_proj.weight[i, i] = 1.0
            first.o_proj.weight[token_dims + i, i] = 1.0
        # layer 1: induction head
        rms = math.sqrt(1 + head / token_dims)  # the residual's RMS at layer 1 (token + previous)
        dims = content + [i + half for i in content]
        basis = torch.linalg.qr(torch.randn(head, head, generator=gen))[0][: len(dims)]
        beta = math.sqrt(match * math.sqrt(head) * rms**2 / (len(dims) * hidden / token_dims))
        for row, dim in enumerate(dims):
            second.q_proj.weight[dim, :head] = beta * basis[row]
            second.k_proj.weight[dim, token_dims: token_dims + head] = beta * basis[row]
        for i in range(head):
            second.v_proj.weight[i, i] = rms
            second.o_proj.weight[i, i] = copy_gain
        model.model.norm.weight.fill_(final_scale)
    return {"prev_margin": float(margin), "beta": beta, "scale": scale}


def _peak_one_back(theta, positions: int = 2048, iters: int = 20000):
    """Non-negative weights ``a`` (summing to 1) maximising ``min_d sum_i a_i (cos 0 -
    cos((d - 1) theta_i))`` over ``d != 1``: a RoPE score that peaks one position back."""
    import numpy as np

    d = np.arange(positions)
    cosines = np.cos(np.outer(d - 1, theta))
    gaps = cosines[1] - np.delete(cosines, 1, axis=0)
    a = np.full(len(theta), 1 / len(theta))
    best = (-1.0, a)
    for it in range(iters):
        margins = gaps @ a
        worst = int(np.argmin(margins))
        if margins[worst] > best[0]:
            best = (float(margins[worst]), a.copy())
        a = np.maximum(a + 0.01 / math.sqrt(it + 1) * gaps[worst], 0)
        a /= a.sum()
    return best


if __name__ == "__main__":
    main()
