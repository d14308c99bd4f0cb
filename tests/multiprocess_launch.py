"""Runs a deepresearcher command as two training processes on this CPU (accelerate launch:
torchrun, gloo, DDP), as it runs as several processes on GPUs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# accelerate falls back to gloo and DDP when there is no CUDA.
TWO_PROCESSES = """
compute_environment: LOCAL_MACHINE
distributed_type: MULTI_GPU
num_machines: 1
num_processes: 2
machine_rank: 0
mixed_precision: "no"
use_cpu: false
rdzv_backend: static
same_network: true
main_training_function: main
"""


def launch_two_processes(cwd: Path, *command: str,
                         timeout: float = 600) -> subprocess.CompletedProcess[str]:
    config = cwd / "two-processes.yaml"
    config.write_text(TWO_PROCESSES, encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
         "--main_process_port", "0", "-m", "deepresearcher.cli.main", *command],
        capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)
