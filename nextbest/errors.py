"""Specific exceptions that the CLI and HTTP edges turn into clear messages (never tracebacks)."""

from __future__ import annotations


class NextbestError(Exception):
    """Base class: the message says what was wrong and what to do."""


class ConfigError(NextbestError):
    """Configuration is invalid or points at something missing."""


class DataError(NextbestError):
    """Input data is missing, malformed or inconsistent with the data contract."""


class NotReadyError(NextbestError):
    """A prerequisite step has not run yet (e.g. no world simulated, no champion registered)."""
