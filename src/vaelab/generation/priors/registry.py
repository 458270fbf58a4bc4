"""The one registry of fitted priors, by kind, and the validation of their options."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from vaelab.errors import ConfigError
from vaelab.generation.priors.base import FittedPrior, PriorConfig
from vaelab.generation.priors.diffusion import DiffusionPrior
from vaelab.generation.priors.flow import FlowPrior
from vaelab.generation.priors.gmm import GMMPrior
from vaelab.generation.priors.two_stage import TwoStagePrior

PRIORS: dict[str, type[FittedPrior]] = {
    p.kind: p for p in (GMMPrior, FlowPrior, DiffusionPrior, TwoStagePrior)
}


def prior_config(kind: str, options: dict[str, Any] | PriorConfig | None = None) -> Any:
    """The validated config of a ``kind`` prior from ``options`` (a dict of its fields, or a config)."""
    if kind not in PRIORS:
        raise ConfigError(f"unknown prior {kind!r}: choose one of {', '.join(PRIORS)}")
    cls = PRIORS[kind].config_class
    if isinstance(options, cls):
        return options
    try:
        return cls.model_validate({"name": kind, **dict(options or {})})
    except ValidationError as exc:
        lines = [f"invalid {kind} prior options:"]
        for err in exc.errors():
            msg = "unknown option" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"  {'.'.join(map(str, err['loc']))}: {msg} (got {err.get('input')!r})")
        raise ConfigError("\n".join(lines)) from None
