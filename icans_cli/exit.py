"""Exit codes, named once (after httpie's ExitStatus). The README lists them."""

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    ERROR = 1  # batch grading: some rows invalid; log verify: the chain is broken; not found
    USAGE = 2  # bad option or input that cannot be used, no terminal for the interview
    LOG_WRITE = 3  # the log could not be written (disk full, file-size limit, permissions)
    INTERRUPTED = 130  # Ctrl-C, Ctrl-D or a closed pipe: nothing more was done
