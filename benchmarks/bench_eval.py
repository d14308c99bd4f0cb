"""Evaluation throughput: many episodes in flight vs one at a time, against a policy server with a
fixed latency.

Runs ``deepresearcher.eval``'s runner (episodes, scoring, the fsynced append-only results file) on
the questions of a generated world, with the policy served by the loopback OpenAI-compatible server
(``tests/servers/openai_compat.py``, started as its own process, as a model server would be) that
waits ``--latency`` seconds per generation and answers at once (one turn per question). Two passes in one process: ``--questions`` at ``--concurrency``, then
``--serial-questions`` one at a time; the serial time is extrapolated per question to the full set
(stated in the output). Prints both and the ratio (target ≥ 40× at 64 in flight).

    python benchmarks/bench_eval.py --serial-questions 10    # 500 questions, 64 in flight, 1 s
    python benchmarks/bench_eval.py --latency 0.05           # where this CPU, not latency, binds
    python benchmarks/bench_eval.py --questions 100 --serial-questions 10   # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

SERVER = Path(__file__).resolve().parents[1] / "tests" / "servers" / "openai_compat.py"
ANSWER = " I know it now. </think>\n<answer>Tarrowmere</answer>"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--serial-questions", type=int, default=40,
                        help="Questions of the one-at-a-time baseline (extrapolated per question).")
    parser.add_argument("--concurrency", type=int, default=64)
    # A research turn of a 7B model takes seconds; at tens of milliseconds this machine's CPU, not
    # the runner's concurrency, is what gets measured (docs/eval.md).
    parser.add_argument("--latency", type=float, default=1.0, help="Seconds per generation.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        run_benchmark(args, Path(tmp))


def run_benchmark(args: argparse.Namespace, root: Path) -> None:
    from deepresearcher.agent.build import ToolSettings, build_policy, build_toolbox
    from deepresearcher.agent.config import AgentConfig
    from deepresearcher.cli.common import quiet_hf
    from deepresearcher.data.paper_format import read_records
    from deepresearcher.eval.results import ResultStore
    from deepresearcher.eval.runner import EvalRunner
    from deepresearcher.models.tiny import build_tokenizer
    from deepresearcher.world import build_world

    quiet_hf()
    build_world(root / "world", seed=0, entities=40)
    build_tokenizer(root / "tokenizer")  # the served model's tokenizer, for both sides
    base = read_records(root / "world/questions/test.parquet")
    records = [replace(base[i % len(base)], id=f"bench_{i}") for i in range(args.questions)]
    toolbox = build_toolbox(ToolSettings(world=root / "world"))
    config = AgentConfig(date="2025-04-03", max_turns=4, temperature=0.0, record_tokens=False)

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", str(port), "--tokenizer", str(root / "tokenizer"),
         "--latency", str(args.latency), "--text", ANSWER],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "serving tiny at ..." once it listens

        def one_pass(n: int, concurrency: int, name: str) -> tuple[float, int]:
            policy = build_policy("tiny", base_url=base_url, tokenizer=str(root / "tokenizer"))
            runner = EvalRunner(policy, toolbox, config, concurrency=concurrency)
            store = ResultStore(root / f"{name}.jsonl")

            async def go() -> float:
                started = time.perf_counter()
                try:
                    await runner.run(records[:n], store)
                finally:
                    await policy.aclose()
                return time.perf_counter() - started

            seconds = asyncio.run(go())
            rows = store.load()
            assert len(rows) == n and all(r["status"] == "answered" for r in rows.values())
            return seconds, n

        one_pass(min(8, args.questions), 8, "warmup")  # imports, pools, caches
        conc_s, n = one_pass(args.questions, args.concurrency, "concurrent")
        serial_s, m = one_pass(args.serial_questions, 1, "serial")
    finally:
        server.terminate()
        server.wait()

    per_q_serial = serial_s / m
    serial_full = per_q_serial * n
    print(f"policy latency {1000 * args.latency:.0f} ms per generation, one generation per "
          "question, results fsynced per question")
    print(f"{'mode':<22}{'questions':>10}{'seconds':>10}{'q/s':>9}{'ms/question':>13}")
    print(f"{f'concurrency {args.concurrency}':<22}{n:>10}{conc_s:>10.2f}{n / conc_s:>9.1f}"
          f"{1000 * conc_s / n:>13.1f}")
    print(f"{'concurrency 1':<22}{m:>10}{serial_s:>10.2f}{m / serial_s:>9.1f}"
          f"{1000 * per_q_serial:>13.1f}")
    print(f"serial time for {n} questions, extrapolated from {m}: {serial_full:.1f} s")
    print(f"speed-up: {serial_full / conc_s:.1f}x (target >= 40x)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    main()
