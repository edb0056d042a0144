"""icans-cli: ICE/CAPD scoring, ASTCT 2019 ICANS grading and sourced management support."""

__version__ = "0.1.0"
