"""Colours readable on a light and on a dark background (issue 17): the screens use only the
terminal's own named colours, which the user's theme sets, never a fixed RGB or 256-colour
value (#ffaf00 fell to 1.7:1 on white)."""

import io
import re

import pytest
from rich.console import Console

from icans_cli import render
from icans_cli.core import Findings
from icans_cli.core.advice import Case, advise
from icans_cli.core.crs import CrsState
from icans_cli.explain import TOPICS, render as explain
from icans_cli.interview import STYLE
from icans_cli.protocols import load
from tests.helpers import T0

SGR = re.compile(r"\x1b\[([0-9;]*)m")
# attributes, the 8 standard and 8 bright foreground and background colours, and resets
NAMED = {0, 1, 2, 3, 4, 5, 7, 9, 21, 22, 23, 24, 25, 27, 29, 39, 49, *range(30, 38),
         *range(40, 48), *range(90, 98), *range(100, 108)}


def _codes(renderable, width=80):
    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=True, color_system="truecolor").print(
        renderable)
    out = set()
    for params in SGR.findall(buf.getvalue()):
        out.update(int(p) for p in params.split(";") if p)
    return out, buf.getvalue()


CASES = [dict(ice_score=10), dict(ice_score=8), dict(ice_score=5), dict(ice_score=2),
         dict(consciousness="unarousable", seizure="prolonged"), dict(sedated=True,
                                                                      ice_score=None)]


@pytest.mark.parametrize("crs", [None, 0, 2])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_the_bedside_summary_and_details_use_only_named_colours(case, crs):
    f = Findings(age_years=50, **CASES[case])
    advice = advise(load(), Case(findings=f, crs=CrsState(crs), weight_kg=70))
    ctx = render.Context(patient_id="PT-1", assessed_at=T0, age=50, weight=70)
    for part in (render.bedside(advice.result, advice.recommendation, ctx),
                 render.details(advice.result, advice.recommendation, [], ctx)):
        codes, text = _codes(part)
        assert "38;5;" not in text and "38;2;" not in text and "48;5;" not in text \
            and "48;2;" not in text
        assert codes <= NAMED, sorted(codes - NAMED)


def test_the_explanations_use_only_named_colours():
    for tp in TOPICS:
        buf = io.StringIO()
        con = Console(file=buf, width=80, force_terminal=True, color_system="truecolor")
        explain(con, tp, None, None, None, None)
        assert not re.search(r"\x1b\[[0-9;]*[34]8;[25];", buf.getvalue()), tp.key


def test_the_interview_styles_name_only_the_terminals_own_colours():
    for _, style in STYLE.style_rules:
        for word in style.split():
            if word.startswith(("fg:", "bg:")):
                assert word.split(":", 1)[1].startswith("ansi"), style
            else:
                assert word in ("bold", "italic", "underline", "reverse", "noinherit", ""), \
                    style
