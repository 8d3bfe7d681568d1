"""The two ways a command fails on purpose, told apart by their exit status."""

from __future__ import annotations


class UsageError(Exception):
    """A configuration the CLI refuses, with what to do instead (exit status 2)."""


class Failed(Exception):
    """An operation that could not be done as asked (exit status 1)."""
