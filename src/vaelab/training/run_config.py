"""A whole run's configuration: data, model, objective and training, from YAML plus overrides.

Every section is a frozen pydantic model; unknown keys and bad values raise ``ConfigError`` with one
line per problem naming the field, what was given and what is allowed.

It lives in ``training`` because a run is what the training loop consumes: it composes the sections
of the layers below (data, models, objectives) and nothing here imports from above, so the layers
point one way. ``vaelab.config`` re-exports it for users.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vaelab.data.config import DataConfig
from vaelab.errors import ConfigError
from vaelab.models.config import ModelConfig
from vaelab.objectives import ELBOConfig, ObjectiveConfig
from vaelab.training.config import TrainConfig


class RunConfig(BaseModel):
    """Everything that defines a training run; saved resolved in each run directory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    objective: ObjectiveConfig = Field(default_factory=ELBOConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="after")
    def _annealing_needs_a_kl_term(self) -> RunConfig:
        if self.objective.name == "iwae" and self.train.kl_anneal != "none":
            raise ValueError(
                "train.kl_anneal weights the ELBO's KL term, which the IWAE bound does not have: "
                "set train.kl_anneal=none or objective.name=elbo"
            )
        if self.objective.name == "tcvae" and self.model.prior.name != "standard_normal":
            raise ValueError(
                "the beta-TCVAE objective decomposes the KL against N(0, I): set "
                "model.prior.name=standard_normal or objective.name=elbo"
            )
        return self


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "<root>"
        given = err.get("input")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see configs/ for valid keys)"
        lines.append(f"  {field}: {msg} (got {given!r})")
    return "\n".join(lines)


def parse_override(item: str) -> tuple[list[str], Any]:
    """``train.lr=3e-4`` -> (["train", "lr"], 0.0003). Values are read as YAML (numbers, lists, ...)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.key=value, e.g. train.lr=3e-4")
    key, _, raw = item.partition("=")
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: value is not valid YAML: {exc}") from None
    return path, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set nested keys of a plain config dict from ``key.sub=value`` strings (returns a new dict).

    Setting a part's ``name`` to a different part (``model.encoder.name=conv``) resets that part's
    options to the new part's defaults; options given after it then apply to the new part.
    """
    out = _deep_copy(data)
    for item in overrides:
        path, value = parse_override(item)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is a value, not a section")
            node = child
        if path[-1] == "name" and len(path) > 1 and node.get("name") not in (None, value):
            node.clear()
        node[path[-1]] = value
    return out


def _deep_copy(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in data.items()}


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping (safe loader: YAML tags never construct Python objects)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def build_config(data: dict[str, Any], source: str = "config") -> RunConfig:
    """Validate a plain dict into a ``RunConfig`` or raise ``ConfigError`` naming every bad field."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


def resolve_config(data: dict[str, Any], overrides: list[str], source: str = "config") -> RunConfig:
    """Validate ``data``, then apply ``overrides`` on the fully resolved config (so a part section the
    file left out still has its ``name``) and validate again."""
    config = build_config(data, source)
    if not overrides:
        return config
    return build_config(apply_overrides(config.model_dump(mode="json"), overrides), f"{source} + overrides")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """A ``RunConfig`` from an optional YAML file with ``key=value`` overrides applied on top."""
    data = read_yaml(path) if path is not None else {}
    return resolve_config(data, list(overrides or []), str(path) if path is not None else "defaults")


def dump_config(config: RunConfig) -> str:
    """YAML text of a resolved config, in the same shape ``load_config`` reads."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
