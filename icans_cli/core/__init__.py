"""The pure clinical core: scores, ASTCT ICANS and CRS grading, protocols, rationale.

No terminal, no files, no printing: callers pass data in and get data back.
"""

from icans_cli.core.crs import CrsFindings, CrsResult, grade_crs
from icans_cli.core.errors import InvalidFinding
from icans_cli.core.grading import RULES_VERSION, Findings, IcansResult, grade_icans
from icans_cli.core.protocol import Protocol, Recommendation, recommend
from icans_cli.core.rationale import rationale, why_grade
from icans_cli.core.scores import IceItems

__all__ = [
    "CrsFindings", "CrsResult", "grade_crs", "InvalidFinding", "RULES_VERSION", "Findings",
    "IcansResult", "grade_icans", "Protocol", "Recommendation", "recommend", "rationale",
    "why_grade", "IceItems",
]
