"""deepresearcher: run, evaluate and train deep-research agents.

The Python API (docs/api.md) is these few names, imported on first use so that ``import
deepresearcher`` stays light::

    from deepresearcher import Researcher, load_trajectories
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("deepresearcher")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

if TYPE_CHECKING:
    from deepresearcher.agent.build import ToolSettings
    from deepresearcher.agent.config import AgentConfig
    from deepresearcher.agent.loop import Event, Task
    from deepresearcher.agent.trajectory import Trajectory
    from deepresearcher.api import Evaluation, Researcher, load_trajectories

# name -> the module that defines it
_LAZY = {
    "Researcher": "deepresearcher.api",
    "Evaluation": "deepresearcher.api",
    "load_trajectories": "deepresearcher.api",
    "Event": "deepresearcher.agent.loop",
    "Task": "deepresearcher.agent.loop",
    "Trajectory": "deepresearcher.agent.trajectory",
    "AgentConfig": "deepresearcher.agent.config",
    "ToolSettings": "deepresearcher.agent.build",
}

__all__ = ["AgentConfig", "Evaluation", "Event", "Researcher", "Task", "ToolSettings",
           "Trajectory", "__version__", "load_trajectories"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'deepresearcher' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # the next access skips this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
