"""The ward log's commands: ``icans db init``, ``icans db status``, ``icans log import``.

``db_init`` and ``db_status`` talk to PostgreSQL (psycopg 3, imported only here and in
``icans_cli.store.postgres``); ``log_import`` works on any store through the seam. Messages
name the server without its password and never carry a patient identifier.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from icans_cli.store import LockTimeout, Store, StoreError, Unavailable, kept
from icans_cli.store.chain import (
    ACKNOWLEDGED, ALTERED, OK, TAIL_ACK, TORN, UNPARSEABLE, RawLine, check_chain,
)


def db_init(url: str, writer_role: str | None = None) -> str:
    """Create the ward log (idempotently: schema icans, tables, indexes, append-only triggers,
    schema version); with `writer_role`, grant that role USAGE on the schema and SELECT, INSERT
    only. Returns a short report. Raises Unavailable or StoreError."""
    import psycopg

    from icans_cli.store.postgres import PostgresStore, init_schema

    store = PostgresStore(url)
    try:
        with store._errors("set it up"):
            conn = store._writer()
            encoding = conn.execute("SHOW server_encoding").fetchone()[0]
            if str(encoding).upper() not in ("UTF8", "SQL_ASCII"):
                raise StoreError(f"the database at {store.where} is {encoding}: the ward log "
                                 "needs UTF8 (CREATE DATABASE ... ENCODING 'UTF8')")
            try:
                done = init_schema(conn, writer_role)
            except psycopg.errors.InsufficientPrivilege as exc:
                raise StoreError(f"the role cannot set up the ward log at {store.where} "
                                 f"({store._reason(exc)}): run db init as the database's "
                                 "owner") from None
    finally:
        store.close()
    what = "created" if done["created"] else "already set up; checked"
    lines = [f"ward log at {store.where}: {what} (schema icans, table icans.assessments, "
             f"schema version {done['schema_version']}, {done['rows']} records)",
             "UPDATE, DELETE and TRUNCATE are refused by triggers for every role"]
    if writer_role:
        lines.append(f"role {writer_role}: SELECT and INSERT only")
    return "\n".join(lines)


def db_status(url: str, outbox_dir: Path | str | None) -> dict[str, Any]:
    """What a ward log looks like from here: reachable, server version, schema version, rows,
    head, whether the append-only triggers are on, and the records this workstation keeps in
    its outbox (not yet on the ward log). Never raises for an unreachable server."""
    from icans_cli.store.postgres import PostgresStore, redact, server_info

    outbox = sum(1 for _ in kept(Path(outbox_dir))) if outbox_dir is not None else 0
    status: dict[str, Any] = {"where": redact(url), "reachable": False, "error": None,
                              "server_version": None, "schema_version": None, "rows": None,
                              "head": None, "append_only": None, "outbox": outbox}
    try:
        store = PostgresStore(url)
    except StoreError as exc:
        status["error"] = str(exc)
        return status
    try:
        try:
            conn = store._writer()
        except Unavailable as exc:
            status["error"] = str(exc)
            return status
        status["reachable"] = True
        with store._errors("read it"):
            info = server_info(conn)
        status.update(info)
        if info["rows"] is None:
            status["error"] = "not set up: run icans db init"
        else:
            head = store.head()
            status["head"] = str(head) if head is not None else None
    except StoreError as exc:
        status["error"] = str(exc)
    finally:
        store.close()
    return status


def status_lines(s: dict[str, Any]) -> list[str]:
    """db_status as the lines `icans db status` prints."""
    rows = [("ward log", s["where"]), ("reachable", "yes" if s["reachable"] else "NO"),
            ("server", s.get("server_version") or "-"),
            ("schema version", s.get("schema_version") if s.get("schema_version") is not None
             else "-"),
            ("records", f"{s['rows']:,}" if s.get("rows") is not None else "-"),
            ("head", s.get("head") or "-"),
            ("append-only triggers", {True: "on", False: "OFF (icans db init turns them on)",
                                      None: "-"}[s.get("append_only")]),
            ("kept on this workstation", f"{s['outbox']} (icans log sync sends them)"
             if s["outbox"] else "0")]
    return [f"{name + ':':<26}{value}" for name, value in rows]


class Imported(tuple):
    """(imported, skipped) from log_import, with the detail: `already` (records the store
    holds already, by their id) and `skipped` (why each line was not copied)."""

    imported: int
    skipped: list[str]
    already: int

    def __new__(cls, imported: int, skipped: list[str], already: int) -> "Imported":
        self = super().__new__(cls, (imported, skipped))
        self.imported, self.skipped, self.already = imported, skipped, already
        return self


_NOT_COPIED = {
    TORN: "torn (a write cut short): not copied",
    UNPARSEABLE: "not a valid record (corrupted): not copied",
    ACKNOWLEDGED: "a fragment the log acknowledges (no record): not copied",
}


def log_import(store: Store, path: Path | str,
               done: dict[str, int] | None = None) -> Imported:
    """Copy a local JSON Lines log's records into `store`, each once (the unique key is the
    record's id: importing again copies nothing). Each record keeps its fields; the store
    gives it its seq and the hash of the record before it. A line that is unparseable, torn,
    or fails the file's chain (ALTERED) is not copied and is named in `skipped` (by line);
    the file's tail acknowledgements name fragments of the file, not assessments, and are not
    copied either. Stops with Unavailable or LockTimeout (what was copied stays copied).
    `done`, when given, holds "imported" and "already" as they grow, for the caller to say
    how far an import that stopped (Ctrl-C, the server gone) got."""
    from icans_cli.store.chain import acknowledged_fragments

    path = Path(path)

    def lines():
        try:
            fh = open(path, "rb")
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror}") from None
        with fh:
            for n, line in enumerate(fh, 1):
                yield RawLine(n, line.rstrip(b"\n"), line.endswith(b"\n"))

    acks = acknowledged_fragments(lines())
    imported, already, skipped = 0, 0, []
    for e in check_chain(lines(), None, acks):
        if e.record is None:
            skipped.append(f"line {e.line}: {_NOT_COPIED.get(e.verdict, _NOT_COPIED[UNPARSEABLE])}")
            continue
        if e.verdict == ALTERED:
            skipped.append(f"line {e.line}: ALTERED: fails the chain ({e.note}); not copied")
            continue
        if e.record.get("kind") == TAIL_ACK:
            skipped.append(f"line {e.line}: a tail acknowledgement of the file (it names a "
                           "fragment of that file, not an assessment): not copied")
            continue
        assert e.verdict == OK
        rid = e.record.get("id")
        if not isinstance(rid, str) or not rid:
            skipped.append(f"line {e.line}: has no record id: not copied")
            continue
        body = {k: v for k, v in e.record.items()
                if k not in ("seq", "prev_sha256", "sha256", "db_role")}
        try:
            stored = store.append(body, unique=f"id:{rid}")
        except (Unavailable, LockTimeout):
            raise
        except StoreError as exc:
            skipped.append(f"line {e.line}: {exc}")
            continue
        if stored is None:
            already += 1
        else:
            imported += 1
        if done is not None:
            done.update(imported=imported, already=already)
    return Imported(imported, skipped, already)
