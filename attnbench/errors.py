"""Errors that reach a user: each says what was wrong, with what value, and what to do."""

from __future__ import annotations


class AttnbenchError(Exception):
    """Base of every error attnbench raises on purpose; the CLI prints it without a traceback."""


class UsageError(AttnbenchError):
    """A command-line option with a value the command cannot use (``--jobs 0``, ``--seeds ''``)."""


class UnknownNameError(AttnbenchError, LookupError):
    """A task, variant or profile name that nothing registered."""


class DuplicateNameError(AttnbenchError):
    """Two plugins registered one name."""


class PluginError(AttnbenchError):
    """A plugin broke the contract (bad hook, bad registration)."""


class InvalidNameError(PluginError):
    """A plugin registered a task or variant under a name that breaks the naming rule
    (:data:`attnbench.registry.NAME_RULE`)."""


class DataError(AttnbenchError):
    """A data directory or file is missing, corrupt or not in the expected format."""


class AttentionShapeError(AttnbenchError):
    """A variant's module returned something other than the forward contract promises."""


class DeviceError(AttnbenchError):
    """The requested device is not present on this machine."""


class StoreError(AttnbenchError):
    """The results store file cannot be used."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a batch scheduler), raised where Ctrl-C's KeyboardInterrupt
    would be so that a run stops the same way: workers stopped, finished rows kept; exit 143."""
