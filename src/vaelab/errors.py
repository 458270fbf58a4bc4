"""The exception types for mistakes in what a user gave vaelab, at the bottom of the layers.

A ``UserError`` is raised where the input is checked (a config field, a data file, a saved model, a
checkpoint); its message names the thing and the problem, and the CLI prints it as one line with exit
status 2. Anything else that escapes is a bug in vaelab and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user gave (a file, a config, an argument) is wrong; the message says what and how
    to fix it."""


class ConfigError(UserError, ValueError):
    """A configuration file or override is invalid; the message names each bad field."""


class DataError(UserError):
    """A dataset could not be found, read, verified or decoded; the message says which file and why."""


class ModelLoadError(UserError):
    """A saved model could not be loaded; the message names the file and the problem."""


class CheckpointError(UserError):
    """A checkpoint is missing, corrupt or not vaelab's; the message names the file."""
