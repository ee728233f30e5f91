"""Errors that reach the user as one line naming the problem and its fix."""


class UsageError(Exception):
    """Bad input from the user (an unknown game, a malformed option): shown as one line, exit 2."""
