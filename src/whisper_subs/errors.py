"""One exception tree for every failure a user can meet.

Messages say what happened, the value seen and what to do. Foreign exceptions are translated
where they enter (``raise MediaError(...) from exc``); the CLI and the HTTP API map these
classes to exit codes and status codes in one place each.
"""

from __future__ import annotations


class WhisperSubsError(Exception):
    """Root of every error whisper-subs raises on purpose."""


class UsageError(WhisperSubsError):
    """A bad option or argument (CLI exit code 2, HTTP 400/422)."""


class MediaError(WhisperSubsError):
    """The input is missing, empty, not media, or cannot be decoded."""


class ModelNotFoundError(WhisperSubsError):
    """The model name or folder cannot be resolved to CTranslate2 Whisper weights."""


class DeviceError(WhisperSubsError):
    """No usable device for the requested configuration."""


class OutOfMemoryError(WhisperSubsError):
    """A device ran out of memory while transcribing a chunk."""


class ChunkFailedError(WhisperSubsError):
    """A chunk failed on every attempt it was given."""

    def __init__(self, message: str, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts


class JobNotFoundError(WhisperSubsError):
    """No job has the given id."""


class InvalidTransitionError(WhisperSubsError):
    """A job cannot move from its current status to the requested one."""


class DownloadError(WhisperSubsError):
    """A URL could not be fetched."""


class JobNotFinishedError(WhisperSubsError):
    """A job's outputs were asked for before the job was done (HTTP 409)."""


class OutputNotFoundError(WhisperSubsError):
    """A finished job has no output in the requested format (HTTP 404)."""


class PayloadTooLargeError(WhisperSubsError):
    """An upload is larger than the server accepts (HTTP 413)."""


class AuthenticationError(WhisperSubsError):
    """A request lacks the API key the server requires, or gives a wrong one (HTTP 401)."""
