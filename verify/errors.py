"""The one error the user's input can cause."""
from __future__ import annotations


class UsageError(Exception):
    """Bad input from the user: the CLI prints its one-line message and exits with code 2."""
