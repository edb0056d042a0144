"""The assessment log: append-only JSON Lines, tamper-evident, safe with concurrent writers.

One owner of the file format. Each line is one record, UTF-8, ``\\n``-terminated, never
rewritten. A record carries ``seq`` (1, 2, 3...), ``prev_sha256`` (the SHA-256 of the previous
line's bytes, "" for the first) and, as its last key, ``sha256``: the SHA-256 of the line's own
JSON without that key. Editing, deleting, inserting, reordering or tearing a line is therefore
detectable by :func:`verify`.

Appending: the whole line is serialised first, then written with a single ``os.write`` on a
descriptor opened ``O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW`` (mode 0600), under an exclusive
``flock``, then ``fsync``. If the file ends in a torn line (a crash mid-write), the new record
starts on a fresh line and never glues onto the fragment.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import stat
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

SCHEMA_VERSION = 1
LOG_FILENAME = "assessments.jsonl"
PRACTICE_FILENAME = "practice.jsonl"
_HASH_KEY = b',"sha256":"'
_TAIL_CHUNK = 65536


class LogError(Exception):
    """A problem with the log file. Messages never carry a patient identifier."""


@dataclass(frozen=True)
class Problem:
    line: int
    kind: str  # torn | unparseable | edited | missing | out_of_order | broken_chain
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


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


def _refuse_symlink(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise LogError(f"the log path {path} is a symbolic link; refusing to write through it "
                       "(point --log-file or ICANS_DATA_DIR at a regular file)")
    if not stat.S_ISREG(st.st_mode):
        raise LogError(f"the log path {path} is not a regular file")


def _last_line(fd: int, size: int) -> tuple[bytes | None, bool]:
    """(the last line's bytes without newline, whether the file ends in a torn line)."""
    if size == 0:
        return None, False
    torn = os.pread(fd, 1, size - 1) != b"\n"
    end = size if torn else size - 1
    buf = b""
    pos = end
    while pos > 0:
        step = min(_TAIL_CHUNK, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
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
    lines = os.pread(fd, size - start, start).split(b"\n")
    for line in reversed(lines[1:] if start else lines):
        seq = _seq_of(line)
        if seq is not None:
            return seq
    return 0


def append(path: Path, body: dict[str, Any]) -> dict[str, Any]:
    """Append one record; return it as written (with id, seq, hashes)."""
    path = Path(path)
    _refuse_symlink(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise LogError(f"cannot create the log directory {path.parent}: {exc.strerror}") from None
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LogError(f"the log path {path} is a symbolic link; refusing to write "
                           "through it") from None
        raise LogError(f"cannot open the log {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        st = os.fstat(fd)
        if st.st_mode & 0o077:
            os.fchmod(fd, 0o600)
        rfd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
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
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(errno.ENOSPC, "short write")
            os.fsync(fd)
        except OSError as exc:
            try:
                os.ftruncate(fd, st.st_size)  # drop our own partial line; earlier lines stay
            except OSError:
                pass
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise LogError("the disk is full: this assessment was NOT saved; earlier "
                               "records are intact") from None
            raise LogError(f"writing the log failed ({exc.strerror}): this assessment was NOT "
                           "saved; earlier records are intact") from None
        record["sha256"] = line.rstrip(b"\n")[-66:-2].decode()
        return record
    finally:
        os.close(fd)


# --- reading ------------------------------------------------------------------------------------

def iter_lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(1-based line number, bytes without newline, complete?) for every line."""
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
            if line.strip() and not (line[:1] == b"{" and line[-77:-66] == _HASH_KEY
                                     and line[-2:] == b'"}'):
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


def verify(path: Path) -> tuple[int, list[Problem]]:
    """Check the whole chain. Returns (records checked, problems in line order)."""
    problems: list[Problem] = []
    prev_hash = ""
    expected_seq = 1
    count = 0
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
        prev_hash = this_hash
        if isinstance(seq, int):
            expected_seq = max(expected_seq, seq) + 1
        else:
            expected_seq += 1
    return count, problems
