"""The one error type of hashret.

Every expected failure (bad input, missing file, mismatched model) raises :class:`HashretError`
with a message that says what was wrong and what to do about it. The CLI turns it into a single
``Error: ...`` line on stderr and exit status 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class HashretError(Exception):
    """An expected failure with a message meant for the user."""


class DataError(HashretError):
    """A dataset is missing, malformed or holds unreadable images."""


class FormatError(HashretError):
    """A code file, index or checkpoint is not in the expected format."""
