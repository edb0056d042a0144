"""Exit codes, named once (after httpie's ExitStatus)."""

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    ERROR = 1  # for batch grading: some rows invalid; for log verify: the chain is broken
    USAGE = 2  # bad option, unreadable file, no terminal for the interview
    INTERRUPTED = 130  # Ctrl-C or end of input in the interview: nothing saved
