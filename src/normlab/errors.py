"""Errors a user can cause and fix.

Every ``NormlabError`` carries a one-line message that says what was wrong and what is allowed;
the CLI prints it without a traceback and exits with status 2.
"""

from __future__ import annotations


class NormlabError(Exception):
    """A user-facing error: bad input, a missing file, an unknown name."""


class UnknownNameError(NormlabError, KeyError):
    """A name that is not in a registry; the message lists the valid names."""

    def __init__(self, kind: str, name: str, valid: list[str] | tuple[str, ...]):
        self.kind, self.name, self.valid = kind, name, tuple(valid)
        super().__init__(f"unknown {kind} {name!r}; valid: {', '.join(self.valid)}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class DataUnavailableError(NormlabError):
    """A dataset file that can be neither found in the cache nor downloaded."""


def check_name(kind: str, name: str, valid) -> str:
    """Return ``name`` if it is in ``valid``, else raise ``UnknownNameError`` listing them."""
    if name not in valid:
        raise UnknownNameError(kind, name, sorted(valid))
    return name
