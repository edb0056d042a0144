"""The one reader and writer of assessments: the seam every command goes through.

``open_store()`` picks the store: the ward's PostgreSQL log when ``ICANS_DATABASE_URL`` is set
(imported only then), else the append-only JSON Lines file (the embedded default). Both keep
the same record JSON and the same hash chain, so everything above the seam is the same.

A store gives four primitives; the rest is built here once, for both:

- ``lines()``: every stored line in sequence order, as ``RawLine`` (its position, its bytes,
  whether it is complete, and, when the store knows it, the hash of the line before it);
- ``append(body, unique=None)``: one record, under the store's lock, with its sequence number
  and the hash of the line before it; with ``unique``, nothing is appended when a record with
  that key is stored already (checked under the same lock: concurrent reruns log once);
- ``acknowledge_tail()``: a record naming a torn fragment, so verify reports it as
  acknowledged (a file's; the database has no torn lines);
- ``close()``.

Built on them (``chain.py``): every record streamed with its verdict (ok, altered,
unparseable, torn, acknowledged), verify, head, find, the patient's records (pseudonyms
matched case- and separator-insensitively), the ward board's recent records. Memory stays
flat: records stream, one at a time.

Bedside saves are never lost to a busy lock or an unreachable server: ``save_or_keep`` keeps
the record in the outbox (a 0600 file in the data directory) and the next command sends it
exactly once (the record's id is its unique key).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from icans_cli.store.chain import (  # noqa: F401 - the seam's vocabulary
    ACKNOWLEDGED, ALTERED, OK, TORN, UNPARSEABLE, Entry, Head, Problem, RawLine, Verified,
    check_chain, verify_lines,
)


_PATIENT = re.compile(rb'"patient_id":"((?:[^"\\]|\\.)*)"')


def holds_patient(ids: Iterable[str]) -> Callable[[bytes], bool]:
    """Whether a record's line names one of these spellings, found by its bytes (the canonical
    JSON of `"patient_id":"..."`), without parsing it."""
    needles = [b'"patient_id":' + json.dumps(i, ensure_ascii=False).encode() for i in ids]
    return lambda data: any(n in data for n in needles)


def spellings_in(lines: Iterable[bytes], typed: str, most: int | None = None) -> list[str]:
    """The spellings of a pseudonym among records' lines, in the order they first appear,
    read from each line's bytes (a record's canonical JSON) without parsing it; `most`: stop
    once that many are found."""
    from icans_cli.core.identifiers import patient_key

    want, found, seen = patient_key(typed), [], set()
    for data in lines:
        m = _PATIENT.search(data)
        if m is None or m.group(1) in seen:
            continue
        seen.add(m.group(1))
        try:
            pid = json.loads(b'"' + m.group(1) + b'"')
        except ValueError:
            continue
        if isinstance(pid, str) and patient_key(pid) == want:
            found.append(pid)
            if most is not None and len(found) >= most:
                break
    return found


class StoreError(Exception):
    """A problem with the store. Messages never carry a patient identifier."""


class LockTimeout(StoreError):
    """The log's lock could not be taken in time (ICANS_LOCK_TIMEOUT)."""


class Unavailable(StoreError):
    """The store cannot be reached now (a server down or restarting, the network gone)."""


class InDoubt(Unavailable):
    """The connection was lost while a record was being committed: it may be stored or not
    (the server may have committed it before the reply was lost). Appending it again by its
    unique key (a rerun, the outbox by record id) stores it once either way."""


class Interrupted(StoreError):
    """A signal arrived while waiting for the lock: nothing was appended."""


def _never() -> bool:
    return False


# A batch that defers its signals while it appends sets this, so a writer waiting for the lock
# stops (and appends nothing) when told to, instead of appending after the wait.
stop_requested: Callable[[], bool] = _never


LOCK_TIMEOUT_ENV = "ICANS_LOCK_TIMEOUT"
LOCK_TIMEOUT_DEFAULT = 30.0
OUTBOX = "outbox"


def lock_timeout() -> float:
    raw = os.environ.get(LOCK_TIMEOUT_ENV)
    if not raw:
        return LOCK_TIMEOUT_DEFAULT
    try:
        value = float(raw)
    except ValueError:
        raise StoreError(f"{LOCK_TIMEOUT_ENV} must be a number of seconds") from None
    if not 0 <= value <= 3600 or value != value:
        raise StoreError(f"{LOCK_TIMEOUT_ENV} must be from 0 to 3600 seconds")
    return value


@dataclass(frozen=True)
class Saved:
    """What became of a bedside save."""

    record: dict[str, Any]
    on_log: bool  # False: kept in the outbox, sent by the next command
    why: str = ""  # when kept: why it could not be appended now
    in_doubt: bool = False  # kept, and it may also be on the log already (sent once anyway)


class Store:
    """The seam. Subclasses give lines(), append(), acknowledge_tail(), close()."""

    kind = "file"
    where = ""  # a path, or a database: shown in messages (never a password)

    # --- primitives -------------------------------------------------------------------------

    def lines(self, patient_ids: Iterable[str] | None = None,
              after_seq: int | None = None) -> Iterator[RawLine]:
        """Every stored line in sequence order. `patient_ids` and `after_seq` are hints a
        store may use to read less (an index); entries() applies them exactly either way."""
        raise NotImplementedError

    def append(self, body: dict[str, Any], unique: str | None = None,
               on_wait: Callable[[str], None] | None = None) -> dict[str, Any] | None:
        """Append one record; return it as stored, or None when `unique` is stored already.
        `on_wait(message)` is called once when the lock is busy for a second (who holds
        it). Raises LockTimeout, Unavailable or StoreError."""
        raise NotImplementedError

    def acknowledge_tail(self) -> dict[str, Any] | None:
        """Append a record naming the torn fragment (its byte range and hash); None when
        there is none."""
        return None

    def close(self) -> None:
        pass

    def exists(self) -> bool:
        return True

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- built on them, once for every store --------------------------------------------------

    def entries(self, patient: str | None = None, after_seq: int | None = None,
                on_problem: Callable[[Problem], None] | None = None) -> Iterator[Entry]:
        """Every record with its verdict, in sequence order (a record that fails the chain
        comes flagged ALTERED; an unparseable or torn line comes with no record and is named
        through `on_problem`). `patient`: only that patient's records (matched case- and
        separator-insensitively)."""
        ids = self.spellings(patient) if patient is not None else None
        if ids is not None and not ids:
            return
        want = holds_patient(ids) if ids is not None else None
        for entry in check_chain(self.lines(ids, after_seq), on_problem, want=want):
            if after_seq is not None and (entry.seq is None or entry.seq <= after_seq):
                continue
            if ids is not None:
                pid = entry.record.get("patient_id") if entry.record else None
                if pid not in ids:
                    continue
            yield entry

    def assessments(self, patient: str | None = None, after_seq: int | None = None,
                    on_problem: Callable[[Problem], None] | None = None,
                    altered: bool = True) -> Iterator[Entry]:
        """entries() of assessments only (no practice sessions, no tail acknowledgements);
        `altered`: include records that fail the chain (flagged)."""
        for e in self.entries(patient, after_seq, on_problem):
            if e.record is None or e.record.get("kind"):
                continue
            if e.verdict == ALTERED and not altered:
                continue
            yield e

    def spellings(self, typed: str) -> list[str]:
        """Every spelling of the pseudonym in the store (matched case- and
        separator-insensitively): ["PT-0042"] for "pt 0042". Read from the lines' bytes (a
        record's canonical JSON), without parsing them."""
        return spellings_in((raw.data for raw in self.lines()), typed)

    def known_spelling(self, typed: str) -> str | None:
        """The spelling the store knows a pseudonym by (the typed one when it is known as
        typed; else the most recent other spelling), or None when it is new."""
        ids = self.spellings(typed)
        if not ids:
            return None
        return typed if typed in ids else ids[-1]

    def find(self, prefix: str) -> list[Entry]:
        """The records whose id starts with `prefix` (with their verdicts)."""
        return [e for e in check_chain(self.lines()) if e.record is not None
                and str(e.record.get("id", "")).startswith(prefix)]

    def last_saved(self) -> Entry | None:
        """The last assessment stored (by sequence)."""
        last = None
        for e in self.assessments():
            last = e
        return last

    def head(self) -> Head | None:
        last = None
        for e in check_chain(self.lines()):
            if e.seq is not None and e.record is not None:
                last = Head(e.seq, e.sha256)
        return last

    def verify(self, expect: Head | None = None) -> Verified:
        return verify_lines(self.lines(), expect)

    def recent(self, since: datetime,
               on_problem: Callable[[Problem], None] | None = None) -> Iterator[Entry]:
        """Assessments that may be on the ward board: every one recorded or assessed since
        `since` (a store with an index reads only those; the file reads all)."""
        return self.assessments(on_problem=on_problem)

    # --- the outbox: a bedside save is never lost ---------------------------------------------

    def save_or_keep(self, body: dict[str, Any], outbox: Path,
                     on_wait: Callable[[str], None] | None = None) -> Saved:
        """Append a bedside record; when the lock stays busy or the store cannot be reached,
        keep it in the outbox (0600) for the next command to send, exactly once."""
        import uuid

        from icans_cli.store.chain import utc_now

        record = dict(body)
        record.setdefault("id", str(uuid.uuid4()))
        record.setdefault("recorded_at", utc_now().isoformat(timespec="seconds"))
        try:
            stored = self.append(record, unique=f"id:{record['id']}", on_wait=on_wait)
            return Saved(stored or record, True)
        except (LockTimeout, Unavailable) as exc:
            keep(outbox, record)
            return Saved(record, False, str(exc), isinstance(exc, InDoubt))

    def sync(self) -> tuple[int, int, list[str]]:
        """Send what this workstation keeps for this store (its outbox), each once: (sent,
        still kept, problems). Reads nothing of the store when nothing is kept."""
        box = outbox_for(self)
        if not any(True for _ in kept(box)):
            return 0, 0, []
        sent, problems = self.send_outbox(box)
        return sent, sum(1 for _ in kept(box)), problems

    def send_outbox(self, outbox: Path) -> tuple[int, list[str]]:
        """Append what the outbox keeps, each once; (how many were sent, problems)."""
        sent, problems = 0, []
        for path, record in kept(outbox):
            try:
                self.append(record, unique=f"id:{record['id']}")
            except (LockTimeout, Unavailable) as exc:
                problems.append(str(exc))
                break
            except StoreError as exc:
                problems.append(str(exc))
                continue
            try:
                path.unlink()
            except OSError:
                pass
            sent += 1
        return sent, problems


def outbox_for(store: Store) -> Path:
    """This workstation's outbox for one store: a folder of the data directory named by a hash
    of where the store is, so a record kept for one log is never sent to another."""
    import hashlib

    from icans_cli.store.jsonl import data_dir

    where = os.path.abspath(store.where) if store.kind == "file" else store.where
    tag = hashlib.sha256(f"{store.kind}:{where}".encode()).hexdigest()[:16]
    return data_dir() / OUTBOX / tag


def keep(outbox: Path, record: dict[str, Any]) -> Path:
    """Write one record to the outbox: a 0600 file named by its id, written whole."""
    outbox.mkdir(parents=True, exist_ok=True, mode=0o700)
    for folder in (outbox, outbox.parent):
        try:
            os.chmod(folder, 0o700)
        except OSError:
            pass
    path = outbox / f"{record['id']}.json"
    tmp = outbox / f".{record['id']}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0),
                 0o600)
    try:
        os.write(fd, json.dumps(record, ensure_ascii=False).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def kept(outbox: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The records the outbox keeps, oldest first."""
    if not outbox.is_dir():
        return
    paths = sorted(outbox.glob("*.json"), key=lambda p: p.stat().st_mtime)
    for path in paths:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and isinstance(record.get("id"), str):
            yield path, record


DATABASE_URL_ENV = "ICANS_DATABASE_URL"


def redact(url: str) -> str:
    """A libpq URL (or keyword connection string) without any password: what messages show."""
    from urllib.parse import urlsplit, urlunsplit

    if "://" in url:
        try:
            p = urlsplit(url)
        except ValueError:
            return "(a connection URL that cannot be read)"
        netloc = p.netloc
        if "@" in netloc:
            userinfo, hosts = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}@{hosts}" if user else hosts
        query = "&".join(part for part in p.query.split("&")
                         if part and part.split("=", 1)[0].lower() != "password")
        return urlunsplit((p.scheme, netloc, p.path, query, "")) if netloc else (
            f"{p.scheme}://{p.path}" + (f"?{query}" if query else ""))
    return re.sub(r"\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)\s*", "", url,
                  flags=re.IGNORECASE).strip()


class _Later:
    """The ward's store, made on first use: psycopg is imported when the log is first read or
    written, never for --help or before the interview's first prompt."""

    kind = "postgres"

    def __init__(self, url: str) -> None:
        self._url = url
        self._store: Store | None = None
        self.where = redact(url)

    def _real(self) -> Store:
        if self._store is None:
            from icans_cli.store.postgres import PostgresStore  # only when asked for

            self._store = PostgresStore(self._url)
        return self._store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real(), name)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> "_Later":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_store(log_file: Path | str | None = None) -> Store:
    """The ward's PostgreSQL log when ICANS_DATABASE_URL is set (and no --log-file names a
    file), else the JSON Lines file (--log-file, $ICANS_DATA_DIR, the platform data dir)."""
    url = os.environ.get(DATABASE_URL_ENV)
    if url and not log_file:
        return _Later(url)  # type: ignore[return-value]
    from icans_cli.store.jsonl import JsonlStore, resolve_path

    return JsonlStore(resolve_path(log_file))
