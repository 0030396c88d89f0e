"""Exception classes: every user-facing error is a VsimError with a one-line message."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "FioFormatError",
    "ProfileError",
    "UnavailableError",
    "VsimError",
]


class VsimError(Exception):
    """Base class: a problem with the user's input or environment, reported as one line."""


class ConfigError(VsimError, ValueError):
    """An invalid workload, design or scenario parameter."""


class ProfileError(VsimError, ValueError):
    """A profile that cannot be found or does not follow the schema (the message names the key)."""


class FioFormatError(VsimError, ValueError):
    """A fio JSON file that cannot be read or lacks the keys vsim needs."""


class UnavailableError(VsimError, RuntimeError):
    """A facility the machine lacks (O_DIRECT, Linux AIO, io_uring, fio), with the reason."""
