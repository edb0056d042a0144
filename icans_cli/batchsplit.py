"""`icans grade` on two processors: the second half of a large plain CSV file graded by a
second process while this one grades the first half.

Safe by construction:
- Only a file whose every line ends at "\\n" (no quote anywhere, so no row spans lines; no lone
  carriage return, so lines are counted by "\\n") is split, at a line end, so each half holds
  whole rows and the halves' rows are the file's rows in order.
- The second process writes only into an unlinked temporary file (mode 0600, never visible,
  gone with the processes however they end) and a pipe; it ends with os._exit, so it never
  flushes anything of this process nor runs its clean-up. This process writes the output.
- Whatever goes wrong in the second process (it cannot be made, an exception, a signal, a line
  too long, a full disk, a kill), this process grades the second half itself, numbered
  exactly, after freeing the second's file: the output is the same as from one process. A
  property test holds it so.
- The input is read through the descriptor opened at the start, with pread: a file renamed,
  replaced or deleted while it is graded is read as the one opened, as by one process.
"""

from __future__ import annotations

import io
import json
import os
import signal
import tempfile
from dataclasses import dataclass
from typing import IO, Any, Callable

MIN_BYTES = 4_000_000  # a smaller file is graded by one process (a second costs ~0.1 s)
ROOM = 4  # free space asked, in input sizes (the output can be twice the input, and the
# second half's temporary copy of it is there until it is copied)
_SCAN = 1 << 20
_COPY = 1 << 16


@dataclass
class Plan:
    split: int  # the byte offset of the first row of the second half (just after a "\n")
    lines_before: int  # the lines before it (the header's included)


def processors() -> int:
    try:
        return len(os.sched_getaffinity(0))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def plan(fd: int, size: int, read_so_far: int, room: str | None) -> Plan | None:
    """Where to split the file open on `fd` (read with pread: never by its name again, so a
    file renamed or replaced while it is graded is read as the one opened; never moving the
    descriptor's offset), or None when it must be graded by one process: too small, a quote or
    a lone carriage return anywhere, no line end past what is read already, or too little free
    space in `room` (the folder of the second half's temporary file) for it beside the output."""
    import threading

    if size < MIN_BYTES or not hasattr(os, "fork") or not hasattr(signal, "pthread_sigmask") \
            or threading.active_count() > 1:
        return None  # never forked beside a thread (its locks would be copied held)
    try:
        st = os.statvfs(room or tempfile.gettempdir())
        if st.f_bavail * st.f_frsize < ROOM * size:
            return None  # the output and the second half's copy of it might not both fit
        probe = os.pread(fd, _SCAN, size // 2)
        i = probe.find(b"\n")
        if i < 0:
            return None
        split = size // 2 + i + 1
        if split >= size or split <= read_so_far:
            return None
        lines, pos, last = 0, 0, b""
        while True:
            chunk = os.pread(fd, _SCAN, pos)
            if not chunk:
                break
            if b'"' in chunk:
                return None
            cr = chunk.count(b"\r")
            if cr and cr != chunk.count(b"\r\n") + (chunk[-1:] == b"\r"):
                return None  # a lone carriage return ends a line too
            if last == b"\r" and chunk[:1] != b"\n":
                return None
            if pos < split:
                lines += chunk.count(b"\n", 0, split - pos)
            pos += len(chunk)
            last = chunk[-1:]
        if last == b"\r" or pos != size:
            return None
    except (OSError, AttributeError):
        return None
    return Plan(split, lines)


class PRead:
    """The input from a byte offset to its end, read with pread on the descriptor opened at
    the start (the same file however it is renamed; the descriptor's offset, shared with the
    other process after a fork, is never moved)."""

    def __init__(self, fd: int, start: int) -> None:
        self.fd, self.pos = fd, start

    def read1(self, n: int = -1) -> bytes:
        data = os.pread(self.fd, n if n > 0 else _SCAN, self.pos)
        self.pos += len(data)
        return data

    read = read1


class Upto:
    """The input, read no further than `end` once it is set (set before reading reaches it)."""

    def __init__(self, binary: IO[bytes]) -> None:
        self.binary = binary
        self.end: int | None = None

    def read1(self, n: int = -1) -> bytes:
        if self.end is not None:
            left = self.end - self.binary.tell()
            if left <= 0:
                return b""
            n = left if n < 0 else min(n, left)
        read = getattr(self.binary, "read1", self.binary.read)
        return read(n)

    read = read1

    def tell(self) -> int:
        return self.binary.tell()


class Second:
    """The second process: it grades with `work(out)` (out: a text file to write the CSV rows
    into; work returns what this process must know: counts, rows, the first invalid row) and
    ends. `result()` waits for it: its result, or None when it did not finish cleanly (this
    process then grades the second half itself). `close()` ends it, whatever its state."""

    _SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, n))

    def __init__(self, work: Callable[[IO[str]], dict[str, Any]], directory: str | None) -> None:
        self.work, self.directory = work, directory
        self.pid: int | None = None
        self.tmp: Any = None
        self.rfd: int | None = None

    def start(self) -> None:
        """Fork. Raises OSError when it cannot (no process, no file, no descriptor left): the
        caller then grades the second half itself. The signals that stop a run are held
        while forking: the second process takes their default action (it never runs this
        process's handlers, so it never cleans up this process's files), and this process has
        the second's pid before one can stop it."""
        self.tmp = tempfile.TemporaryFile(dir=self.directory)  # unlinked: never left behind
        self.rfd, wfd = os.pipe()
        held = signal.pthread_sigmask(signal.SIG_BLOCK, self._SIGNALS)
        try:
            self.pid = os.fork()
            if self.pid == 0:  # the second process: nothing of this one's is flushed or cleaned
                code = 1
                try:
                    for s in self._SIGNALS:
                        signal.signal(s, signal.SIG_DFL)
                    signal.pthread_sigmask(signal.SIG_SETMASK, held)
                    os.close(self.rfd)
                    out = io.TextIOWrapper(io.BufferedWriter(io.FileIO(
                        self.tmp.fileno(), "w", closefd=False), 1 << 20), encoding="utf-8",
                        errors="surrogateescape", newline="")
                    said = self.work(out)
                    out.flush()
                    data = json.dumps(said).encode()
                    while data:
                        data = data[os.write(wfd, data):]
                    code = 0
                except BaseException:  # noqa: BLE001 - any failure: the first process redoes it
                    pass
                finally:
                    os._exit(code)
        finally:
            if self.pid != 0:
                os.close(wfd)
                signal.pthread_sigmask(signal.SIG_SETMASK, held)

    def result(self) -> dict[str, Any] | None:
        chunks = []
        while True:
            data = os.read(self.rfd, 65536)  # type: ignore[arg-type]
            if not data:
                break
            chunks.append(data)
        pid, self.pid = self.pid, None
        _, status = os.waitpid(pid, 0)  # type: ignore[arg-type]
        if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            return None
        try:
            said = json.loads(b"".join(chunks))
        except ValueError:
            return None
        return said if isinstance(said, dict) else None

    def copy_to(self, write: Callable[[str], Any]) -> None:
        """The second process's rows, as text, written on."""
        import codecs

        decode = codecs.getincrementaldecoder("utf-8")("surrogateescape").decode
        self.tmp.seek(0)
        while True:
            data = self.tmp.read(_COPY)  # small pieces: the copy adds little to the peak
            text = decode(data, not data)
            if text:
                write(text)
            if not data:
                return

    def close(self) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                os.waitpid(self.pid, 0)
            except OSError:
                pass
            self.pid = None
        if self.rfd is not None:
            try:
                os.close(self.rfd)
            except OSError:
                pass
            self.rfd = None
        if self.tmp is not None:
            try:
                self.tmp.close()  # unlinked already: its space is freed now
            except OSError:
                pass
            self.tmp = None
