"""Training recipes: YAML files validated by pydantic, overridable with ``key.path=value``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from deepresearcher.agent.config import AgentConfig
from deepresearcher.errors import ConfigError

BUILTIN = ("deepresearcher-7b-paper", "quickstart-cpu")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolsConfig(_Strict):
    """Where the agent searches and reads during training: a local index or world, or a web search
    provider (``serper``, ``tavily``, ``brave``, ``searxng``, ``ddgs``, or a chain like
    ``serper,searxng``) browsed with the web fetcher. At scale, give every rollout worker the same
    ``cache`` file: a GRPO group's identical queries then cost one upstream call.
    API keys are never recipe values: they come from the environment (``SERPER_API_KEY`` ...)."""

    search: str = "local"
    world: Path | None = Field(default=None, description="A world directory (index + pages).")
    index: Path | None = None
    pages: Path | None = None
    k: int = Field(default=10, ge=1, le=100)
    chunk_chars: int = Field(default=8000, ge=200)
    concurrency: int = Field(default=64, ge=1)
    endpoint: str | None = Field(default=None, description="The web provider's API URL.")
    region: str | None = None
    language: str | None = None
    search_qps: float | None = Field(default=None, gt=0, description=(
        "Requests per second to the web search provider, per training process (divide the "
        "plan's limit by the processes); none: no cap."))
    search_concurrency: int | None = Field(default=None, ge=1, description=(
        "Web search requests in flight, per training process; none: the provider's default (8)."))
    cache: Path | None = Field(default=None, description="The shared SQLite tool cache.")
    cache_mode: Literal["off", "read-write", "replay"] = "read-write"
    reader: Literal["extractive", "llm"] = "extractive"
    reader_model: str | None = None
    reader_base_url: str | None = None
    reader_api_key_env: str = "OPENAI_API_KEY"
    reader_max_chunks: int = Field(default=4, ge=1)
    reader_concurrency: int = Field(default=32, ge=1, description=(
        "LLM reader calls in flight at once, per training process."))
    extract_max_chunks: int = Field(default=8, ge=1, description="Extractive reader: chunks "
                                    "read per browse of a URL.")
    extract_chars: int = Field(default=1200, ge=50, description="Extractive reader: "
                               "characters per extract.")
    allow_hosts: list[str] = Field(default_factory=list)
    allow_private: bool = False
    # The web's limits (docs/security.md): pages are untrusted input.
    max_page_bytes: int = Field(default=8 * 1024 * 1024, ge=1, description=(
        "Largest page body, counted after decompression."))
    fetch_timeout_s: float = Field(default=30.0, gt=0, description=(
        "Seconds for one page's whole download, redirects included."))
    max_redirects: int = Field(default=5, ge=0)
    extract_timeout_s: float = Field(default=20.0, gt=0, description=(
        "Seconds extracting one page may take; its worker process is killed past it."))
    search_timeout_s: float | None = Field(default=None, gt=0, description=(
        "Seconds for one web search request; none: the provider's default (15 s)."))

    @model_validator(mode="after")
    def _needs_a_source(self) -> ToolsConfig:
        from deepresearcher.agent.build import web_providers

        try:
            web = web_providers(self.search)
        except ConfigError as exc:
            raise ValueError(f"{exc} ({exc.hint})") from None
        if not web and self.world is None and self.index is None:
            raise ValueError("set tools.world (a world directory) or tools.index")
        if self.reader == "llm" and not (self.reader_model and self.reader_base_url):
            raise ValueError("tools.reader=llm needs tools.reader_model and tools.reader_base_url")
        return self


class DataConfig(_Strict):
    """Questions in the paper's parquet format (``prompt``, ``reward_model.ground_truth``, ...)."""

    train: Path
    dev: Path | None = None
    max_train: int | None = Field(default=None, ge=1)
    max_dev: int | None = Field(default=None, ge=1)


class GRPOSettings(_Strict):
    """The RL recipe. Defaults are the paper's."""

    questions_per_step: int = Field(default=256, ge=1)
    rollouts_per_question: int = Field(default=16, ge=2)
    per_device_batch: int | None = Field(
        default=None, ge=1,
        description="Completions per forward/backward micro-batch; None = the whole step at once.")
    learning_rate: float = Field(default=1e-6, gt=0)
    lr_scheduler: Literal["constant", "cosine", "linear"] = "constant"
    warmup_steps: int = Field(default=0, ge=0)
    clip: float = Field(default=0.2, gt=0)
    clip_high: float | None = Field(default=None, gt=0, description="DAPO's upper clip.")
    kl_beta: float = Field(default=0.001, ge=0)
    entropy_coef: float = Field(default=0.001, ge=0)
    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo"] = "grpo"
    scale_rewards: Literal["group", "batch", "none"] = "group"
    reward: str = "paper"
    max_steps: int = Field(default=-1, description="-1: run for `epochs`.")
    epochs: float = Field(default=1.0, gt=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    mask_truncated_completions: bool = False


class RunConfig(_Strict):
    """Where and how a run is saved and logged."""

    output_dir: Path = Path("runs/grpo")
    seed: int = 0
    save_every: int = Field(default=10, ge=1, description="Optimizer steps between checkpoints.")
    save_total_limit: int | None = Field(default=3, ge=1)
    eval_every: int | None = Field(default=None, ge=1)
    eval_temperature: float | None = Field(
        default=None, ge=0,
        description="Decoding of the dev-set validation: None = the training temperature (as "
        "the original, which sampled at 1.0), 0 = greedy.")
    log_every: int = Field(default=1, ge=1)
    report_to: list[Literal["tensorboard", "wandb"]] = Field(
        default_factory=lambda: list[Literal["tensorboard", "wandb"]](["tensorboard"]))
    save_trajectories: bool = True


class BackendConfig(_Strict):
    """Hardware and the generation engine."""

    device: Literal["cpu", "cuda", "auto"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    gradient_checkpointing: bool = False
    use_vllm: bool = False
    vllm_mode: Literal["colocate", "server"] = "colocate"
    vllm_server_base_url: str | None = None
    vllm_gpu_memory_utilization: float = Field(default=0.3, gt=0, le=1)
    vllm_tensor_parallel_size: int = Field(default=1, ge=1)
    vllm_importance_sampling: Literal[
        "token_truncate", "token_mask", "sequence_truncate", "sequence_mask", "none"
    ] = Field(default="token_truncate", description=(
        "Correction for the gap between vLLM's sampling log-probs and the trainer's "
        "(TRL's modes; none: no correction)."))
    vllm_importance_sampling_cap: float = Field(default=3.0, gt=0, description=(
        "Upper bound of the importance weight (truncated, or masked above it)."))
    generation_batch: int = Field(default=64, ge=1,
                                  description="Most concurrent sequences per HF generate call.")


class Recipe(_Strict):
    """A whole training run."""

    name: str = "custom"
    model: str
    tools: ToolsConfig
    data: DataConfig
    agent: AgentConfig = Field(default_factory=AgentConfig)
    grpo: GRPOSettings = Field(default_factory=GRPOSettings)
    run: RunConfig = Field(default_factory=RunConfig)
    backend: BackendConfig = Field(default_factory=BackendConfig)

    @model_validator(mode="after")
    def _independent_rollouts(self) -> Recipe:
        if self.agent.seed is not None:
            raise ValueError(
                "agent.seed must stay unset for training: a seed per generate call makes the "
                "rollouts of a GRPO group sample the same tokens (vLLM seeds each request); "
                "run.seed seeds the run")
        if (self.backend.use_vllm and self.backend.vllm_mode == "colocate"
                and self.backend.vllm_tensor_parallel_size > 1):
            raise ValueError(
                "backend.vllm_tensor_parallel_size > 1 needs vllm_mode=server: a colocated "
                "engine split over several processes generates only when they all call it "
                "together, and multi-turn rollouts call it independently")
        return self


def builtin_path(name: str) -> Path:
    """The YAML file of a recipe shipped with the package."""
    return Path(str(resources.files("deepresearcher.train") / "recipes" / f"{name}.yaml"))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``grpo.learning_rate=1e-5`` -> (["grpo", "learning_rate"], 1e-5) with YAML typing."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not KEY=VALUE",
                          hint="e.g. grpo.learning_rate=1e-5 agent.max_turns=4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    return [part for part in key.strip().split(".")], value


def load_recipe(source: str | Path, overrides: list[str] | None = None) -> Recipe:
    """A recipe from a YAML file or a built-in name, with overrides applied, fully validated.

    Every problem (unknown key, wrong type, out-of-range value) is a :class:`ConfigError` raised
    here, before any work starts. Relative paths in a recipe file are taken from the file's folder (from the current
    directory for a built-in recipe).
    """
    path = Path(source)
    builtin = False
    if not path.is_file():
        if str(source) in BUILTIN:
            path, builtin = builtin_path(str(source)), True
        else:
            raise ConfigError(f"no recipe file {str(source)!r}",
                              hint=f"pass a YAML file or a built-in recipe: {', '.join(BUILTIN)}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start + 1}); a recipe is a YAML "
                          "file") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(exc)})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of settings")
    # A user's file names paths from its own folder; a built-in recipe from where the user runs.
    _resolve_paths(data, Path.cwd() if builtin else path.parent)
    for text in overrides or []:
        keys, value = parse_override(text)
        node = data
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {key!r} is not a section")
            node = child
        node[keys[-1]] = value
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid recipe {path.name}:\n{_errors(exc)}",
                          hint="see docs/training.md for every setting") from exc


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where (PyYAML's own text spans lines)."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem is None:
        return " ".join(str(exc).split())
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    for section, keys in (("tools", ("world", "index", "pages", "cache")), ("data", ("train", "dev")),
                          ("run", ("output_dir",))):
        block = data.get(section)
        if isinstance(block, dict):
            for key in keys:
                value = block.get(key)
                if isinstance(value, str) and value and not Path(value).is_absolute():
                    block[key] = str((base / value).resolve())


def _errors(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(recipe)"
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


def dump_recipe(recipe: Recipe) -> str:
    """The recipe as YAML (what a run saves next to its checkpoints)."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
