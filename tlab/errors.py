"""Errors that tlab raises for bad input or an unusable environment.

Every error message says what went wrong *and what to do*. The CLI prints them as one line;
notebooks show them as a normal exception. All derive from :class:`TlabError` (a ``ValueError``
subclass, so code that validates arguments can catch either).
"""

from __future__ import annotations


class TlabError(ValueError):
    """Base class of all errors tlab raises on purpose."""


class UnknownNameError(TlabError):
    """A name (domain, model, strategy, preset, ...) that tlab does not know."""

    def __init__(self, kind: str, name: object, valid: list[str] | tuple[str, ...]) -> None:
        self.kind, self.name, self.valid = kind, name, tuple(valid)
        super().__init__(f"unknown {kind} {name!r}; choose one of: {', '.join(self.valid)}")


class DatasetUnavailableError(TlabError):
    """A real dataset is not on disk and cannot be downloaded (e.g. offline)."""


class CorruptZooEntryError(TlabError):
    """A cached model failed its integrity check (truncated, tampered, unreadable)."""


class DataFolderError(TlabError):
    """The data folder cannot be created or written."""


class WeightsUnavailableError(TlabError):
    """Pretrained weights are not on disk (tlab never downloads them) or cannot be read."""
