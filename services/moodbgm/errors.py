"""Domain errors. Entry points map them: ``InputError`` -> exit 2 / HTTP 4xx (never retried),
``TransientError`` -> retried by workers, anything else -> exit 1 / HTTP 500."""

from __future__ import annotations


class MoodbgmError(Exception):
    """Base of every error this package raises on purpose."""


class InputError(MoodbgmError):
    """The user's input or request is unusable; retrying will not help."""


class MediaError(InputError):
    """A media file could not be used. ``stderr`` holds ffmpeg's own words, when it spoke."""

    def __init__(self, message: str, path: str = "", stderr: str = "") -> None:
        self.path = path
        self.stderr = stderr.strip()
        detail = _tail(self.stderr)
        super().__init__(f"{message}" + (f" (ffmpeg: {detail})" if detail else ""))


class NotMediaError(MediaError):
    """Not a media file at all (random bytes, a text file...)."""


class TruncatedMediaError(MediaError):
    """A media container that ends early or is damaged."""


class EmptyMediaError(MediaError):
    """Zero bytes or zero duration."""


class NoVideoStreamError(MediaError):
    """A file with no video stream where a video is needed."""


class ModelNotFoundError(InputError):
    """Model weights are not where the settings say; the message says how to get them."""


class CancelledError(MoodbgmError):
    """The job was cancelled while it ran."""


class TransientError(MoodbgmError):
    """A temporary failure (a service not reachable...); a retry may succeed."""


def _tail(text: str, lines: int = 3) -> str:
    """The last meaningful lines of ffmpeg's stderr, joined into one line."""
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(kept[-lines:])


class JobGoneError(MoodbgmError):
    """The job was deleted while (or before) its stage ran; nothing is left to do."""


class StageTimeoutError(MoodbgmError):
    """A stage ran past its time limit (``limit_s`` seconds)."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        super().__init__(f"over {limit_s:g} s")
