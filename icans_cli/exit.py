"""Exit codes, named once (after httpie's ExitStatus). The README lists them."""

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    ERROR = 1  # batch grading: some rows invalid; log verify: the chain is broken; not found
    USAGE = 2  # bad option or input that cannot be used, no terminal for the interview
    WRITE_FAILED = 3  # the log or the output could not be written (disk full, size limit...)
    INTERRUPTED = 130  # Ctrl-C or Ctrl-D: nothing more was done (SIGTERM 143, SIGHUP 129)
    PIPE = 141  # the reader of the output went away (e.g. | head): stopped there


class Stopped(Exception):
    """SIGTERM or SIGHUP arrived during a run that writes (a batch, an export): stop, clean
    up, say what was done; the exit status is 128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signum)
