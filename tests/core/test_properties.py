"""Invariants of ICANS grading: hypothesis properties and an exhaustive sweep of the finite space.

The exhaustive sweep compares the core against an oracle written here from the ASTCT table text,
independently of icans_cli.core.grading's band functions.
"""

import pytest

import itertools
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from icans_cli.core.errors import InvalidFinding
from icans_cli.core.grading import Findings, grade_icans
from icans_cli.core.protocol import PRODUCTS, recommend
from icans_cli.protocols import BUILTIN, load

CONSCIOUSNESS = ["alert", "spontaneous", "voice", "tactile", "unarousable"]
SEIZURE = ["none", "self_limited", "prolonged"]
MOTOR = ["none", "focal_weakness"]
ICP = ["focal_edema", "diffuse_edema", "posturing", "cn6_palsy", "papilledema", "cushing_triad"]
ICP_SETS = [frozenset(c) for n in range(len(ICP) + 1) for c in itertools.combinations(ICP, n)]


# --- the oracle: the ASTCT table, written out again, independently ------------------------------

def oracle(path, score, consciousness, seizure, motor, icp, sedated):
    """Return (status, grade, grade_at_least, {domain: grade or None})."""
    table = {}
    if sedated:
        table[path] = None
    elif consciousness == "unarousable":
        table[path] = 4  # "0 (unarousable, unable to perform)"
    elif score is None:
        table[path] = None  # not recorded: allowed only beside another grade-3 or 4 domain
    elif path == "ice":
        table[path] = {10: 0, 9: 1, 8: 1, 7: 1, 6: 2, 5: 2, 4: 2, 3: 2, 2: 3, 1: 3, 0: 3}[score]
    else:
        table[path] = 0 if score == 0 else (1 if score <= 8 else 3)
    table["consciousness"] = None if sedated else CONSCIOUSNESS.index(consciousness)
    table["seizure"] = {"none": 0, "self_limited": 3, "prolonged": 4}[seizure]
    table["motor"] = {"none": 0, "focal_weakness": 4}[motor]
    table["icp_edema"] = 0 if not icp else (3 if icp == {"focal_edema"} else 4)
    known = [v for v in table.values() if v is not None]
    top = max(known)
    if sedated and top < 4:
        return "not_assessable", None, top, table
    return "graded", top, None, table


def check(result, expected):
    status, grade, at_least, table = expected
    assert result.status == status
    assert result.grade == grade
    assert result.grade_at_least == at_least
    got = {d.domain: d.grade for d in result.domains}
    assert got == table
    known = {k: v for k, v in table.items() if v is not None}
    top = max(known.values())
    # grade (or floor) is the maximum of the domain grades
    assert result.effective_grade == top
    # drivers are exactly the domains at the maximum (none at grade 0)
    assert set(result.drivers) == ({k for k, v in known.items() if v == top} if top else set())


def _space():
    for path, scores in (("ice", list(range(11)) + [None]), ("capd", list(range(33)) + [None])):
        for score, cons, seiz, motor, icp, sedated in itertools.product(
                scores, CONSCIOUSNESS, SEIZURE, MOTOR, ICP_SETS, (False, True)):
            yield path, score, cons, seiz, motor, icp, sedated


def _findings(path, score, cons, seiz, motor, icp, sedated):
    kw = dict(consciousness=cons, seizure=seiz, motor=motor, icp_edema=icp, sedated=sedated)
    if path == "ice":
        return Findings(ice_score=score, **kw)
    return Findings(age_years=7, capd_score=score, **kw)


@pytest.mark.slow
def test_exhaustive_every_combination_matches_the_astct_table_and_invariants():
    start = time.perf_counter()
    grades = {}
    n_valid = n_invalid = 0
    for key in _space():
        path, score, cons, seiz, motor, icp, sedated = key
        # ICE 0 is accepted as "not performed" when unarousable; CAPD 0 is not (it would
        # read as a normal child).
        contradiction = cons == "unarousable" and score is not None and not (
            path == "ice" and score == 0)
        # an arousable patient's score grades at most 3: a grade-3 or 4 finding elsewhere
        # decides the grade without it
        grade_3_elsewhere = seiz != "none" or motor == "focal_weakness" or bool(icp) or (
            cons == "tactile")
        missing = score is None and cons != "unarousable" and not sedated \
            and not grade_3_elsewhere
        try:
            f = _findings(*key)
        except InvalidFinding:
            assert contradiction or missing, key
            n_invalid += 1
            continue
        assert not (contradiction or missing), key
        r = grade_icans(f)
        check(r, oracle(path, score, cons, seiz, motor, icp, sedated))
        if cons == "unarousable" and not sedated:
            assert r.ice_score is None and r.capd_score is None  # not taken: never a 0
        grades[key] = r.effective_grade
        n_valid += 1

    # Monotonicity: worsening any single domain by one step never lowers the grade.
    def worse(key):
        path, score, cons, seiz, motor, icp, sedated = key
        if path == "ice" and score is not None and score > 0:
            yield (path, score - 1, cons, seiz, motor, icp, sedated)
        i = CONSCIOUSNESS.index(cons)
        if i + 1 < len(CONSCIOUSNESS):
            yield (path, score, CONSCIOUSNESS[i + 1], seiz, motor, icp, sedated)
        j = SEIZURE.index(seiz)
        if j + 1 < len(SEIZURE):
            yield (path, score, cons, SEIZURE[j + 1], motor, icp, sedated)
        if motor == "none":
            yield (path, score, cons, seiz, "focal_weakness", icp, sedated)
        for sign in ICP:
            if sign not in icp:
                yield (path, score, cons, seiz, motor, icp | {sign}, sedated)
        if path == "capd" and score is not None and score < 32:
            yield (path, score + 1, cons, seiz, motor, icp, sedated)

    compared = 0
    for key, grade in grades.items():
        for w in worse(key):
            if w in grades:  # the worse combination may be a contradiction (unarousable + ICE)
                assert grades[w] >= grade, (key, w)
                compared += 1
    assert compared > 500_000

    # Every distinct management situation yields advice whose doses name source and protocol.
    for protocol in BUILTIN:
        p = load(protocol)
        for grade_findings in _one_result_per_grade():
            for crs in (None, 0, 1, 3):
                for product in (None, "axi-cel", "tisa-cel"):
                    rec = recommend(p, grade_findings, crs, product)
                    _assert_sourced(rec)

    assert n_valid > 140_000 and n_invalid > 0
    assert time.perf_counter() - start < 60


def _one_result_per_grade():
    return [grade_icans(f) for f in (
        Findings(ice_score=10), Findings(ice_score=8), Findings(ice_score=5),
        Findings(ice_score=2, seizure="self_limited"), Findings(consciousness="unarousable"),
        Findings(sedated=True), Findings(sedated=True, seizure="self_limited"),
    )]


def _assert_sourced(rec):
    assert rec.branches and all(b.lines for b in rec.branches)
    for line in rec.all_lines:
        if line.is_dose:
            assert line.citation.strip()
            assert line.protocol_id == rec.protocol_id
    assert "treating team" in rec.decision_line


# --- hypothesis properties ----------------------------------------------------------------------

adult = st.builds(
    Findings,
    ice_score=st.integers(0, 10),
    consciousness=st.sampled_from(CONSCIOUSNESS[:4]),
    seizure=st.sampled_from(SEIZURE),
    motor=st.sampled_from(MOTOR),
    icp_edema=st.frozensets(st.sampled_from(ICP)),
    excluded=st.frozensets(st.sampled_from(["tremor", "myoclonus", "intracranial_hemorrhage"])),
    sedated=st.booleans(),
)


@given(adult)
def test_property_grade_is_max_of_domain_grades_and_drivers_at_max(f):
    r = grade_icans(f)
    known = [d for d in r.domains if d.grade is not None]
    top = max(d.grade for d in known)
    assert r.effective_grade == top
    assert set(r.drivers) == ({d.domain for d in known if d.grade == top} if top else set())


@given(adult, st.sampled_from(["ice", "consciousness", "seizure", "motor", "icp_edema"]))
def test_property_worsening_one_domain_never_lowers_grade(f, domain):
    before = grade_icans(f).effective_grade
    kw = dict(ice_score=f.ice_score, consciousness=f.consciousness, seizure=f.seizure,
              motor=f.motor, icp_edema=f.icp_edema, sedated=f.sedated)
    if domain == "ice":
        kw["ice_score"] = max(0, f.ice_score - 3)
    elif domain == "consciousness":
        kw["consciousness"] = CONSCIOUSNESS[min(3, CONSCIOUSNESS.index(f.consciousness) + 1)]
    elif domain == "seizure":
        kw["seizure"] = SEIZURE[min(2, SEIZURE.index(f.seizure) + 1)]
    elif domain == "motor":
        kw["motor"] = "focal_weakness"
    else:
        kw["icp_edema"] = f.icp_edema | {"focal_edema"}
    assert grade_icans(Findings(**kw)).effective_grade >= before


@given(adult)
def test_property_excluded_findings_never_change_the_grade(f):
    without = Findings(ice_score=f.ice_score, consciousness=f.consciousness, seizure=f.seizure,
                       motor=f.motor, icp_edema=f.icp_edema, sedated=f.sedated)
    assert grade_icans(f).effective_grade == grade_icans(without).effective_grade


@settings(max_examples=200)
@given(adult, st.sampled_from(BUILTIN), st.sampled_from([None, 0, 1, 2, 3, 4]),
       st.sampled_from([None, *PRODUCTS]), st.one_of(st.none(), st.floats(12, 90)))
def test_property_every_result_has_recommendation_with_sourced_doses(f, protocol, crs, product,
                                                                    age):
    r = grade_icans(f)
    rec = recommend(load(protocol), r, crs, product, age)
    assert rec.grade == r.effective_grade
    _assert_sourced(rec)
    if crs == 0:
        assert not any(b.tocilizumab_advised for b in rec.branches)
