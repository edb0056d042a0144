"""Shell completion of option values: formats, explain topics, protocols, and the patients
and record ids in the log (read only when the shell asks). Never fails loudly."""

from __future__ import annotations


def _log_values(read) -> list[str]:
    try:
        from icans_cli.store import open_store

        with open_store(None) as s:
            return read(s)
    except Exception:  # noqa: BLE001 - completion never fails loudly
        return []


def formats(incomplete: str) -> list[str]:
    return [f for f in ("table", "jsonl", "csv") if f.startswith(incomplete)]


def grade_formats(incomplete: str) -> list[str]:
    return [f for f in ("csv", "jsonl", "json", "table") if f.startswith(incomplete)]


def topics(incomplete: str) -> list[str]:
    from icans_cli.explain import TOPICS

    return [t.key for t in TOPICS if t.key.startswith(incomplete.lower())]


def protocols(incomplete: str) -> list[str]:
    from icans_cli.protocols import BUILTIN

    return [p for p in BUILTIN if p.startswith(incomplete)]


def patients(incomplete: str) -> list[str]:
    """The pseudonyms in the log (the last 200 that match)."""
    def read(s) -> list[str]:
        seen: list[str] = []
        for e in s.assessments():
            pid = e.record.get("patient_id")
            if isinstance(pid, str) and pid.startswith(incomplete) and pid not in seen:
                seen.append(pid)
        return seen[-200:]
    return _log_values(read)


def records(incomplete: str) -> list[str]:
    """The record ids in the log, as `show` takes them (8 characters)."""
    def read(s) -> list[str]:
        ids = [str(e.record.get("id"))[:8] for e in s.assessments()]
        return [i for i in ids if i.startswith(incomplete)][-200:]
    return _log_values(read)


def patients_and_records(incomplete: str) -> list[str]:
    return patients(incomplete) + records(incomplete)
