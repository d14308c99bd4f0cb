"""Prompt profiles: render prompts, parse turns, format observations. Pure: no I/O."""

from __future__ import annotations

from deepresearcher.errors import ConfigError
from deepresearcher.protocol.base import (
    Action,
    Answer,
    FormatError,
    ProfileSettings,
    PromptProfile,
    RenderedPrompt,
    ToolCall,
)

PROFILES = ("deepresearcher-7b", "native-tools", "compact")


def get_profile(name: str, settings: ProfileSettings) -> PromptProfile:
    """The profile called ``name``."""
    if name == "deepresearcher-7b":
        from deepresearcher.protocol.deepresearcher7b import DeepResearcher7BProfile

        return DeepResearcher7BProfile(settings)
    if name == "native-tools":
        from deepresearcher.protocol.native import NativeToolsProfile

        return NativeToolsProfile(settings)
    if name == "compact":
        from deepresearcher.protocol.compact import CompactProfile

        return CompactProfile(settings)
    raise ConfigError(f"unknown prompt profile {name!r}", hint=f"choose one of: {', '.join(PROFILES)}")


__all__ = [
    "PROFILES",
    "Action",
    "Answer",
    "FormatError",
    "ProfileSettings",
    "PromptProfile",
    "RenderedPrompt",
    "ToolCall",
    "get_profile",
]
