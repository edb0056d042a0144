"""Shared builders for tests."""

import sys

import pytest

from datetime import datetime, timedelta, timezone

from icans_cli.core.grading import Findings, grade_icans
from icans_cli.core.protocol import recommend
from icans_cli.protocols import load
from icans_cli.records import assessment_record

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)


def body(patient="PT-001", ice=10, hours=0.0, crs=None, product=None, amends=None, **kw):
    f = Findings(ice_score=ice, **kw) if ice is not None or "capd_score" in kw else Findings(**kw)
    r = grade_icans(f)
    rec = recommend(load(), r, crs, product)
    return assessment_record(
        patient_id=patient, assessor="nurse-a", source="interactive",
        assessed_at=T0 + timedelta(hours=hours), findings=f, result=r, recommendation=rec,
        crs_grade=crs, product=product, amends=amends,
    )


# Tests of POSIX-only behaviour (signals such as SIGHUP and SIGKILL, fork, FIFOs, file-size
# limits, pseudo-terminals, file modes): skipped on Windows, saying why; the rest is portable.
POSIX_ONLY = pytest.mark.skipif(sys.platform == "win32",
                                reason="POSIX only: signals, fork, FIFOs, rlimits, pty or modes")
