"""Small helpers shared by the commands."""

from __future__ import annotations


def quiet_hf() -> None:
    """Silence the progress bars of transformers and huggingface_hub (the CLI draws its own)."""
    try:
        from huggingface_hub.utils import disable_progress_bars
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    disable_progress_bars()
    hf_logging.disable_progress_bar()
    try:  # the datasets library (an extra): its map() bars during SFT and GRPO data preparation
        from datasets.utils.logging import disable_progress_bar
    except ImportError:
        return
    disable_progress_bar()


def is_main_process() -> bool:
    """Whether this process prints for a run launched as several (rank 0, or a single process)."""
    import os

    return os.environ.get("RANK", "0") in ("", "0")
