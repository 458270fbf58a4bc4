"""The exception types for mistakes in what a user gave vaelab, at the bottom of the layers.

A ``UserError`` is raised where the input is checked (a config field, a data file, a saved model, a
checkpoint, a command-line argument); its message names the thing and the problem, and the CLI prints
it as one line with exit status 2. Anything else that escapes is a bug in vaelab and keeps its
traceback (exit status 1), so a bug never passes for a user's mistake.

Kinds that replace a built-in exception also derive from it (``UsageError`` is a ``ValueError``,
``MissingFileError`` a ``FileNotFoundError``, ...), so code written against the built-in still catches
them.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user gave (a file, a config, an argument) is wrong; the message says what and how
    to fix it."""


class ConfigError(UserError, ValueError):
    """A configuration file or override is invalid; the message names each bad field."""


class UsageError(UserError, ValueError):
    """An argument's value cannot be used (out of range, the wrong file suffix, a class the model does
    not have); the message names the argument, as the user spelled it where that is known."""


class DataError(UserError):
    """A dataset could not be found, read, verified or decoded, or does not suit the model or command it
    was given to; the message says which file or dataset and why."""


class ModelLoadError(UserError):
    """A saved model (or a file saved beside it) could not be loaded; the message names the file and the
    problem."""


class CheckpointError(UserError):
    """A checkpoint is missing, corrupt or not vaelab's; the message names the file."""


class MissingFileError(UserError, FileNotFoundError):
    """A file the user named, or one a command needs beside it, does not exist; the message says which
    command makes it."""


class OutputExistsError(UserError, FileExistsError):
    """An output the user named already exists and vaelab will not overwrite it; the message names the
    flag that allows it (``--force``, ``--resume``)."""


class SetupError(UserError, RuntimeError):
    """This installation or machine lacks what was asked for: an optional extra (the message gives the
    ``pip install`` line) or the device named by ``--device``."""


class DivergedError(UserError, RuntimeError):
    """Training diverged: every update of a long stretch was skipped, so the weights can no longer give a
    finite step.

    A user error, not a bug: the guard detected what the run's settings (learning rate, clipping,
    precision) led to, the last checkpoint is intact, and the remedy is a change of those settings,
    which the message names. A traceback into the update guard would only point at the detector.
    """
