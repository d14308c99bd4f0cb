"""Protocol cards: everything that decides an evaluation's numbers, saved as ``protocol.json``.

A card holds the model, prompt profile, decoding, tools (search provider, cache mode, reader), the
data (file digest and question ids), the judge (model and prompt digest), the seed and the package
version. It never holds secrets: URLs lose credentials and query strings, keys are named by their
environment variable only. Resuming a run under a different card is refused; ``eval compare`` lists
every difference between two cards.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from deepresearcher.errors import ConfigError, DataError

CARD_FILE = "protocol.json"
IDS_FILE = "question_ids.txt"
CARD_VERSION = 1
# Fields that describe the software, not the protocol: a difference is reported, never refused.
INFORMATIONAL = ("package_version",)


def flatten(card: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted.path, value)`` for every leaf of a card."""
    for key, value in card.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from flatten(value, path + ".")
        else:
            yield path, value


def diff_cards(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(field, value in a, value in b)`` for every field that differs (missing is None)."""
    fa, fb = dict(flatten(a)), dict(flatten(b))
    return [(k, fa.get(k), fb.get(k)) for k in sorted(fa.keys() | fb.keys()) if fa.get(k) != fb.get(k)]


def save_card(out: Path, card: Mapping[str, Any], ids: list[str]) -> None:
    """Write ``protocol.json`` and the question id list next to it (each atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(out / IDS_FILE, "".join(f"{i}\n" for i in ids))
    _atomic_write(out / CARD_FILE, json.dumps(card, indent=2, ensure_ascii=False) + "\n")


def load_card(run_dir: Path) -> dict[str, Any]:
    path = run_dir / CARD_FILE if run_dir.is_dir() else run_dir
    if not path.is_file():
        raise DataError(f"no {CARD_FILE} in {run_dir}",
                        hint="pass the --out directory of a `deepresearcher eval` run")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(card, dict):
        raise DataError(f"{path}: a protocol card is a JSON object")
    return card


def check_resume(existing: Mapping[str, Any], new: Mapping[str, Any], run_dir: Path) -> None:
    """Refuse to continue a run whose protocol differs from the one it started with."""
    diffs = [d for d in diff_cards(existing, new) if d[0] not in INFORMATIONAL]
    if not diffs:
        return
    shown = "; ".join(f"{k}: {_short(a)} -> {_short(b)}" for k, a, b in diffs[:6])
    more = f" (and {len(diffs) - 6} more)" if len(diffs) > 6 else ""
    raise ConfigError(
        f"{run_dir} holds a run with a different protocol: {shown}{more}",
        hint="resume with the same settings (see its protocol.json), or pass a new --out",
    )


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
