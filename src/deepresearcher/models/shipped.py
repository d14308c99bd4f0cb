"""The pretrained tiny base model that ships with the package.

``deepresearcher model pretrain`` (``pretrain.py``) trains a tiny Qwen2 from scratch to copy names
it has never seen; one such run's ``final/`` ships in ``models/tiny_base/`` with its card
(``card.json``: the settings, world seeds, steps, tokens, time, the last probe and the sha256 of
every file). Nothing is downloaded: :func:`write_pretrained` copies it out and every load checks
the checksums first (:func:`verify`), so a truncated or altered file is an error naming the file,
never a model that silently behaves otherwise.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from deepresearcher.errors import ConfigError, DataError
from deepresearcher.eval.data import file_sha256

SHIPPED_DIR = Path(__file__).resolve().parent / "tiny_base"
CARD = "card.json"
README = "README.md"
MAX_CARD_BYTES = 1 << 20  # a card is a few KiB; a folder given by a user may hold anything


class ChecksumError(DataError):
    """A model file is missing or differs from the checksum its card records."""

    def __init__(self, message: str, *, path: Path, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path


def read_card(folder: Path | str = SHIPPED_DIR) -> dict[str, Any]:
    """The card of a pretrained base (``card.json`` in ``folder``), checked for its file list."""
    path = Path(folder) / CARD
    try:
        if path.stat().st_size > MAX_CARD_BYTES:
            raise ChecksumError(f"{path} is larger than a model card ({MAX_CARD_BYTES:,} bytes "
                                "at most)", path=path)
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ChecksumError(f"{path} is missing", path=path,
                            hint="a pretrained base is a folder written by `deepresearcher "
                            "model tiny --pretrained --out DIR`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ChecksumError(f"{path} is not a readable model card ({exc})", path=path) from None
    files = card.get("files") if isinstance(card, dict) else None
    if not isinstance(files, dict) or not files or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise ChecksumError(f"{path} lists no files with checksums", path=path)
    for name in files:
        if "/" in name or "\\" in name or name in ("", ".", "..") or name == CARD:
            raise ChecksumError(f"{path} names a file outside its folder: {name!r}", path=path)
    return card


def verify(folder: Path | str = SHIPPED_DIR) -> dict[str, Any]:
    """Check every file the card of ``folder`` lists against its sha256; return the card.

    Raises :class:`ChecksumError` naming the first file that is missing or differs."""
    folder = Path(folder)
    card = read_card(folder)
    for name, digest in sorted(card["files"].items()):
        path = folder / name
        if not path.is_file():
            raise ChecksumError(f"{path} is missing (its card lists it)", path=path)
        actual = file_sha256(path)
        if actual != digest:
            raise ChecksumError(
                f"{path} does not match its checksum (sha256 {actual[:12]}…, the card "
                f"records {digest[:12]}…)", path=path,
                hint="the file was altered or truncated: write the model out again with "
                "`deepresearcher model tiny --pretrained --out DIR`")
    return card


def write_pretrained(out: Path | str, source: Path | str = SHIPPED_DIR) -> dict[str, Any]:
    """Copy the pretrained base into ``out`` (a new or empty folder) and check the copy.

    The files are written aside and renamed into place, so ``out`` is either complete and
    verified or not there. Returns the card."""
    out, source = Path(out), Path(source)
    verify(source)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} exists and is not an empty folder",
                          hint="pass a new folder to --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    tmp.chmod(0o755)  # mkdtemp's folder is private; the model folder is an ordinary one
    try:
        for path in sorted(source.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                shutil.copyfile(path, tmp / path.name)
        card = verify(tmp)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return card


def ship(run: Path | str, dest: Path | str = SHIPPED_DIR) -> dict[str, Any]:
    """Make the result of a pretraining run (its ``final/`` and ``card.json``) the shipped base:
    how ``models/tiny_base/`` is made. The run's checksums are checked first."""
    run, dest = Path(run), Path(dest)
    run_card_path = run / CARD
    try:
        run_card = json.loads(run_card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{run} holds no finished pretraining ({exc})",
                          hint="run `deepresearcher model pretrain --out RUN` first") from None
    files = {name.removeprefix("final/"): digest
             for name, digest in run_card.get("files", {}).items()}
    card = {**run_card, "files": files}
    staged = Path(tempfile.mkdtemp(prefix=".ship-"))
    try:
        for name in files:
            shutil.copyfile(run / "final" / name, staged / name)
        (staged / CARD).write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
        verify(staged)
        (staged / README).write_text(render_card(card), encoding="utf-8")
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(staged, dest)
        dest.chmod(0o755)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return card


def _figure(probe: dict[str, Any], key: str) -> str:
    value = probe.get(key)
    return "–" if value is None else f"{value:.2f}"


def render_card(card: dict[str, Any]) -> str:
    """The card as a human-readable model card (Markdown)."""
    s = card["settings"]
    probe = card.get("probe") or {}
    worlds = card["worlds"]
    lines = [
        "# deepresearcher tiny base",
        "",
        f"A tiny Qwen2 ({card['parameters']:,} parameters: hidden {s['hidden_size']}, "
        f"{s['layers']} layers, {s['heads']} heads / {s['kv_heads']} KV heads; vocabulary "
        f"{card['vocab']:,}) pretrained from scratch, offline, by `deepresearcher model "
        "pretrain` (docs/pretraining.md) to copy names it has never seen and to write the "
        "agent's format. Not a language model of the real world: it knows only the fictional "
        "worlds it was trained on.",
        "",
        "## Data",
        "",
        f"- tokenizer: byte-level BPE ({s['vocab_size']:,}) over {len(worlds['tokenizer'])} "
        f"worlds (seeds {worlds['tokenizer'][0]:,}–{worlds['tokenizer'][-1]:,})",
        f"- training worlds: {len(worlds['training'])} of {s['entities']} entities (seeds "
        f"{worlds['training'][0]:,}–{worlds['training'][-1]:,}): their text and the scripted "
        f"expert's episodes on their {', '.join(s['question_types'])} questions "
        f"(styles {', '.join(s['expert_styles'])}), with random-token copy rows",
        f"- held-out probe world: seed {worlds['probe']:,} (never trained on)",
        "",
        "## Training",
        "",
        "| stage | steps | tokens | ended |",
        "|---|---|---|---|",
    ]
    for name, info in card["stages"].items():
        lines.append(f"| {name} | {info['steps']:,} | {info['tokens']:,} | "
                     f"{info['ended'] or 'not finished'} |")
    versions = card.get("versions", {})
    lines += [
        "",
        f"{card['steps']:,} steps, {card['tokens']:,} tokens, {card['seconds'] / 60:.0f} minutes "
        f"on {card['device']} (torch {versions.get('torch')}, transformers "
        f"{versions.get('transformers')}); stopped: {card['stopped']}.",
        "",
        "## Last probe (held-out world)",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    for key, label in (("name_copy_greedy", "fresh-name copies, greedy"),
                       ("query_greedy", "question → query copies, greedy"),
                       ("url_greedy", "result → browse URL copies, greedy"),
                       ("answer_greedy", "extract → answer copies, greedy"),
                       ("format_ok", "turns in the agent's format"),
                       ("action_exact", "turns equal to the expert's action"),
                       ("text_loss", "text loss")):
        lines.append(f"| {label} | {_figure(probe, key)} |")
    lines += ["", "## Files (sha256)", ""]
    lines += [f"- `{name}`: `{digest}`" for name, digest in sorted(card["files"].items())]
    return "\n".join(lines) + "\n"
