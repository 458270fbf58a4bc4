"""A whole run's configuration, where users look for it: ``from vaelab.config import load_config``.

The definitions live in :mod:`vaelab.training.run_config`, beside the training loop that consumes them,
so that no layer imports from one above it; this module re-exports them.
"""

from vaelab.errors import ConfigError
from vaelab.training.run_config import (
    RunConfig,
    apply_overrides,
    build_config,
    dump_config,
    load_config,
    parse_override,
    read_yaml,
    resolve_config,
)

__all__ = [
    "ConfigError",
    "RunConfig",
    "apply_overrides",
    "build_config",
    "dump_config",
    "load_config",
    "parse_override",
    "read_yaml",
    "resolve_config",
]
