"""The assessment log as an append-only JSON Lines file: the embedded default store.

One line per record, UTF-8, ``\\n``-terminated, never rewritten (the record format and the
chain are ``chain.py``'s). This module owns what is the file's own:

- **Appending**: the whole line is serialised first, then written with a single ``os.write``
  on a descriptor opened ``O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW`` (mode 0600), under an
  exclusive lock, then ``fsync``. The rerun check (a unique key) is made under that same lock,
  reading only what was appended since this process last looked (linear over a batch).
- **The lock**: waited for without blocking signals (Ctrl-C, SIGTERM and SIGHUP stop a waiting
  writer, which then appends nothing); after a second the wait is said, with who holds it;
  after ``ICANS_LOCK_TIMEOUT`` seconds (default 30) it gives up (LockTimeout). The holder
  writes its pid and command beside the log while it holds the lock.
- **Tails**: a torn last line (a write cut short) is reported; the next append starts on a new
  line and continues the sequence after the last complete record, however much garbage (NULs)
  follows it, in time linear in that garbage; ``acknowledge_tail`` appends a record naming the
  fragment (byte range and hash).
- **Reading**: a log that is not a regular file is refused (a FIFO would hang); a missing log
  is said as such; lines stream (memory flat). A last line without its newline while a writer
  may be appending is read again under the lock, so a reader never calls a line torn that a
  concurrent writer was completing.
- **Refusals**: a symbolic link; an existing file that is not an icans log (a CSV given as
  --log-file is never appended to, nor its mode changed).

The lock and the positional reads have one implementation per platform (``fcntl`` on POSIX,
``msvcrt`` on Windows), imported only when used, so the module imports everywhere.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from icans_cli.store import LockTimeout, Store, StoreError, lock_timeout
from icans_cli.store.chain import (
    HASH_KEY, SCHEMA_VERSION, TAIL_ACK, Head, Problem, RawLine, Verified, check_chain,
    content_ok, encode_record, parse, record_shape, utc_now, verify_lines,
)

LOG_FILENAME = "assessments.jsonl"
PRACTICE_FILENAME = "practice.jsonl"
WINDOWS = sys.platform == "win32"
_CHUNK = 1 << 16
_UNIQUE = re.compile(rb'"dedup":"([^"\\]*)"')
_ID = re.compile(rb'"id":"([0-9a-f-]{36})"')
LogError = StoreError  # the name the file's callers have always used


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

def _info_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock-info")


def _holder(path: Path) -> str:
    """Who holds the lock, as its holder wrote it (pid and command), or 'another program'."""
    try:
        text = _info_path(path).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return "another program"
    return text[:200] if text.isprintable() and text else "another program"


@contextmanager
def locked(fd: int, path: Path, on_wait: Callable[[str], None] | None = None,
           timeout: float | None = None) -> Iterator[None]:
    """An exclusive lock held for one append, waited for in short steps (so a signal stops a
    waiting writer, which then appends nothing), said after a second, given up after the
    timeout (LockTimeout). POSIX: ``flock`` on the log's own descriptor. Windows:
    ``msvcrt.locking`` on byte 0 of a sibling ``<log>.lock`` file (a byte-range lock on the
    log itself would make our own reads of that byte fail)."""
    timeout = lock_timeout() if timeout is None else timeout
    start = time.monotonic()
    said = False
    lfd = None
    if WINDOWS:
        import msvcrt

        lock_path = path.with_name(path.name + ".lock")
        try:
            lfd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o600)
        except OSError as exc:
            raise StoreError(f"cannot open the lock file {lock_path}: {exc.strerror}") from None

        def try_lock() -> bool:
            try:
                msvcrt.locking(lfd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
                return True
            except OSError:
                return False

        def unlock() -> None:
            os.lseek(lfd, 0, os.SEEK_SET)  # type: ignore[arg-type]
            msvcrt.locking(lfd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
    else:
        import fcntl

        def try_lock() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False

        def unlock() -> None:
            fcntl.flock(fd, fcntl.LOCK_UN)
    try:
        import icans_cli.store as seam

        step = 0.005
        while not try_lock():
            if seam.stop_requested():
                raise seam.Interrupted("stopped while waiting for the log's lock: nothing was "
                                       "appended")
            waited = time.monotonic() - start
            if waited >= timeout:
                raise LockTimeout(f"the log {path} stayed locked by {_holder(path)} for "
                                  f"{waited:.0f} s (ICANS_LOCK_TIMEOUT={timeout:g})")
            if not said and waited >= 1.0 and on_wait is not None:
                on_wait(f"waiting for the log: it is locked by {_holder(path)} (Ctrl-C stops; "
                        f"gives up after {timeout:g} s)")
                said = True
            time.sleep(step)
            step = min(step * 2, 0.1)
        try:
            _write_info(path)
            yield
        finally:
            _clear_info(path)
            unlock()
    finally:
        if lfd is not None:
            os.close(lfd)


def _write_info(path: Path) -> None:
    try:
        cmd = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv[:3]))
        fd = os.open(_info_path(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                     | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            os.write(fd, f"pid {os.getpid()} ({cmd[:80]})".encode("utf-8", "replace"))
        finally:
            os.close(fd)
    except OSError:
        pass


def _clear_info(path: Path) -> None:
    try:
        os.unlink(_info_path(path))
    except OSError:
        pass


def _pread(fd: int, n: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, n, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # Windows: the read descriptor is this function's own
    return os.read(fd, n)


def _check_regular(path: Path, missing_ok: bool = True) -> bool:
    """Whether the log exists; a symbolic link or anything but a regular file is refused."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if missing_ok:
            return False
        raise StoreError(f"no log at {path}") from None
    except OSError as exc:
        raise StoreError(f"cannot read the log {path}: {exc.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise StoreError(f"the log path {path} is a symbolic link; refusing it (point "
                         "--log-file or ICANS_DATA_DIR at a regular file)")
    if stat.S_ISDIR(st.st_mode):
        raise StoreError(f"the log path {path} is a directory: give a file (e.g. "
                         f"{path / LOG_FILENAME}), or point ICANS_DATA_DIR at the directory")
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"the log path {path} is not a regular file (a FIFO or a device?); "
                         "refusing it")
    return True


# --- the tail, read backwards in linear time ------------------------------------------------------

def _line_before(fd: int, end: int) -> tuple[int, int]:
    """(start, end) of the line that ends at `end` (exclusive, the newline not included):
    scans back for the newline before it, a chunk at a time (linear)."""
    pos = end
    while pos > 0:
        step = min(_CHUNK, pos)
        chunk = _pread(fd, step, pos - step)
        nl = chunk.rfind(b"\n")
        if nl >= 0:
            return pos - step + nl + 1, end
        pos -= step
    return 0, end


def _hash_range(fd: int, start: int, end: int) -> str:
    h = hashlib.sha256()
    pos = start
    while pos < end:
        data = _pread(fd, min(_CHUNK, end - pos), pos)
        if not data:
            break
        h.update(data)
        pos += len(data)
    return h.hexdigest()


_MAX_RECORD = 1 << 20  # a line longer than this is never a record


def _blank(fd: int, start: int, end: int) -> bool:
    """Whether a line holds only whitespace (readers skip it; nothing chains onto it)."""
    pos = start
    while pos < end:
        data = _pread(fd, min(_CHUNK, end - pos), pos)
        if not data:
            break
        if data.strip():
            return False
        pos += len(data)
    return True


def _tail(fd: int, size: int) -> tuple[str, int, int | None]:
    """(the hash of the last line that is not blank, to chain onto, as readers do; the
    sequence number of the last complete record; the start of a torn tail, or None). Reads
    back over any garbage once (linear)."""
    if size == 0:
        return "", 0, None
    torn = _pread(fd, 1, size - 1) != b"\n"
    end = size if torn else size - 1
    tail_start = None
    last_hash: str | None = None
    first = True
    while True:
        start, _ = _line_before(fd, end)
        if first and torn:
            tail_start = start
        blank = _blank(fd, start, end)
        if last_hash is None and not blank:
            last_hash = _hash_range(fd, start, end)
        if not (first and torn) and not blank and end - start <= _MAX_RECORD:
            rec = parse(_pread(fd, end - start, start))
            if rec is not None and isinstance(rec.get("seq"), int):
                return last_hash or "", rec["seq"], tail_start
        first = False
        if start == 0:
            return last_hash or "", 0, tail_start
        end = start - 1


# --- the file store ---------------------------------------------------------------------------

class JsonlStore(Store):
    kind = "file"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.where = str(self.path)
        self._seen_upto = 0  # how far this process has read the unique keys
        self._uniques: set[str] = set()

    def exists(self) -> bool:
        return _check_regular(self.path)

    # reading

    def lines(self, patient_ids: Iterable[str] | None = None,
              after_seq: int | None = None) -> Iterator[RawLine]:
        path = self.path
        if not _check_regular(path):
            return
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(f"cannot read the log {path}: {exc.strerror}") from None
        with fh:
            n, offset = 0, 0
            for raw in fh:
                n += 1
                if raw.endswith(b"\n"):
                    yield RawLine(n, raw[:-1], True, None, offset)
                else:
                    yield self._last_line(n, raw, offset)
                offset += len(raw)

    def _last_line(self, n: int, raw: bytes, offset: int) -> RawLine:
        """A last line without its newline: torn, or a writer completing it right now. Read
        again under the lock, which a writer holds while it writes."""
        if WINDOWS:
            return RawLine(n, raw, False, None, offset)
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return RawLine(n, raw, False, None, offset)
        try:
            deadline = time.monotonic() + 2.0
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        return RawLine(n, raw, False, None, offset)
                    time.sleep(0.01)
            try:
                size = os.fstat(fd).st_size
                data = _pread(fd, size - offset, offset)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        nl = data.find(b"\n")
        if nl >= 0:
            return RawLine(n, data[:nl], True, None, offset)
        return RawLine(n, data, False, None, offset)

    def head(self) -> Head | None:
        """The last record's head, read from the end of the file (no whole read); when the
        last line is not an intact record, the whole chain decides (Store.head)."""
        if not _check_regular(self.path):
            return None
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except OSError:
            return super().head()
        try:
            size = os.fstat(fd).st_size
            if size == 0:
                return None
            if _pread(fd, 1, size - 1) == b"\n":
                start, end = _line_before(fd, size - 1)
                if end - start <= _MAX_RECORD:
                    line = _pread(fd, end - start, start)
                    rec = parse(line) if content_ok(line) else None
                    if rec is not None and isinstance(rec.get("seq"), int) \
                            and not rec.get("kind"):
                        return Head(rec["seq"], hashlib.sha256(line).hexdigest())
        finally:
            os.close(fd)
        return super().head()

    def acknowledged(self) -> set[str]:
        """The fragments acknowledgement records name: a byte search of the file in large
        blocks, and the lines read only when it holds an acknowledgement at all."""
        from icans_cli.store.chain import acknowledged_fragments

        if not self._holds(b'"' + TAIL_ACK.encode() + b'"'):
            return set()
        return acknowledged_fragments(self.lines())

    def _holds(self, needle: bytes) -> bool:
        """Whether the file's bytes hold `needle` (blocks overlap by its length, so one cut
        by a block's end is found)."""
        if not _check_regular(self.path):
            return False
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StoreError(f"cannot read the log {self.path}: {exc.strerror}") from None
        with fh:
            carry = b""
            while True:
                block = fh.read(1 << 20)
                if not block:
                    return False
                if needle in carry + block[:len(needle)] or needle in block:
                    return True
                carry = block[-len(needle):]

    def entries(self, patient: str | None = None, after_seq: int | None = None,
                on_problem: Callable[[Problem], None] | None = None):  # type: ignore[override]
        acks = self.acknowledged() if on_problem is not None else frozenset()

        def quiet(p: Problem) -> None:
            if on_problem is not None and p.sha256 not in acks:
                on_problem(p)

        yield from super().entries(patient, after_seq, quiet if on_problem else None)

    # writing

    def _open_for_append(self) -> int:
        path = self.path
        _check_regular(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StoreError(f"cannot create the log directory {path.parent}: "
                             f"{exc.strerror}") from None
        flags = (os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
                 | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
        try:
            return os.open(path, flags, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StoreError(f"the log path {path} is a symbolic link; refusing to write "
                                 "through it") from None
            raise StoreError(f"cannot open the log {path}: {exc.strerror}") from None

    def _refuse_foreign(self, rfd: int, size: int) -> None:
        """An existing file that is not an icans log (a CSV given as --log-file) is never
        appended to."""
        if size == 0:
            return
        head = _pread(rfd, min(size, 65536), 0)
        first = head.split(b"\n", 1)[0]
        ours = first.startswith(b"{") and b'"prev_sha256"' in first and b'"sha256"' in first
        # the first write of a log cut short (a record's first bytes, no newline), or NULs
        # left by a crash: a damaged log of ours, not another file
        torn_first = b"\n" not in head and first.startswith(b'{"')
        nuls = first.strip(b"\x00").strip() == b""
        if not (ours or torn_first or nuls):
            raise StoreError(f"{self.path} is not an icans log (its first line is not a "
                             "record): refusing to append to it (give another --log-file)")

    def _scan_uniques(self, rfd: int, size: int) -> None:
        """The unique keys (record ids and rerun keys) appended since this process last
        looked: only the new complete lines are read (linear over a batch)."""
        if self._seen_upto > size:  # the file was replaced: start again
            self._seen_upto, self._uniques = 0, set()
        pos, carry = self._seen_upto, b""
        while pos < size:
            data = carry + _pread(rfd, min(_CHUNK * 16, size - pos), pos)
            pos += len(data) - len(carry)
            cut = data.rfind(b"\n")
            if cut < 0:
                carry = data
                continue
            for line in data[:cut].split(b"\n"):
                m = _UNIQUE.search(line)
                if m:
                    self._uniques.add(m.group(1).decode())
                m = _ID.search(line)
                if m:
                    self._uniques.add("id:" + m.group(1).decode())
            carry = data[cut + 1:]
            self._seen_upto = pos - len(carry)


    def append(self, body: dict[str, Any], unique: str | None = None,
               on_wait: Callable[[str], None] | None = None) -> dict[str, Any] | None:
        """Append one record; return it as written (with id, seq, hashes), or None when a
        record with the unique key is in the log already."""
        fd = self._open_for_append()
        try:
            with locked(fd, self.path, on_wait):
                st = os.fstat(fd)
                rfd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                              | getattr(os, "O_BINARY", 0))
                try:
                    self._refuse_foreign(rfd, st.st_size)
                    if not WINDOWS and st.st_mode & 0o077:  # a log of ours: tightened
                        os.fchmod(fd, 0o600)
                    if unique is not None:
                        self._scan_uniques(rfd, st.st_size)
                        if unique in self._uniques:
                            return None
                    last_hash, last_seq, torn_at = _tail(rfd, st.st_size)
                finally:
                    os.close(rfd)
                record = dict(body)
                if unique is not None and not unique.startswith("id:"):
                    record["dedup"] = unique
                record["seq"] = last_seq + 1
                record.setdefault("schema", SCHEMA_VERSION)
                record.setdefault("id", str(uuid.uuid4()))
                record.setdefault("recorded_at", utc_now().isoformat(timespec="seconds"))
                record["prev_sha256"] = last_hash
                line = encode_record(record) + b"\n"
                if torn_at is not None:
                    line = b"\n" + line  # never glued onto a torn fragment
                _durable_write(fd, line, st.st_size)
                record["sha256"] = line.rstrip(b"\n")[-66:-2].decode()
                if unique is not None:
                    self._uniques.add(unique)
                return record
        finally:
            os.close(fd)

    def acknowledge_tail(self) -> dict[str, Any] | None:
        """Append a record naming each torn or unparseable fragment not yet acknowledged
        (its line, byte range and hash); None when there is none."""
        acks = self.acknowledged()
        fragments = []
        for raw in self.lines():
            if not raw.data.strip() and raw.complete:
                continue
            if raw.complete and parse(raw.data) is not None:
                continue
            h = hashlib.sha256(raw.data).hexdigest()
            if h not in acks:
                fragments.append({"line": raw.pos, "bytes": [raw.offset, (raw.offset or 0)
                                                             + len(raw.data)], "sha256": h})
        last = None
        for frag in fragments:
            last = self.append({"kind": TAIL_ACK, "fragment": frag,
                                "note": "a fragment acknowledged with icans log "
                                        "acknowledge-tail; it holds no record"})
        return last


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
            raise StoreError("the disk is full: this assessment was NOT saved; earlier "
                             "records are intact") from None
        if exc.errno == errno.EFBIG:
            raise StoreError("a file-size limit was reached: this assessment was NOT saved; "
                             "earlier records are intact") from None
        raise StoreError(f"writing the log failed ({exc.strerror}): this assessment was NOT "
                         "saved; earlier records are intact") from None


# --- the file's functions by path (what the log module has always offered) ----------------------

def append(path: Path, body: dict[str, Any], unique: str | None = None) -> dict[str, Any]:
    """Append one record to the log at `path` (see JsonlStore.append)."""
    rec = JsonlStore(path).append(body, unique)
    assert rec is not None or unique is not None
    return rec  # type: ignore[return-value]


def iter_lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(1-based line number, bytes without newline, complete?) for every line, streaming."""
    for raw in JsonlStore(path).lines():
        yield raw.pos, raw.data, raw.complete


def iter_records(path: Path, on_problem: Callable[[Problem], None] | None = None,
                 contains: str | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Every readable record, (line, record); torn or unparseable lines are reported and
    skipped. Records that fail the chain come too (readers that show them flag them:
    JsonlStore.entries gives the verdict). `contains`: a cheap pre-filter on the line's
    bytes."""
    needle = contains.encode() if contains else None
    store = JsonlStore(path)

    def lines() -> Iterator[RawLine]:
        for raw in store.lines():
            if needle is not None and raw.complete and needle not in raw.data:
                if raw.data.strip() and not record_shape(raw.data) and on_problem:
                    on_problem(Problem(raw.pos, "unparseable", "not a valid record "
                                       "(corrupted); skipped"))
                continue
            yield raw

    for e in check_chain(lines(), on_problem=lambda p: on_problem(p) if on_problem and
                         p.kind in ("torn", "unparseable") else None):
        if e.record is not None:
            yield e.line, e.record


def head(path: Path) -> Head | None:
    """The last record's sequence number and line hash (None for an empty log)."""
    _check_regular(path, missing_ok=False)
    return JsonlStore(path).head()


def verify(path: Path, expect: Head | None = None) -> Verified:
    """Check the whole chain, streaming (chain.verify_lines)."""
    return verify_lines(JsonlStore(path).lines(), expect)


__all__ = ["LOG_FILENAME", "PRACTICE_FILENAME", "SCHEMA_VERSION", "JsonlStore", "LogError",
           "Head", "Problem", "Verified", "append", "data_dir", "encode_record", "head",
           "iter_lines", "iter_records", "permission_warnings", "record_shape",
           "resolve_path", "utc_now", "verify", "HASH_KEY"]
