"""Small helpers and options shared by the commands."""

from __future__ import annotations

from typing import Annotated

import typer

# The page reader's options (ask, browse, eval).
ReaderKind = Annotated[str, typer.Option(
    "--reader", help="extractive (free) or llm (an LLM reads the pages, as the paper's reader).")]
ReaderModel = Annotated[str | None, typer.Option(
    "--reader-model", help="The LLM reader's model name.")]
ReaderBaseUrl = Annotated[str | None, typer.Option(
    "--reader-base-url", help="The LLM reader's OpenAI-compatible API.")]
ReaderKeyEnv = Annotated[str, typer.Option(
    "--reader-key-env", help="Environment variable holding the reader's key.")]

# The page fetcher's limits (ask, browse, eval); defaults are ToolSettings' (docs/security.md).
MaxPageBytes = Annotated[int, typer.Option(
    "--max-page-bytes", min=1, help="Largest page body, counted after decompression.")]
FetchTimeout = Annotated[float, typer.Option(
    "--fetch-timeout", min=0.1, help="Seconds for one page's whole download, redirects included.")]
ExtractTimeout = Annotated[float, typer.Option(
    "--extract-timeout", min=0.1, help="Seconds extracting one page may take (its worker "
    "process is killed past it).")]


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
