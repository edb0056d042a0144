"""The assessment log: append-only JSON Lines, tamper-evident, safe with concurrent writers.

One owner of the file format. Each line is one record, UTF-8, ``\\n``-terminated, never
rewritten. A record carries ``seq`` (1, 2, 3...), ``prev_sha256`` (the SHA-256 of the previous
line's bytes, "" for the first) and, as its last key, ``sha256``: the SHA-256 of the line's own
JSON without that key. Editing, deleting, inserting or reordering a line before the last one
checked is therefore detectable by :func:`verify`. What a chain cannot show: a tail cut off
(the remaining lines still chain), or a log rewritten whole by someone who can write it. For
those, :func:`head` gives ``SEQ:HASH`` of the last record, to keep elsewhere; ``verify(...,
head=...)`` then proves that the log still holds that record, unchanged, and all before it.

Appending: the whole line is serialised first, then written with a single ``os.write`` on a
descriptor opened ``O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW`` (mode 0600), under an exclusive
lock, then ``fsync``. If the file ends in a torn line (a crash mid-write), the new record starts
on a fresh line and never glues onto the fragment. The lock and the positional reads have one
implementation per platform (``fcntl`` on POSIX, ``msvcrt`` on Windows), imported only when
used, so the module imports everywhere.

Readers refuse a log that is not a regular file (a FIFO would hang them) and stream: memory
stays flat however long the log is.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
import sys
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

SCHEMA_VERSION = 1
LOG_FILENAME = "assessments.jsonl"
PRACTICE_FILENAME = "practice.jsonl"
_HASH_KEY = b',"sha256":"'
_TAIL_CHUNK = 65536
_ROW_SHA = re.compile(rb'"source_row_sha256":"([0-9a-f]{64})"')
WINDOWS = sys.platform == "win32"


class LogError(Exception):
    """A problem with the log file. Messages never carry a patient identifier."""


@dataclass(frozen=True)
class Problem:
    line: int
    kind: str  # torn | unparseable | edited | missing | out_of_order | broken_chain | head
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


@dataclass(frozen=True)
class Head:
    """The last record of a log: its sequence number and the SHA-256 of its line."""

    seq: int
    sha256: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.sha256}"

    @classmethod
    def parse(cls, text: str) -> "Head":
        seq, sep, digest = text.strip().partition(":")
        if not sep or not seq.isdigit() or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError("expected SEQ:HASH, as icans log head prints it (e.g. "
                             "42:3f5a...)")
        return cls(int(seq), digest)


@dataclass(frozen=True)
class Verified:
    records: int
    problems: list[Problem]
    head: Head | None  # the last intact record's, when the chain is intact


def data_dir() -> Path:
    env = os.environ.get("ICANS_DATA_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("icans", appauthor=False))


def resolve_path(log_file: Path | str | None = None) -> Path:
    """--log-file, else $ICANS_DATA_DIR/assessments.jsonl, else the platform user-data dir."""
    if log_file:
        return Path(log_file).expanduser()
    return data_dir() / LOG_FILENAME


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def permission_warnings(path: Path) -> list[str]:
    """What is readable by others that should not be: the log (0600) and its directory (0700).
    POSIX only (Windows has no mode bits to speak of)."""
    if WINDOWS:
        return []
    out = []
    for p, want, what in ((path.parent, 0o700, "the data directory"), (path, 0o600, "the log")):
        try:
            mode = stat.S_IMODE(os.stat(p).st_mode)
        except OSError:
            continue
        if mode & 0o077:
            out.append(f"{what} {p} is readable by others (mode {mode:04o}); it holds patient "
                       f"data: chmod {want:o} {p}")
    return out


# --- the platform: one lock, one positional read --------------------------------------------------

@contextmanager
def _locked(fd: int, path: Path) -> Iterator[None]:
    """An exclusive lock held for one append.

    POSIX: ``flock`` on the log's own descriptor. Windows: ``msvcrt.locking`` is a mandatory
    byte-range lock, so locking a byte of the log would make our own reads of that byte fail;
    the lock is taken on byte 0 of a sibling ``<log>.lock`` file instead (kept, never deleted,
    so two writers can never lock two different files)."""
    if WINDOWS:
        import msvcrt
        import time

        lock_path = path.with_name(path.name + ".lock")
        try:
            lfd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o600)
        except OSError as exc:
            raise LogError(f"cannot open the lock file {lock_path}: {exc.strerror}") from None
        try:
            for _ in range(600):  # LK_NBLCK fails at once; keep trying for a minute
                try:
                    msvcrt.locking(lfd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                raise LogError("the log is locked by another program; try again")
            try:
                yield
            finally:
                os.lseek(lfd, 0, os.SEEK_SET)
                msvcrt.locking(lfd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
        finally:
            os.close(lfd)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def _pread(fd: int, n: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, n, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # Windows: the read descriptor is this function's own
    return os.read(fd, n)


# --- records ---------------------------------------------------------------------------------

def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def encode_record(body: dict[str, Any]) -> bytes:
    """The line for a record body (without its newline), ending with its own hash."""
    if "sha256" in body:
        raise ValueError("the body must not carry its own hash")
    raw = _canonical(body)
    digest = hashlib.sha256(raw).hexdigest()
    return raw[:-1] + _HASH_KEY + digest.encode() + b'"}'


def _content_ok(line: bytes) -> bool:
    i = line.rfind(_HASH_KEY)
    if i < 0 or len(line) != i + len(_HASH_KEY) + 64 + 2 or not line.endswith(b'"}'):
        return False
    claimed = line[i + len(_HASH_KEY): i + len(_HASH_KEY) + 64]
    return hashlib.sha256(line[:i] + b"}").hexdigest().encode() == claimed


def _check_regular(path: Path, missing_ok: bool = True) -> bool:
    """Whether the log exists; a symbolic link or anything but a regular file is refused."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if missing_ok:
            return False
        raise LogError(f"no log at {path}") from None
    except OSError as exc:
        raise LogError(f"cannot read the log {path}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise LogError(f"the log path {path} is a symbolic link; refusing it (point --log-file "
                       "or ICANS_DATA_DIR at a regular file)")
    if stat.S_ISDIR(st.st_mode):
        raise LogError(f"the log path {path} is a directory: give a file (e.g. "
                       f"{path / 'assessments.jsonl'}), or point ICANS_DATA_DIR at the directory")
    if not stat.S_ISREG(st.st_mode):
        raise LogError(f"the log path {path} is not a regular file (a FIFO or a device?); "
                       "refusing it")
    return True


def _last_line(fd: int, size: int) -> tuple[bytes | None, bool]:
    """(the last line's bytes without newline, whether the file ends in a torn line)."""
    if size == 0:
        return None, False
    torn = _pread(fd, 1, size - 1) != b"\n"
    end = size if torn else size - 1
    buf = b""
    pos = end
    while pos > 0:
        step = min(_TAIL_CHUNK, pos)
        pos -= step
        buf = _pread(fd, step, pos) + buf
        nl = buf.rfind(b"\n")
        if nl >= 0:
            return buf[nl + 1:], torn
    return buf, torn


def _seq_of(line: bytes | None) -> int | None:
    if not line:
        return None
    try:
        seq = json.loads(line).get("seq")
    except (ValueError, AttributeError):
        return None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def _previous_seq(fd: int, size: int, last: bytes | None, torn: bool) -> int:
    """The seq of the last readable record (scanning back past a torn or corrupt tail)."""
    if not torn:
        seq = _seq_of(last)
        if seq is not None:
            return seq
    start = max(0, size - 4 * _TAIL_CHUNK)
    lines = _pread(fd, size - start, start).split(b"\n")
    for line in reversed(lines[1:] if start else lines):
        seq = _seq_of(line)
        if seq is not None:
            return seq
    return 0


def append(path: Path, body: dict[str, Any]) -> dict[str, Any]:
    """Append one record; return it as written (with id, seq, hashes)."""
    path = Path(path)
    _check_regular(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise LogError(f"cannot create the log directory {path.parent}: {exc.strerror}") from None
    flags = (os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LogError(f"the log path {path} is a symbolic link; refusing to write "
                           "through it") from None
        raise LogError(f"cannot open the log {path}: {exc.strerror}") from None
    try:
        with _locked(fd, path):
            st = os.fstat(fd)
            if not WINDOWS and st.st_mode & 0o077:
                os.fchmod(fd, 0o600)
            rfd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                          | getattr(os, "O_BINARY", 0))
            try:
                last, torn = _last_line(rfd, st.st_size)
                record = dict(body)
                record["seq"] = _previous_seq(rfd, st.st_size, last, torn) + 1
            finally:
                os.close(rfd)
            record.setdefault("schema", SCHEMA_VERSION)
            record.setdefault("id", str(uuid.uuid4()))
            record.setdefault("recorded_at", utc_now().isoformat(timespec="seconds"))
            record["prev_sha256"] = hashlib.sha256(last).hexdigest() if last is not None else ""
            line = encode_record(record) + b"\n"
            if torn:
                line = b"\n" + line
            _durable_write(fd, line, st.st_size)
            record["sha256"] = line.rstrip(b"\n")[-66:-2].decode()
            return record
    finally:
        os.close(fd)


def _durable_write(fd: int, line: bytes, size_before: int) -> None:
    """One write of the whole line, then fsync; on failure, our own partial line is cut off
    (earlier records stay) and the error says what happened."""
    try:
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(errno.ENOSPC, "short write")
        os.fsync(fd)
    except OSError as exc:
        try:
            os.ftruncate(fd, size_before)
        except OSError:
            pass
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise LogError("the disk is full: this assessment was NOT saved; earlier records "
                           "are intact") from None
        if exc.errno == errno.EFBIG:
            raise LogError("a file-size limit was reached: this assessment was NOT saved; "
                           "earlier records are intact") from None
        raise LogError(f"writing the log failed ({exc.strerror}): this assessment was NOT "
                       "saved; earlier records are intact") from None


# --- reading ------------------------------------------------------------------------------------

def iter_lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(1-based line number, bytes without newline, complete?) for every line, streaming."""
    if not _check_regular(path):
        return
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise LogError(f"cannot read the log {path}: {exc.strerror}") from None
    with fh:
        n = 0
        for n, raw in enumerate(fh, 1):
            if raw.endswith(b"\n"):
                yield n, raw[:-1], True
            else:
                yield n, raw, False


def iter_records(
    path: Path,
    on_problem: Callable[[Problem], None] | None = None,
    contains: str | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Every readable record; torn or unparseable lines are reported and skipped.

    ``contains``: a cheap pre-filter; lines whose bytes lack it are skipped unparsed.
    """
    needle = contains.encode() if contains else None
    for n, line, complete in iter_lines(path):
        if not complete:
            if on_problem:
                on_problem(Problem(n, "torn", "torn: the line has no end (a write was "
                                              "interrupted); skipped"))
            continue
        if needle is not None and needle not in line:
            # Not this reader's business, but a broken line is still reported: a cheap check of
            # the record's shape (it must end with its own hash) instead of a full parse.
            if line.strip() and not record_shape(line):
                if on_problem:
                    on_problem(Problem(n, "unparseable", "not a valid record (corrupted); "
                                                         "skipped"))
            continue
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError
        except ValueError:
            if on_problem:
                on_problem(Problem(n, "unparseable", "not a valid record (corrupted); skipped"))
            continue
        yield n, rec


def record_shape(line: bytes) -> bool:
    """A cheap check that a line has a record's shape: a JSON object ending with its own
    hash (not a full parse)."""
    return line[:1] == b"{" and line[-77:-66] == _HASH_KEY and line[-2:] == b'"}'


def batch_row_hashes(path: Path) -> set[str]:
    """The source-row hashes of the batch records already in the log (to skip them)."""
    seen: set[str] = set()
    for _, line, complete in iter_lines(path):
        if complete and b'"source_row_sha256"' in line:
            m = _ROW_SHA.search(line)
            if m:
                seen.add(m.group(1).decode())
    return seen


def head(path: Path) -> Head | None:
    """The last record's sequence number and line hash (None for an empty log)."""
    _check_regular(path, missing_ok=False)
    last: Head | None = None
    for _, line, complete in iter_lines(path):
        if not complete or not line.strip():
            continue
        seq = _seq_of(line)
        if seq is not None:
            last = Head(seq, hashlib.sha256(line).hexdigest())
    return last


def verify(path: Path, expect: Head | None = None) -> Verified:
    """Check the whole chain, streaming. Returns the records checked, the problems in line
    order, and the last record's head when the chain is intact. With `expect` (a head kept
    elsewhere), a log that no longer holds that record unchanged is a problem too."""
    problems: list[Problem] = []
    prev_hash = ""
    expected_seq = 1
    count = 0
    last: Head | None = None
    found = expect is None
    for n, line, complete in iter_lines(path):
        count += 1
        if not complete:
            problems.append(Problem(n, "torn", "torn: the last line has no end (a write was "
                                               "interrupted)"))
            break
        this_hash = hashlib.sha256(line).hexdigest()
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError
        except ValueError:
            problems.append(Problem(n, "unparseable", "not a valid record: edited, or torn by an "
                                             "interrupted write"))
            prev_hash = this_hash  # a later append chains onto the fragment
            continue
        seq = rec.get("seq")
        if not _content_ok(line):
            problems.append(Problem(n, "edited", "its content does not match its own hash: "
                                                 "the line was edited"))
        elif not isinstance(seq, int):
            problems.append(Problem(n, "edited", "has no sequence number"))
        elif seq > expected_seq:
            problems.append(Problem(n, "missing", f"record #{expected_seq} expected, "
                                    f"#{seq} found: a line before it was deleted (or moved)"))
        elif seq < expected_seq:
            problems.append(Problem(n, "out_of_order", f"record #{seq} found where "
                                    f"#{expected_seq} belongs: a line was inserted, duplicated "
                                    "or reordered"))
        elif rec.get("prev_sha256") != prev_hash:
            problems.append(Problem(n, "broken_chain", "does not follow the line before it: "
                                    "the previous line was changed or a line was inserted"))
        if isinstance(seq, int):
            last = Head(seq, this_hash)
            if expect is not None and seq == expect.seq:
                if this_hash != expect.sha256:
                    problems.append(Problem(n, "head", f"record #{seq} is not the one whose "
                                            "hash you kept: it, or the log, was rewritten"))
                found = True
        prev_hash = this_hash
        if isinstance(seq, int):
            expected_seq = max(expected_seq, seq) + 1
        else:
            expected_seq += 1
    if not found:
        problems.append(Problem(0, "head", f"record #{expect.seq} (the head you kept) is not in "  # type: ignore[union-attr]
                                "the log: records were cut off the end, or the log was "
                                "replaced"))
    return Verified(count, problems, last if not problems else None)
