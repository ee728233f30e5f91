"""Errors and notices that reach the user as one line naming the problem and its fix."""


class UsageError(Exception):
    """Bad input from the user (an unknown game, a malformed option): shown as one line, exit 2."""


class Notice(UserWarning):
    """Something the user should know that does not stop the work (a skipped checkpoint, ignored
    custom code); the command line prints it as one line, `vlmrl: note: ...`."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (libraries' messages run over several), or its type."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
