"""Errors and notices that reach the user as one line naming the problem and its fix."""


class UsageError(Exception):
    """Bad input from the user (an unknown game, a malformed option): shown as one line, exit 2."""


class RankError(UsageError):
    """Bad input that only this rank of a distributed run meets (its GPU, its launcher's variables).
    Every other UsageError is the same on every rank, so the command line prints it on rank 0 alone;
    this one each rank prints itself."""


class RankFailure(Exception):
    """Another rank of a distributed run stopped answering (it died, or hangs): a collective timed out."""


class Notice(UserWarning):
    """Something the user should know that does not stop the work (a skipped checkpoint, ignored
    custom code); the command line prints it as one line, `vlmrl: note: ...`."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (libraries' messages run over several), or its type."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
