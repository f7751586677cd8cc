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


class ArtefactError(NotReadyError):
    """A registered model version cannot be served: its artefact was refused or does not load.

    Carries `model` and `version` so a serving engine can keep the version it serves and say which one it refused.
    """

    def __init__(self, message: str, *, model: str | None = None, version: str | None = None) -> None:
        super().__init__(message)
        self.model = model
        self.version = version


class ArtefactIntegrityError(ArtefactError):
    """The downloaded model files differ from the digest recorded at registration, or none was recorded."""


class ArtefactCorruptError(ArtefactError):
    """The model folder does not load: a corrupt booster, an unreadable calibrator or model info, missing files."""


class OverloadedError(NextbestError):
    """The service cannot take this request now without queueing it into a timeout: retry shortly (HTTP 429)."""
